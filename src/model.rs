//! PURE: the public metadata files of a vault (`talvault.yaml`, `envs/ENV/env.yaml`) as types.
//!
//! These files are meant to be reviewed in pull requests, so they are plain YAML with stable
//! field names, read strictly (unknown fields refused) and versioned. They never hold a secret.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bundle::inspect::Fingerprint;
use crate::bundle::{CaName, SecretsBundle, VersionContract};

/// The vault format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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

fn parse<T: for<'de> Deserialize<'de>>(file: &str, bytes: &[u8]) -> Result<T, MetaError> {
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

/// `talvault.yaml` at the vault root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault format version.
    pub format_version: u32,
}

impl VaultConfig {
    /// A new vault's configuration.
    pub fn new() -> Self {
        Self {
            format_version: FORMAT_VERSION,
        }
    }

    /// Reads and checks the version.
    pub fn from_yaml(bytes: &[u8]) -> Result<Self, MetaError> {
        let c: Self = parse("talvault.yaml", bytes)?;
        if c.format_version > FORMAT_VERSION {
            return Err(MetaError::NewerFormat {
                file: "talvault.yaml".into(),
                found: c.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(c)
    }

    /// Renders the file.
    pub fn to_yaml(&self) -> String {
        format!(
            "# talvault vault. Public metadata; secrets live only in .age files.\nformat_version: {}\n",
            self.format_version
        )
    }
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self::new()
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
    /// How the bundle came to be: `generated`, `secrets`, `kubernetes-pki`, `controlplane-config`.
    pub source: String,
    /// What the secrets are sealed to: `recipients` (recipients.txt) or `passphrase` (scrypt).
    #[serde(default = "default_sealing")]
    pub sealing: Sealing,
    /// When the environment was created (RFC 3339).
    pub created: String,
    /// CA certificate pins; every open checks the bundle against them.
    pub pins: Pins,
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
        Ok(m)
    }

    /// Renders `env.yaml`.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        serde_yaml::to_string(self).map_err(|e| MetaError::Malformed {
            file: "env.yaml".into(),
            message: e.to_string(),
        })
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
