//! PURE: the public metadata files of a vault (`talvault.yaml`, `envs/ENV/env.yaml`,
//! `issuers/ID/issuer.yaml`, `certs/SERIAL.yaml`, `revocations/SERIAL.yaml`) as types.
//!
//! These files are meant to be reviewed in pull requests, so they are plain YAML with stable
//! field names, read strictly (unknown fields refused) and versioned. They never hold a secret.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bundle::{CaName, SecretsBundle, VersionContract};
use crate::digest::Fingerprint;

/// The vault format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The vault's marker file at its root.
pub const VAULT_FILE: &str = "talvault.yaml";

/// A metadata file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MetaError {
    /// Malformed YAML or wrong shape (value-free message).
    #[error("{file}: {message}")]
    Malformed {
        /// The file (relative to the vault).
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Written by a newer talvault.
    #[error("{file}: format version {found} is newer than this talvault understands ({supported})")]
    NewerFormat {
        /// The file.
        file: String,
        /// Its version.
        found: u32,
        /// What this build supports.
        supported: u32,
    },
}

/// Largest metadata file parsed (the vault reads them with the same bound).
const YAML_MAX: usize = 1 << 20;

/// Parses a small YAML file talvault reads (vault metadata, the operator's configuration):
/// the nesting check first, then serde with positions only in the message.
pub fn parse_yaml<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    parse("", bytes).map_err(|e| match e {
        MetaError::Malformed { message, .. } => message,
        other => other.to_string(),
    })
}

/// Reads a metadata file strictly (nesting bounded first), with a value-free message (`file`
/// names it).
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
    file: &str,
    bytes: &[u8],
) -> Result<T, MetaError> {
    crate::nesting::check(bytes, YAML_MAX).map_err(|e| MetaError::Malformed {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    serde_yaml::from_slice(bytes).map_err(|e| MetaError::Malformed {
        file: file.to_owned(),
        message: match e.location() {
            Some(l) => format!(
                "{} (line {}, column {})",
                first_clause(&e.to_string()),
                l.line(),
                l.column()
            ),
            None => first_clause(&e.to_string()),
        },
    })
}

/// Keeps the part of a serde message before any quoted value and location.
fn first_clause(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    match msg.find(['`', '"']) {
        Some(_) if msg.starts_with("unknown field") || msg.contains("missing field") => {
            msg.split(", expected").next().unwrap_or(msg).to_owned()
        }
        Some(i) => msg[..i].trim_end().to_owned(),
        None => msg.to_owned(),
    }
}

/// The vault format this build writes: 2 adds the vault id and authenticated audit events.
pub const VAULT_FORMAT: u32 = 2;

/// Default clock tolerance between machines: an event dated up to this long before its parent
/// is a warning in `audit verify`, not a finding.
pub const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 300;

/// `talvault.yaml` at the vault root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault format version (1: hash-linked events only; 2: authenticated events).
    pub format_version: u32,
    /// Format 2: the vault's random id, which every event names (so none can be replayed into
    /// another vault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    /// How far an event may be dated before its parent (machines' clocks differ) before `audit
    /// verify` calls it a finding (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<crate::pki::ttl::Ttl>,
}

impl VaultConfig {
    /// A new vault's configuration (format 2) with its id.
    pub fn new(vault_id: String) -> Self {
        Self {
            format_version: VAULT_FORMAT,
            vault_id: Some(vault_id),
            clock_skew: None,
        }
    }

    /// Reads and checks the version.
    pub fn from_yaml(bytes: &[u8]) -> Result<Self, MetaError> {
        let c: Self = parse("talvault.yaml", bytes)?;
        if c.format_version > VAULT_FORMAT {
            return Err(MetaError::NewerFormat {
                file: "talvault.yaml".into(),
                found: c.format_version,
                supported: VAULT_FORMAT,
            });
        }
        if c.format_version >= 2
            && !c
                .vault_id
                .as_deref()
                .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(MetaError::Malformed {
                file: "talvault.yaml".into(),
                message: "format 2 needs a vault_id of 32 hex digits".into(),
            });
        }
        Ok(c)
    }

    /// Whether events are authenticated (format 2).
    pub fn sealed(&self) -> bool {
        self.format_version >= 2
    }

    /// The clock tolerance in seconds.
    pub fn clock_skew_seconds(&self) -> i64 {
        self.clock_skew
            .map_or(DEFAULT_CLOCK_SKEW_SECONDS, |t| t.as_seconds() as i64)
    }

    /// Renders the file.
    pub fn to_yaml(&self) -> String {
        let mut s = format!(
            "# talvault vault. Public metadata; secrets live only in .age files.\nformat_version: {}\n",
            self.format_version
        );
        if let Some(id) = &self.vault_id {
            s.push_str(&format!("vault_id: {id}\n"));
        }
        if let Some(skew) = self.clock_skew {
            s.push_str(&format!("clock_skew: {skew}\n"));
        }
        s
    }
}

/// SHA-256 pins of the four CA certificates of an environment's bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// `certs.etcd`
    pub etcd: Fingerprint,
    /// `certs.k8s`
    pub k8s: Fingerprint,
    /// `certs.k8saggregator`
    pub k8saggregator: Fingerprint,
    /// `certs.os`
    pub os: Fingerprint,
}

impl Pins {
    /// Pins of a bundle's CA certificates (DER SHA-256); `None` when a CA is missing.
    pub fn of(bundle: &SecretsBundle) -> Option<Self> {
        let certs = bundle.certs.as_ref()?;
        let pin = |n: CaName| -> Option<Fingerprint> {
            let der = crate::bundle::validate::parse_cert(&certs.ca(n)?.crt).ok()?;
            Some(Fingerprint::of(&der))
        };
        Some(Self {
            etcd: pin(CaName::Etcd)?,
            k8s: pin(CaName::K8s)?,
            k8saggregator: pin(CaName::K8sAggregator)?,
            os: pin(CaName::Os)?,
        })
    }

    /// The CAs whose pin differs from `other`'s.
    pub fn mismatches(&self, other: &Pins) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (name, a, b) in [
            ("etcd", &self.etcd, &other.etcd),
            ("k8s", &self.k8s, &other.k8s),
            ("k8saggregator", &self.k8saggregator, &other.k8saggregator),
            ("os", &self.os, &other.os),
        ] {
            if a != b {
                out.push(name);
            }
        }
        out
    }
}

/// The four CA certificates of an environment's bundle, PEM (public).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaCertificates {
    /// `certs.etcd.crt`
    pub etcd: String,
    /// `certs.k8s.crt`
    pub k8s: String,
    /// `certs.k8saggregator.crt`
    pub k8saggregator: String,
    /// `certs.os.crt`: the Talos API CA, `ca` of every talosconfig.
    pub os: String,
}

impl CaCertificates {
    /// The certificates of a bundle; `None` when a CA is missing.
    pub fn of(bundle: &SecretsBundle) -> Option<Self> {
        let certs = bundle.certs.as_ref()?;
        let pem = |n: CaName| -> Option<String> {
            Some(String::from_utf8_lossy(&certs.ca(n)?.crt).into_owned())
        };
        Some(Self {
            etcd: pem(CaName::Etcd)?,
            k8s: pem(CaName::K8s)?,
            k8saggregator: pem(CaName::K8sAggregator)?,
            os: pem(CaName::Os)?,
        })
    }

    /// Their pins; `Err(name)` names one that does not parse.
    fn pins(&self) -> Result<Pins, &'static str> {
        let pin = |name: &'static str, pem: &str| {
            crate::bundle::validate::parse_cert(pem.as_bytes())
                .map(|der| Fingerprint::of(&der))
                .map_err(|_| name)
        };
        Ok(Pins {
            etcd: pin("etcd", &self.etcd)?,
            k8s: pin("k8s", &self.k8s)?,
            k8saggregator: pin("k8saggregator", &self.k8saggregator)?,
            os: pin("os", &self.os)?,
        })
    }

    /// The certificates by name, in Talos order.
    pub fn named(&self) -> [(&'static str, &str); 4] {
        [
            ("etcd", &self.etcd),
            ("k8s", &self.k8s),
            ("k8saggregator", &self.k8saggregator),
            ("os", &self.os),
        ]
    }
}

/// Why an environment is tainted (a break-glass certificate exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    /// When (RFC 3339).
    pub since: String,
    /// The recorded reason.
    pub reason: String,
    /// The break-glass certificate serial, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// `envs/ENV/env.yaml`: the public facts of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvMeta {
    /// Format version of this file.
    pub format_version: u32,
    /// Environment name (matches the directory).
    pub name: String,
    /// Cluster name (talosconfig context names, `gen config`).
    pub cluster_name: String,
    /// Version contract, `current` or `vMAJOR.MINOR`.
    pub talos_version: String,
    /// Talos API endpoints for talosconfigs.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Default nodes for talosconfigs.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The Kubernetes API server URL for kubeconfigs (`server`); absent: derived from the first
    /// endpoint ([`EnvMeta::kubernetes_server`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_endpoint: Option<String>,
    /// How the bundle came to be: `generated`, `secrets`, `kubernetes-pki`, `controlplane-config`.
    pub source: String,
    /// What the secrets are sealed to: `recipients` (recipients.txt) or `passphrase` (scrypt).
    #[serde(default = "default_sealing")]
    pub sealing: Sealing,
    /// When the environment was created (RFC 3339).
    pub created: String,
    /// CA certificate pins; every open checks the bundle against them.
    pub pins: Pins,
    /// The four CA certificates (public), so that `verify`, `status` and issuer-mode issuance
    /// need not open the sealed bundle. Each must match its pin.
    pub certificates: CaCertificates,
    /// Set while a break-glass certificate is live and its issuer not yet rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tainted: Option<Taint>,
}

impl EnvMeta {
    /// Reads `env.yaml`.
    pub fn from_yaml(file: &str, bytes: &[u8]) -> Result<Self, MetaError> {
        let m: Self = parse(file, bytes)?;
        if m.format_version > FORMAT_VERSION {
            return Err(MetaError::NewerFormat {
                file: file.into(),
                found: m.format_version,
                supported: FORMAT_VERSION,
            });
        }
        match m.certificates.pins() {
            Ok(pins) => {
                if let Some(ca) = m.pins.mismatches(&pins).first() {
                    return Err(MetaError::Malformed {
                        file: file.into(),
                        message: format!("certificates.{ca} does not match pins.{ca}"),
                    });
                }
            }
            Err(ca) => {
                return Err(MetaError::Malformed {
                    file: file.into(),
                    message: format!("certificates.{ca} is not a PEM certificate"),
                });
            }
        }
        Ok(m)
    }

    /// Renders `env.yaml`.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        serde_yaml::to_string(self).map_err(|e| MetaError::Malformed {
            file: "env.yaml".into(),
            message: e.to_string(),
        })
    }

    /// The Kubernetes API server URL kubeconfigs name: `kubernetes_endpoint`, else
    /// `https://<host of the first endpoint>:6443` (the port Talos serves the kube-apiserver on,
    /// as `talosctl gen config CLUSTER https://HOST:6443` sets it); `None` without either.
    pub fn kubernetes_server(&self) -> Option<String> {
        if let Some(e) = &self.kubernetes_endpoint {
            return Some(e.clone());
        }
        let first = self.endpoints.first()?;
        Some(format!("https://{}:6443", endpoint_host(first)?))
    }

    /// The version contract recorded for this environment.
    pub fn contract(&self) -> VersionContract {
        if self.talos_version == "current" {
            VersionContract::Current
        } else {
            VersionContract::parse(&self.talos_version).unwrap_or(VersionContract::Current)
        }
    }
}

/// The host part of a Talos endpoint (`10.0.0.1`, `cp.example.com:50000`, `[fd00::1]:50000`,
/// `fd00::1`, optionally with an `https://` prefix), IPv6 addresses in brackets, as a URL needs
/// it; `None` when nothing is left.
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let e = endpoint.trim();
    let e = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .unwrap_or(e);
    let e = e.split('/').next().unwrap_or(e);
    let host = if let Some(rest) = e.strip_prefix('[') {
        format!("[{}]", rest.split(']').next().unwrap_or(rest))
    } else if e.matches(':').count() > 1 {
        format!("[{e}]")
    } else {
        e.split(':').next().unwrap_or(e).to_owned()
    };
    (!host.is_empty() && host != "[]").then_some(host)
}

/// What an environment's secrets are sealed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sealing {
    /// The age recipients in `recipients.txt`.
    Recipients,
    /// A single passphrase (age scrypt), for a lone break-glass operator.
    Passphrase,
}

fn default_sealing() -> Sealing {
    Sealing::Recipients
}

/// How a contract is recorded in `env.yaml`.
pub fn contract_label(c: VersionContract) -> String {
    match c {
        VersionContract::Current => "current".into(),
        VersionContract::Named { major, minor } => format!("v{major}.{minor}"),
    }
}

/// Which CA signed a recorded certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBy {
    /// `os` for the Talos OS CA, else the issuer id.
    pub ca: String,
    /// SHA-256 of the signing CA certificate.
    pub fingerprint: String,
}

/// The CA id of the Talos OS CA in records (`signed_by.ca`).
pub const OS_CA: &str = "os";

/// The CA id of the bundle's Kubernetes CA (`certs.k8s`) in records (`signed_by.ca`).
pub const K8S_CA: &str = "k8s";

/// Which API a certificate or an issuer is for. Files written before Kubernetes support have no
/// `api` field and are Talos's; the field is written only for Kubernetes, so those files keep
/// their bytes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The Talos API (apid): talosconfigs, `machine.acceptedCAs`.
    #[default]
    Talos,
    /// The Kubernetes API (kube-apiserver): kubeconfigs, the Kubernetes accepted CAs.
    Kubernetes,
}

impl Api {
    /// `talos` or `kubernetes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Talos => "talos",
            Api::Kubernetes => "kubernetes",
        }
    }

    /// Whether this is the Talos API (the default, left out when writing).
    pub fn is_talos(&self) -> bool {
        *self == Api::Talos
    }

    /// The CA id of the bundle CA that signs this API's certificates directly.
    pub fn direct_ca(self) -> &'static str {
        match self {
            Api::Talos => OS_CA,
            Api::Kubernetes => K8S_CA,
        }
    }
}

/// `envs/ENV/certs/<serial>.yaml`: what was issued. Public; the key is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// Roles in the subject.
    pub roles: Vec<String>,
    /// Holder (CN).
    pub holder: Option<String>,
    /// NotBefore.
    pub not_before: String,
    /// NotAfter.
    pub not_after: String,
    /// The granted TTL.
    pub ttl: String,
    /// The signing CA.
    pub signed_by: SignedBy,
    /// `direct` (OS CA) or `issuer`.
    pub mode: String,
    /// `generated` or `csr`.
    pub key: String,
    /// Who issued it.
    pub actor: String,
    /// When.
    pub issued: String,
    /// Whether it is a break-glass certificate.
    pub break_glass: bool,
    /// The break-glass reason.
    pub reason: Option<String>,
    /// The certificate PEM.
    pub certificate: String,
    /// The API it is for (absent: `talos`). For `kubernetes`, `holder` is the user (CN) and
    /// `roles` the groups (O values) the kube-apiserver reads.
    #[serde(default, skip_serializing_if = "Api::is_talos")]
    pub api: Api,
}

impl CertRecord {
    /// Reads a certificate record.
    pub fn from_yaml(file: &str, bytes: &[u8]) -> Result<Self, MetaError> {
        parse(file, bytes)
    }

    /// Renders it.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        to_yaml("certificate record", self)
    }
}

/// `envs/ENV/revocations/<serial>.yaml`: a revoked certificate. Public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// The CA that signed it.
    pub signed_by: SignedBy,
    /// RFC 5280 §5.3.1 reason name (`keyCompromise`, …).
    pub reason: String,
    /// When it was revoked (RFC 3339).
    pub revoked: String,
    /// Who revoked it.
    pub actor: String,
    /// The certificate's holder, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Its notAfter (RFC 3339): after this the entry may leave the CRL.
    pub not_after: String,
}

impl RevocationRecord {
    /// Reads a revocation record.
    pub fn from_yaml(file: &str, bytes: &[u8]) -> Result<Self, MetaError> {
        parse(file, bytes)
    }

    /// Renders it.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        to_yaml("revocation record", self)
    }
}

/// The life cycle of an issuer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerState {
    /// In `acceptedCAs` (once the patch is applied), not yet signing.
    #[default]
    Pending,
    /// Accepted and signing (the most recently activated one signs).
    Active,
    /// Dropped from `acceptedCAs`: everything it signed stops working once the patch is applied.
    /// Nothing signs with it again (its sealed key stays in the vault and in git history).
    Retired,
}

impl IssuerState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerState::Pending => "pending",
            IssuerState::Active => "active",
            IssuerState::Retired => "retired",
        }
    }

    /// Whether nodes should accept it (it belongs in `machine.acceptedCAs`).
    pub fn accepted(self) -> bool {
        self != IssuerState::Retired
    }
}

/// Where an issuer's private key lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "lowercase", deny_unknown_fields)]
pub enum IssuerKey {
    /// Sealed with age to the environment's recipients, in the issuer's directory.
    Age {
        /// File name in the issuer directory (`key.age`).
        file: String,
    },
    /// In a PKCS#11 token; never leaves it.
    Pkcs11 {
        /// The RFC 7512 URI (never with a PIN).
        uri: String,
        /// The public key (raw subjectPublicKey bits, hex), checked against the token's.
        public_key: String,
        /// The key was accepted although it may leave the token (`--danger-allow-extractable`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        danger_allow_extractable: bool,
    },
}

/// `envs/ENV/issuers/<id>/issuer.yaml`: a client-issuing CA of the environment. Public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerMeta {
    /// Format version of this file.
    pub format_version: u32,
    /// Issuer id (the directory name).
    pub id: String,
    /// Epoch number within the environment (1, 2, …).
    pub epoch: u32,
    /// Life-cycle state: the audit chain's (`issuer.create`, `issuer.activate`,
    /// `issuer.retire` events), filled in when the issuer is loaded. Never written: issuer.yaml
    /// does not change after creation (files of format-1 vaults still carry it; it is ignored).
    #[serde(default, skip_serializing)]
    pub state: IssuerState,
    /// `ed25519` or `ecdsa-p256`.
    pub algorithm: String,
    /// The certificate's subject, as text.
    pub subject: String,
    /// Certificate serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// Subject key identifier, hex (the AKI of everything it signs).
    pub subject_key_id: String,
    /// notBefore (RFC 3339).
    pub not_before: String,
    /// notAfter (RFC 3339): no leaf it signs may outlive it.
    pub not_after: String,
    /// When it was created.
    pub created: String,
    /// When it was (last) activated: the chain's, like `state`.
    #[serde(default, skip_serializing)]
    pub activated: Option<String>,
    /// When it was retired: the chain's, like `state`.
    #[serde(default, skip_serializing)]
    pub retired: Option<String>,
    /// Where its key is.
    pub key: IssuerKey,
    /// The self-signed certificate, PEM.
    pub certificate: String,
    /// The API whose accepted CAs it belongs in (absent: `talos`, `machine.acceptedCAs`;
    /// `kubernetes`: the kube-apiserver's accepted CAs).
    #[serde(default, skip_serializing_if = "Api::is_talos")]
    pub api: Api,
}

impl IssuerMeta {
    /// Reads `issuer.yaml`.
    pub fn from_yaml(file: &str, bytes: &[u8]) -> Result<Self, MetaError> {
        let m: Self = parse(file, bytes)?;
        if m.format_version > FORMAT_VERSION {
            return Err(MetaError::NewerFormat {
                file: file.into(),
                found: m.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(m)
    }

    /// Renders `issuer.yaml`.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        to_yaml("issuer.yaml", self)
    }
}

/// Renders a metadata file (`what` names it in the error).
pub(crate) fn to_yaml<T: Serialize>(what: &str, value: &T) -> Result<String, MetaError> {
    serde_yaml::to_string(value).map_err(|e| MetaError::Malformed {
        file: what.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_hosts_for_the_kubernetes_server() {
        for (endpoint, host) in [
            ("10.0.0.1", Some("10.0.0.1")),
            ("cp.example.com:50000", Some("cp.example.com")),
            ("[fd00::1]:50000", Some("[fd00::1]")),
            ("fd00::1", Some("[fd00::1]")),
            ("https://cp.example.com:6443/", Some("cp.example.com")),
            ("", None),
            ("[]:50000", None),
        ] {
            assert_eq!(endpoint_host(endpoint).as_deref(), host, "{endpoint}");
        }
    }

    #[test]
    fn records_without_an_api_are_talos_and_stay_byte_identical() {
        let yaml = "serial: 0a\nfingerprint: sha256:00\nroles:\n- os:reader\nholder: null\n\
                    not_before: 2026-01-01T00:00:00Z\nnot_after: 2026-01-02T00:00:00Z\nttl: 24h\n\
                    signed_by:\n  ca: os\n  fingerprint: sha256:00\nmode: direct\nkey: generated\n\
                    actor: a\nissued: 2026-01-01T00:00:10Z\nbreak_glass: false\nreason: null\n\
                    certificate: ''\n";
        let r = CertRecord::from_yaml("certs/0a.yaml", yaml.as_bytes()).unwrap();
        assert_eq!(r.api, Api::Talos);
        assert_eq!(r.to_yaml().unwrap(), yaml);
        let k = CertRecord {
            api: Api::Kubernetes,
            ..r
        };
        let text = k.to_yaml().unwrap();
        assert!(text.ends_with("api: kubernetes\n"), "{text}");
        assert_eq!(
            CertRecord::from_yaml("x", text.as_bytes()).unwrap().api,
            Api::Kubernetes
        );
    }
}
