//! EDGE: `talvault revoke`, `crl` and `verify`: arguments, one service call each, and what
//! they print (what actually cuts access; the CRL; the checks and a graded exit code).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::error::CliError;
use super::input::{
    kubeconfig_context, looks_like_kubeconfig, read_input, serial_arg, talosconfig_context,
    talosconfig_context_of,
};
use super::opts::{ListFormat, Opens, VaultOpts};
use super::output::{Output, json, write_stdout};
use super::render::{cert_line, duration_text, printable, printable_list};
use crate::model::{Api, IssuerState};
use crate::pki::crl::RevocationReason;
use crate::vault::{RevokeOutcome, RevokeTarget, VaultError, Verification};

/// `talvault revoke`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The environment.
    pub env: String,
    /// The certificate serial (hex; `openssl x509 -serial` form accepted).
    #[arg(
        required_unless_present_any = ["talosconfig", "kubeconfig"],
        conflicts_with_all = ["talosconfig", "kubeconfig"]
    )]
    pub serial: Option<String>,
    /// Revoke the client certificate of this talosconfig instead.
    #[arg(long, value_name = "FILE", conflicts_with = "kubeconfig")]
    pub talosconfig: Option<PathBuf>,
    /// Revoke the client certificate of this kubeconfig instead.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// With --talosconfig or --kubeconfig: the context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
    /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
    #[arg(long, value_name = "REASON")]
    pub reason: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: ListFormat,
}

/// CRL output forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrlFormat {
    /// The signed CRL, PEM (`--der` for DER).
    Pem,
    /// The JSON denylist of every revoked certificate, direct ones included (signs nothing).
    Json,
}

/// `talvault crl`
#[derive(Debug, Args)]
pub struct CrlArgs {
    /// The environment.
    pub env: String,
    /// The issuer (default: the Talos issuer that signs now, else the Kubernetes one).
    #[arg(long, value_name = "ID")]
    pub issuer: Option<String>,
    /// Output form.
    #[arg(long, value_enum, default_value = "pem")]
    pub format: CrlFormat,
    /// Write DER instead of PEM.
    #[arg(long)]
    pub der: bool,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `talvault verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The environment.
    pub env: String,
    /// The talosconfig or kubeconfig to check.
    #[arg(value_name = "FILE")]
    pub talosconfig: PathBuf,
    /// The context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: ListFormat,
}

/// `talvault revoke`
pub fn revoke(a: RevokeArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let reason: RevocationReason = a
        .reason
        .parse()
        .map_err(|e| CliError::usage(format!("--reason: {e}")))?;
    if a.context.is_some() && a.talosconfig.is_none() && a.kubeconfig.is_none() {
        return Err(CliError::usage(
            "--context names a context of --talosconfig FILE or --kubeconfig FILE",
        ));
    }
    let target = match (&a.serial, &a.talosconfig, &a.kubeconfig) {
        (Some(s), None, None) => RevokeTarget::Serial(serial_arg(s)?),
        (None, Some(path), None) => {
            let c = talosconfig_context(path, a.context.as_deref())?;
            RevokeTarget::Certificate {
                server_ca: c.server_ca,
                crt: c.crt,
            }
        }
        (None, None, Some(path)) => {
            let bytes = read_input(path, "kubeconfig")?;
            let c = kubeconfig_context(path, &bytes, a.context.as_deref())?;
            RevokeTarget::KubernetesCertificate {
                server_ca: c.server_ca,
                crt: c.crt,
            }
        }
        _ => {
            return Err(CliError::usage(
                "give a SERIAL, --talosconfig FILE or --kubeconfig FILE",
            ));
        }
    };
    let v = o.open_vault()?;
    let out = v.revoke(&a.env, &target, reason, &o.context(Opens::Secrets)?)?;
    if a.format == ListFormat::Json {
        write_stdout(&json(&out)?)?;
        return Ok(0);
    }
    write_stdout(revoke_text(&a.env, &out).as_bytes())?;
    Ok(0)
}

fn revoke_text(env: &str, out: &RevokeOutcome) -> String {
    let c = &out.certificate;
    let mut msg = if out.already_revoked {
        format!(
            "certificate {} was already revoked at {} ({}); nothing changed\n",
            c.serial, out.revoked, out.reason
        )
    } else {
        format!(
            "revoked certificate {} ({}, {}) as {}\n",
            c.serial,
            printable(c.holder.as_deref().unwrap_or("no holder")),
            printable_list(&c.roles, ","),
            out.reason
        )
    };
    if let Some(i) = out
        .issuer
        .as_ref()
        .filter(|i| i.state != IssuerState::Retired)
    {
        // CRLs are signed on demand, never stored in the vault.
        let _ = writeln!(
            msg,
            "publish a fresh CRL for the certificate's issuer: talvault crl {env} --issuer {} -o {}.crl.pem",
            i.id, i.id
        );
    }
    if out.remaining_seconds == 0 {
        let _ = writeln!(msg, "it has already expired: nothing more to do");
        return msg;
    }
    let kubernetes = out.api == Api::Kubernetes;
    let _ = writeln!(
        msg,
        "{} checks no CRL: this certificate keeps working for {} (until {}) unless access is cut:",
        if kubernetes {
            "the kube-apiserver"
        } else {
            "Talos"
        },
        duration_text(out.remaining_seconds),
        c.not_after
    );
    if kubernetes {
        return kubernetes_advice(env, out, msg);
    }
    match &out.issuer {
        Some(i) if i.state == IssuerState::Retired => {
            let _ = writeln!(
                msg,
                "  its issuer {} is already retired: make sure every node has the current patch (talvault patch accepted-cas {env})",
                i.id
            );
        }
        Some(i) => {
            let _ = writeln!(
                msg,
                "  retire its issuer {}: talvault issuer rotate {env}; talvault patch accepted-cas {env} (apply); talvault issuer activate {env} NEW-ID; re-issue; talvault issuer retire {env} {} (--force if it is the only active one); apply a fresh patch",
                i.id, i.id
            );
            if out.reissue.is_empty() {
                let _ = writeln!(
                    msg,
                    "  no other live certificate of {} needs re-issuing",
                    i.id
                );
            } else {
                let _ = writeln!(
                    msg,
                    "  {} other live certificate(s) of {} would need re-issuing:",
                    out.reissue.len(),
                    i.id
                );
                for r in &out.reissue {
                    let _ = writeln!(msg, "  {}", cert_line(r));
                }
            }
        }
        None => {
            let _ = writeln!(
                msg,
                "  it was signed directly by the Talos OS CA: only its expiry or an OS CA rotation (`talosctl rotate-ca`) cuts it off; use issuers to make revocation effective"
            );
        }
    }
    msg
}

/// What cuts a Kubernetes certificate off (reference/kubernetes.md §4, §6.5): the API server
/// checks no revocation; dropping its issuer from every control plane does, a Kubernetes CA
/// rotation does for direct ones, and RBAC can take its groups' rights away at once.
fn kubernetes_advice(env: &str, out: &RevokeOutcome, mut msg: String) -> String {
    let c = &out.certificate;
    match &out.issuer {
        Some(i) if i.state == IssuerState::Retired => {
            let _ = writeln!(
                msg,
                "  its Kubernetes issuer {} is already retired: make sure every control plane has the current patch (talvault patch accepted-cas {env})",
                i.id
            );
        }
        Some(i) => {
            let _ = writeln!(
                msg,
                "  retire its Kubernetes issuer {}: talvault issuer rotate {env} --api kubernetes; talvault patch accepted-cas {env} (apply to the control planes); talvault issuer activate {env} NEW-ID; re-issue; talvault issuer retire {env} {} (--force if it is the only active one); apply a fresh patch to every control plane",
                i.id, i.id
            );
            if out.reissue.is_empty() {
                let _ = writeln!(
                    msg,
                    "  no other live certificate of {} needs re-issuing",
                    i.id
                );
            } else {
                let _ = writeln!(
                    msg,
                    "  {} other live certificate(s) of {} would need re-issuing:",
                    out.reissue.len(),
                    i.id
                );
                for r in &out.reissue {
                    let _ = writeln!(msg, "  {}", cert_line(r));
                }
            }
        }
        None => {
            let _ = writeln!(
                msg,
                "  it was signed directly by the cluster's Kubernetes CA: only its expiry or a Kubernetes CA rotation (`talosctl rotate-ca --kubernetes`, then re-import the bundle) cuts it off; use Kubernetes issuers (`talvault issuer create {env} --api kubernetes`) to make revocation effective"
            );
        }
    }
    let _ = writeln!(
        msg,
        "  meanwhile, RBAC cuts at once: remove the bindings of user {} and of groups {} that nobody else needs (`kubectl get clusterrolebindings,rolebindings -A -o wide`){}",
        printable(c.holder.as_deref().unwrap_or("?")),
        printable_list(&c.roles, ","),
        if c.roles
            .iter()
            .any(|g| g == crate::pki::kube_policy::SYSTEM_MASTERS)
        {
            "; system:masters bypasses RBAC, so only expiry or the steps above cut it"
        } else {
            ""
        }
    );
    msg
}

/// `talvault crl`
pub fn crl(a: CrlArgs, o: &VaultOpts) -> Result<u8, CliError> {
    if a.format == CrlFormat::Json && (a.der || a.issuer.is_some()) {
        return Err(CliError::usage(
            "--format json lists every revocation of the environment; it takes neither --der nor --issuer",
        ));
    }
    let out = Output::public(a.output.as_deref())?;
    let v = o.open_vault()?;
    if a.format == CrlFormat::Json {
        let list = v.denylist(&a.env, &o.context(Opens::Given)?)?;
        out.write(&json(&list)?)?;
        return Ok(0);
    }
    let crl = v.crl(&a.env, a.issuer.as_deref(), &o.context(Opens::Secrets)?)?;
    let bytes = if a.der {
        crl.der.clone()
    } else {
        crl.der_pem()
    };
    let to_file = !out.is_stdout();
    out.write(&bytes)?;
    if to_file {
        write_stdout(
            format!(
                "CRL number {} of issuer {} with {} entries, signed {}\n",
                crl.number,
                crl.issuer,
                crl.entries,
                if crl.in_token {
                    "inside its PKCS#11 token"
                } else {
                    "with its sealed key"
                }
            )
            .as_bytes(),
        )?;
    }
    Ok(0)
}

/// `talvault verify`: exit 0 good, 1 not good, 2 unreadable. A kubeconfig is recognised by its
/// top-level keys.
pub fn verify(a: VerifyArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let bytes = read_input(&a.talosconfig, "talosconfig or kubeconfig")?;
    let kubernetes = looks_like_kubeconfig(&bytes);
    let c = if kubernetes {
        kubeconfig_context(&a.talosconfig, &bytes, a.context.as_deref())?
    } else {
        talosconfig_context_of(&a.talosconfig, &bytes, a.context.as_deref())?
    };
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Given)?;
    let verdict = if kubernetes {
        v.verify_kubeconfig(&a.env, &c.name, &c.server_ca, &c.crt, &ctx)
    } else {
        v.verify(&a.env, &c.name, &c.server_ca, &c.crt, &ctx)
    };
    let report = verdict.map_err(|e| match e {
        VaultError::Unreadable { .. } => {
            CliError::usage(format!("{}: {e}", a.talosconfig.display()))
        }
        other => other.into(),
    })?;
    match a.format {
        ListFormat::Json => write_stdout(&json(&report)?)?,
        ListFormat::Text => write_stdout(verify_text(&report).as_bytes())?,
    }
    Ok(if report.good { 0 } else { 1 })
}

fn verify_text(r: &Verification) -> String {
    let mut msg = if r.api == Api::Kubernetes {
        format!(
            "{}: kubeconfig context {:?}, serial {}, user {}, groups {}, signed by {}\n",
            if r.good { "GOOD" } else { "NOT GOOD" },
            printable(&r.context),
            r.serial,
            printable(r.holder.as_deref().unwrap_or("(none)")),
            printable_list(&r.roles, ","),
            printable(r.signed_by.as_deref().unwrap_or("(unknown CA)"))
        )
    } else {
        format!(
            "{}: context {:?}, serial {}, roles {}, holder {}, signed by {}\n",
            if r.good { "GOOD" } else { "NOT GOOD" },
            printable(&r.context),
            r.serial,
            printable_list(&r.roles, ","),
            printable(r.holder.as_deref().unwrap_or("(none)")),
            printable(r.signed_by.as_deref().unwrap_or("(unknown CA)"))
        )
    };
    for c in &r.checks {
        let _ = writeln!(
            msg,
            "  {:<4} {:<12} {}",
            c.result.as_str(),
            c.check,
            c.detail
        );
    }
    msg
}
