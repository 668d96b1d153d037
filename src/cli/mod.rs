//! EDGE: the command line. `Cli` is the clap definition; `run` dispatches each command to its
//! module, which parses its arguments into domain types, makes one service call (`vault`),
//! and renders the result.
//!
//! Module dependencies point one way: this file uses the command modules (`env`, `bundle`,
//! `holder`, `open`, `renew`, `issue`, `kubeconfig`, `issuer`, `revoke`, `status`, `audit`,
//! `backup`), and they use only the leaves (`error`, `opts`, `input`, `output`, `render`, `prompt`);
//! `kubeconfig` also takes `issue`'s destination and break-glass options. Nothing here prints a secret to a terminal.

pub mod audit;
pub mod backup;
pub mod bundle;
pub mod env;
pub mod error;
pub mod holder;
pub mod input;
pub mod issue;
pub mod issuer;
pub mod kubeconfig;
pub mod open;
pub mod opts;
pub mod output;
pub mod prompt;
pub mod render;
pub mod renew;
pub mod revoke;
pub mod status;

use clap::{CommandFactory as _, Parser, Subcommand};

pub use error::{CliError, report};

/// talvault: the offline PKI vault for Talos Linux clusters.
#[derive(Debug, Parser)]
#[command(name = "talvault", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options of the commands that use a vault.
    #[command(flatten)]
    pub vault: opts::VaultOpts,
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
    Env(env::EnvCommand),
    /// Secrets bundles: generate, validate, inspect (standalone, like `talosctl gen secrets`),
    /// and export or exec an environment's bundle.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Issue a short-lived, role-scoped talosconfig under the environment's policy.
    Issue(issue::IssueArgs),
    /// Issue a short-lived, group-scoped kubeconfig for the Kubernetes API under the policy.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Issue an emergency os:admin talosconfig, or with --kubernetes a system:masters
    /// kubeconfig (mandatory reason; taints the environment).
    BreakGlass(issue::BreakGlassArgs),
    /// The people and robots talosconfigs are sealed to, and their standing grants.
    #[command(subcommand)]
    Holder(holder::HolderCommand),
    /// Open a sealed talosconfig with your identity: check it, write it (0600) or merge it.
    Open(open::OpenArgs),
    /// Re-issue holders' standing grants that expire soon, sealed to each holder, into an outbox.
    Renew(renew::RenewArgs),
    /// Manage the environment's client-issuing CAs (issuers), for the Talos or Kubernetes API.
    #[command(subcommand)]
    Issuer(issuer::IssuerCommand),
    /// Machine-config patches for the nodes.
    #[command(subcommand)]
    Patch(issuer::PatchCommand),
    /// Revoke a certificate and say what will actually cut access.
    Revoke(revoke::RevokeArgs),
    /// Sign and print an issuer's CRL, or list every revocation as JSON.
    Crl(revoke::CrlArgs),
    /// Check a talosconfig or kubeconfig: chain, EKU, roles or groups, validity, revocation,
    /// acceptance, policy.
    Verify(revoke::VerifyArgs),
    /// Certificates, issuers, CA expiry and taint per environment (graded exit code).
    Status(status::StatusArgs),
    /// PKCS#11 tokens: check what a token offers before a key ceremony.
    #[command(subcommand)]
    Hsm(issuer::HsmCommand),
    /// Show an environment's effective issuance policy, or accept a reviewed change.
    #[command(subcommand)]
    Policy(env::PolicyCommand),
    /// List, add and remove the age recipients of an environment.
    #[command(subcommand)]
    Recipients(env::RecipientsCommand),
    /// Sealed etcd backups: seal, open, verify, list, prune, reseal.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Read and verify the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Move a vault made by an older talvault to the current format (audited).
    ///
    /// Needs an identity that opens every environment.
    Upgrade,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) for talvault.
    Man,
}

/// Runs a parsed command; `Ok` carries the exit code (e.g. 1 for "invalid").
pub fn run(cli: Cli) -> Result<u8, CliError> {
    let o = &cli.vault;
    match cli.command {
        Command::Init { dir } => env::init(dir),
        Command::Env(cmd) => env::run(cmd, o),
        Command::Bundle(cmd) => bundle::run(cmd, o),
        Command::Issue(a) => issue::issue(a, o),
        Command::Kubeconfig(a) => kubeconfig::kubeconfig(a, o),
        Command::BreakGlass(a) if a.kubernetes => kubeconfig::break_glass(a, o),
        Command::BreakGlass(a) => issue::break_glass(a, o),
        Command::Holder(cmd) => holder::run(cmd, o),
        Command::Open(a) => open::open(a, o),
        Command::Renew(a) => renew::renew(a, o),
        Command::Issuer(cmd) => issuer::issuer(cmd, o),
        Command::Patch(cmd) => issuer::patch(cmd, o),
        Command::Revoke(a) => revoke::revoke(a, o),
        Command::Crl(a) => revoke::crl(a, o),
        Command::Verify(a) => revoke::verify(a, o),
        Command::Status(a) => status::status(a, o),
        Command::Hsm(cmd) => issuer::hsm(cmd, o),
        Command::Policy(cmd) => env::policy(cmd, o),
        Command::Recipients(cmd) => env::recipients(cmd, o),
        Command::Backup(cmd) => backup::run(cmd, o),
        Command::Audit(cmd) => audit::run(cmd, o),
        Command::Upgrade => env::upgrade(o),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "talvault", &mut out);
            output::write_stdout(&out)?;
            Ok(0)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| CliError::new(format!("cannot render the manual: {e}")))?;
            output::write_stdout(&out)?;
            Ok(0)
        }
    }
}
