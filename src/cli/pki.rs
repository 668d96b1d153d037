//! EDGE: `talvault issuer`, `patch accepted-cas`, `revoke`, `crl`, `verify` and `status`:
//! arguments, rendering (text, JSON, Prometheus) and exit codes. The steps themselves are in
//! `vault.rs`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::bundle::read_input;
use super::vault::{VaultOpts, context_for, open_vault_for, unlock_for, vault_err};
use super::{CliError, ExitCode, write_stdout};
use crate::keys::KeyAlgorithm;
use crate::pki::crl::RevocationReason;
use crate::pki::ttl::Ttl;
use crate::store::{Mode, write_atomic};
use crate::talosconfig::Config;
use crate::vault::{
    DEFAULT_ISSUER_LIFETIME, EnvStatus, IssuerChange, IssuerView, LiveCert, NewIssuer,
    NewIssuerKey, RevokeOutcome, RevokeTarget, Verification,
};

/// Issuer key algorithms.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssuerAlgorithm {
    /// Ed25519 (as the Talos OS CA).
    Ed25519,
    /// ECDSA P-256 (what most hardware tokens sign).
    EcdsaP256,
}

impl From<IssuerAlgorithm> for KeyAlgorithm {
    fn from(a: IssuerAlgorithm) -> Self {
        match a {
            IssuerAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
            IssuerAlgorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        }
    }
}

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// For people.
    Text,
    /// Stable JSON for scripts (docs/revocation.md).
    Json,
}

/// `talvault issuer …`
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Create a client-issuing CA for the environment (pending until activated).
    Create(CreateArgs),
    /// Create the next issuer as pending: step 1 of "add next, switch, drop old".
    Rotate(CreateArgs),
    /// Let a pending issuer sign new certificates.
    Activate {
        /// The environment.
        env: String,
        /// The issuer id.
        id: String,
    },
    /// Retire an issuer: the next accepted-cas patch drops it, cutting off all it signed.
    Retire {
        /// The environment.
        env: String,
        /// The issuer id.
        id: String,
        /// Retire the only active issuer even though certificates it signed are still live.
        #[arg(long)]
        force: bool,
    },
    /// List issuers: state, algorithm, validity, certificates issued and still live.
    List {
        /// The environment.
        env: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
}

/// `issuer create` / `issuer rotate`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The environment.
    pub env: String,
    /// Key algorithm.
    #[arg(long, value_enum)]
    pub algorithm: Option<IssuerAlgorithm>,
    /// Lifetime of the issuer certificate.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_ISSUER_LIFETIME)]
    pub lifetime: String,
    /// Keep the issuer key in a PKCS#11 token, named by an RFC 7512 URI
    /// ('pkcs11:token=…;object=…?module-path=…&pin-source=…'); it never leaves the token.
    #[arg(long, value_name = "URI")]
    pub pkcs11: Option<String>,
    /// With --pkcs11: generate the key pair in the token (sensitive, not extractable).
    #[arg(long, requires = "pkcs11")]
    pub generate: bool,
    /// With --pkcs11: accept a key that may leave the token (extractable or not sensitive).
    #[arg(long, requires = "pkcs11")]
    pub danger_allow_extractable: bool,
}

/// `talvault patch …`
#[derive(Debug, Subcommand)]
pub enum PatchCommand {
    /// The machine-config patch that sets machine.acceptedCAs to exactly the pending and active
    /// issuers (for `talosctl patch machineconfig --patch @FILE`).
    AcceptedCas {
        /// The environment.
        env: String,
        /// Also keep accepting this CA certificate (PEM; repeatable), e.g. during an OS CA rotation.
        #[arg(long = "keep-ca", value_name = "FILE")]
        keep: Vec<PathBuf>,
        /// Write the patch here instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `talvault revoke`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The environment.
    pub env: String,
    /// The certificate serial (hex; `openssl x509 -serial` form accepted).
    #[arg(
        required_unless_present = "talosconfig",
        conflicts_with = "talosconfig"
    )]
    pub serial: Option<String>,
    /// Revoke the client certificate of this talosconfig instead.
    #[arg(long, value_name = "FILE")]
    pub talosconfig: Option<PathBuf>,
    /// With --talosconfig: the context (default: its current context).
    #[arg(long, value_name = "NAME", requires = "talosconfig")]
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
    /// The issuer (default: the one that signs now).
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
    /// The talosconfig to check.
    pub talosconfig: PathBuf,
    /// The context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: ListFormat,
}

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

/// The context for commands that may open an issuer key: identities when given (a sealed key
/// needs one; a token key or a direct-mode revocation does not), and the passphrase of a
/// passphrase-sealed environment.
fn unlocked_if_sealed_keys(
    v: &crate::vault::Vault,
    env: &str,
    o: &VaultOpts,
) -> Result<crate::vault::Context, CliError> {
    let mut ctx = context_for(o, true)?;
    if v.env_sealing(env).map_err(vault_err)? == crate::model::Sealing::Passphrase {
        unlock_for(v, env, o, &mut ctx)?;
    }
    Ok(ctx)
}

fn usage(message: String) -> CliError {
    CliError::new(message).code(2)
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CliError> {
    let mut out = serde_json::to_vec_pretty(value)
        .map_err(|e| CliError::new(format!("cannot render JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

fn issuer_line(v: &IssuerView) -> String {
    format!(
        "{:<12} {:<8}{} {:<10} {:<6} {} .. {}  issued {}, live {}",
        v.id,
        v.state.as_str(),
        if v.signing { "*" } else { " " },
        v.algorithm,
        v.key_store,
        v.not_before,
        v.not_after,
        v.issued,
        v.live
    )
}

fn cert_line(c: &LiveCert) -> String {
    format!(
        "  {}  {}  {}  by {}  until {}{}",
        c.serial,
        c.holder.as_deref().unwrap_or("(no holder)"),
        c.roles.join(","),
        c.issuer,
        c.not_after,
        if c.break_glass { "  BREAK-GLASS" } else { "" }
    )
}

/// `talvault issuer …`
pub fn issuer_cmd(cmd: IssuerCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let v = open_vault_for(o)?;
    match cmd {
        IssuerCommand::Create(a) => create(&v, a, false, o),
        IssuerCommand::Rotate(a) => create(&v, a, true, o),
        IssuerCommand::Activate { env, id } => {
            let ctx = context_for(o, false)?;
            v.issuer_activate(&env, &id, &ctx).map_err(vault_err)?;
            v.save_caches();
            let mut msg = format!("issuer {id} is active and signs new certificates\n");
            let _ = writeln!(
                msg,
                "re-issue the certificates of older issuers, then retire them with `talvault issuer retire {env} OLD-ID` and roll out `talvault patch accepted-cas {env}`"
            );
            write_stdout(msg.as_bytes())?;
            Ok(0)
        }
        IssuerCommand::Retire { env, id, force } => {
            let ctx = context_for(o, false)?;
            let IssuerChange {
                cut_off, untainted, ..
            } = v.issuer_retire(&env, &id, force, &ctx).map_err(vault_err)?;
            v.save_caches();
            let mut msg = format!("issuer {id} is retired\n");
            let _ = writeln!(
                msg,
                "now roll out the patch that drops it: talvault patch accepted-cas {env} -o accepted-cas.yaml && talosctl patch machineconfig --nodes ALL-NODES --patch @accepted-cas.yaml"
            );
            if !cut_off.is_empty() {
                let _ = writeln!(
                    msg,
                    "{} live certificate(s) it signed stop working once nodes apply the patch:",
                    cut_off.len()
                );
                for c in &cut_off {
                    let _ = writeln!(msg, "{}", cert_line(c));
                }
            }
            if untainted {
                let _ = writeln!(
                    msg,
                    "environment {env} is no longer tainted: the break-glass certificate was signed by {id}"
                );
            }
            write_stdout(msg.as_bytes())?;
            Ok(0)
        }
        IssuerCommand::List { env, format } => {
            let ctx = context_for(o, false)?;
            let list = v.issuer_list(&env, &ctx).map_err(vault_err)?;
            v.save_caches();
            match format {
                ListFormat::Json => write_stdout(&json(&list)?)?,
                ListFormat::Text => {
                    let mut msg = String::new();
                    if list.is_empty() {
                        let _ = writeln!(
                            msg,
                            "environment {env} has no issuers (certificates are signed directly by the Talos OS CA); create one with `talvault issuer create {env}`"
                        );
                    }
                    for i in &list {
                        let _ = writeln!(msg, "{}", issuer_line(i));
                    }
                    write_stdout(msg.as_bytes())?;
                }
            }
            Ok(0)
        }
    }
}

fn create(
    v: &crate::vault::Vault,
    a: CreateArgs,
    rotate: bool,
    o: &VaultOpts,
) -> Result<ExitCode, CliError> {
    let lifetime = Ttl::parse(&a.lifetime)
        .map_err(|e| usage(format!("--lifetime: {e}")).hint("e.g. --lifetime 8760h or 365d"))?;
    let current = v
        .issuer_list(&a.env, &context_for(o, false)?)
        .map_err(vault_err)?;
    let signing = current.iter().find(|i| i.signing);
    // rotate keeps the algorithm of the issuer that signs now, unless told otherwise; an
    // existing token key has its own.
    let algorithm = match (a.algorithm, signing) {
        (Some(alg), _) => Some(alg.into()),
        (None, Some(s)) if rotate && s.algorithm == "ecdsa-p256" => Some(KeyAlgorithm::EcdsaP256),
        (None, _) if a.pkcs11.is_some() && !a.generate => None,
        _ => Some(KeyAlgorithm::Ed25519),
    };
    let key = match &a.pkcs11 {
        Some(uri) => NewIssuerKey::Pkcs11 {
            uri: uri.clone(),
            generate: a.generate,
            allow_extractable: a.danger_allow_extractable,
        },
        None => NewIssuerKey::Sealed,
    };
    let mut ctx = context_for(o, false)?;
    // Sealing to recipients needs no identity; a passphrase environment needs its passphrase.
    if v.env_sealing(&a.env).map_err(vault_err)? == crate::model::Sealing::Passphrase {
        unlock_for(v, &a.env, o, &mut ctx)?;
    }
    let view = v
        .issuer_create(
            &NewIssuer {
                env: a.env.clone(),
                algorithm,
                key,
                lifetime,
            },
            &ctx,
        )
        .map_err(vault_err)?;
    v.save_caches();
    let env = &a.env;
    let id = &view.id;
    let mut msg = format!(
        "created issuer {id} ({}, {}, valid until {}), pending\n",
        view.algorithm, view.subject, view.not_after
    );
    if view.key_store == "pkcs11" {
        let _ = writeln!(
            msg,
            "its key is in the PKCS#11 token and never leaves it; the certificate was signed there"
        );
    }
    let _ = writeln!(msg, "next steps:");
    let _ = writeln!(
        msg,
        "  1. talvault patch accepted-cas {env} -o accepted-cas.yaml  and apply it to every node (control planes and workers):\n     talosctl patch machineconfig --nodes ALL-NODES --patch @accepted-cas.yaml"
    );
    let _ = writeln!(
        msg,
        "  2. talvault issuer activate {env} {id}  once every node has the patch"
    );
    if rotate && let Some(old) = signing {
        let _ = writeln!(
            msg,
            "  3. re-issue the {} live certificate(s) of {}, then: talvault issuer retire {env} {}  and roll out a fresh accepted-cas patch",
            old.live, old.id, old.id
        );
    }
    write_stdout(msg.as_bytes())?;
    Ok(0)
}

/// `talvault patch accepted-cas`
pub fn patch_cmd(cmd: PatchCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let PatchCommand::AcceptedCas { env, keep, output } = cmd;
    let v = open_vault_for(o)?;
    let mut cas: Vec<crate::patch::AcceptedCa> = v
        .accepted_cas(&env)
        .map_err(vault_err)?
        .into_iter()
        .map(|(label, certificate_pem)| crate::patch::AcceptedCa {
            label,
            certificate_pem,
        })
        .collect();
    for path in &keep {
        let bytes = read_input(path, "CA certificate")?;
        crate::pki::verify::certificate_der(&bytes)
            .and_then(|der| crate::pki::verify::leaf_facts(&der).map(|_| ()))
            .map_err(|e| usage(format!("--keep-ca {}: {e}", path.display())))?;
        cas.push(crate::patch::AcceptedCa {
            label: format!("kept: {}", path.display()),
            certificate_pem: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let patch = crate::patch::accepted_cas_patch(&cas).map_err(|e| CliError::new(e.to_string()))?;
    match output {
        Some(path) => {
            write_atomic(&path, patch.as_bytes(), Mode::Public)
                .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
            write_stdout(
                format!(
                    "wrote {} ({} CA(s)); apply it to every node: talosctl patch machineconfig --nodes ALL-NODES --patch @{}\n",
                    path.display(),
                    cas.len(),
                    path.display()
                )
                .as_bytes(),
            )?;
        }
        None => write_stdout(patch.as_bytes())?,
    }
    Ok(0)
}

/// The chosen context's server CA and client certificate.
fn talosconfig_context(
    path: &std::path::Path,
    context: Option<&str>,
) -> Result<(String, Vec<u8>, Vec<u8>), CliError> {
    let unreadable = |m: String| CliError::new(m).code(2);
    let bytes = read_input(path, "talosconfig")?;
    let cfg = Config::from_yaml(&bytes)
        .map_err(|e| unreadable(format!("{}: not a talosconfig: {e}", path.display())))?;
    let name = context.unwrap_or(&cfg.context).to_owned();
    let ctx = cfg.contexts.get(&name).ok_or_else(|| {
        unreadable(format!("{}: no context {name:?}", path.display())).hint(format!(
            "contexts: {}",
            cfg.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let ca = ctx
        .ca_pem(&name)
        .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
    let crt = ctx
        .crt_pem(&name)
        .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
    if crt.is_empty() {
        return Err(unreadable(format!(
            "{}: context {name:?} has no client certificate",
            path.display()
        )));
    }
    Ok((name, ca, crt))
}

fn duration_text(seconds: i64) -> String {
    let (d, h, m) = (seconds / 86400, seconds % 86400 / 3600, seconds % 3600 / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else {
        format!("{h}h{m}m")
    }
}

/// `talvault revoke`
pub fn revoke_cmd(a: RevokeArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let reason: RevocationReason = a
        .reason
        .parse()
        .map_err(|e| usage(format!("--reason: {e}")))?;
    let target = match (&a.serial, &a.talosconfig) {
        (Some(s), None) => RevokeTarget::Serial(s.clone()),
        (None, Some(path)) => {
            let (_, server_ca, crt) = talosconfig_context(path, a.context.as_deref())?;
            RevokeTarget::Certificate { server_ca, crt }
        }
        _ => return Err(usage("give a SERIAL or --talosconfig FILE".into())),
    };
    let v = open_vault_for(o)?;
    let ctx = unlocked_if_sealed_keys(&v, &a.env, o)?;
    let out = v.revoke(&a.env, &target, reason, &ctx).map_err(vault_err)?;
    v.save_caches();
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
            c.holder.as_deref().unwrap_or("no holder"),
            c.roles.join(","),
            out.reason
        )
    };
    if let Some(crl) = &out.crl {
        // The CRL is the certificate's issuer's, signed with its key wherever that lives.
        let in_token = out.issuer.as_ref().is_some_and(|i| i.key_store == "pkcs11");
        let _ = writeln!(
            msg,
            "CRL regenerated: {crl}{}",
            if in_token {
                " (signed inside its PKCS#11 token)"
            } else {
                ""
            }
        );
    }
    if out.remaining_seconds == 0 {
        let _ = writeln!(msg, "it has already expired: nothing more to do");
        return msg;
    }
    let _ = writeln!(
        msg,
        "Talos checks no CRL: this certificate keeps working for {} (until {}) unless access is cut:",
        duration_text(out.remaining_seconds),
        c.not_after
    );
    match &out.issuer {
        Some(i) if i.state == crate::model::IssuerState::Retired => {
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

/// `talvault crl`
pub fn crl_cmd(a: CrlArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let v = open_vault_for(o)?;
    if a.format == CrlFormat::Json {
        if a.der || a.issuer.is_some() {
            return Err(usage(
                "--format json lists every revocation of the environment; it takes neither --der nor --issuer"
                    .into(),
            ));
        }
        let ctx = context_for(o, false)?;
        let list = v.denylist(&a.env, &ctx).map_err(vault_err)?;
        v.save_caches();
        let bytes = json(&list)?;
        return emit(&a.output, &bytes);
    }
    let ctx = unlocked_if_sealed_keys(&v, &a.env, o)?;
    let crl = v
        .crl(&a.env, a.issuer.as_deref(), &ctx)
        .map_err(vault_err)?;
    v.save_caches();
    let bytes = if a.der {
        crl.der.clone()
    } else {
        crl.der_pem()
    };
    emit(&a.output, &bytes)?;
    if a.output.is_some() {
        write_stdout(
            format!(
                "CRL number {} of issuer {} with {} entries, signed {} (also stored as {})\n",
                crl.number,
                crl.issuer,
                crl.entries,
                if crl.in_token {
                    "inside its PKCS#11 token"
                } else {
                    "with its sealed key"
                },
                crl.stored
            )
            .as_bytes(),
        )?;
    }
    Ok(0)
}

fn emit(output: &Option<PathBuf>, bytes: &[u8]) -> Result<ExitCode, CliError> {
    match output {
        Some(path) => write_atomic(path, bytes, Mode::Public)
            .map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?,
        None => write_stdout(bytes)?,
    }
    Ok(0)
}

/// `talvault verify`: exit 0 good, 1 not good, 2 unreadable.
pub fn verify_cmd(a: VerifyArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let (context, server_ca, crt) = talosconfig_context(&a.talosconfig, a.context.as_deref())?;
    let v = open_vault_for(o)?;
    let ctx = context_for(o, false)?;
    let report = v
        .verify(&a.env, &context, &server_ca, &crt, &ctx)
        .map_err(|e| match e {
            crate::vault::VaultError::Unreadable(m) => {
                CliError::new(format!("{}: {m}", a.talosconfig.display())).code(2)
            }
            other => vault_err(other),
        })?;
    match a.format {
        ListFormat::Json => write_stdout(&json(&report)?)?,
        ListFormat::Text => write_stdout(verify_text(&report).as_bytes())?,
    }
    Ok(if report.good { 0 } else { 1 })
}

fn verify_text(r: &Verification) -> String {
    let mut msg = format!(
        "{}: context {:?}, serial {}, roles {}, holder {}, signed by {}\n",
        if r.good { "GOOD" } else { "NOT GOOD" },
        r.context,
        r.serial,
        r.roles.join(","),
        r.holder.as_deref().unwrap_or("(none)"),
        r.signed_by.as_deref().unwrap_or("(unknown CA)")
    );
    for c in &r.checks {
        let _ = writeln!(msg, "  {:<4} {:<12} {}", c.result, c.check, c.detail);
    }
    msg
}

/// `talvault status`: exit 0 fine, 1 something expires within --expiring, 2 something expired
/// or tainted.
pub fn status_cmd(a: StatusArgs, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let window = Ttl::parse(&a.expiring)
        .map_err(|e| usage(format!("--expiring: {e}")).hint("e.g. --expiring 720h or 30d"))?;
    let v = open_vault_for(o)?;
    let ctx = context_for(o, false)?;
    let report = v
        .status(a.env.as_deref(), window.as_duration(), &ctx)
        .map_err(vault_err)?;
    v.save_caches();
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
    Ok(grade)
}

fn status_table(report: &[EnvStatus]) -> String {
    let mut msg = String::new();
    for s in report {
        let _ = writeln!(
            msg,
            "{} (cluster {}): {}",
            s.env,
            s.cluster_name,
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
        for f in &s.findings {
            let _ = writeln!(msg, "  {}: {}", f.kind.to_uppercase(), f.what);
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
        "# HELP talvault_certificates Client certificates recorded in the vault, by state."
    );
    let _ = writeln!(m, "# TYPE talvault_certificates gauge");
    for s in report {
        let env = label(&s.env);
        for (state, n) in [
            ("live", s.counts.live),
            ("expired", s.counts.expired),
            ("revoked", s.counts.revoked),
            ("revoked_unexpired", s.counts.revoked_unexpired),
            ("issued", s.counts.issued),
        ] {
            let _ = writeln!(
                m,
                "talvault_certificates{{env=\"{env}\",state=\"{state}\"}} {n}"
            );
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
                "talvault_issuer_not_after_seconds{{env=\"{}\",issuer=\"{}\",state=\"{}\"}} {}",
                label(&s.env),
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
        if let Some(first) = s.live.first() {
            let _ = writeln!(
                m,
                "talvault_next_certificate_expiry_seconds{{env=\"{}\"}} {}",
                label(&s.env),
                parse(&first.not_after)
            );
        }
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

/// `talvault hsm …`
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Show what a PKCS#11 token offers talvault: module, token, the mechanisms each algorithm
    /// needs, and whether the named key is sensitive and never extractable and signs (one test
    /// signature, checked against its public key object).
    Check {
        /// The RFC 7512 `pkcs11:` URI (token, and object/id for a key).
        uri: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
}

/// `talvault hsm check`: exit 0 when the token (and the key, if named) will work, 1 when not.
pub fn hsm_cmd(cmd: HsmCommand, o: &VaultOpts) -> Result<ExitCode, CliError> {
    let HsmCommand::Check { uri, format } = cmd;
    let parsed = talvault_hsm::Pkcs11Uri::parse(&uri).map_err(|e| {
        let hint = e.hint();
        let err = usage(format!("URI: {e}"));
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    })?;
    let ctx = context_for(o, false)?;
    let report = talvault_hsm::check(
        &parsed,
        &talvault_hsm::OpenOptions {
            pin_prompt: ctx.pin_prompt.as_deref(),
            ..talvault_hsm::OpenOptions::default()
        },
    )
    .map_err(|e| vault_err(crate::vault::VaultError::Hsm(e)))?;
    match format {
        ListFormat::Json => write_stdout(&json(&report)?)?,
        ListFormat::Text => write_stdout(report.to_text().as_bytes())?,
    }
    // Usable: the named key would be accepted, or (no key named) some algorithm is fully offered.
    let usable = match &report.key {
        Some(k) => k.usable,
        None => report.algorithms.iter().any(|a| a.usable),
    };
    Ok(if usable { 0 } else { 1 })
}
