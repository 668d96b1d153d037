//! PURE: Kubernetes API client certificates, minted as Talos mints the admin kubeconfig's, for
//! what a [`KubeGrant`] allows. No I/O, no clock, no randomness of its own.
//!
//! Profile (reference/kubernetes.md §3 and §6.2; siderolabs/talos pkg/kubeconfig/generate.go
//! `Generate`): subject `O=<group>…` (one multi-valued RDN, as Go's `pkix.Name` writes it) then
//! `CN=<user>`; the issuer Name copied byte for byte from the CA's subject and AKI = the CA's SKI
//! (Go finds a parent only by RawSubject = RawIssuer, crypto/x509 cert_pool.go
//! `findPotentialParents`); EKU clientAuth only; no BasicConstraints, no SAN, no SKI; a random
//! positive serial of at most 16 bytes; NotBefore = now − 10 s (`allowedTimeSkew`), NotAfter =
//! now + TTL, never past the CA's NotAfter; the key follows the CA (ECDSA `certs.k8s` → P-256,
//! ecdsa-with-SHA256; RSA → RSA-4096; Ed25519 → Ed25519; siderolabs/crypto x509/keypair.go
//! `NewKeyPair`). One deviation: KeyUsage is digitalSignature alone, where Talos adds
//! keyEncipherment; the kube-apiserver ignores a leaf's KeyUsage (crypto/x509 verify.go
//! `isValid`), and key encipherment has no use for a TLS client key (reference §6.2).
//!
//! The x509 authenticator (k8s.io/apiserver pkg/authentication/request/x509/x509.go) then reads
//! user = CN and groups = every O value, after verifying the chain with
//! `KeyUsages: [ClientAuth]`.

use ring::rand::SecureRandom;

use super::issue::{
    CsrError, IssueError, IssueTime, IssuedLeaf, LeafOrder, SubjectKey, VerifiedCsr, mint_leaf,
};
use super::kube_policy::KubeGrant;
use super::policy::check_client_template;
use crate::pki::cert::CertError;

/// Mints a Kubernetes client certificate for `grant` under the CA whose certificate is
/// `ca_cert_pem` (the bundle's `certs.k8s` or a Kubernetes issuer) and whose key signs through
/// `ca_signer`. The final template is checked against the grant just before signing.
pub fn issue_client_certificate(
    ca_cert_pem: &[u8],
    ca_signer: &dyn rcgen::SigningKey,
    grant: &KubeGrant,
    subject_key: SubjectKey,
    time: IssueTime,
    rng: &dyn SecureRandom,
) -> Result<IssuedLeaf, IssueError> {
    let subject = grant.subject_der().map_err(CertError::from)?;
    let order = LeafOrder {
        subject: subject.clone(),
        ttl: grant.ttl(),
        check: &|template| check_client_template(template, Some(&subject), grant.ttl()),
    };
    mint_leaf(ca_cert_pem, ca_signer, &order, subject_key, time, rng)
}

/// Refuses a CSR whose extension request asks for more than a client certificate: a CA
/// (BasicConstraints CA:TRUE, keyCertSign, cRLSign) or an extended key usage besides clientAuth
/// (serverAuth, any). talvault would not issue either, but a request that asks for them is
/// not the request of someone who wants a kubeconfig.
pub fn check_csr(csr: &VerifiedCsr) -> Result<(), CsrError> {
    let asked = csr.requested_usage();
    if asked.ca || asked.cert_sign {
        return Err(CsrError::AsksForCa);
    }
    if !asked.other_eku.is_empty() {
        return Err(CsrError::AsksForUsage {
            usages: asked.other_eku.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::bundle::CaName;
    use crate::bundle::generate::new_ca;
    use crate::keys::{self, KeyAlgorithm, PrivateKey};
    use crate::pki::kube_policy::{KubeGroup, KubeRequest, KubeUser, KubernetesPolicy};
    use crate::pki::name;
    use ring::rand::SystemRandom;
    use time::Duration;
    use time::macros::datetime;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::FromDer;

    fn now() -> time::OffsetDateTime {
        datetime!(2026-03-01 12:00:00.250 UTC)
    }

    fn grant(user: &str, groups: &[&str]) -> KubeGrant {
        KubernetesPolicy::default()
            .grant(&KubeRequest {
                user: Some(KubeUser::parse(user).unwrap()),
                groups: groups
                    .iter()
                    .map(|g| KubeGroup::parse(g).unwrap())
                    .collect(),
                ttl: None,
                break_glass: None,
            })
            .unwrap()
    }

    #[test]
    fn k8s_ca_gives_a_p256_leaf_with_the_talos_admin_profile() {
        let rng = SystemRandom::new();
        let ca = new_ca(CaName::K8s, now() - Duration::days(1), &rng).unwrap();
        let key = PrivateKey::from_talos_pem(ca.key.expose()).unwrap();
        let g = grant("alice", &["talvault:viewers", "talvault:editors"]);
        let leaf = issue_client_certificate(
            &ca.crt,
            &key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            IssueTime::new(now()),
            &rng,
        )
        .unwrap();
        assert_eq!(leaf.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert!(leaf.roles.is_empty());
        assert!(
            leaf.key_pem
                .as_ref()
                .unwrap()
                .expose()
                .starts_with(b"-----BEGIN EC PRIVATE KEY-----\n")
        );
        let ca_der = keys::pem_decode_first(&ca.crt).unwrap().der;
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(
            cert.subject().as_raw(),
            &name::encode(&["talvault:editors", "talvault:viewers"], Some("alice")).unwrap()[..]
        );
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        let oids: Vec<String> = cert
            .extensions()
            .iter()
            .map(|e| e.oid.to_id_string())
            .collect();
        assert_eq!(oids, ["2.5.29.15", "2.5.29.37", "2.5.29.35"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
        assert!(!cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.flags == 1);
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        let ski = ca_cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski);
        // NotBefore = now − 10 s, NotAfter = now + the viewers/editors default (24h).
        let whole = now().replace_nanosecond(0).unwrap();
        assert_eq!(leaf.not_before, whole - Duration::seconds(10));
        assert_eq!(leaf.not_after, whole + Duration::hours(24));
    }
}
