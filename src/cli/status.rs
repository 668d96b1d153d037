//! EDGE: `talvault status`: one service call, rendered as a table, JSON or a Prometheus
//! textfile, with a graded exit code (backups too: their age against the policy).

use std::fmt::Write as _;

use clap::{Args, ValueEnum};

use super::error::CliError;
use super::input::ttl_arg;
use super::opts::{Opens, VaultOpts};
use super::output::write_stdout;
use super::render::{cert_line, issuer_line, printable, printable_list};
use crate::model::Api;
use crate::vault::EnvStatus;

/// Status output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A table for people.
    Table,
    /// Stable JSON.
    Json,
    /// A node exporter textfile.
    Prometheus,
}

/// `talvault status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this environment.
    pub env: Option<String>,
    /// Grade 1 when a CA or an accepted issuer expires within this window.
    #[arg(long, value_name = "DURATION", default_value = "720h")]
    pub expiring: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: StatusFormat,
}

/// `talvault status`: exit 0 fine, 1 something expires within --expiring or the newest verified
/// backup is too old, 2 something expired or tainted.
pub fn status(a: StatusArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let window = ttl_arg("--expiring", &a.expiring, "e.g. --expiring 720h or 30d")?;
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Given)?;
    let report = v.status(a.env.as_deref(), window.as_duration(), &ctx)?;
    let grade = report.iter().map(|s| s.grade).max().unwrap_or(0);
    match a.format {
        // Streamed: a report with 100,000 live certificates is tens of megabytes of JSON.
        StatusFormat::Json => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
            std::io::Write::write_all(&mut out, b"\n")
                .and_then(|()| std::io::Write::flush(&mut out))
                .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))?;
        }
        StatusFormat::Table => write_stdout(status_table(&report).as_bytes())?,
        StatusFormat::Prometheus => {
            write_stdout(prometheus(&report, ctx.now.unix_timestamp()).as_bytes())?;
        }
    }
    // The process exits next: freeing 100,000 summaries one by one costs more than making them.
    std::mem::forget(report);
    v.forget_chain_states();
    Ok(grade)
}

fn status_table(report: &[EnvStatus]) -> String {
    let mut msg = String::new();
    for s in report {
        let _ = writeln!(
            msg,
            "{} (cluster {}): {}",
            printable(&s.env),
            printable(&s.cluster_name),
            match s.grade {
                0 => "ok",
                1 => "EXPIRING",
                _ => "ATTENTION",
            }
        );
        let c = &s.counts;
        let _ = writeln!(
            msg,
            "  certificates: {} live, {} expired, {} revoked ({} not yet expired), {} issued",
            c.live, c.expired, c.revoked, c.revoked_unexpired, c.issued
        );
        // The split by API, once the environment has kubeconfigs or Kubernetes issuers.
        let kubernetes = s
            .by_api
            .iter()
            .any(|a| a.api == Api::Kubernetes && a.counts.issued > 0)
            || s.issuers.iter().any(|i| i.api == Api::Kubernetes);
        if kubernetes {
            for a in &s.by_api {
                let c = &a.counts;
                let _ = writeln!(
                    msg,
                    "    {:<12} {} live, {} expired, {} revoked ({} not yet expired), {} issued",
                    format!("{}:", a.api.as_str()),
                    c.live,
                    c.expired,
                    c.revoked,
                    c.revoked_unexpired,
                    c.issued
                );
            }
        }
        for f in &s.findings {
            let _ = writeln!(msg, "  {}: {}", f.kind.to_uppercase(), printable(&f.what));
        }
        for ca in &s.cas {
            let _ = writeln!(msg, "  CA {:<14} until {}", ca.ca, ca.not_after);
        }
        if s.issuers.is_empty() {
            let _ = writeln!(msg, "  issuers: none (direct mode)");
        }
        for i in &s.issuers {
            let _ = writeln!(msg, "  issuer {}", issuer_line(i));
        }
        let _ = writeln!(msg, "  recipients: {}", s.recipients.len());
        let h = &s.holders;
        if h.registered > 0 {
            let _ = writeln!(
                msg,
                "  holders: {} registered, {} without a live certificate{}",
                h.registered,
                h.without_certificate.len(),
                if h.without_certificate.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", printable_list(&h.without_certificate, ", "))
                }
            );
            for r in h.renewals.iter().take(10) {
                let _ = writeln!(
                    msg,
                    "  renewal {:<24} {}",
                    printable(&r.holder),
                    if r.due_now {
                        "due now".to_owned()
                    } else {
                        format!("due {}", r.due)
                    }
                );
            }
            if h.renewals.len() > 10 {
                let _ = writeln!(
                    msg,
                    "  … {} more renewals (-o json lists all)",
                    h.renewals.len() - 10
                );
            }
            if !h.unknown_holder.is_empty() {
                let _ = writeln!(msg, "  live certificates of no registered holder:");
                for c in &h.unknown_holder {
                    let _ = writeln!(msg, "{}", cert_line(c));
                }
            }
        }
        let _ = writeln!(msg, "  audit trail: {}", s.audit);
        let b = &s.backups;
        match (&b.newest_verified, b.newest_verified_age) {
            _ if b.backups == 0 => {
                let _ = writeln!(msg, "  backups: none recorded");
            }
            (Some(id), Some(age)) => {
                let _ = writeln!(
                    msg,
                    "  backups: {}, newest verified {id} sealed {} ago (max {})",
                    b.backups,
                    crate::backup::duration(age),
                    crate::backup::duration(b.max_age)
                );
            }
            _ => {
                let _ = writeln!(msg, "  backups: {}, none verified", b.backups);
            }
        }
        if !s.live.is_empty() {
            let _ = writeln!(msg, "  live certificates (soonest expiry first):");
            for l in &s.live {
                let _ = writeln!(msg, "{}", cert_line(l));
            }
        }
    }
    msg
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The node exporter textfile form (Prometheus text exposition format 0.0.4).
fn prometheus(report: &[EnvStatus], now: i64) -> String {
    let mut m = String::new();
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .unwrap_or(0)
    };
    let _ = writeln!(
        m,
        "# HELP talvault_certificates Client certificates recorded in the vault, by API (talos, kubernetes) and state."
    );
    let _ = writeln!(m, "# TYPE talvault_certificates gauge");
    for s in report {
        let env = label(&s.env);
        for a in &s.by_api {
            let api = a.api.as_str();
            for (state, n) in [
                ("live", a.counts.live),
                ("expired", a.counts.expired),
                ("revoked", a.counts.revoked),
                ("revoked_unexpired", a.counts.revoked_unexpired),
                ("issued", a.counts.issued),
            ] {
                let _ = writeln!(
                    m,
                    "talvault_certificates{{env=\"{env}\",api=\"{api}\",state=\"{state}\"}} {n}"
                );
            }
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_ca_not_after_seconds notAfter of each bundle CA (Unix time)."
    );
    let _ = writeln!(m, "# TYPE talvault_ca_not_after_seconds gauge");
    for s in report {
        for ca in &s.cas {
            let _ = writeln!(
                m,
                "talvault_ca_not_after_seconds{{env=\"{}\",ca=\"{}\"}} {}",
                label(&s.env),
                ca.ca,
                parse(&ca.not_after)
            );
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_issuer_not_after_seconds notAfter of each issuer (Unix time)."
    );
    let _ = writeln!(m, "# TYPE talvault_issuer_not_after_seconds gauge");
    for s in report {
        for i in &s.issuers {
            let _ = writeln!(
                m,
                "talvault_issuer_not_after_seconds{{env=\"{}\",api=\"{}\",issuer=\"{}\",state=\"{}\"}} {}",
                label(&s.env),
                i.api.as_str(),
                label(&i.id),
                i.state.as_str(),
                parse(&i.not_after)
            );
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_next_certificate_expiry_seconds notAfter of the live certificate that expires first (Unix time; absent when none is live)."
    );
    let _ = writeln!(m, "# TYPE talvault_next_certificate_expiry_seconds gauge");
    for s in report {
        for api in [Api::Talos, Api::Kubernetes] {
            // `live` is sorted by expiry: the first of each API expires first.
            if let Some(first) = s.live.iter().find(|c| c.api == api) {
                let _ = writeln!(
                    m,
                    "talvault_next_certificate_expiry_seconds{{env=\"{}\",api=\"{}\"}} {}",
                    label(&s.env),
                    api.as_str(),
                    parse(&first.not_after)
                );
            }
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_holders Registered holders, and of those, without a live certificate or due for renewal."
    );
    let _ = writeln!(m, "# TYPE talvault_holders gauge");
    for s in report {
        let h = &s.holders;
        for (state, n) in [
            ("registered", h.registered),
            ("without_certificate", h.without_certificate.len()),
            (
                "renewal_due",
                h.renewals.iter().filter(|r| r.due_now).count(),
            ),
        ] {
            let _ = writeln!(
                m,
                "talvault_holders{{env=\"{}\",state=\"{state}\"}} {n}",
                label(&s.env)
            );
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_holder_renewal_due_seconds When each standing grant is due for renewal (Unix time; in the past when due)."
    );
    let _ = writeln!(m, "# TYPE talvault_holder_renewal_due_seconds gauge");
    for s in report {
        for r in &s.holders.renewals {
            let _ = writeln!(
                m,
                "talvault_holder_renewal_due_seconds{{env=\"{}\",holder=\"{}\"}} {}",
                label(&s.env),
                label(&r.holder),
                parse(&r.due)
            );
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_unknown_holder_certificates Live certificates of no registered holder (counted once an environment has holders)."
    );
    let _ = writeln!(m, "# TYPE talvault_unknown_holder_certificates gauge");
    for s in report {
        let _ = writeln!(
            m,
            "talvault_unknown_holder_certificates{{env=\"{}\"}} {}",
            label(&s.env),
            s.holders.unknown_holder.len()
        );
    }
    let _ = writeln!(
        m,
        "# HELP talvault_tainted 1 while a break-glass certificate taints the environment."
    );
    let _ = writeln!(m, "# TYPE talvault_tainted gauge");
    for s in report {
        let _ = writeln!(
            m,
            "talvault_tainted{{env=\"{}\"}} {}",
            label(&s.env),
            u8::from(s.tainted.is_some())
        );
    }
    let _ = writeln!(
        m,
        "# HELP talvault_backups Sealed backups recorded in the vault."
    );
    let _ = writeln!(m, "# TYPE talvault_backups gauge");
    for s in report {
        let _ = writeln!(
            m,
            "talvault_backups{{env=\"{}\"}} {}",
            label(&s.env),
            s.backups.backups
        );
    }
    let _ = writeln!(
        m,
        "# HELP talvault_backup_newest_verified_sealed_seconds When the newest verified backup was sealed (Unix time; absent when none was verified)."
    );
    let _ = writeln!(
        m,
        "# TYPE talvault_backup_newest_verified_sealed_seconds gauge"
    );
    for s in report {
        if let Some(t) = s.backups.newest_verified_sealed {
            let _ = writeln!(
                m,
                "talvault_backup_newest_verified_sealed_seconds{{env=\"{}\"}} {t}",
                label(&s.env)
            );
        }
    }
    let _ = writeln!(
        m,
        "# HELP talvault_status_grade 0 fine, 1 something expires within the window, 2 expired or tainted."
    );
    let _ = writeln!(m, "# TYPE talvault_status_grade gauge");
    for s in report {
        let _ = writeln!(
            m,
            "talvault_status_grade{{env=\"{}\"}} {}",
            label(&s.env),
            s.grade
        );
    }
    let _ = writeln!(
        m,
        "# HELP talvault_status_generated_seconds When this file was written (Unix time)."
    );
    let _ = writeln!(m, "# TYPE talvault_status_generated_seconds gauge");
    let _ = writeln!(m, "talvault_status_generated_seconds {now}");
    m
}
