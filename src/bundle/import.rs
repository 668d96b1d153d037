//! PURE: building a bundle from existing material (Kubernetes PKI, control-plane config).
//! Placeholder signatures; the implementation lands on the import branch.

use ring::rand::SecureRandom;
use thiserror::Error;
use time::OffsetDateTime;

use super::{SecretsBundle, VersionContract};
use crate::secret::{SecretBytes, SecretText};

/// Import failed.
#[derive(Debug, Error)]
#[error("import is not implemented yet")]
pub struct ImportError;

/// The files of a kubeadm PKI directory.
pub struct KubernetesPki {
    /// ca.crt
    pub ca_crt: Vec<u8>,
    /// ca.key
    pub ca_key: SecretBytes,
    /// etcd/ca.crt
    pub etcd_ca_crt: Vec<u8>,
    /// etcd/ca.key
    pub etcd_ca_key: SecretBytes,
    /// front-proxy-ca.crt
    pub front_proxy_ca_crt: Vec<u8>,
    /// front-proxy-ca.key
    pub front_proxy_ca_key: SecretBytes,
    /// sa.key
    pub sa_key: SecretBytes,
}

/// Files read from the directory.
pub const KUBERNETES_PKI_FILES: [&str; 7] = [
    "ca.crt",
    "ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
];

/// Builds a bundle from a Kubernetes PKI directory.
pub fn from_kubernetes_pki(
    _pki: KubernetesPki,
    _bootstrap_token: Option<SecretText>,
    _contract: VersionContract,
    _now: OffsetDateTime,
    _rng: &(dyn SecureRandom + Sync),
) -> Result<SecretsBundle, ImportError> {
    Err(ImportError)
}

/// Builds a bundle from a control-plane machine config.
pub fn from_controlplane_config(_yaml: &[u8]) -> Result<SecretsBundle, ImportError> {
    Err(ImportError)
}
