//! EDGE: `talvault kubeconfig` and `break-glass --kubernetes`: arguments parsed into domain
//! types, the issuance prepared (every refusal that needs no secret), the destination opened,
//! then signed and written. If writing fails after the certificate was recorded, the error says
//! what was recorded and how to replace it.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::env::require_reason;
use super::error::CliError;
use super::input::holder_name_arg;
use super::input::{optional_ttl, read_input};
use super::issue::{BreakGlassArgs, Destination, SealArgs, delivery};
use super::opts::{Opens, VaultOpts};
use super::output::{KubeconfigOutput, Output, write_stderr, write_stdout};
use super::render::{printable, printable_list};
use crate::holder::HolderName;
use crate::pki::kube_policy::{KubeGroup, KubeUser};
use crate::secret::SecretBytes;
use crate::vault::{
    DeliveredKubeconfig, Delivery, DeliveryKind, IssuedKubeconfig, KubeconfigRequest,
    sealed_file_name,
};

/// `talvault kubeconfig`
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The environment.
    pub env: String,
    /// The Kubernetes user name (the certificate's CN; the API server's `user`; default: the
    /// holder's name).
    #[arg(long, required_unless_present = "holder", value_name = "NAME")]
    pub user: Option<String>,
    /// A registered holder (`talvault holder add`): the user defaults to their name, a
    /// CSR-only holder needs --csr, and --seal seals the kubeconfig to their recipients.
    #[arg(long, value_name = "NAME")]
    pub holder: Option<String>,
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
    /// Sealed delivery.
    #[command(flatten)]
    pub sealing: SealArgs,
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

/// `--holder` (a registered holder's name) and the user it stands for unless `--user` names one.
fn holder_and_user(
    holder: Option<&str>,
    user: Option<&str>,
) -> Result<(Option<HolderName>, Option<KubeUser>), CliError> {
    let holder = holder.map(|h| holder_name_arg("--holder", h)).transpose()?;
    let user = match (user, &holder) {
        (Some(u), _) => Some(user_arg(u)?),
        (None, Some(h)) => Some(user_arg(h.as_str())?),
        (None, None) => None,
    };
    Ok((holder, user))
}

fn csr_arg(path: Option<&PathBuf>) -> Result<Option<SecretBytes>, CliError> {
    Ok(match path {
        Some(p) => Some(SecretBytes::copy_from(&read_input(p, "CSR")?)),
        None => None,
    })
}

/// `talvault kubeconfig`
pub fn kubeconfig(a: KubeconfigArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let (holder, user) = holder_and_user(a.holder.as_deref(), a.user.as_deref())?;
    let req = KubeconfigRequest {
        env: a.env,
        user,
        groups: groups_arg(&a.groups)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        namespace: Some(a.namespace),
        server: a.server,
        csr: csr_arg(a.csr.as_ref())?,
        break_glass: None,
        direct: a.direct,
        holder,
        delivery: delivery(&a.sealing),
    };
    run(req, &a.dest, o)
}

/// `talvault break-glass --kubernetes`
pub fn break_glass(a: BreakGlassArgs, o: &VaultOpts) -> Result<u8, CliError> {
    require_reason(&a.reason, "INC-123: API unreachable")?;
    let (holder, user) = holder_and_user(a.holder.as_deref(), a.user.as_deref())?;
    if user.is_none() {
        return Err(CliError::usage("--kubernetes needs --user NAME or --holder NAME").hint(
            "name the person breaking the glass: the API server's audit log shows the user name",
        ));
    }
    let req = KubeconfigRequest {
        env: a.env,
        user,
        groups: groups_arg(&a.groups)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        namespace: a.namespace,
        server: a.server,
        csr: None,
        break_glass: Some(a.reason),
        direct: a.direct,
        holder,
        delivery: delivery(&a.sealing),
    };
    run(req, &a.dest, o)
}

/// Where the kubeconfig goes: a new file or a merge, or a sealed file.
enum Target {
    Kubeconfig(KubeconfigOutput),
    Sealed(Output),
}

fn run(req: KubeconfigRequest, dest: &Destination, o: &VaultOpts) -> Result<u8, CliError> {
    let env = req.env.clone();
    let break_glass = req.break_glass.is_some();
    let csr = req.csr.is_some();
    let holder = req.holder.as_ref().map(|h| h.as_str().to_owned());
    let sealed = matches!(req.delivery, Delivery::Sealed { .. });
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let prepared = v.prepare_kubeconfig(req, &ctx)?;
    // Open the destination before anything is signed, recorded or audited.
    let out = if sealed {
        let default = sealed_file_name(
            holder.as_deref().unwrap_or("holder"),
            &env,
            DeliveryKind::Kubeconfig,
        );
        Target::Sealed(Output::secret(
            dest.output.as_deref().unwrap_or(&default),
            dest.force,
        )?)
    } else {
        Target::Kubeconfig(KubeconfigOutput::open(
            dest.output.as_deref(),
            dest.merge.as_deref(),
            prepared.names(),
            dest.replace,
            dest.force,
        )?)
    };
    let to_stdout = match &out {
        Target::Kubeconfig(o) => o.is_stdout(),
        Target::Sealed(o) => o.is_stdout(),
    };
    let IssuedKubeconfig {
        leaf,
        names,
        delivered,
        signed_by,
        in_token,
        user,
        groups,
    } = prepared.issue(&ctx)?;
    let mut sealed_to = None;
    let written = match (out, delivered) {
        (Target::Kubeconfig(out), DeliveredKubeconfig::Kubeconfig(entry)) => out.write(&entry),
        (Target::Sealed(out), DeliveredKubeconfig::Sealed(sealed)) => {
            sealed_to = Some(sealed.recipients);
            let shown = out.shown();
            out.write(&sealed.bytes).map(|()| shown)
        }
        _ => Err(CliError::new("the delivery does not match the destination")),
    }
    .map_err(|e| {
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
    match sealed_to {
        Some(n) => {
            let _ = writeln!(
                msg,
                "kubeconfig context {:?} (server {}) sealed to {} ({n} recipient(s)) in {written}; they open it with `talvault open {written} --merge ~/.kube/config` or `age -d -i KEY`",
                names.context,
                names.server,
                holder.as_deref().unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(
                msg,
                "kubeconfig context {:?} (server {}) written to {written}",
                names.context, names.server
            );
        }
    }
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
            names.user
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
