//! EDGE: `talvault init`, `env …`, `recipients …` and `policy show`: arguments, one service
//! call each, and their rendering.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::error::CliError;
use super::input::{contract_arg, kubernetes_pki, read_input};
use super::opts::{Format, Opens, VaultOpts, passphrase, recipients_from};
use super::output::{json, write_stdout};
use super::render::{printable, printable_list};
use crate::model::{EnvMeta, Sealing};
use crate::secret::{SecretBytes, SecretText};
use crate::vault::{self, BundleSource, EnvView, NewEnv, RecipientChange, SealTo};

/// `talvault env …`
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Generate a new environment's bundle and seal it to its recipients.
    Create(CreateArgs),
    /// Create an environment from existing material (secrets.yaml, Kubernetes PKI, machine config).
    Import(ImportArgs),
    /// List the environments.
    List {
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
    /// Clear the break-glass mark of an environment (audited, with a reason).
    Untaint {
        /// The environment.
        env: String,
        /// Why the incident is over.
        #[arg(long, required = true, value_name = "TEXT")]
        reason: String,
    },
    /// Show an environment's public facts: cluster, contract, pins, recipients. Opens nothing.
    Show {
        /// The environment.
        env: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
    /// Compare a control-plane machine config with the environment's bundle: every CA and
    /// secret by SHA-256, never printing a value (exit 0 match, 1 mismatch). Audited.
    Check {
        /// The environment.
        env: String,
        /// The control-plane machine config (v1alpha1, or the 1.14 multi-document form).
        #[arg(long, value_name = "FILE", required = true)]
        machine_config: PathBuf,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
}

/// Sealing and cluster options shared by `env create` and `env import`.
#[derive(Debug, Args)]
pub struct EnvCommon {
    /// The environment name (lowercase letters, digits, dashes).
    pub env: String,
    /// An age recipient: age1…, ssh-ed25519 …, ssh-rsa …, or a plugin recipient (repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// A recipients file, one per line, `#` comments (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Seal with a passphrase instead (scrypt work factor 18), for a single break-glass operator.
    #[arg(long, conflicts_with_all = ["recipients", "recipients_files"])]
    pub passphrase: bool,
    /// Version contract (default: current).
    #[arg(long, value_name = "VERSION")]
    pub talos_version: Option<String>,
    /// Cluster name (default: the environment name).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Talos API endpoint for talosconfigs (repeatable).
    #[arg(long = "endpoint", short = 'e', value_name = "ENDPOINT")]
    pub endpoints: Vec<String>,
    /// Default node for talosconfigs (repeatable).
    #[arg(long = "node", short = 'n', value_name = "NODE")]
    pub nodes: Vec<String>,
    /// The Kubernetes API server URL for kubeconfigs (default: `https://<first endpoint>:6443`).
    #[arg(long, value_name = "URL")]
    pub kubernetes_endpoint: Option<String>,
}

/// `env create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    common: EnvCommon,
}

/// `env import`
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("from").required(true))]
pub struct ImportArgs {
    #[command(flatten)]
    common: EnvCommon,
    /// An existing secrets.yaml.
    #[arg(long, value_name = "FILE", group = "from")]
    pub from_secrets: Option<PathBuf>,
    /// A kubeadm-style PKI directory.
    #[arg(short = 'p', long, value_name = "DIR", group = "from")]
    pub from_kubernetes_pki: Option<PathBuf>,
    /// Bootstrap token for --from-kubernetes-pki.
    #[arg(
        short = 't',
        long,
        value_name = "TOKEN",
        env = "TALVAULT_KUBERNETES_BOOTSTRAP_TOKEN",
        hide_env_values = true,
        requires = "from_kubernetes_pki"
    )]
    pub kubernetes_bootstrap_token: Option<String>,
    /// A control-plane machine config.
    #[arg(long, value_name = "FILE", group = "from")]
    pub from_controlplane_config: Option<PathBuf>,
}

/// `talvault recipients …`
#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// List an environment's recipients.
    List {
        /// The environment.
        env: String,
        /// List the backup-only recipients instead (they open backups, never the bundle).
        #[arg(long)]
        backup_only: bool,
    },
    /// Add recipients; every secret of the environment is re-sealed to the new set.
    Add(RecipientArgs),
    /// Remove recipients; every secret is re-sealed with a fresh file key. Old ciphertexts stay
    /// readable in git history by the removed key: rotate the secrets if that matters.
    Remove(RecipientArgs),
}

/// Recipients to add or remove.
#[derive(Debug, Args)]
pub struct RecipientArgs {
    /// The environment.
    pub env: String,
    /// Recipient (repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Recipients file (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// Change the backup-only recipients (`backup-recipients.txt`): keys that open the
    /// environment's backups, never its bundle. Nothing is re-sealed.
    #[arg(long)]
    pub backup_only: bool,
}

/// `talvault policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the environment's policy.yaml as talvault reads it (defaults filled in).
    Show {
        /// The environment.
        env: String,
    },
    /// Accept a reviewed change of policy.yaml into the audit trail (until then commands
    /// refuse a policy the trail does not name).
    Accept {
        /// The environment.
        env: String,
        /// The review (a pull request, a ticket).
        #[arg(long, required = true, value_name = "TEXT")]
        reason: String,
    },
}

/// `talvault init [DIR]`
pub fn init(dir: Option<PathBuf>) -> Result<u8, CliError> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let root = vault::init(&dir)?;
    write_stdout(format!("initialised a talvault vault in {}\nnext: talvault --vault {} env create ENV -r age1…\n", root.display(), root.display()).as_bytes())?;
    Ok(0)
}

/// `talvault env …`
pub fn run(cmd: EnvCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        EnvCommand::Create(a) => create(a.common, BundleSource::Generate, o),
        EnvCommand::Import(a) => {
            let source = if let Some(f) = &a.from_secrets {
                BundleSource::Secrets(SecretBytes::copy_from(&read_input(f, "secrets file")?))
            } else if let Some(d) = &a.from_kubernetes_pki {
                BundleSource::KubernetesPki(
                    kubernetes_pki(d)?,
                    a.kubernetes_bootstrap_token.map(SecretText::new),
                )
            } else if let Some(f) = &a.from_controlplane_config {
                BundleSource::ControlplaneConfig(SecretBytes::copy_from(&read_input(
                    f,
                    "machine config",
                )?))
            } else {
                return Err(CliError::usage(
                    "give one of --from-secrets, --from-kubernetes-pki, --from-controlplane-config",
                ));
            };
            create(a.common, source, o)
        }
        EnvCommand::List { format } => {
            let envs = o.open_vault()?.env_list()?;
            let text = match format {
                Format::Json => json(&envs)?,
                Format::Text => list_text(&envs).into_bytes(),
            };
            write_stdout(&text)?;
            Ok(0)
        }
        EnvCommand::Untaint { env, reason } => {
            require_reason(&reason, "INC-123 resolved, leaf expired")?;
            let v = o.open_vault()?;
            v.untaint(&env, &reason, &o.context(Opens::Secrets)?)?;
            write_stdout(format!("environment {env} is no longer tainted\n").as_bytes())?;
            Ok(0)
        }
        EnvCommand::Check {
            env,
            machine_config,
            format,
        } => check(&env, &machine_config, format, o),
        EnvCommand::Show { env, format } => {
            let view = o.open_vault()?.env_show(&env, &o.context(Opens::Given)?)?;
            let text = match format {
                Format::Json => json(&view)?,
                Format::Text => render_env(&view).into_bytes(),
            };
            write_stdout(&text)?;
            Ok(0)
        }
    }
}

/// A `--reason` that says something: a usage error (exit 2) before the vault is opened.
pub fn require_reason(reason: &str, example: &str) -> Result<(), CliError> {
    if reason.trim().is_empty() {
        return Err(CliError::usage("--reason must not be empty")
            .hint(format!("say why, e.g. --reason \"{example}\"")));
    }
    Ok(())
}

fn list_text(envs: &[EnvMeta]) -> String {
    let mut s = String::new();
    for e in envs {
        s.push_str(&format!(
            "{}\tcluster {}\tTalos {}\t{}{}\n",
            printable(&e.name),
            printable(&e.cluster_name),
            printable(&e.talos_version),
            printable(&e.source),
            if e.tainted.is_some() { "\tTAINTED" } else { "" }
        ));
    }
    if envs.is_empty() {
        s.push_str("no environments yet; create one with `talvault env create ENV -r age1…`\n");
    }
    s
}

fn create(a: EnvCommon, source: BundleSource, o: &VaultOpts) -> Result<u8, CliError> {
    let contract = contract_arg(a.talos_version.as_deref())?;
    let seal_to = if a.passphrase {
        SealTo::Passphrase(passphrase(o, true)?)
    } else {
        let r = recipients_from(&a.recipients, &a.recipients_files)?;
        if r.is_empty() {
            return Err(CliError::usage("no recipients given").hint(
                "pass -r age1… or -R FILE (or --passphrase for a passphrase-only environment)",
            ));
        }
        SealTo::Recipients(r)
    };
    let v = o.open_vault()?;
    let view = v.env_create(
        NewEnv {
            name: a.env,
            source,
            seal_to,
            contract,
            cluster_name: a.cluster_name,
            endpoints: a.endpoints,
            nodes: a.nodes,
            kubernetes_endpoint: a.kubernetes_endpoint,
        },
        &o.context(Opens::Nothing)?,
    )?;
    write_stdout(
        format!(
            "created environment {}\n\n{}",
            view.meta.name,
            render_env(&view)
        )
        .as_bytes(),
    )?;
    Ok(0)
}

fn render_env(v: &EnvView) -> String {
    let m = &v.meta;
    let mut s = String::new();
    s.push_str(&format!("environment:    {}\n", m.name));
    s.push_str(&format!("cluster name:   {}\n", m.cluster_name));
    s.push_str(&format!("talos version:  {}\n", m.talos_version));
    s.push_str(&format!("source:         {}\n", m.source));
    s.push_str(&format!("created:        {}\n", m.created));
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            printable_list(items, ", ")
        }
    };
    s.push_str(&format!("endpoints:      {}\n", list(&m.endpoints)));
    s.push_str(&format!("nodes:          {}\n", list(&m.nodes)));
    s.push_str(&format!(
        "kubernetes:     {}{}\n",
        printable(&m.kubernetes_server().unwrap_or_else(|| "(none)".into())),
        if m.kubernetes_endpoint.is_none() && !m.endpoints.is_empty() {
            " (derived from the first endpoint)"
        } else {
            ""
        }
    ));
    match &m.tainted {
        Some(t) => s.push_str(&format!(
            "tainted:        since {} ({})\n",
            t.since, t.reason
        )),
        None => s.push_str("tainted:        no\n"),
    }
    s.push_str("pins (sha256 of the CA certificates):\n");
    s.push_str(&format!("  etcd            {}\n", m.pins.etcd.0));
    s.push_str(&format!("  k8s             {}\n", m.pins.k8s.0));
    s.push_str(&format!("  k8saggregator   {}\n", m.pins.k8saggregator.0));
    s.push_str(&format!("  os              {}\n", m.pins.os.0));
    match m.sealing {
        Sealing::Passphrase => s.push_str("sealed with:    a passphrase (scrypt)\n"),
        Sealing::Recipients => {
            s.push_str(&format!("recipients ({}):\n", v.recipients.len()));
            for r in &v.recipients {
                s.push_str(&format!("  {r}\n"));
            }
        }
    }
    s.push_str(&format!("audit events:   {}\n", v.audit_events));
    s
}

/// `env check ENV --machine-config FILE`: exit 0 when every field matches, 1 otherwise.
fn check(env: &str, file: &std::path::Path, format: Format, o: &VaultOpts) -> Result<u8, CliError> {
    let config = SecretBytes::copy_from(&read_input(file, "machine config")?);
    let v = o.open_vault()?;
    let report = v.env_check(env, &config, &o.context(Opens::Secrets)?)?;
    let text = match format {
        Format::Json => json(&report)?,
        Format::Text => {
            let mut s = String::new();
            for f in &report.fields {
                s.push_str(&format!("{:<36} {}", f.field, f.result));
                if let Some(fp) = &f.bundle_fingerprint {
                    s.push_str(&format!("  {fp}"));
                }
                if f.result != "match"
                    && let Some(fp) = &f.config_fingerprint
                {
                    s.push_str(&format!("  (machine config: {fp})"));
                }
                s.push('\n');
            }
            let bad: Vec<&str> = report
                .fields
                .iter()
                .filter(|f| f.result != "match")
                .map(|f| f.field)
                .collect();
            if bad.is_empty() {
                s.push_str(&format!(
                    "{env}: {} matches the bundle ({} fields)\n",
                    file.display(),
                    report.fields.len()
                ));
            } else {
                s.push_str(&format!(
                    "{env}: {} does NOT match the bundle: {}\n",
                    file.display(),
                    bad.join(", ")
                ));
            }
            s.into_bytes()
        }
    };
    write_stdout(&text)?;
    Ok(if report.matches { 0 } else { 1 })
}

/// `talvault recipients …`
pub fn recipients(cmd: RecipientsCommand, o: &VaultOpts) -> Result<u8, CliError> {
    let (change, a) = match cmd {
        RecipientsCommand::List { env, backup_only } => {
            let v = o.open_vault()?;
            let list = if backup_only {
                v.backup_recipients_list(&env)?
            } else {
                v.recipients_list(&env)?
            };
            let text: String = list.iter().map(|r| format!("{}\n", printable(r))).collect();
            write_stdout(text.as_bytes())?;
            return Ok(0);
        }
        RecipientsCommand::Add(a) => (RecipientChange::Add, a),
        RecipientsCommand::Remove(a) => (RecipientChange::Remove, a),
    };
    if a.recipients.is_empty() && a.recipients_files.is_empty() {
        return Err(CliError::usage("no recipients given").hint("pass -r RECIPIENT or -R FILE"));
    }
    let given = recipients_from(&a.recipients, &a.recipients_files)?;
    let v = o.open_vault()?;
    if a.backup_only {
        let now =
            v.backup_recipients_change(&a.env, change, &given, &o.context(Opens::Secrets)?)?;
        let mut msg = format!(
            "environment {} has {} backup-only recipient(s); nothing was re-sealed
",
            a.env,
            now.len()
        );
        msg.push_str(&stale_backups(&v, &a.env));
        write_stdout(msg.as_bytes())?;
        return Ok(0);
    }
    let now = v.recipients_change(&a.env, change, &given, &o.context(Opens::Secrets)?)?;
    let mut msg = match change {
        RecipientChange::Add => format!(
            "re-sealed environment {} to {} recipient(s)\n",
            a.env,
            now.len()
        ),
        RecipientChange::Remove => format!(
            "re-sealed environment {} to {} recipient(s) with a fresh file key\n\
             warning: the removed key can still open the old bundle.age in git history; if that key may be compromised, rotate the cluster's secrets\n",
            a.env,
            now.len()
        ),
    };
    msg.push_str(&stale_backups(&v, &a.env));
    write_stdout(msg.as_bytes())?;
    Ok(0)
}

/// After a change of recipients: the backups still sealed to another set, and what to do. The
/// change is committed by then, so a backup record that cannot be read is a note, not a failure.
fn stale_backups(v: &vault::Vault, env: &str) -> String {
    let stale = match v.backups_stale(env) {
        Ok(stale) => stale,
        Err(e) => {
            return format!(
                "note: cannot list the backups sealed to the old recipients: {}\n",
                CliError::from(e).message
            );
        }
    };
    let mut s = String::new();
    if stale.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "{} backup(s) are sealed to other recipients than the current ones:\n",
        stale.len()
    ));
    for b in &stale {
        let mut why = Vec::new();
        if b.sealed_to_removed > 0 {
            why.push(format!(
                "{} removed recipient(s) can still open it",
                b.sealed_to_removed
            ));
        }
        if b.missing_current > 0 {
            why.push(format!("{} current recipient(s) cannot", b.missing_current));
        }
        s.push_str(&format!(
            "  {}  sealed {}  {}: {}\n",
            b.id,
            b.created,
            b.location.as_deref().unwrap_or("(location not recorded)"),
            why.join(", ")
        ));
    }
    s.push_str(&format!(
        "re-seal each with `talvault backup reseal {env} FILE` (copies elsewhere keep their old recipients)\n"
    ));
    s
}

/// `talvault policy show|accept ENV`
pub fn policy(cmd: PolicyCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        PolicyCommand::Show { env } => {
            let p = o.open_vault()?.policy(&env, &o.context(Opens::Given)?)?;
            write_stdout(p.to_yaml().as_bytes())?;
        }
        PolicyCommand::Accept { env, reason } => {
            require_reason(&reason, "PR #42 reviewed by bob")?;
            let v = o.open_vault()?;
            v.policy_accept(&env, &reason, &o.context(Opens::Secrets)?)?;
            write_stdout(
                format!("accepted envs/{env}/policy.yaml into the audit trail\n").as_bytes(),
            )?;
        }
    }
    Ok(0)
}

/// `talvault upgrade`
pub fn upgrade(o: &VaultOpts) -> Result<u8, CliError> {
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let done = v.upgrade(&ctx)?;
    write_stdout(
        format!(
            "upgraded the vault to format 2: events are authenticated and account for every file ({} environment(s): {})\n",
            done.len(),
            done.join(", ")
        )
        .as_bytes(),
    )?;
    Ok(0)
}
