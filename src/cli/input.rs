//! EDGE: what the user hands the command line, read and parsed into domain types before any
//! vault call: input files (bounded, into wiped buffers), version contracts, TTLs, roles,
//! holders and holder names, serials, a kubeadm PKI directory and a talosconfig context. Errors here are usage
//! errors (exit 2) that name the option.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: reads the files the user names"
)]

use std::path::Path;

use zeroize::Zeroizing;

use super::error::CliError;
use crate::bundle::VersionContract;
use crate::bundle::import::KubernetesPki;
use crate::holder::HolderName;
use crate::kubeconfig::Kubeconfig;
use crate::pki::policy::Holder;
use crate::pki::role::Role;
use crate::pki::serial::Serial;
use crate::pki::ttl::Ttl;
use crate::secret::SecretBytes;
use crate::talosconfig::Config;

/// Largest input file read (a secrets.yaml is about 8 KiB; a machine config under 100 KiB).
const MAX_INPUT: u64 = 4 << 20;

/// Parses `--talos-version`.
pub fn contract_arg(v: Option<&str>) -> Result<VersionContract, CliError> {
    match v {
        None => Ok(VersionContract::Current),
        Some(v) => VersionContract::parse(v).map_err(|e| {
            CliError::usage(format!("--talos-version: {e}"))
                .hint("use a Talos version such as v1.7, 1.11 or v1.14.0")
        }),
    }
}

/// Parses a duration option (`--ttl`, `--lifetime`, `--expiring`).
pub fn ttl_arg(flag: &str, text: &str, example: &str) -> Result<Ttl, CliError> {
    Ttl::parse(text).map_err(|e| CliError::usage(format!("{flag}: {e}")).hint(example.to_owned()))
}

/// Parses `--ttl` when given.
pub fn optional_ttl(text: Option<&str>) -> Result<Option<Ttl>, CliError> {
    text.map(|t| {
        Ttl::parse(t).map_err(|e| {
            CliError::new(format!("--ttl: {e}")).hint(
                "a TTL is a Go duration such as 8h, 90m or 1h30m, or days/weeks such as 7d or 2w",
            )
        })
    })
    .transpose()
}

/// Parses the `--role` values.
pub fn roles_arg(texts: &[String]) -> Result<Vec<Role>, CliError> {
    Role::parse_set(texts.iter().map(String::as_str))
        .map_err(|e| CliError::new(format!("--role: {e}")))
}

/// Parses `--holder` when given.
pub fn holder_arg(text: Option<&str>) -> Result<Option<Holder>, CliError> {
    text.map(|h| Holder::parse(h).map_err(|e| CliError::new(format!("--holder: {e}"))))
        .transpose()
}

/// Parses a registered holder's name (`holder add|remove NAME`, `renew --holder`, `issue --seal
/// --holder`): a holder name that is also a safe file name.
pub fn holder_name_arg(flag: &str, text: &str) -> Result<HolderName, CliError> {
    HolderName::parse(text).map_err(|e| CliError::new(format!("{flag}: {e}")))
}

/// Parses a SERIAL argument.
pub fn serial_arg(text: &str) -> Result<Serial, CliError> {
    Serial::parse(text).map_err(|e| CliError::new(format!("SERIAL: {e}")))
}

/// Reads a whole input file (bounded), into a wiped buffer.
pub fn read_input(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let fail = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "check the path",
            std::io::ErrorKind::PermissionDenied => "check the file's permissions",
            _ => "",
        };
        let err = CliError::usage(format!(
            "cannot read {what} {}: {}",
            path.display(),
            io_reason(&e)
        ));
        if hint.is_empty() { err } else { err.hint(hint) }
    };
    let f = std::fs::File::open(path).map_err(fail)?;
    let meta = f.metadata().map_err(fail)?;
    if meta.is_dir() {
        return Err(CliError::usage(format!(
            "cannot read {what} {}: is a directory",
            path.display()
        )));
    }
    let too_large = || {
        CliError::usage(format!(
            "cannot read {what} {}: larger than {} MiB",
            path.display(),
            MAX_INPUT >> 20
        ))
    };
    // A regular file's size is known: refuse an oversized one without reading it.
    if meta.len() > MAX_INPUT {
        return Err(too_large());
    }
    // Pipes and devices are read up to the limit. Growing copies into fresh zeroizing buffers,
    // so no unwiped copy of a secret input (a passphrase through `<(…)`) is left behind.
    let limit = MAX_INPUT as usize + 1;
    match crate::secret::read_zeroizing(f, meta.len() as usize + 1, limit) {
        Ok(buf) if buf.len() < limit => Ok(buf),
        Ok(_) => Err(too_large()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(too_large()),
        Err(e) => Err(fail(e)),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Reads the files of a kubeadm PKI directory (for `bundle generate` and `env import`).
pub fn kubernetes_pki(dir: &Path) -> Result<KubernetesPki, CliError> {
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "{:?} is not a directory",
            dir.display().to_string()
        ))
        .hint("--from-kubernetes-pki takes a kubeadm PKI directory such as /etc/kubernetes/pki"));
    }
    let public = |name: &str| read_input(&dir.join(name), "file").map(|b| b.to_vec());
    let secret =
        |name: &str| read_input(&dir.join(name), "file").map(|b| SecretBytes::copy_from(&b));
    Ok(KubernetesPki {
        ca_crt: public("ca.crt")?,
        ca_key: secret("ca.key")?,
        etcd_ca_crt: public("etcd/ca.crt")?,
        etcd_ca_key: secret("etcd/ca.key")?,
        front_proxy_ca_crt: public("front-proxy-ca.crt")?,
        front_proxy_ca_key: secret("front-proxy-ca.key")?,
        sa_key: secret("sa.key")?,
    })
}

/// A talosconfig context's name, server CA and client certificate.
pub struct ContextCertificate {
    /// The context's name.
    pub name: String,
    /// Its `ca` (PEM).
    pub server_ca: Vec<u8>,
    /// Its `crt` (PEM).
    pub crt: Vec<u8>,
}

/// The chosen context (default: the current one) of a talosconfig; unreadable input exits 2.
pub fn talosconfig_context(
    path: &Path,
    context: Option<&str>,
) -> Result<ContextCertificate, CliError> {
    let bytes = read_input(path, "talosconfig")?;
    talosconfig_context_of(path, &bytes, context)
}

/// [`talosconfig_context`] of bytes already read from `path`.
pub fn talosconfig_context_of(
    path: &Path,
    bytes: &[u8],
    context: Option<&str>,
) -> Result<ContextCertificate, CliError> {
    let unreadable = |m: String| CliError::usage(m);
    let cfg = Config::from_yaml(bytes)
        .map_err(|e| unreadable(format!("{}: not a talosconfig: {e}", path.display())))?;
    let name = context.unwrap_or(&cfg.context).to_owned();
    let ctx = cfg.contexts.get(&name).ok_or_else(|| {
        unreadable(format!("{}: no context {name:?}", path.display())).hint(format!(
            "contexts: {}",
            cfg.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let server_ca = ctx
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
    Ok(ContextCertificate {
        name,
        server_ca,
        crt,
    })
}

/// Whether a client configuration file is a kubeconfig rather than a talosconfig.
pub fn looks_like_kubeconfig(bytes: &[u8]) -> bool {
    crate::kubeconfig::looks_like_kubeconfig(bytes)
}

/// The chosen context (default: the current one) of a kubeconfig: its cluster's CA and its
/// user's client certificate; unreadable input exits 2.
pub fn kubeconfig_context(
    path: &Path,
    bytes: &[u8],
    context: Option<&str>,
) -> Result<ContextCertificate, CliError> {
    let cfg = Kubeconfig::from_yaml(bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    let c = cfg.context_credentials(context).map_err(|e| {
        let contexts = cfg.contexts();
        let err = CliError::usage(format!("{}: {e}", path.display()));
        if contexts.is_empty() {
            err.hint("the file has no contexts")
        } else {
            err.hint(format!("contexts: {}", contexts.join(", ")))
        }
    })?;
    Ok(ContextCertificate {
        name: c.context,
        server_ca: c.server_ca,
        crt: c.certificate,
    })
}
