//! EDGE: the vault commands' arguments (`init`, `env`, `recipients`, `audit`, `bundle
//! export|exec`) and their rendering. Each handler resolves the vault, identities and actor,
//! calls one `vault::Vault` method, and prints its result. No vault logic lives here.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: resolves the vault, identities and actor from the environment"
)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::bundle::{Format, contract_arg, read_input};
use super::prompt::{TerminalCallbacks, read_hidden};
use super::{CliError, ExitCode, output, write_stdout};
use crate::secret::{SecretBytes, SecretText};
use crate::store::age::{self as agestore, AgeError, Recipient};
use crate::vault::{self, BundleSource, Context, NewEnv, SealTo, Vault, VaultError};

/// Options every vault command takes.
#[derive(Debug, Args, Clone)]
pub struct VaultOpts {
    /// The vault directory (default: TALVAULT_VAULT, else the nearest parent holding talvault.yaml).
    #[arg(long, global = true, value_name = "DIR")]
    pub vault: Option<PathBuf>,
    /// Identity file to decrypt with (repeatable; default: TALVAULT_IDENTITY, then SOPS_AGE_KEY_FILE).
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Who is acting, for the audit trail (default: TALVAULT_ACTOR, git user.email, login name).
    #[arg(long, global = true, value_name = "NAME")]
    pub actor: Option<String>,
    /// Read the passphrase of a passphrase-sealed environment from this file (else
    /// TALVAULT_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the user PIN of a PKCS#11 token from this file when the key's URI has no
    /// pin-source (else TALVAULT_PKCS11_PIN, else a prompt). Never give a PIN on the command line.
    #[arg(long, global = true, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// How long to wait for another talvault process to release the vault lock.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub lock_timeout: u64,
}

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
}

/// `talvault audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit events, oldest first.
    Log {
        /// Only this environment.
        env: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: Format,
    },
    /// Check every event id and parent link (exit 1 when anything was edited, deleted or re-ordered).
    Verify {
        /// Only this environment.
        env: Option<String>,
    },
}

pub(crate) fn open_vault_for(o: &VaultOpts) -> Result<Vault, CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::new(format!("cannot read the current directory: {e}")))?;
    let env_var = std::env::var_os("TALVAULT_VAULT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let root = vault::discover(o.vault.as_deref(), env_var.as_deref(), &cwd).map_err(vault_err)?;
    Vault::open(&root, Duration::from_secs(o.lock_timeout)).map_err(vault_err)
}

/// Maps a vault error to a CLI error with its hint.
pub fn vault_err(e: VaultError) -> CliError {
    let hint = e.hint();
    let err = CliError::new(e.to_string());
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

fn age_err(e: AgeError) -> CliError {
    vault_err(VaultError::Age(e))
}

/// The acting context. Identities are loaded only when `need_secrets` (commands that open).
pub(crate) fn context_for(o: &VaultOpts, need_secrets: bool) -> Result<Context, CliError> {
    let actor = crate::process::actor(
        o.actor.as_deref(),
        std::env::var("TALVAULT_ACTOR").ok().as_deref(),
    );
    // talvault-hsm reads TALVAULT_PKCS11_PIN before it calls the prompt below, so with both set
    // the variable would silently win over --pin-file and spend one of the token's PIN attempts.
    if o.pin_file.is_some() && std::env::var_os(talvault_hsm::PIN_ENV).is_some() {
        return Err(CliError::new(format!(
            "--pin-file and {} are both set; talvault will not guess which PIN is meant",
            talvault_hsm::PIN_ENV
        ))
        .hint(format!(
            "unset {} or drop --pin-file",
            talvault_hsm::PIN_ENV
        ))
        .code(2));
    }
    let mut ctx = Context {
        actor,
        now: time::OffsetDateTime::now_utc(),
        identities: Vec::new(),
        passphrase: None,
        pin_prompt: Some(match o.pin_file.clone() {
            Some(path) => Box::new(move |_token: &str| {
                let bytes = read_input(&path, "PIN file").map_err(|e| e.message)?;
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| "the PIN file is not UTF-8 text".to_owned())?;
                let pin = text.strip_suffix('\n').unwrap_or(&text);
                let pin =
                    secrecy::SecretString::from(pin.strip_suffix('\r').unwrap_or(pin).to_owned());
                crate::secret::wipe_string(text);
                Ok(pin)
            }),
            None => Box::new(|token: &str| {
                super::prompt::read_hidden(&format!("PIN for PKCS#11 token {token:?}: "))
                    .map(|pin| secrecy::SecretString::from(pin.expose().to_owned()))
                    .map_err(|e| {
                        format!(
                            "cannot ask for the PIN ({e}); use --pin-file, pin-source in the URI or TALVAULT_PKCS11_PIN"
                        )
                    })
            }),
        }),
    };
    if need_secrets {
        let talvault_identity = std::env::var_os("TALVAULT_IDENTITY");
        let sops = std::env::var_os("SOPS_AGE_KEY_FILE");
        match agestore::resolve_identity_files(
            &o.identities,
            talvault_identity.as_deref(),
            sops.as_deref(),
        ) {
            Ok((_, files)) => {
                ctx.identities =
                    agestore::load_identities(&files, TerminalCallbacks).map_err(age_err)?;
            }
            Err(AgeError::NoIdentitySource) => {}
            Err(e) => return Err(age_err(e)),
        }
    }
    Ok(ctx)
}

/// The passphrase for a passphrase-sealed environment: file, TALVAULT_PASSPHRASE, or a prompt.
fn passphrase(o: &VaultOpts, confirm: bool) -> Result<SecretText, CliError> {
    if let Some(f) = &o.passphrase_file {
        let bytes = read_input(f, "passphrase file")?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| CliError::new("the passphrase file is not UTF-8 text").code(2))?;
        let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
        crate::secret::wipe_string(text);
        return Ok(SecretText::new(trimmed));
    }
    if let Some(p) = std::env::var_os("TALVAULT_PASSPHRASE").filter(|p| !p.is_empty()) {
        return p
            .into_string()
            .map(SecretText::new)
            .map_err(|_| CliError::new("TALVAULT_PASSPHRASE is not UTF-8").code(2));
    }
    let no_tty = |e: std::io::Error| {
        CliError::new(format!("cannot ask for the passphrase: {e}"))
            .hint("use --passphrase-file FILE or TALVAULT_PASSPHRASE when there is no terminal")
    };
    let p = read_hidden("Passphrase: ").map_err(no_tty)?;
    if confirm {
        let again = read_hidden("Confirm passphrase: ").map_err(no_tty)?;
        if again.expose() != p.expose() {
            return Err(CliError::new("the passphrases do not match"));
        }
    }
    if p.is_empty() {
        return Err(CliError::new("the passphrase is empty"));
    }
    Ok(p)
}

fn recipients_from(args: &[String], files: &[PathBuf]) -> Result<Vec<Recipient>, CliError> {
    let mut out: Vec<Recipient> = Vec::new();
    for a in args {
        let r = Recipient::parse(a).map_err(|p| {
            CliError::new(format!("-r {}: {p}", shorten(a)))
                .hint(p.hint())
                .code(2)
        })?;
        out.push(r);
    }
    for f in files {
        let bytes = read_input(f, "recipients file")?;
        let text = String::from_utf8_lossy(&bytes);
        out.extend(agestore::parse_recipients(&text, f).map_err(|e| age_err(e).code(2))?);
    }
    // The same key given twice (two -r, or -r and a -R file) is one recipient, as it is when
    // recipients.txt is read back.
    let mut unique: Vec<Recipient> = Vec::with_capacity(out.len());
    for r in out {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    Ok(unique)
}

/// Shows the start of a string the user typed where a recipient belonged (it might be a secret
/// key pasted by mistake, so never all of it).
fn shorten(s: &str) -> String {
    let head: String = s.chars().take(12).collect();
    if s.chars().count() > 12 {
        format!("{head}…")
    } else {
        head
    }
}

/// `talvault init [DIR]`
pub fn init_cmd(dir: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let root = vault::init(&dir).map_err(vault_err)?;
    write_stdout(format!("initialised a talvault vault in {}\nnext: talvault --vault {} env create ENV -r age1…\n", root.display(), root.display()).as_bytes())?;
    Ok(0)
}

/// `talvault env …`
pub fn env_cmd(cmd: EnvCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    match cmd {
        EnvCommand::Create(a) => create(a.common, BundleSource::Generate, o),
        EnvCommand::Import(a) => {
            let source = if let Some(f) = &a.from_secrets {
                BundleSource::Secrets(SecretBytes::copy_from(&read_input(f, "secrets file")?))
            } else if let Some(d) = &a.from_kubernetes_pki {
                BundleSource::KubernetesPki(
                    super::bundle::read_kubernetes_pki(d)?,
                    a.kubernetes_bootstrap_token.map(SecretText::new),
                )
            } else if let Some(f) = &a.from_controlplane_config {
                BundleSource::ControlplaneConfig(SecretBytes::copy_from(&read_input(
                    f,
                    "machine config",
                )?))
            } else {
                return Err(CliError::new(
                    "give one of --from-secrets, --from-kubernetes-pki, --from-controlplane-config",
                )
                .code(2));
            };
            create(a.common, source, o)
        }
        EnvCommand::List { format } => {
            let v = open_vault_for(o)?;
            let envs = v.env_list().map_err(vault_err)?;
            let text = match format {
                Format::Json => json(&envs)?,
                Format::Text => {
                    let mut s = String::new();
                    for e in &envs {
                        s.push_str(&format!(
                            "{}\tcluster {}\tTalos {}\t{}{}\n",
                            e.name,
                            e.cluster_name,
                            e.talos_version,
                            e.source,
                            if e.tainted.is_some() { "\tTAINTED" } else { "" }
                        ));
                    }
                    if envs.is_empty() {
                        s.push_str("no environments yet; create one with `talvault env create ENV -r age1…`\n");
                    }
                    s
                }
            };
            write_stdout(text.as_bytes())?;
            Ok(0)
        }
        EnvCommand::Untaint { env, reason } => super::issue::untaint(&env, &reason, o),
        EnvCommand::Show { env, format } => {
            let v = open_vault_for(o)?;
            let view = v.env_show(&env).map_err(vault_err)?;
            let text = match format {
                Format::Json => json(&view)?,
                Format::Text => render_env(&view),
            };
            write_stdout(text.as_bytes())?;
            Ok(0)
        }
    }
}

fn create(a: EnvCommon, source: BundleSource, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let contract = contract_arg(a.talos_version.as_deref())?;
    let seal_to = if a.passphrase {
        SealTo::Passphrase(passphrase(o, true)?)
    } else {
        let r = recipients_from(&a.recipients, &a.recipients_files)?;
        if r.is_empty() {
            return Err(CliError::new("no recipients given")
                .hint(
                    "pass -r age1… or -R FILE (or --passphrase for a passphrase-only environment)",
                )
                .code(2));
        }
        SealTo::Recipients(r)
    };
    let v = open_vault_for(o)?;
    let ctx = context_for(o, false)?;
    let view = v
        .env_create(
            NewEnv {
                name: a.env,
                source,
                seal_to,
                contract,
                cluster_name: a.cluster_name,
                endpoints: a.endpoints,
                nodes: a.nodes,
            },
            &ctx,
        )
        .map_err(vault_err)?;
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

fn render_env(v: &vault::EnvView) -> String {
    let m = &v.meta;
    let mut s = String::new();
    s.push_str(&format!("environment:    {}\n", m.name));
    s.push_str(&format!("cluster name:   {}\n", m.cluster_name));
    s.push_str(&format!("talos version:  {}\n", m.talos_version));
    s.push_str(&format!("source:         {}\n", m.source));
    s.push_str(&format!("created:        {}\n", m.created));
    s.push_str(&format!(
        "endpoints:      {}\n",
        if m.endpoints.is_empty() {
            "(none)".into()
        } else {
            m.endpoints.join(", ")
        }
    ));
    s.push_str(&format!(
        "nodes:          {}\n",
        if m.nodes.is_empty() {
            "(none)".into()
        } else {
            m.nodes.join(", ")
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
        crate::model::Sealing::Passphrase => s.push_str("sealed with:    a passphrase (scrypt)\n"),
        crate::model::Sealing::Recipients => {
            s.push_str(&format!("recipients ({}):\n", v.recipients.len()));
            for r in &v.recipients {
                s.push_str(&format!("  {r}\n"));
            }
        }
    }
    s.push_str(&format!("audit events:   {}\n", v.audit_events));
    s
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    let mut s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::new(format!("cannot render JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// `talvault recipients …`
pub fn recipients_cmd(cmd: RecipientsCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    match cmd {
        RecipientsCommand::List { env } => {
            let v = open_vault_for(o)?;
            let list = v.recipients_list(&env).map_err(vault_err)?;
            let mut s = String::new();
            for r in &list {
                s.push_str(r);
                s.push('\n');
            }
            write_stdout(s.as_bytes())?;
        }
        RecipientsCommand::Add(a) | RecipientsCommand::Remove(a)
            if a.recipients.is_empty() && a.recipients_files.is_empty() =>
        {
            return Err(CliError::new("no recipients given")
                .hint("pass -r RECIPIENT or -R FILE")
                .code(2));
        }
        RecipientsCommand::Add(a) => {
            let add = recipients_from(&a.recipients, &a.recipients_files)?;
            let v = open_vault_for(o)?;
            let mut ctx = context_for(o, true)?;
            unlock_for(&v, &a.env, o, &mut ctx)?;
            let now = v
                .recipients_change(&a.env, &add, &[], &ctx)
                .map_err(vault_err)?;
            write_stdout(
                format!(
                    "re-sealed environment {} to {} recipient(s)\n",
                    a.env,
                    now.len()
                )
                .as_bytes(),
            )?;
        }
        RecipientsCommand::Remove(a) => {
            let remove = recipients_from(&a.recipients, &a.recipients_files)?;
            let v = open_vault_for(o)?;
            let mut ctx = context_for(o, true)?;
            unlock_for(&v, &a.env, o, &mut ctx)?;
            let now = v
                .recipients_change(&a.env, &[], &remove, &ctx)
                .map_err(vault_err)?;
            write_stdout(format!(
                "re-sealed environment {} to {} recipient(s) with a fresh file key\n\
                 warning: the removed key can still open the old bundle.age in git history; if that key may be compromised, rotate the cluster's secrets\n",
                a.env,
                now.len()
            ).as_bytes())?;
        }
    }
    Ok(0)
}

/// `talvault audit …`
pub fn audit_cmd(cmd: AuditCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let v = open_vault_for(o)?;
    match cmd {
        AuditCommand::Log { env, format } => {
            let events = v.audit_log(env.as_deref()).map_err(vault_err)?;
            let text = match format {
                Format::Json => {
                    let values: Vec<serde_json::Value> = events
                        .iter()
                        .filter_map(|e| serde_json::from_slice(&e.to_json()).ok())
                        .collect();
                    json(&values)?
                }
                Format::Text => {
                    let mut s = String::new();
                    for e in &events {
                        let when = e
                            .time()
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default();
                        s.push_str(&format!(
                            "{when}  {}  {:<18} {:<20} {}\n",
                            e.id().short(),
                            e.env(),
                            e.action(),
                            e.actor()
                        ));
                    }
                    s
                }
            };
            write_stdout(text.as_bytes())?;
            Ok(0)
        }
        AuditCommand::Verify { env } => {
            let reports = v.audit_verify(env.as_deref()).map_err(vault_err)?;
            let mut s = String::new();
            let mut intact = true;
            for (name, r) in &reports {
                if r.is_intact() {
                    s.push_str(&format!(
                        "{name}: ok, {} events, {} head(s)\n",
                        r.events,
                        r.heads.len()
                    ));
                } else {
                    intact = false;
                    s.push_str(&format!(
                        "{name}: TAMPERED, {} problem(s)\n",
                        r.problems.len()
                    ));
                    for p in &r.problems {
                        s.push_str(&format!("  {:?}: {p}\n", p.tamper()));
                    }
                }
            }
            write_stdout(s.as_bytes())?;
            Ok(if intact { 0 } else { 1 })
        }
    }
}

/// `bundle export ENV [-o FILE] [--force]`
pub fn export_cmd(
    env: &str,
    out: Option<&str>,
    force: bool,
    o: &VaultOpts,
) -> Result<ExitCode, CliError> {
    let target = out.unwrap_or("-");
    // Refuse the destination before anything is decrypted or audited.
    output::check_secret_destination(target, force)?;
    let v = open_vault_for(o)?;
    let mut ctx = context_for(o, true)?;
    unlock_for(&v, env, o, &mut ctx)?;
    let dest = if target == "-" { "stdout" } else { "file" };
    let plain = v.bundle_export(env, dest, &ctx).map_err(vault_err)?;
    output::write_secret_output(target, plain.expose(), force)?;
    Ok(0)
}

/// `bundle exec ENV -- CMD ARGS…`
pub fn exec_cmd(env: &str, command: &[OsString], o: &VaultOpts) -> Result<ExitCode, CliError> {
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::new("no command given").hint("talvault bundle exec ENV -- talosctl gen config NAME https://EP:6443 --with-secrets {}").code(2));
    };
    if !args.iter().any(|a| a == "{}") {
        return Err(CliError::new("no {} argument to replace with the bundle")
            .hint("put {} where the command expects the secrets file, e.g. --with-secrets {}")
            .code(2));
    }
    let shown = program.to_string_lossy().into_owned();
    // A missing program is refused before the bundle is opened, so no use is audited for it.
    if crate::process::find_program(program).is_none() {
        return Err(CliError::new(format!(
            "cannot run {shown}: no such executable{}",
            if shown.contains('/') { "" } else { " in PATH" }
        ))
        .hint("check the command's name, or give its full path")
        .code(127));
    }
    let v = open_vault_for(o)?;
    let mut ctx = context_for(o, true)?;
    unlock_for(&v, env, o, &mut ctx)?;
    let plain = v.bundle_for_exec(env, &shown, &ctx).map_err(vault_err)?;
    // Release the vault lock before the child runs: it may take long or call talvault itself.
    drop(v);
    crate::process::exec_with_pipes(program, args, plain.expose())
        .map_err(|e| CliError::new(format!("cannot run {shown}: {e}")).code(127))
}

pub(crate) fn unlock_for(
    v: &Vault,
    env: &str,
    o: &VaultOpts,
    ctx: &mut Context,
) -> Result<(), CliError> {
    if v.env_sealing(env).map_err(vault_err)? == crate::model::Sealing::Passphrase {
        ctx.passphrase = Some(passphrase(o, false)?);
    } else if ctx.identities.is_empty() {
        return Err(
            CliError::new(format!("no identity to open environment {env:?}"))
                .hint("pass -i KEYFILE, or set TALVAULT_IDENTITY or SOPS_AGE_KEY_FILE"),
        );
    }
    Ok(())
}
