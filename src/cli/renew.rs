//! EDGE: `talvault renew`: arguments parsed, the renewal decided (one service call), the
//! outbox opened before anything is signed, then every due certificate signed, sealed to its
//! holder and recorded in one commit, and the sealed files written to the outbox. `--dry-run`
//! stops after the decision.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::error::CliError;
use super::input::{holder_name_arg, read_input, ttl_arg};
use super::opts::{Opens, VaultOpts};
use super::output::{OutboxOutput, write_stdout};
use super::render::printable;
use crate::secret::SecretBytes;
use crate::vault::{PreparedRenewal, RenewRequest, RenewWho};

/// `talvault renew`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("who").required(true).args(["holder", "all"])))]
pub struct RenewArgs {
    /// The environment.
    pub env: String,
    /// Renew this holder's standing grant.
    #[arg(long, value_name = "NAME")]
    pub holder: Option<String>,
    /// Renew every holder's standing grant.
    #[arg(long)]
    pub all: bool,
    /// Renew certificates that expire within this window (default: a third of each
    /// certificate's lifetime).
    #[arg(long, value_name = "DURATION")]
    pub expiring: Option<String>,
    /// Say what would be issued, issue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The outbox: one sealed file per holder, `<holder>-<env>.talosconfig.age` (safe to
    /// commit or send; a holder's older file is replaced).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        required_unless_present = "dry_run"
    )]
    pub output: Option<PathBuf>,
    /// A fresh PKCS#10 request from a CSR-only holder (with --holder): their key never passes
    /// through the vault.
    #[arg(long, value_name = "FILE", requires = "holder", conflicts_with = "all")]
    pub csr: Option<PathBuf>,
    /// ASCII-armored sealed files instead of age's binary format.
    #[arg(long)]
    pub armor: bool,
}

/// `talvault renew`
pub fn renew(a: RenewArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let who = match &a.holder {
        Some(h) => RenewWho::One(holder_name_arg("--holder", h)?),
        None => RenewWho::All,
    };
    let expiring = a
        .expiring
        .as_deref()
        .map(|t| ttl_arg("--expiring", t, "e.g. --expiring 7d or 72h"))
        .transpose()?;
    let csr = match &a.csr {
        Some(p) => Some(SecretBytes::copy_from(&read_input(p, "CSR")?)),
        None => None,
    };
    let env = a.env.clone();
    let req = RenewRequest {
        env: a.env,
        who,
        expiring,
        csr,
        armor: a.armor,
    };
    let v = o.open_vault()?;
    let ctx = o.context(if a.dry_run {
        Opens::Given
    } else {
        Opens::Secrets
    })?;
    let prepared = v.prepare_renewal(req, &ctx)?;
    let mut msg = String::new();
    report_plan(&prepared, a.dry_run, &mut msg);
    let Some(dir) = a.output.filter(|_| !a.dry_run) else {
        write_stdout(msg.as_bytes())?;
        return Ok(0);
    };
    // The outbox is checked before anything is signed, recorded or audited.
    let outbox = OutboxOutput::open(&dir, prepared.planned().iter().map(|p| p.file.as_str()))?;
    let renewed = prepared.renew(&ctx)?;
    let files: Vec<(String, &[u8])> = renewed
        .issued
        .iter()
        .map(|c| (c.file.clone(), c.sealed.as_slice()))
        .collect();
    if !files.is_empty() {
        outbox.write(&files).map_err(|e| {
            let serials: Vec<&str> = renewed.issued.iter().map(|c| c.serial.as_str()).collect();
            CliError::new(format!(
                "{} certificate(s) were renewed and recorded but the sealed files could not be written: {}",
                serials.len(),
                e.message
            ))
            .hint(format!(
                "revoke them (`talvault revoke {env} SERIAL --reason superseded` for {}) and run renew again",
                serials.join(", ")
            ))
        })?;
    }
    for c in &renewed.issued {
        let _ = writeln!(
            msg,
            "renewed {}: serial {}, valid until {}, sealed to {}",
            printable(&c.holder),
            c.serial,
            c.not_after,
            dir.join(&c.file).display()
        );
    }
    match &renewed.signed_by {
        Some(by) if by == crate::model::OS_CA => {
            msg.push_str("signed directly by the Talos OS CA\n");
        }
        Some(by) => {
            let _ = writeln!(msg, "signed by issuer {by}");
        }
        None => msg.push_str("nothing to renew\n"),
    }
    write_stdout(msg.as_bytes())?;
    Ok(0)
}

fn report_plan(p: &PreparedRenewal<'_>, dry_run: bool, msg: &mut String) {
    if dry_run {
        for r in p.planned() {
            let _ = writeln!(
                msg,
                "would renew {}: {} for {} ({}) into {}",
                printable(&r.holder),
                r.roles.join(","),
                r.ttl,
                printable(&r.why),
                r.file
            );
        }
        if p.planned().is_empty() {
            msg.push_str("nothing to renew\n");
        }
    }
    for n in p.not_due() {
        let _ = writeln!(
            msg,
            "not due: {} (certificate {} until {}, due {})",
            printable(&n.holder),
            n.serial,
            n.not_after,
            n.due
        );
    }
    for s in p.skipped() {
        let _ = writeln!(
            msg,
            "SKIPPED {}: {}",
            printable(&s.holder),
            printable(&s.reason)
        );
    }
    for problem in p.problems() {
        let _ = writeln!(msg, "DISAGREES: {}", printable(problem));
    }
}
