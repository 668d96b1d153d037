//! EDGE: `talvault issue`, `break-glass`, `policy show` and `env untaint`: arguments, the
//! destination checks made before anything is signed, and writing the talosconfig.

use std::path::{Path, PathBuf};

use clap::Args;

use super::bundle::read_input;
use super::vault::{VaultOpts, context_for, open_vault_for, unlock_for, vault_err};
use super::{CliError, ExitCode, output, write_stdout};
use crate::secret::SecretBytes;
use crate::store::{Mode, write_atomic};
use crate::talosconfig::{self, Config};
use crate::vault::{IssueRequest, Issued};

/// Where the talosconfig goes.
#[derive(Debug, Args)]
pub struct Destination {
    /// Write a new talosconfig here (mode 0600; `-` for stdout when it is not a terminal).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "merge"
    )]
    pub output: Option<String>,
    /// Add the context to this existing talosconfig and make it current.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// With --merge: replace a context of the same name (never renamed).
    #[arg(long, requires = "merge")]
    pub replace: bool,
    /// With -o: overwrite an existing file.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `talvault issue`
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The environment.
    pub env: String,
    /// Role for the certificate (repeatable): os:admin, os:operator, os:reader, os:etcd:backup, …
    #[arg(long = "role", required = true, value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Lifetime: Go duration (`8h`, `90m`) or days/weeks (`7d`, `2w`); default from the policy.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Who the certificate is for (written into the CN).
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
    /// Who the certificate is for.
    #[arg(long, value_name = "NAME")]
    pub holder: Option<String>,
    /// Talos API endpoint (repeatable; default: the environment's).
    #[arg(long = "endpoint", short = 'e', value_name = "ENDPOINT")]
    pub endpoints: Vec<String>,
    /// Sign with the Talos OS CA even when an issuer is active (if the policy allows it).
    #[arg(long)]
    pub direct: bool,
    /// Output.
    #[command(flatten)]
    pub dest: Destination,
}

/// `talvault issue`
pub fn issue_cmd(a: IssueArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let csr = match &a.csr {
        Some(p) => Some(SecretBytes::copy_from(&read_input(p, "CSR")?)),
        None => None,
    };
    let req = IssueRequest {
        env: a.env,
        roles: a.roles,
        ttl: a.ttl,
        holder: a.holder,
        context: a.context,
        endpoints: a.endpoints,
        nodes: a.nodes,
        csr,
        break_glass: None,
        direct: a.direct,
    };
    run(req, &a.dest, o)
}

/// `talvault break-glass`
pub fn break_glass_cmd(a: BreakGlassArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    require_reason(&a.reason, "INC-123: API unreachable")?;
    let req = IssueRequest {
        env: a.env,
        ttl: a.ttl,
        holder: a.holder,
        endpoints: a.endpoints,
        break_glass: Some(a.reason),
        direct: a.direct,
        ..IssueRequest::default()
    };
    run(req, &a.dest, o)
}

fn run(req: IssueRequest, dest: &Destination, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let v = open_vault_for(o)?;
    let plan = v.issue_plan(&req).map_err(vault_err)?;
    // Refuse a bad destination before anything is signed, recorded or audited.
    let existing = match &dest.merge {
        Some(path) => {
            let bytes = read_input(path, "talosconfig")?;
            let cfg = Config::from_yaml(&bytes).map_err(|e| {
                CliError::new(format!(
                    "--merge {}: not a talosconfig: {e}",
                    path.display()
                ))
                .hint("merge into a file written by talosctl or talvault, or use -o FILE")
            })?;
            // A file with top-level keys talosctl does not know (a kubeconfig, say) is not a
            // talosconfig, even though the reader would keep those keys.
            if !cfg.extra.is_empty() {
                return Err(CliError::new(format!(
                    "--merge {}: not a talosconfig (unknown top-level keys: {})",
                    path.display(),
                    cfg.extra.names().join(", ")
                ))
                .hint("merge into a file written by talosctl or talvault, or use -o FILE"));
            }
            if cfg.contexts.contains_key(&plan.context) && !dest.replace {
                return Err(CliError::new(format!(
                    "--merge {}: context {:?} already exists",
                    path.display(),
                    plan.context
                ))
                .hint("pass --replace to replace it, or --context NAME for another name"));
            }
            Some((path.clone(), cfg))
        }
        None => {
            output::check_secret_destination(
                dest.output.as_deref().unwrap_or("talosconfig"),
                dest.force,
            )?;
            None
        }
    };
    // An identity is needed only for sealed keys (the bundle, an age-sealed issuer key); a
    // token-held issuer key needs none, and the vault says which file it could not open.
    let mut ctx = context_for(o, true)?;
    if v.env_sealing(&req.env).map_err(vault_err)? == crate::model::Sealing::Passphrase {
        unlock_for(&v, &req.env, o, &mut ctx)?;
    }
    let issued = v.issue(&req, &ctx).map_err(vault_err)?;
    drop(v);
    let csr = req.csr.is_some();
    let Issued {
        plan,
        leaf,
        context,
        signed_by,
        in_token,
    } = issued;
    let written = write_talosconfig(context, &plan.context, dest, existing)?;
    let roles: Vec<&str> = leaf.roles.iter().map(|r| r.as_str()).collect();
    let mut msg = format!(
        "issued {} for {}: serial {}, roles {}, valid until {}\n",
        if req.break_glass.is_some() {
            "a BREAK-GLASS os:admin certificate"
        } else {
            "a certificate"
        },
        req.holder.as_deref().unwrap_or("(no holder)"),
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
    msg.push_str(&format!(
        "talosconfig context {:?} written to {written}\n",
        plan.context
    ));
    if csr {
        msg.push_str(
            "the talosconfig has no key: add yours with `talosctl config add` or insert \
             `key: $(base64 -w0 KEY.pem)` into the context\n",
        );
    }
    if req.break_glass.is_some() {
        msg.push_str(&format!(
            "environment {} is now marked tainted; clear it with `talvault env untaint {} --reason …` once the incident is over\n",
            req.env, req.env
        ));
    }
    // Report on stderr when the talosconfig itself went to stdout.
    if dest.output.as_deref() == Some("-") {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}

fn write_talosconfig(
    context: talosconfig::Context,
    name: &str,
    dest: &Destination,
    existing: Option<(PathBuf, Config)>,
) -> Result<String, CliError> {
    if let Some((path, cfg)) = existing {
        let merged = talosconfig::merge(cfg, name, context, dest.replace)
            .map_err(|e| CliError::new(format!("--merge {}: {e}", path.display())))?;
        let yaml = merged.to_yaml();
        write_atomic(&path, yaml.expose().as_bytes(), Mode::Secret)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
        return Ok(path.display().to_string());
    }
    let target = dest
        .output
        .clone()
        .unwrap_or_else(|| "talosconfig".to_owned());
    let cfg = Config::single(name, context);
    let yaml = cfg.to_yaml();
    output::write_secret_output(&target, yaml.expose().as_bytes(), dest.force)?;
    Ok(if target == "-" {
        "stdout".into()
    } else {
        Path::new(&target).display().to_string()
    })
}

/// `talvault policy show ENV`
pub fn policy_show(env: &str, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let v = open_vault_for(o)?;
    let p = v.policy(env).map_err(vault_err)?;
    write_stdout(p.to_yaml().as_bytes())?;
    Ok(0)
}

/// A `--reason` that says something: a usage error (exit 2) before the vault is opened.
fn require_reason(reason: &str, example: &str) -> Result<(), CliError> {
    if reason.trim().is_empty() {
        return Err(CliError::new("--reason must not be empty")
            .hint(format!("say why, e.g. --reason \"{example}\""))
            .code(2));
    }
    Ok(())
}

/// `talvault env untaint ENV --reason TEXT`
pub fn untaint(env: &str, reason: &str, o: &VaultOpts) -> Result<ExitCode, CliError> {
    require_reason(reason, "INC-123 resolved, leaf expired")?;
    let v = open_vault_for(o)?;
    let ctx = context_for(o, false)?;
    v.untaint(env, reason, &ctx).map_err(vault_err)?;
    write_stdout(format!("environment {env} is no longer tainted\n").as_bytes())?;
    Ok(0)
}
