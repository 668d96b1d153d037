//! EDGE: the command line: clap definitions, dispatch, and output rendering.
//!
//! Definitions carry no logic beyond parsing; each command group lives in its own file. Errors
//! become [`CliError`]: one line, an optional hint, an exit code. Nothing here prints a secret to
//! a terminal.

pub mod bundle;
pub mod issue;
pub mod output;
pub mod pki;
pub mod prompt;
pub mod vault;

use std::io::Write as _;

use clap::{CommandFactory as _, Parser, Subcommand};

/// talvault: the offline PKI vault for Talos Linux clusters.
#[derive(Debug, Parser)]
#[command(name = "talvault", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options of the commands that use a vault.
    #[command(flatten)]
    pub vault: vault::VaultOpts,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vault: a directory meant to live in git.
    Init {
        /// The directory (created if missing; default: the current directory).
        dir: Option<std::path::PathBuf>,
    },
    /// Create, import, list and show environments.
    #[command(subcommand)]
    Env(vault::EnvCommand),
    /// Secrets bundles: generate, validate, inspect (standalone, like `talosctl gen secrets`),
    /// and export or exec an environment's bundle.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Issue a short-lived, role-scoped talosconfig under the environment's policy.
    Issue(issue::IssueArgs),
    /// Issue an emergency os:admin talosconfig (mandatory reason; taints the environment).
    BreakGlass(issue::BreakGlassArgs),
    /// Manage the environment's client-issuing CAs (issuers).
    #[command(subcommand)]
    Issuer(pki::IssuerCommand),
    /// Machine-config patches for the nodes.
    #[command(subcommand)]
    Patch(pki::PatchCommand),
    /// Revoke a certificate and say what will actually cut access.
    Revoke(pki::RevokeArgs),
    /// Sign and print an issuer's CRL, or list every revocation as JSON.
    Crl(pki::CrlArgs),
    /// Check a talosconfig: chain, EKU, roles, validity, revocation, acceptance, policy.
    Verify(pki::VerifyArgs),
    /// Certificates, issuers, CA expiry and taint per environment (graded exit code).
    Status(pki::StatusArgs),
    /// PKCS#11 tokens: check what a token offers before a key ceremony.
    #[command(subcommand)]
    Hsm(pki::HsmCommand),
    /// Show the effective issuance policy of an environment.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List, add and remove the age recipients of an environment.
    #[command(subcommand)]
    Recipients(vault::RecipientsCommand),
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(vault::AuditCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) for talvault.
    Man,
}

/// `talvault policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the environment's policy.yaml as talvault reads it (defaults filled in).
    Show {
        /// The environment.
        env: String,
    },
}

/// A failed command: one line, an optional hint, and the process exit code.
#[derive(Debug)]
pub struct CliError {
    /// The one-line message.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Exit code (1 = failed/invalid, 2 = unreadable input or usage).
    pub code: u8,
}

impl CliError {
    /// An error with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            code: 1,
        }
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the exit code.
    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

/// What a successful command asks the process to exit with (e.g. 1 for "invalid").
pub type ExitCode = u8;

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Init { dir } => vault::init_cmd(dir),
        Command::Env(cmd) => vault::env_cmd(cmd, &cli.vault),
        Command::Bundle(cmd) => bundle::run(cmd, &cli.vault),
        Command::Issue(a) => issue::issue_cmd(a, &cli.vault),
        Command::BreakGlass(a) => issue::break_glass_cmd(a, &cli.vault),
        Command::Issuer(cmd) => pki::issuer_cmd(cmd, &cli.vault),
        Command::Patch(cmd) => pki::patch_cmd(cmd, &cli.vault),
        Command::Revoke(a) => pki::revoke_cmd(a, &cli.vault),
        Command::Crl(a) => pki::crl_cmd(a, &cli.vault),
        Command::Verify(a) => pki::verify_cmd(a, &cli.vault),
        Command::Status(a) => pki::status_cmd(a, &cli.vault),
        Command::Hsm(cmd) => pki::hsm_cmd(cmd, &cli.vault),
        Command::Policy(PolicyCommand::Show { env }) => issue::policy_show(&env, &cli.vault),
        Command::Recipients(cmd) => vault::recipients_cmd(cmd, &cli.vault),
        Command::Audit(cmd) => vault::audit_cmd(cmd, &cli.vault),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "talvault", &mut out);
            write_stdout(&out)?;
            Ok(0)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| CliError::new(format!("cannot render the manual: {e}")))?;
            write_stdout(&out)?;
            Ok(0)
        }
    }
}

/// Writes public text to stdout.
pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
}
