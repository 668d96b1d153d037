//! EDGE: `talvault issue` and `break-glass`: arguments parsed into domain types, the
//! issuance prepared (every refusal that needs no secret), the destination opened, then signed
//! and written: a talosconfig, or (`--seal`) the talosconfig age-encrypted to the registered
//! holder's recipients. If writing fails after the certificate was recorded, the error says
//! what was recorded and how to replace it.

use std::path::PathBuf;

use clap::Args;

use super::env::require_reason;
use super::error::CliError;
use super::input::{holder_arg, optional_ttl, read_input, roles_arg};
use super::opts::{Opens, VaultOpts};
use super::output::{Output, TalosconfigOutput, write_stderr, write_stdout};
use crate::secret::SecretBytes;
use crate::vault::{Delivered, Delivery, DeliveryKind, IssueRequest, Issued, sealed_file_name};

/// Where the talosconfig (or kubeconfig) goes.
#[derive(Debug, Args)]
pub struct Destination {
    /// Write a new file here (mode 0600; `-` for stdout when it is not a terminal; default
    /// `talosconfig`, or `kubeconfig` for a kubeconfig).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "merge"
    )]
    pub output: Option<String>,
    /// Add the context to this existing talosconfig (kubeconfig) and make it current.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// With --merge: replace a context (kubeconfig: cluster, user or context) of the same name
    /// (never renamed).
    #[arg(long, requires = "merge")]
    pub replace: bool,
    /// With -o: overwrite an existing file.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Sealed delivery to a registered holder (`issue`, `break-glass`, `kubeconfig`).
#[derive(Debug, Args)]
pub struct SealArgs {
    /// Seal the talosconfig (kubeconfig) to the registered holder's recipients (age; never
    /// written in plaintext). Default file: `<holder>-<env>.talosconfig.age`
    /// (`.kubeconfig.age`); the holder opens it with `age -d` or `talvault open`.
    #[arg(long, requires = "holder", conflicts_with = "merge")]
    pub seal: bool,
    /// With --seal: ASCII-armored (for pasting into a message) instead of age's binary format.
    #[arg(long, requires = "seal")]
    pub armor: bool,
}

/// `talvault issue`
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The environment.
    pub env: String,
    /// Role for the certificate (repeatable): os:admin, os:operator, os:reader, os:etcd:backup, …
    /// (with --seal, default: the holder's standing grant)
    #[arg(long = "role", required_unless_present = "seal", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Lifetime: Go duration (`8h`, `90m`) or days/weeks (`7d`, `2w`); default from the policy.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Who the certificate is for (written into the CN); with --seal, a registered holder.
    #[arg(long, value_name = "NAME")]
    pub holder: Option<String>,
    /// Context name (default: `<role>@<cluster>` for one role, else the cluster name).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Talos API endpoint (repeatable; default: the environment's).
    #[arg(long = "endpoint", short = 'e', value_name = "ENDPOINT")]
    pub endpoints: Vec<String>,
    /// Node (repeatable; default: the environment's).
    #[arg(long = "node", short = 'n', value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Sign this PKCS#10 request instead of generating a key (the key never reaches talvault).
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// Sign with the Talos OS CA even when an issuer is active (if the policy allows it).
    #[arg(long)]
    pub direct: bool,
    /// Output.
    #[command(flatten)]
    pub dest: Destination,
    /// Sealed delivery.
    #[command(flatten)]
    pub sealing: SealArgs,
}

/// `talvault break-glass`
#[derive(Debug, Args)]
pub struct BreakGlassArgs {
    /// The environment.
    pub env: String,
    /// Why (mandatory; recorded in the certificate record and the audit trail).
    #[arg(long, required = true, value_name = "TEXT")]
    pub reason: String,
    /// Lifetime (default 1h; maximum from the policy, default 4h).
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Who the certificate is for (with --kubernetes: a registered holder, whose name is the
    /// default --user); with --seal, a registered holder.
    #[arg(long, value_name = "NAME")]
    pub holder: Option<String>,
    /// Talos API endpoint (repeatable; default: the environment's).
    #[arg(
        long = "endpoint",
        short = 'e',
        value_name = "ENDPOINT",
        conflicts_with = "kubernetes"
    )]
    pub endpoints: Vec<String>,
    /// A kubeconfig for the Kubernetes API instead: a system:masters certificate (or another
    /// group the policy marks privileged), which bypasses RBAC.
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: the Kubernetes user name (the certificate's CN; default: --holder).
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub user: Option<String>,
    /// With --kubernetes: a privileged group (repeatable; default system:masters).
    #[arg(long = "group", value_name = "GROUP", requires = "kubernetes")]
    pub groups: Vec<String>,
    /// With --kubernetes: the context's namespace (default `default`).
    #[arg(long, value_name = "NS", requires = "kubernetes")]
    pub namespace: Option<String>,
    /// With --kubernetes: the API server URL (default: the environment's Kubernetes endpoint).
    #[arg(long, value_name = "URL", requires = "kubernetes")]
    pub server: Option<String>,
    /// Sign with the Talos OS CA (with --kubernetes: the Kubernetes CA) even when an issuer is
    /// active (if the policy allows it).
    #[arg(long)]
    pub direct: bool,
    /// Output.
    #[command(flatten)]
    pub dest: Destination,
    /// Sealed delivery.
    #[command(flatten)]
    pub sealing: SealArgs,
}

/// `talvault issue`
pub fn issue(a: IssueArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let csr = match &a.csr {
        Some(p) => Some(SecretBytes::copy_from(&read_input(p, "CSR")?)),
        None => None,
    };
    let req = IssueRequest {
        env: a.env,
        roles: roles_arg(&a.roles)?,
        ttl: optional_ttl(a.ttl.as_deref())?,
        holder: holder_arg(a.holder.as_deref())?,
        context: a.context,
        endpoints: a.endpoints,
        nodes: a.nodes,
        csr,
        break_glass: None,
        direct: a.direct,
        delivery: delivery(&a.sealing),
    };
    run(req, &a.dest, o)
}

/// `talvault break-glass`
pub fn break_glass(a: BreakGlassArgs, o: &VaultOpts) -> Result<u8, CliError> {
    require_reason(&a.reason, "INC-123: API unreachable")?;
    let req = IssueRequest {
        env: a.env,
        ttl: optional_ttl(a.ttl.as_deref())?,
        holder: holder_arg(a.holder.as_deref())?,
        endpoints: a.endpoints,
        break_glass: Some(a.reason),
        direct: a.direct,
        delivery: delivery(&a.sealing),
        ..IssueRequest::default()
    };
    run(req, &a.dest, o)
}

/// The delivery `--seal`/`--armor` ask for.
pub(super) fn delivery(sealing: &SealArgs) -> Delivery {
    if sealing.seal {
        Delivery::Sealed {
            armor: sealing.armor,
        }
    } else {
        Delivery::Talosconfig
    }
}

/// Where the result goes: a talosconfig (new or merged), or a sealed file.
enum Target {
    Talosconfig(TalosconfigOutput),
    Sealed(Output),
}

fn run(req: IssueRequest, dest: &Destination, o: &VaultOpts) -> Result<u8, CliError> {
    let env = req.env.clone();
    let sealed = matches!(req.delivery, Delivery::Sealed { .. });
    let holder = req.holder.as_ref().map(|h| h.as_str().to_owned());
    let break_glass = req.break_glass.is_some();
    let csr = req.csr.is_some();
    let v = o.open_vault()?;
    // Identities are needed only for sealed keys (the bundle, an age-sealed issuer key); a
    // token-held issuer key needs none, and the vault says which file it could not open.
    let ctx = o.context(Opens::Secrets)?;
    let prepared = v.prepare_issue(req, &ctx)?;
    // Open the destination before anything is signed, recorded or audited.
    let out = if sealed {
        let default = sealed_file_name(
            holder.as_deref().unwrap_or("holder"),
            &env,
            DeliveryKind::Talosconfig,
        );
        Target::Sealed(Output::secret(
            dest.output.as_deref().unwrap_or(&default),
            dest.force,
        )?)
    } else {
        Target::Talosconfig(TalosconfigOutput::open(
            dest.output.as_deref(),
            dest.merge.as_deref(),
            prepared.context_name(),
            dest.replace,
            dest.force,
        )?)
    };
    let to_stdout = match &out {
        Target::Talosconfig(o) => o.is_stdout(),
        Target::Sealed(o) => o.is_stdout(),
    };
    let Issued {
        context_name,
        leaf,
        delivered,
        signed_by,
        in_token,
    } = prepared.issue(&ctx)?;
    let mut sealed_to = None;
    let written = match (out, delivered) {
        (Target::Talosconfig(out), Delivered::Talosconfig(context)) => {
            out.write(&context_name, context)
        }
        (Target::Sealed(out), Delivered::Sealed(sealed)) => {
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
            hint.push_str(&format!(
                "; the environment is tainted until `talvault env untaint {env} --reason …`"
            ));
        }
        CliError::new(format!(
            "certificate {} was issued but its talosconfig could not be written: {}",
            leaf.serial_hex, e.message
        ))
        .hint(hint)
    })?;
    let roles: Vec<&str> = leaf.roles.iter().map(|r| r.as_str()).collect();
    let mut msg = format!(
        "issued {} for {}: serial {}, roles {}, valid until {}\n",
        if break_glass {
            "a BREAK-GLASS os:admin certificate"
        } else {
            "a certificate"
        },
        holder.as_deref().unwrap_or("(no holder)"),
        leaf.serial_hex,
        roles.join(","),
        leaf.not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    );
    msg.push_str(&if signed_by == crate::model::OS_CA {
        "signed directly by the Talos OS CA (revocation needs expiry or an OS CA rotation; see `talvault issuer create`)\n".to_owned()
    } else {
        format!(
            "signed by issuer {signed_by}{}\n",
            if in_token {
                " inside its PKCS#11 token"
            } else {
                ""
            }
        )
    });
    match sealed_to {
        Some(n) => msg.push_str(&format!(
            "talosconfig context {context_name:?} sealed to {} ({n} recipient(s)) in {written}; they open it with `talvault open {written} --merge ~/.talos/config` or `age -d -i KEY`\n",
            holder.as_deref().unwrap_or_default()
        )),
        None => msg.push_str(&format!(
            "talosconfig context {context_name:?} written to {written}\n"
        )),
    }
    if csr {
        msg.push_str(
            "the talosconfig has no key: add yours with `talosctl config add` or insert \
             `key: $(base64 -w0 KEY.pem)` into the context\n",
        );
    }
    if break_glass {
        msg.push_str(&format!(
            "environment {env} is now marked tainted; clear it with `talvault env untaint {env} --reason …` once the incident is over\n"
        ));
    }
    // Report on stderr when the talosconfig itself went to stdout.
    if to_stdout {
        write_stderr(msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}
