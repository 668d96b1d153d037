//! PURE: the Talos secrets bundle (`secrets.yaml`), with Talos's own names.
//!
//! Mirrors `secrets.Bundle` (siderolabs/talos: pkg/machinery/config/generate/secrets/secrets.go):
//! absent sections are `None` (Go's nil pointers) and absent strings are empty (Go's ""), so
//! reading and writing keep exactly what talosctl would. Certificates and keys are held as the
//! PEM text Talos stores (before its base64 layer); keys and secret strings are secret types.
//! No I/O, clock or randomness of its own.

pub mod compare;
pub mod contract;
pub mod generate;
pub mod import;
pub mod inspect;
pub mod validate;
pub mod yaml;

pub use contract::VersionContract;

use crate::secret::{SecretBytes, SecretText};

/// The secrets bundle, as `talosctl gen secrets` writes it.
#[derive(Debug, Default)]
pub struct SecretsBundle {
    /// `cluster`: discovery identity.
    pub cluster: Option<Cluster>,
    /// `secrets`: bootstrap token and the etcd encryption secret.
    pub secrets: Option<Secrets>,
    /// `trustdinfo`: the trustd token.
    pub trustd_info: Option<TrustdInfo>,
    /// `certs`: the four CAs and the service-account key.
    pub certs: Option<Certs>,
}

/// `cluster` (Go `secrets.Cluster`).
#[derive(Debug, Default)]
pub struct Cluster {
    /// `cluster.id`: base64 of 32 random bytes; public (nothing decodes it).
    pub id: String,
    /// `cluster.secret`: base64 of 32 random bytes (the discovery-service AES key).
    pub secret: SecretText,
}

/// `secrets` (Go `secrets.Secrets`).
#[derive(Debug, Default)]
pub struct Secrets {
    /// `secrets.bootstraptoken`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: SecretText,
    /// `secrets.aescbcencryptionsecret` (contracts ≤ 1.2); empty when absent.
    pub aescbc_encryption_secret: SecretText,
    /// `secrets.secretboxencryptionsecret` (contracts ≥ 1.3); empty when absent.
    pub secretbox_encryption_secret: SecretText,
}

/// `trustdinfo` (Go `secrets.TrustdInfo`).
#[derive(Debug, Default)]
pub struct TrustdInfo {
    /// `trustdinfo.token`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: SecretText,
}

/// `certs` (Go `secrets.Certs`), in Talos's field order.
#[derive(Debug, Default)]
pub struct Certs {
    /// `certs.etcd`: the etcd CA.
    pub etcd: Option<CertAndKey>,
    /// `certs.k8s`: the Kubernetes CA.
    pub k8s: Option<CertAndKey>,
    /// `certs.k8saggregator`: the front-proxy (aggregator) CA.
    pub k8s_aggregator: Option<CertAndKey>,
    /// `certs.k8sserviceaccount`: the service-account signing key.
    pub k8s_service_account: Option<KeyOnly>,
    /// `certs.os`: the Talos API (OS) CA.
    pub os: Option<CertAndKey>,
}

/// A certificate and its key as PEM text (Go `x509.PEMEncodedCertificateAndKey`).
#[derive(Debug, Default)]
pub struct CertAndKey {
    /// Certificate PEM (public).
    pub crt: Vec<u8>,
    /// Private key PEM, or the literal `******` of a redacted config.
    pub key: SecretBytes,
}

/// A key alone as PEM text (Go `x509.PEMEncodedKey`).
#[derive(Debug, Default)]
pub struct KeyOnly {
    /// Private key PEM.
    pub key: SecretBytes,
}

/// The literal that marks a redacted key (siderolabs/crypto: x509/x509.go `Redacted`).
pub const REDACTED: &str = "******";

/// The CAs of a bundle by their `certs.*` names, in Talos's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CaName {
    /// `certs.etcd`
    #[serde(rename = "etcd")]
    Etcd,
    /// `certs.k8s`
    #[serde(rename = "k8s")]
    K8s,
    /// `certs.k8saggregator`
    #[serde(rename = "k8saggregator")]
    K8sAggregator,
    /// `certs.os`
    #[serde(rename = "os")]
    Os,
}

impl CaName {
    /// All four, in `certs` field order.
    pub const ALL: [CaName; 4] = [CaName::Etcd, CaName::K8s, CaName::K8sAggregator, CaName::Os];

    /// The YAML key under `certs`.
    pub fn key(self) -> &'static str {
        match self {
            CaName::Etcd => "etcd",
            CaName::K8s => "k8s",
            CaName::K8sAggregator => "k8saggregator",
            CaName::Os => "os",
        }
    }
}

impl Certs {
    /// The certificate-and-key entry for `name`.
    pub fn ca(&self, name: CaName) -> Option<&CertAndKey> {
        match name {
            CaName::Etcd => self.etcd.as_ref(),
            CaName::K8s => self.k8s.as_ref(),
            CaName::K8sAggregator => self.k8s_aggregator.as_ref(),
            CaName::Os => self.os.as_ref(),
        }
    }
}
