//! EDGE: `talvault audit log|verify`: one service call each, rendered.

use clap::Subcommand;

use super::error::CliError;
use super::opts::{Format, VaultOpts};
use super::output::{json, write_stdout};
use super::render::printable;

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
        AuditCommand::Verify { env } => {
            let reports = v.audit_verify(env.as_deref())?;
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
                        s.push_str(&format!(
                            "  {:?}: {}\n",
                            p.tamper(),
                            printable(&p.to_string())
                        ));
                    }
                }
            }
            write_stdout(s.as_bytes())?;
            Ok(if intact { 0 } else { 1 })
        }
    }
}
