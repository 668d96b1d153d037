//! PURE: generating a bundle exactly as `talosctl gen secrets` does, for any version contract.
//!
//! Follows siderolabs/talos: pkg/machinery/config/generate/secrets/bundle.go `populate` (fill
//! whatever is missing, so the Kubernetes-PKI import reuses it), ca.go (the four CA profiles) and
//! utils.go (`genToken`), with siderolabs/crypto: x509/certificate_authority.go for the CA
//! certificate profile (reference/talos-formats.md §1.2, §1.3, §2, §8a). Time and randomness are
//! arguments. The RSA-4096 service-account key, by far the slowest part, is started first on its
//! own thread while the rest is generated alongside.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use super::{
    CaName, CertAndKey, Certs, Cluster, KeyOnly, Secrets, SecretsBundle, TrustdInfo,
    VersionContract,
};
use crate::keys::rsa::{RsaKeygenError, generate_rsa4096};
use crate::keys::{self, KeyError, PrivateKey};
use crate::pki::cert::{CaConstraints, CertError, CertificateTemplate, ExtendedKeyUsage, KeyUsage};
use crate::pki::name;
use crate::secret::{SecretBytes, SecretText};

/// `CAValidityTime = 87600h` (secrets.go).
pub const CA_VALIDITY: Duration = Duration::hours(87_600);

/// Generation failed.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// A key could not be generated or encoded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A CA certificate could not be built or signed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The RSA service-account key could not be generated.
    #[error(transparent)]
    Rsa(#[from] RsaKeygenError),
    /// The RSA key-generation thread panicked.
    #[error("the RSA key generation thread panicked")]
    RsaThreadPanicked,
}

/// Generates a complete bundle for `contract` at time `now`.
pub fn generate(
    contract: VersionContract,
    now: OffsetDateTime,
    rng: &(dyn SecureRandom + Sync),
) -> Result<SecretsBundle, GenerateError> {
    let mut bundle = SecretsBundle::default();
    populate(&mut bundle, contract, now, rng)?;
    Ok(bundle)
}

/// Fills every missing field as Talos's `populate` does; present fields are kept.
pub fn populate(
    bundle: &mut SecretsBundle,
    contract: VersionContract,
    now: OffsetDateTime,
    rng: &(dyn SecureRandom + Sync),
) -> Result<(), GenerateError> {
    // Talos uses one fixed clock for the whole bundle; DER drops sub-seconds anyway.
    let now = now
        .replace_nanosecond(0)
        .map_err(|_| GenerateError::Random)?;
    let certs = bundle.certs.get_or_insert_with(Certs::default);
    let need_rsa = certs.k8s_service_account.is_none() && contract.uses_rsa_service_account_key();

    std::thread::scope(|scope| -> Result<(), GenerateError> {
        let rsa = need_rsa.then(|| scope.spawn(|| generate_rsa4096(rng)));

        for ca in CaName::ALL {
            let slot = match ca {
                CaName::Etcd => &mut certs.etcd,
                CaName::K8s => &mut certs.k8s,
                CaName::K8sAggregator => &mut certs.k8s_aggregator,
                CaName::Os => &mut certs.os,
            };
            if slot.is_none() {
                *slot = Some(new_ca(ca, now, rng)?);
            }
        }
        if certs.k8s_service_account.is_none() && !need_rsa {
            let key = PrivateKey::generate_p256(rng)?;
            certs.k8s_service_account = Some(KeyOnly {
                key: key.to_talos_pem()?,
            });
        }
        if let Some(handle) = rsa {
            let pkcs1 = handle
                .join()
                .map_err(|_| GenerateError::RsaThreadPanicked)??;
            certs.k8s_service_account = Some(KeyOnly {
                key: SecretBytes::new(keys::pem_encode(keys::LABEL_RSA, &pkcs1).to_vec()),
            });
        }
        Ok(())
    })?;

    let secrets = bundle.secrets.get_or_insert_with(Secrets::default);
    if secrets.bootstrap_token.is_empty() {
        secrets.bootstrap_token = gen_token(rng)?;
    }
    if contract.uses_secretbox() {
        if secrets.secretbox_encryption_secret.is_empty() {
            secrets.secretbox_encryption_secret = random_base64(rng)?;
        }
    } else if secrets.aescbc_encryption_secret.is_empty() {
        secrets.aescbc_encryption_secret = random_base64(rng)?;
    }
    let trustd = bundle.trustd_info.get_or_insert_with(TrustdInfo::default);
    if trustd.token.is_empty() {
        trustd.token = gen_token(rng)?;
    }
    let cluster = bundle.cluster.get_or_insert_with(Cluster::default);
    if cluster.id.is_empty() {
        // Talos ≥ 1.14 encodes the ID with the std alphabet (commit 4e5b4c6a7; before: URL).
        cluster.id = random_base64(rng)?.expose().to_owned();
    }
    if cluster.secret.is_empty() {
        cluster.secret = random_base64(rng)?;
    }
    Ok(())
}

/// One of the four bundle CAs with Talos's profile (reference/talos-formats.md §2).
pub fn new_ca(
    ca: CaName,
    now: OffsetDateTime,
    rng: &dyn SecureRandom,
) -> Result<CertAndKey, GenerateError> {
    let key = match ca {
        CaName::Os => PrivateKey::generate_ed25519(rng)?,
        _ => PrivateKey::generate_p256(rng)?,
    };
    // The aggregator CA passes CommonName("front-proxy"), but NewSelfSignedCertificateAuthority
    // copies only Organizations, so its subject is empty.
    let organizations: &[&str] = match ca {
        CaName::Etcd => &["etcd"],
        CaName::K8s => &["kubernetes"],
        CaName::K8sAggregator => &[],
        CaName::Os => &["talos"],
    };
    let subject = name::encode(organizations, None).map_err(CertError::from)?;
    let template = CertificateTemplate {
        serial: crate::pki::cert::random_serial(rng).ok_or(GenerateError::Random)?,
        issuer: subject.clone(),
        subject,
        not_before: now,
        not_after: now + CA_VALIDITY,
        subject_public_key_info: key.public_key_info()?,
        key_usage: KeyUsage {
            digital_signature: true,
            key_cert_sign: true,
            crl_sign: false,
        },
        extended_key_usage: vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
        ca: Some(CaConstraints { path_len: None }),
        // crypto ≥ v0.6.1 (Talos ≥ 1.11): 20 random bytes.
        subject_key_id: Some(random_bytes::<20>(rng)?.to_vec()),
        authority_key_id: None,
    };
    let signer = key
        .key_pair()
        .map_err(|e| KeyError::BadPkcs8(e.to_string()))?;
    let der = template.sign(&signer)?;
    Ok(CertAndKey {
        crt: keys::pem_encode(keys::LABEL_CERTIFICATE, &der).to_vec(),
        key: key.to_talos_pem()?,
    })
}

fn random_bytes<const N: usize>(
    rng: &dyn SecureRandom,
) -> Result<zeroize::Zeroizing<[u8; N]>, GenerateError> {
    let mut buf = zeroize::Zeroizing::new([0u8; N]);
    rng.fill(&mut *buf).map_err(|_| GenerateError::Random)?;
    Ok(buf)
}

fn random_base64(rng: &dyn SecureRandom) -> Result<SecretText, GenerateError> {
    let bytes = random_bytes::<32>(rng)?;
    Ok(SecretText::new(STANDARD.encode(*bytes)))
}

/// `genToken(6, 16)` (utils.go): 36-character alphabet, one random byte per character, bytes
/// ≥ 252 rejected so `b % 36` stays uniform.
pub fn gen_token(rng: &dyn SecureRandom) -> Result<SecretText, GenerateError> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(23);
    let mut buf = zeroize::Zeroizing::new([0u8; 32]);
    let mut pos = buf.len();
    for len in [6usize, 16] {
        if !out.is_empty() {
            out.push('.');
        }
        let mut n = 0;
        while n < len {
            if pos == buf.len() {
                rng.fill(&mut *buf).map_err(|_| GenerateError::Random)?;
                pos = 0;
            }
            let b = buf[pos];
            pos += 1;
            if b >= 252 {
                continue;
            }
            out.push(char::from(ALPHABET[usize::from(b % 36)]));
            n += 1;
        }
    }
    Ok(SecretText::new(out))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn tokens_have_talos_shape() {
        let rng = SystemRandom::new();
        for _ in 0..200 {
            let t = gen_token(&rng).unwrap();
            let t = t.expose();
            assert_eq!(t.len(), 23);
            assert_eq!(&t[6..7], ".");
            assert!(
                t.bytes()
                    .enumerate()
                    .all(|(i, b)| i == 6 || b.is_ascii_digit() || b.is_ascii_lowercase())
            );
        }
    }
}
