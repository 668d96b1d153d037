//! EDGE: `talvault bundle …`: standalone bundles, like `talosctl gen secrets` (flag names from
//! siderolabs/talos: cmd/talosctl/cmd/mgmt/gen/secrets.go), and an environment's bundle
//! exported or piped into a command (one service call each).
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: reads input files, the clock and the system RNG for the command line"
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::error::CliError;
use super::input::{contract_arg, kubernetes_pki, read_input};
use super::opts::{Format, Opens, VaultOpts};
use super::output::{Output, write_stdout};
use crate::bundle::import;
use crate::bundle::validate::{Finding, Severity, deep_findings, format_multierror, talos_errors};
use crate::bundle::{SecretsBundle, generate, inspect};
use crate::secret::SecretText;
use crate::vault::ExportTo;

/// `talvault bundle …`
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Generate a secrets bundle exactly as `talosctl gen secrets` would.
    Generate(GenerateArgs),
    /// Validate a bundle with Talos's checks, then deeper ones (exit 0 valid, 1 invalid, 2 unreadable).
    Validate(ValidateArgs),
    /// Show a bundle's CAs, fingerprints and contract facts, without any secret.
    Inspect(InspectArgs),
    /// Write an environment's plaintext secrets.yaml (stdout only when it is not a terminal).
    Export {
        /// The environment.
        env: String,
        /// Output file (mode 0600), or `-` for stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<String>,
        /// Overwrite an existing file.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Run a command with each `{}` argument replaced by a /dev/fd pipe carrying the bundle,
    /// so it never touches disk. Exit status is the command's.
    Exec {
        /// The environment.
        env: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
}

/// `bundle generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Version contract (`v1.7`, `1.7`, `v1.7.3`; default: current).
    #[arg(long, value_name = "VERSION")]
    pub talos_version: Option<String>,
    /// Build from a kubeadm-style PKI directory (ca.crt/key, etcd/ca.crt/key, front-proxy-ca.crt/key, sa.key).
    #[arg(
        short = 'p',
        long,
        value_name = "DIR",
        conflicts_with = "from_controlplane_config"
    )]
    pub from_kubernetes_pki: Option<PathBuf>,
    /// Bootstrap token to use with --from-kubernetes-pki (generated if empty). Prefer the
    /// environment variable: arguments are visible to other users in `ps`.
    #[arg(
        short = 't',
        long,
        value_name = "TOKEN",
        env = "TALVAULT_KUBERNETES_BOOTSTRAP_TOKEN",
        hide_env_values = true,
        requires = "from_kubernetes_pki"
    )]
    pub kubernetes_bootstrap_token: Option<String>,
    /// Build from a control-plane machine config (v1alpha1 or the 1.14 multi-document form).
    #[arg(long, value_name = "FILE")]
    pub from_controlplane_config: Option<PathBuf>,
    /// Output file, or `-` for stdout (refused when stdout is a terminal).
    #[arg(
        short = 'o',
        long = "output-file",
        visible_alias = "output",
        value_name = "FILE",
        default_value = "secrets.yaml"
    )]
    pub output: String,
    /// Overwrite an existing file.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `bundle validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The secrets.yaml to check.
    pub file: PathBuf,
    /// Version contract to check against (default: current).
    #[arg(long, value_name = "VERSION")]
    pub talos_version: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

/// `bundle inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The secrets.yaml to show.
    pub file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

/// Runs a `bundle` subcommand.
pub fn run(cmd: BundleCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        BundleCommand::Generate(a) => generate_cmd(a),
        BundleCommand::Validate(a) => validate_cmd(a),
        BundleCommand::Inspect(a) => inspect_cmd(a),
        BundleCommand::Export { env, output, force } => {
            export(&env, output.as_deref().unwrap_or("-"), force, o)
        }
        BundleCommand::Exec { env, command } => exec(&env, &command, o),
    }
}

/// `bundle export ENV [-o FILE] [--force]`
fn export(env: &str, target: &str, force: bool, o: &VaultOpts) -> Result<u8, CliError> {
    // Refuse the destination before anything is decrypted or audited.
    let out = Output::secret(target, force)?;
    let to = if out.is_stdout() {
        ExportTo::Stdout
    } else {
        ExportTo::File
    };
    let v = o.open_vault()?;
    let plain = v.bundle_export(env, to, &o.context(Opens::Secrets)?)?;
    out.write(plain.expose())?;
    Ok(0)
}

/// `bundle exec ENV -- CMD ARGS…`
fn exec(env: &str, command: &[OsString], o: &VaultOpts) -> Result<u8, CliError> {
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::usage("no command given").hint("talvault bundle exec ENV -- talosctl gen config NAME https://EP:6443 --with-secrets {}"));
    };
    if !args.iter().any(|a| a == "{}") {
        return Err(CliError::usage("no {} argument to replace with the bundle")
            .hint("put {} where the command expects the secrets file, e.g. --with-secrets {}"));
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
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    // The vault is consumed: its lock is released before the child runs.
    let plain = v.bundle_for_exec(env, &shown, &ctx)?;
    crate::process::exec_with_pipes(program, args, plain.expose())
        .map_err(|e| CliError::new(format!("cannot run {shown}: {e}")).code(127))
}

/// Reads and parses a secrets.yaml; unreadable input exits 2.
fn load_bundle(path: &Path) -> Result<SecretsBundle, CliError> {
    let bytes = read_input(path, "bundle")?;
    SecretsBundle::from_yaml(&bytes).map_err(|e| {
        CliError::new(format!("cannot read bundle {}: {e}", path.display()))
            .hint("expected a secrets.yaml as written by `talosctl gen secrets`")
            .code(2)
    })
}

fn generate_cmd(a: GenerateArgs) -> Result<u8, CliError> {
    let contract = contract_arg(a.talos_version.as_deref())?;
    // Open the destination before the (slow) generation, so a refusal is immediate.
    let out = Output::secret(&a.output, a.force)?;
    let rng = ring::rand::SystemRandom::new();
    let now = time::OffsetDateTime::now_utc();
    let bundle = if let Some(dir) = &a.from_kubernetes_pki {
        let pki = kubernetes_pki(dir)?;
        let token = a.kubernetes_bootstrap_token.map(SecretText::new);
        import::from_kubernetes_pki(pki, token, contract, now, &rng)
            .map_err(|e| CliError::usage(format!("cannot import {}: {e}", dir.display())))?
    } else if let Some(file) = &a.from_controlplane_config {
        let bytes = read_input(file, "machine config")?;
        import::from_controlplane_config(&bytes)
            .map_err(|e| CliError::usage(format!("cannot import {}: {e}", file.display())))?
    } else {
        generate::generate(contract, now, &rng)
            .map_err(|e| CliError::new(format!("cannot generate the bundle: {e}")))?
    };
    let yaml = bundle.to_yaml();
    out.write(yaml.expose().as_bytes())?;
    Ok(0)
}

#[derive(Serialize)]
struct ValidateReport<'a> {
    file: String,
    contract: String,
    valid: bool,
    talos_errors: &'a [String],
    findings: &'a [Finding],
}

fn validate_cmd(a: ValidateArgs) -> Result<u8, CliError> {
    let contract = contract_arg(a.talos_version.as_deref())?;
    let bundle = load_bundle(&a.file)?;
    let errors = talos_errors(&bundle);
    let findings = deep_findings(&bundle, contract, time::OffsetDateTime::now_utc());
    let deep_errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let valid = errors.is_empty() && deep_errors == 0;
    match a.format {
        Format::Json => {
            let report = ValidateReport {
                file: a.file.display().to_string(),
                contract: contract.to_string(),
                valid,
                talos_errors: &errors,
                findings: &findings,
            };
            let mut s = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::new(format!("cannot render JSON: {e}")))?;
            s.push('\n');
            write_stdout(s.as_bytes())?;
        }
        Format::Text => {
            let mut s = String::new();
            if !errors.is_empty() {
                s.push_str(&format_multierror(&errors));
            }
            for f in &findings {
                let sev = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                s.push_str(&format!("{sev}: {} {}\n", f.field, f.message));
            }
            let warnings = findings.len() - deep_errors;
            if valid {
                s.push_str(&format!("valid: {} (contract {contract}", a.file.display()));
                if warnings > 0 {
                    s.push_str(&format!(", {warnings} warning{}", plural(warnings)));
                }
                s.push_str(")\n");
            } else {
                s.push_str(&format!(
                    "invalid: {}: {} Talos error{}, {deep_errors} further error{}, {warnings} warning{}\n",
                    a.file.display(),
                    errors.len(),
                    plural(errors.len()),
                    plural(deep_errors),
                    plural(warnings)
                ));
            }
            write_stdout(s.as_bytes())?;
        }
    }
    Ok(if valid { 0 } else { 1 })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn inspect_cmd(a: InspectArgs) -> Result<u8, CliError> {
    let bundle = load_bundle(&a.file)?;
    let summary = inspect::summarize(&bundle);
    let text = match a.format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&summary)
                .map_err(|e| CliError::new(format!("cannot render JSON: {e}")))?;
            s.push('\n');
            s
        }
        Format::Text => {
            let mut s = String::new();
            s.push_str(&format!(
                "looks like contract:  {}\n",
                summary.looks_like_contract
            ));
            s.push_str(&format!(
                "encryption secret:    {}\n",
                summary.encryption_secret
            ));
            s.push_str(&format!(
                "service-account key:  {}\n",
                summary
                    .service_account_key
                    .as_deref()
                    .unwrap_or("absent or unreadable")
            ));
            s.push_str(&format!(
                "cluster.id alphabet:  {}\n",
                summary.cluster_id_alphabet.unwrap_or("absent")
            ));
            for ca in &summary.cas {
                s.push_str(&format!("\ncerts.{}\n", ca.name.key()));
                let subject = if ca.subject.is_empty() {
                    "(empty)"
                } else {
                    &ca.subject
                };
                s.push_str(&format!("  subject:      {subject}\n"));
                s.push_str(&format!("  key:          {}\n", ca.key_type));
                s.push_str(&format!("  serial:       {}\n", ca.serial));
                s.push_str(&format!("  not before:   {}\n", ca.not_before));
                s.push_str(&format!("  not after:    {}\n", ca.not_after));
                s.push_str(&format!("  cert sha256:  {}\n", ca.certificate_sha256.0));
                s.push_str(&format!("  spki sha256:  {}\n", ca.spki_sha256.0));
                if let Some(ski) = &ca.subject_key_id {
                    s.push_str(&format!("  key id:       {ski}\n"));
                }
            }
            s
        }
    };
    write_stdout(text.as_bytes())?;
    // An incomplete summary is a failed inspection: say what is missing (on stderr, so the
    // JSON on stdout stays one document) and exit 1.
    for p in &summary.problems {
        super::output::write_stderr(format!("error: {p}\n").as_bytes());
    }
    Ok(if summary.problems.is_empty() { 0 } else { 1 })
}
