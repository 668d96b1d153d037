//! EDGE: `talvault holder add|list|remove`: arguments parsed into domain types (a holder name
//! that is a safe file name, recipients, roles, a TTL), one service call, the result rendered.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::error::CliError;
use super::input::{holder_name_arg, optional_ttl, roles_arg};
use super::opts::{ListFormat, Opens, VaultOpts, recipients_from};
use super::output::{json, write_stdout};
use super::render::{cert_line, printable, printable_list};
use crate::holder::KeySource;
use crate::vault::{HolderView, NewHolder};

/// `talvault holder …`
#[derive(Debug, Subcommand)]
pub enum HolderCommand {
    /// Register a holder: the age recipients their talosconfigs are sealed to, and a standing
    /// grant (roles and TTL within the policy) that `talvault renew` re-issues.
    Add(HolderAddArgs),
    /// List the environment's holders, their live certificates and when each renewal is due.
    List {
        /// The environment.
        env: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Remove a holder (offboarding). Their certificates stay valid until they expire or are
    /// revoked: the command lists them.
    Remove {
        /// The environment.
        env: String,
        /// The holder.
        name: String,
    },
}

/// `talvault holder add`
#[derive(Debug, Args)]
pub struct HolderAddArgs {
    /// The environment.
    pub env: String,
    /// The holder's name (a-z, 0-9, '.', '_', '@', '+', '-'; it names their record file and goes
    /// into their certificates' CN).
    pub name: String,
    /// The holder's age recipient: age1…, ssh-ed25519 …, ssh-rsa …, or a plugin recipient such
    /// as age1yubikey1… (repeatable).
    #[arg(short = 'r', long = "recipient", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// A recipients file, one per line, `#` comments (repeatable).
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE")]
    pub recipients_files: Vec<PathBuf>,
    /// A role of the standing grant (repeatable; none: no standing grant, nothing is renewed).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// The standing grant's TTL (default: the policy's default for the roles).
    #[arg(long, value_name = "DURATION", requires = "roles")]
    pub ttl: Option<String>,
    /// The holder keeps their key: every certificate is signed from a CSR they send
    /// (`issue --csr`, `renew --holder NAME --csr`), and the key never passes through the vault.
    #[arg(long)]
    pub csr_only: bool,
}

/// `talvault holder …`
pub fn run(cmd: HolderCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        HolderCommand::Add(a) => add(a, o),
        HolderCommand::List { env, format } => {
            let v = o.open_vault()?;
            let (holders, problems) = v.holder_list(&env, &o.context(Opens::Given)?)?;
            match format {
                ListFormat::Json => write_stdout(&json(&holders)?)?,
                ListFormat::Text => write_stdout(holder_table(&holders, &problems).as_bytes())?,
            }
            Ok(0)
        }
        HolderCommand::Remove { env, name } => {
            let name = holder_name_arg("NAME", &name)?;
            let v = o.open_vault()?;
            let live = v.holder_remove(&env, &name, &o.context(Opens::Secrets)?)?;
            let mut msg = format!("removed holder {name} from environment {env}\n");
            if live.is_empty() {
                msg.push_str("they hold no live certificate\n");
            } else {
                let _ = writeln!(
                    msg,
                    "their {} live certificate(s) stay valid until they expire or are revoked:",
                    live.len()
                );
                for c in &live {
                    let _ = writeln!(msg, "{}", cert_line(c));
                }
                let _ = writeln!(
                    msg,
                    "cut them off with `talvault revoke {env} SERIAL --reason cessationOfOperation` (and retire their issuer to enforce it)"
                );
            }
            write_stdout(msg.as_bytes())?;
            Ok(0)
        }
    }
}

fn add(a: HolderAddArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let name = holder_name_arg("NAME", &a.name)?;
    if a.recipients.is_empty() && a.recipients_files.is_empty() {
        return Err(CliError::usage("no recipients given").hint(
            "pass the holder's public key: -r age1… (their `age-keygen -y`), -r \"ssh-ed25519 …\", or -R FILE",
        ));
    }
    let recipients = recipients_from(&a.recipients, &a.recipients_files)?;
    let new = NewHolder {
        env: a.env,
        name,
        recipients,
        roles: roles_arg(&a.roles)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        key: if a.csr_only {
            KeySource::Csr
        } else {
            KeySource::Generated
        },
    };
    let env = new.env.clone();
    let v = o.open_vault()?;
    let h = v.holder_add(new, &o.context(Opens::Secrets)?)?;
    let mut msg = format!(
        "added holder {} to environment {env}: {} recipient(s), {}\n",
        printable(&h.name),
        h.recipients.len(),
        grant_text(&h)
    );
    if h.roles.is_empty() {
        let _ = writeln!(
            msg,
            "deliver a talosconfig: talvault issue {env} --holder {} --role ROLE --seal",
            h.name
        );
    } else {
        let _ = writeln!(
            msg,
            "deliver the first talosconfig: talvault issue {env} --holder {} --seal{}, or let `talvault renew {env} --all -o OUTBOX` do it",
            h.name,
            if h.key == "csr" { " --csr FILE" } else { "" }
        );
    }
    write_stdout(msg.as_bytes())?;
    Ok(0)
}

fn grant_text(h: &HolderView) -> String {
    let key = if h.key == "csr" { ", CSR-only" } else { "" };
    match &h.ttl {
        Some(ttl) if !h.roles.is_empty() => format!(
            "standing grant {} for {}{key}",
            printable_list(&h.roles, ","),
            printable(ttl)
        ),
        _ => format!("no standing grant{key}"),
    }
}

fn holder_table(holders: &[HolderView], problems: &[String]) -> String {
    let mut msg = String::new();
    if holders.is_empty() {
        msg.push_str("no holders\n");
    }
    for h in holders {
        let _ = writeln!(
            msg,
            "{}: {}, {} recipient(s), renewal {}",
            printable(&h.name),
            grant_text(h),
            h.recipients.len(),
            printable(&h.renewal)
        );
        for c in &h.live {
            let _ = writeln!(msg, "{}", cert_line(c));
        }
    }
    for p in problems {
        let _ = writeln!(msg, "DISAGREES: {}", printable(p));
    }
    msg
}
