//! EDGE: `talvault audit log|verify`: one service call each, rendered.

use clap::Subcommand;

use super::error::CliError;
use super::opts::{Format, Opens, VaultOpts};
use super::output::{json, write_stdout};
use super::render::printable;
use crate::audit::Authenticity;

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
    /// Check the trail: ids, links and order, the MAC of every event (with an identity), and
    /// every file against the event that wrote it (exit 0 intact, 1 tampered, 3 intact but
    /// authenticity not checked for want of an identity).
    Verify {
        /// Only this environment.
        env: Option<String>,
        /// Also fail if an event or record present at this git revision was changed or removed
        /// since (for a CI job on pull requests: `--since origin/main`).
        #[arg(long, value_name = "REV")]
        since: Option<String>,
    },
}

/// `talvault audit …`
pub fn run(cmd: AuditCommand, o: &VaultOpts) -> Result<u8, CliError> {
    let v = o.open_vault()?;
    match cmd {
        AuditCommand::Log { env, format } => {
            let events = v.audit_log(env.as_deref())?;
            let text = match format {
                Format::Json => {
                    let values: Vec<serde_json::Value> = events
                        .iter()
                        .filter_map(|e| serde_json::from_slice(&e.to_json()).ok())
                        .collect();
                    String::from_utf8_lossy(&json(&values)?).into_owned()
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
                            printable(e.env()),
                            printable(e.action()),
                            printable(e.actor())
                        ));
                    }
                    s
                }
            };
            write_stdout(text.as_bytes())?;
            Ok(0)
        }
        AuditCommand::Verify { env, since } => {
            let changes = match &since {
                Some(rev) => Some(
                    crate::process::git_changes(v.root(), rev)
                        .map_err(|e| {
                            CliError::usage(format!("--since {rev}: {e}"))
                                .hint("give a revision of the git repository the vault lives in, e.g. origin/main")
                        })?,
                ),
                None => None,
            };
            let ctx = o.context(Opens::Secrets)?;
            let outcomes = v.audit_verify(env.as_deref(), &ctx, changes.as_deref())?;
            let mut s = String::new();
            let (mut intact, mut unchecked) = (true, false);
            for out in &outcomes {
                let (name, r) = (&out.env, &out.report);
                if out.is_intact() {
                    let mut line =
                        format!("{name}: ok, {} events, {} head(s)", r.events, r.heads.len());
                    match &r.authenticity {
                        Authenticity::Checked => line
                            .push_str(&format!(", {} files accounted for, authenticated", r.files)),
                        Authenticity::NotChecked(why) => {
                            unchecked = true;
                            line.push_str(&format!(
                                ", {} files accounted for; authenticity NOT checked: {}",
                                r.files,
                                printable(why)
                            ));
                        }
                        Authenticity::Format1 => {
                            unchecked = true;
                            line.push_str(
                                "; format 1: hash links only, nothing to authenticate with (`talvault upgrade`)",
                            );
                        }
                    }
                    if r.unsealed > 0 && r.authenticity != Authenticity::Format1 {
                        line.push_str(&format!(" ({} older events hash-linked only)", r.unsealed));
                    }
                    s.push_str(&line);
                    s.push('\n');
                } else {
                    intact = false;
                    s.push_str(&format!(
                        "{name}: TAMPERED, {} problem(s)\n",
                        r.problems.len() + out.conflicts.len() + out.rewritten.len()
                    ));
                    for p in &r.problems {
                        s.push_str(&format!(
                            "  {:?}: {}\n",
                            p.tamper(),
                            printable(&p.to_string())
                        ));
                    }
                    for c in &out.conflicts {
                        s.push_str(&format!("  Conflict: {}\n", printable(c)));
                    }
                    for c in &out.rewritten {
                        s.push_str(&format!("  Rewritten: {}\n", printable(c)));
                    }
                }
                for w in &r.warnings {
                    s.push_str(&format!("  warning: {}\n", printable(&w.to_string())));
                }
            }
            write_stdout(s.as_bytes())?;
            Ok(match (intact, unchecked) {
                (false, _) => 1,
                (true, true) => 3,
                (true, false) => 0,
            })
        }
    }
}
