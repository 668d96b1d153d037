//! EDGE: `talvault kubeconfig` and `break-glass --kubernetes`: arguments parsed into domain
//! types, the issuance prepared (every refusal that needs no secret), the destination opened,
//! then signed and written. If writing fails after the certificate was recorded, the error says
//! what was recorded and how to replace it.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::env::require_reason;
use super::error::CliError;
use super::input::{optional_ttl, read_input};
use super::issue::{BreakGlassArgs, Destination};
use super::opts::{Opens, VaultOpts};
use super::output::{KubeconfigOutput, write_stderr, write_stdout};
use super::render::{printable, printable_list};
use crate::pki::kube_policy::{KubeGroup, KubeUser};
use crate::secret::SecretBytes;
use crate::vault::{IssuedKubeconfig, KubeconfigRequest};

/// `talvault kubeconfig`
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The environment.
    pub env: String,
    /// The Kubernetes user name (the certificate's CN; the API server's `user`).
    #[arg(long, required = true, value_name = "NAME")]
    pub user: String,
    /// A Kubernetes group (repeatable; the certificate's O values), as the policy allows:
    /// talvault:cluster-admins, talvault:editors, talvault:viewers by default.
    #[arg(long = "group", short = 'g', required = true, value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Lifetime: Go duration (`8h`, `90m`) or days/weeks (`7d`, `2w`); default from the policy.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The context's namespace.
    #[arg(long, value_name = "NS", default_value = crate::vault::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The API server URL (default: the environment's Kubernetes endpoint).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Sign this PKCS#10 request instead of generating a key (the key never reaches talvault).
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// Sign with the bundle's Kubernetes CA even when a Kubernetes issuer is active (if the
    /// policy allows it).
    #[arg(long)]
    pub direct: bool,
    /// Output.
    #[command(flatten)]
    pub dest: Destination,
}

/// Parses `--user`.
fn user_arg(text: &str) -> Result<KubeUser, CliError> {
    KubeUser::parse(text).map_err(|e| {
        CliError::new(format!("--user: {e}"))
            .hint("the user name is the certificate's CN: plain text, at most 64 characters")
    })
}

/// Parses the `--group` values.
fn groups_arg(texts: &[String]) -> Result<Vec<KubeGroup>, CliError> {
    texts
        .iter()
        .map(|g| {
            KubeGroup::parse(g).map_err(|e| {
                CliError::new(format!("--group: {e}")).hint(
                    "a group is one O value of the certificate: plain text without commas, at most 64 characters",
                )
            })
        })
        .collect()
}

fn csr_arg(path: Option<&PathBuf>) -> Result<Option<SecretBytes>, CliError> {
    Ok(match path {
        Some(p) => Some(SecretBytes::copy_from(&read_input(p, "CSR")?)),
        None => None,
    })
}

/// `talvault kubeconfig`
pub fn kubeconfig(a: KubeconfigArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let req = KubeconfigRequest {
        env: a.env,
        user: Some(user_arg(&a.user)?),
        groups: groups_arg(&a.groups)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        namespace: Some(a.namespace),
        server: a.server,
        csr: csr_arg(a.csr.as_ref())?,
        break_glass: None,
        direct: a.direct,
    };
    run(req, &a.dest, o)
}

/// `talvault break-glass --kubernetes`
pub fn break_glass(a: BreakGlassArgs, o: &VaultOpts) -> Result<u8, CliError> {
    require_reason(&a.reason, "INC-123: API unreachable")?;
    let Some(user) = a.user.as_deref() else {
        return Err(CliError::usage("--kubernetes needs --user NAME").hint(
            "name the person breaking the glass: the API server's audit log shows the user name",
        ));
    };
    let req = KubeconfigRequest {
        env: a.env,
        user: Some(user_arg(user)?),
        groups: groups_arg(&a.groups)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        namespace: a.namespace,
        server: a.server,
        csr: None,
        break_glass: Some(a.reason),
        direct: a.direct,
    };
    run(req, &a.dest, o)
}

fn run(req: KubeconfigRequest, dest: &Destination, o: &VaultOpts) -> Result<u8, CliError> {
    let env = req.env.clone();
    let break_glass = req.break_glass.is_some();
    let csr = req.csr.is_some();
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let prepared = v.prepare_kubeconfig(req, &ctx)?;
    // Open the destination before anything is signed, recorded or audited.
    let out = KubeconfigOutput::open(
        dest.output.as_deref(),
        dest.merge.as_deref(),
        prepared.names(),
        dest.replace,
        dest.force,
    )?;
    let to_stdout = out.is_stdout();
    let IssuedKubeconfig {
        leaf,
        entry,
        signed_by,
        in_token,
        user,
        groups,
    } = prepared.issue(&ctx)?;
    let written = out.write(&entry).map_err(|e| {
        let mut hint = format!(
            "the certificate is recorded and audited; revoke it with `talvault revoke {env} {} --reason superseded` and issue again",
            leaf.serial_hex
        );
        if break_glass {
            let _ = write!(
                hint,
                "; the environment is tainted until `talvault env untaint {env} --reason …`"
            );
        }
        CliError::new(format!(
            "certificate {} was issued but its kubeconfig could not be written: {}",
            leaf.serial_hex, e.message
        ))
        .hint(hint)
    })?;
    let mut msg = format!(
        "issued {} for user {}: serial {}, groups {}, valid until {}\n",
        if break_glass {
            "a BREAK-GLASS Kubernetes certificate"
        } else {
            "a Kubernetes certificate"
        },
        printable(&user),
        leaf.serial_hex,
        printable_list(&groups, ","),
        leaf.not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    if signed_by == crate::model::K8S_CA {
        let _ = writeln!(
            msg,
            "signed directly by the cluster's Kubernetes CA: only its expiry or a Kubernetes CA rotation (`talosctl rotate-ca --kubernetes`) cuts it off; see `talvault issuer create {env} --api kubernetes`"
        );
    } else {
        let _ = writeln!(
            msg,
            "signed by Kubernetes issuer {signed_by}{}",
            if in_token {
                " inside its PKCS#11 token"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        msg,
        "kubeconfig context {:?} (server {}) written to {written}",
        entry.context, entry.server
    );
    // Kubernetes >= 1.32 logs x509 credentials as credential-id X509SHA256=<hex of the DER>.
    let _ = writeln!(
        msg,
        "the API server's audit log names this certificate X509SHA256={}",
        leaf.fingerprint_sha256
    );
    if csr {
        let _ = writeln!(
            msg,
            "the kubeconfig has no key: add yours with `kubectl config set-credentials {} --client-key=KEY.pem --embed-certs --kubeconfig FILE`",
            entry.user
        );
    }
    if break_glass {
        let _ = writeln!(
            msg,
            "environment {env} is now marked tainted; clear it with `talvault env untaint {env} --reason …` once the incident is over"
        );
    }
    if to_stdout {
        write_stderr(msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}
