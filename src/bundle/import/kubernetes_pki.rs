//! PURE: building a bundle from a kubeadm-style Kubernetes PKI directory, as `talosctl gen
//! secrets --from-kubernetes-pki` (siderolabs/talos: bundle.go `NewBundleFromKubernetesPKI`).
//!
//! Must not touch files, the environment or the clock: the CLI reads the files and passes their
//! bytes, the time and the randomness in. Errors name the file, never a key or token.

use ring::rand::SecureRandom;
use time::OffsetDateTime;

use super::ImportError;
use crate::bundle::generate;
use crate::bundle::validate;
use crate::bundle::{CertAndKey, Certs, KeyOnly, Secrets, SecretsBundle, VersionContract};
use crate::keys::PrivateKey;
use crate::secret::{SecretBytes, SecretText};

/// `ca.crt`: the Kubernetes CA certificate.
pub const CA_CRT: &str = "ca.crt";
/// `ca.key`: the Kubernetes CA key.
pub const CA_KEY: &str = "ca.key";
/// `etcd/ca.crt`: the etcd CA certificate.
pub const ETCD_CA_CRT: &str = "etcd/ca.crt";
/// `etcd/ca.key`: the etcd CA key.
pub const ETCD_CA_KEY: &str = "etcd/ca.key";
/// `front-proxy-ca.crt`: the aggregator (front-proxy) CA certificate.
pub const FRONT_PROXY_CA_CRT: &str = "front-proxy-ca.crt";
/// `front-proxy-ca.key`: the aggregator (front-proxy) CA key.
pub const FRONT_PROXY_CA_KEY: &str = "front-proxy-ca.key";
/// `sa.key`: the service-account signing key.
pub const SA_KEY: &str = "sa.key";

/// The files read from a Kubernetes PKI directory, relative to it, in the order Talos reads them
/// (bundle.go `NewBundleFromKubernetesPKI`).
pub const KUBERNETES_PKI_FILES: [&str; 7] = [
    CA_CRT,
    CA_KEY,
    ETCD_CA_CRT,
    ETCD_CA_KEY,
    FRONT_PROXY_CA_CRT,
    FRONT_PROXY_CA_KEY,
    SA_KEY,
];

/// The contents of a kubeadm-style PKI directory (`/etc/kubernetes/pki`), one field per file of
/// [`KUBERNETES_PKI_FILES`].
#[derive(Debug, Default)]
pub struct KubernetesPki {
    /// `ca.crt`
    pub ca_crt: Vec<u8>,
    /// `ca.key`
    pub ca_key: SecretBytes,
    /// `etcd/ca.crt`
    pub etcd_ca_crt: Vec<u8>,
    /// `etcd/ca.key`
    pub etcd_ca_key: SecretBytes,
    /// `front-proxy-ca.crt`
    pub front_proxy_ca_crt: Vec<u8>,
    /// `front-proxy-ca.key`
    pub front_proxy_ca_key: SecretBytes,
    /// `sa.key`
    pub sa_key: SecretBytes,
}

/// Builds a bundle from a kubeadm PKI directory, as `talosctl gen secrets --from-kubernetes-pki`.
///
/// siderolabs/talos: pkg/machinery/config/generate/secrets/bundle.go `NewBundleFromKubernetesPKI`:
/// `ca.*` → `certs.k8s`, `etcd/ca.*` → `certs.etcd`, `front-proxy-ca.*` → `certs.k8saggregator`,
/// `sa.key` → `certs.k8sserviceaccount`, each checked with `GetKey` then `GetCert`
/// (`validatePEMEncodedCertificateAndKey`), so any key label Talos reads is accepted (PKCS#1
/// `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, PKCS#8 `PRIVATE KEY`). Then `populate` generates
/// everything else (OS CA, tokens, encryption secret, cluster identity). Unlike upstream, a given
/// bootstrap token is checked for the bootstrap-token shape, and errors name the file.
pub fn from_kubernetes_pki(
    pki: KubernetesPki,
    bootstrap_token: Option<SecretText>,
    contract: VersionContract,
    now: OffsetDateTime,
    rng: &(dyn SecureRandom + Sync),
) -> Result<SecretsBundle, ImportError> {
    // An empty token means "generate one", as upstream's "" does.
    let bootstrap_token = match bootstrap_token {
        Some(t) if !t.is_empty() => {
            if !is_bootstrap_token(t.expose()) {
                return Err(ImportError::BadBootstrapToken);
            }
            t
        }
        _ => SecretText::default(),
    };

    let k8s = checked_ca(CA_CRT, pki.ca_crt, CA_KEY, pki.ca_key)?;
    let etcd = checked_ca(ETCD_CA_CRT, pki.etcd_ca_crt, ETCD_CA_KEY, pki.etcd_ca_key)?;
    let aggregator = checked_ca(
        FRONT_PROXY_CA_CRT,
        pki.front_proxy_ca_crt,
        FRONT_PROXY_CA_KEY,
        pki.front_proxy_ca_key,
    )?;
    // bundle.go: `sa.GetKey()` only.
    PrivateKey::from_talos_pem(pki.sa_key.expose()).map_err(|e| ImportError::PkiFile {
        file: SA_KEY,
        reason: e.to_string(),
    })?;

    let mut bundle = SecretsBundle {
        secrets: Some(Secrets {
            bootstrap_token,
            ..Secrets::default()
        }),
        certs: Some(Certs {
            etcd: Some(etcd),
            k8s: Some(k8s),
            k8s_aggregator: Some(aggregator),
            k8s_service_account: Some(KeyOnly { key: pki.sa_key }),
            os: None,
        }),
        ..SecretsBundle::default()
    };
    generate::populate(&mut bundle, contract, now, rng)?;
    Ok(bundle)
}

/// `validatePEMEncodedCertificateAndKey` (utils.go): `GetKey`, then `GetCert`.
fn checked_ca(
    crt_file: &'static str,
    crt: Vec<u8>,
    key_file: &'static str,
    key: SecretBytes,
) -> Result<CertAndKey, ImportError> {
    PrivateKey::from_talos_pem(key.expose()).map_err(|e| ImportError::PkiFile {
        file: key_file,
        reason: e.to_string(),
    })?;
    validate::parse_cert(&crt).map_err(|reason| ImportError::PkiFile {
        file: crt_file,
        reason,
    })?;
    Ok(CertAndKey { crt, key })
}

/// `[a-z0-9]{6}\.[a-z0-9]{16}`, the Kubernetes bootstrap-token format.
fn is_bootstrap_token(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_digit() || c.is_ascii_lowercase();
    b.len() == 23 && b[6] == b'.' && b[..6].iter().all(ok) && b[7..].iter().all(ok)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_token_shape() {
        assert!(is_bootstrap_token("inn7ol.u4ehnti8qyls9ymo"));
        for bad in [
            "",
            "inn7ol.u4ehnti8qyls9ym",
            "INN7OL.u4ehnti8qyls9ymo",
            "inn7ol-u4ehnti8qyls9ymo",
            "inn7o.lu4ehnti8qyls9ymo",
            "inn7ol.u4ehnti8qyls9ym_",
        ] {
            assert!(!is_bootstrap_token(bad), "{bad:?}");
        }
    }
}
