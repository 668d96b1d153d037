//! EDGE: `talvault bundle generate|validate|inspect`: standalone bundles, like
//! `talosctl gen secrets` (flag names from siderolabs/talos: cmd/talosctl/cmd/mgmt/gen/secrets.go).
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: reads input files, the clock and the system RNG for the command line"
)]

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{CliError, ExitCode, output, write_stdout};
use crate::bundle::import::{self, KubernetesPki};
use crate::bundle::validate::{Finding, Severity, deep_findings, format_multierror, talos_errors};
use crate::bundle::{SecretsBundle, VersionContract, generate, inspect};
use crate::secret::{SecretBytes, SecretText};

/// Largest input file read (a secrets.yaml is about 8 KiB; a machine config under 100 KiB).
const MAX_INPUT: u64 = 4 << 20;

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

/// Output format of reports.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// Stable JSON for scripts.
    Json,
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
pub fn run(cmd: BundleCommand, vault: &super::vault::VaultOpts) -> Result<ExitCode, CliError> {
    match cmd {
        BundleCommand::Generate(a) => generate_cmd(a),
        BundleCommand::Validate(a) => validate_cmd(a),
        BundleCommand::Inspect(a) => inspect_cmd(a),
        BundleCommand::Export { env, output, force } => {
            super::vault::export_cmd(&env, output.as_deref(), force, vault)
        }
        BundleCommand::Exec { env, command } => super::vault::exec_cmd(&env, &command, vault),
    }
}

/// Parses `--talos-version`.
pub fn contract_arg(v: Option<&str>) -> Result<VersionContract, CliError> {
    match v {
        None => Ok(VersionContract::Current),
        Some(v) => VersionContract::parse(v).map_err(|e| {
            CliError::new(format!("--talos-version: {e}"))
                .hint("use a Talos version such as v1.7, 1.11 or v1.14.0")
                .code(2)
        }),
    }
}

/// Reads a whole input file (bounded), into a wiped buffer.
pub fn read_input(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let fail = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "check the path",
            std::io::ErrorKind::PermissionDenied => "check the file's permissions",
            _ => "",
        };
        let err = CliError::new(format!(
            "cannot read {what} {}: {}",
            path.display(),
            io_reason(&e)
        ))
        .code(2);
        if hint.is_empty() { err } else { err.hint(hint) }
    };
    let f = std::fs::File::open(path).map_err(fail)?;
    let meta = f.metadata().map_err(fail)?;
    if meta.is_dir() {
        return Err(CliError::new(format!(
            "cannot read {what} {}: is a directory",
            path.display()
        ))
        .code(2));
    }
    let too_large = || {
        CliError::new(format!(
            "cannot read {what} {}: larger than {} MiB",
            path.display(),
            MAX_INPUT >> 20
        ))
        .code(2)
    };
    // A regular file's size is known: refuse an oversized one without reading it.
    if meta.len() > MAX_INPUT {
        return Err(too_large());
    }
    // Pipes and devices are read up to the limit. Growing copies into fresh zeroizing buffers,
    // so no unwiped copy of a secret input (a passphrase through `<(…)`) is left behind.
    let limit = MAX_INPUT as usize + 1;
    match crate::store::age::read_zeroizing(f, meta.len() as usize + 1, limit) {
        Ok(buf) if buf.len() < limit => Ok(buf),
        Ok(_) => Err(too_large()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(too_large()),
        Err(e) => Err(fail(e)),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Reads and parses a secrets.yaml; unreadable input exits 2.
pub fn load_bundle(path: &Path) -> Result<SecretsBundle, CliError> {
    let bytes = read_input(path, "bundle")?;
    SecretsBundle::from_yaml(&bytes).map_err(|e| {
        CliError::new(format!("cannot read bundle {}: {e}", path.display()))
            .hint("expected a secrets.yaml as written by `talosctl gen secrets`")
            .code(2)
    })
}

fn generate_cmd(a: GenerateArgs) -> Result<ExitCode, CliError> {
    let contract = contract_arg(a.talos_version.as_deref())?;
    // Check the destination before the (slow) generation, so a refusal is immediate.
    output::check_secret_destination(&a.output, a.force)?;
    let rng = ring::rand::SystemRandom::new();
    let now = time::OffsetDateTime::now_utc();
    let bundle = if let Some(dir) = &a.from_kubernetes_pki {
        let pki = read_kubernetes_pki(dir)?;
        let token = a.kubernetes_bootstrap_token.map(SecretText::new);
        import::from_kubernetes_pki(pki, token, contract, now, &rng)
            .map_err(|e| CliError::new(format!("cannot import {}: {e}", dir.display())).code(2))?
    } else if let Some(file) = &a.from_controlplane_config {
        let bytes = read_input(file, "machine config")?;
        import::from_controlplane_config(&bytes)
            .map_err(|e| CliError::new(format!("cannot import {}: {e}", file.display())).code(2))?
    } else {
        generate::generate(contract, now, &rng)
            .map_err(|e| CliError::new(format!("cannot generate the bundle: {e}")))?
    };
    let yaml = bundle.to_yaml();
    output::write_secret_output(&a.output, yaml.expose().as_bytes(), a.force)?;
    Ok(0)
}

/// Reads the files of a kubeadm PKI directory (for `bundle generate` and `env import`).
pub(crate) fn read_kubernetes_pki(dir: &Path) -> Result<KubernetesPki, CliError> {
    if !dir.is_dir() {
        return Err(CliError::new(format!(
            "{:?} is not a directory",
            dir.display().to_string()
        ))
        .hint("--from-kubernetes-pki takes a kubeadm PKI directory such as /etc/kubernetes/pki")
        .code(2));
    }
    let public = |name: &str| read_input(&dir.join(name), "file").map(|b| b.to_vec());
    let secret =
        |name: &str| read_input(&dir.join(name), "file").map(|b| SecretBytes::copy_from(&b));
    Ok(KubernetesPki {
        ca_crt: public("ca.crt")?,
        ca_key: secret("ca.key")?,
        etcd_ca_crt: public("etcd/ca.crt")?,
        etcd_ca_key: secret("etcd/ca.key")?,
        front_proxy_ca_crt: public("front-proxy-ca.crt")?,
        front_proxy_ca_key: secret("front-proxy-ca.key")?,
        sa_key: secret("sa.key")?,
    })
}

#[derive(Serialize)]
struct ValidateReport<'a> {
    file: String,
    contract: String,
    valid: bool,
    talos_errors: &'a [String],
    findings: &'a [Finding],
}

fn validate_cmd(a: ValidateArgs) -> Result<ExitCode, CliError> {
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

fn inspect_cmd(a: InspectArgs) -> Result<ExitCode, CliError> {
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
    Ok(0)
}
