//! PURE: talosconfig client certificates (leaves) minted exactly as Talos mints them, and CSRs.
//!
//! The profile is siderolabs/talos: pkg/machinery/config/generate/secrets/ca.go
//! `NewAdminCertificateAndKey` via siderolabs/crypto: x509/keypair.go, csr.go, certificate.go
//! (reference/talos-formats.md §3, §8a): subject O=each role in one RDN, KeyUsage
//! digitalSignature (critical), EKU exactly `[clientAuth]`, AKI = the CA's SKI, no SKI, no
//! BasicConstraints, issuer = the CA's raw subject, a random 16-byte serial, key type following
//! the CA. It only mints what a [`Grant`] allows and re-checks the template before signing. Time
//! and randomness are arguments; no I/O, no clock.

use ring::digest;
use ring::rand::SecureRandom;
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::cert::{CertError, CertificateTemplate, ExtendedKeyUsage, KeyUsage};
use super::policy::{Grant, GrantViolation, MAX_BACKDATE};
use super::role::Role;
use crate::hex::encode as hex;
use crate::keys::rsa::{RsaKeygenError, generate_rsa4096};
use crate::keys::{self, KeyAlgorithm, KeyError, PrivateKey};
use crate::secret::SecretBytes;

/// Default NotBefore backdating. talosctl does not backdate talosconfig leaves; talvault allows
/// 10 s of clock skew between the issuing machine and the nodes, as Talos does for kubeconfigs
/// (siderolabs/talos: pkg/kubeconfig/generate.go `allowedTimeSkew`).
pub const DEFAULT_BACKDATE: Duration = Duration::seconds(10);

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// When the leaf is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueTime {
    /// The issuing moment (sub-seconds are dropped, as DER does).
    pub now: OffsetDateTime,
    /// How far NotBefore lies before `now`: 0 to [`MAX_BACKDATE`] (60 s).
    pub backdate: Duration,
}

impl IssueTime {
    /// `now` with the default 10 s backdate.
    pub fn new(now: OffsetDateTime) -> Self {
        IssueTime {
            now,
            backdate: DEFAULT_BACKDATE,
        }
    }
}

/// Where the leaf's key comes from.
#[derive(Debug)]
pub enum SubjectKey {
    /// Generate a key of the CA's type (Ed25519 CA → Ed25519; ECDSA CA → P-256; RSA CA →
    /// RSA-4096), as crypto x509/keypair.go `NewKeyPair` does.
    Generate,
    /// Certify the public key of a verified CSR; the private key never reaches talvault.
    FromCsr(VerifiedCsr),
}

/// A freshly signed leaf.
#[derive(Debug)]
pub struct IssuedLeaf {
    /// The certificate DER.
    pub cert_der: Vec<u8>,
    /// The certificate PEM (`CERTIFICATE`, LF line endings, as Go writes it).
    pub cert_pem: Vec<u8>,
    /// The private key PEM with Talos's label; `None` for a CSR-issued leaf.
    pub key_pem: Option<SecretBytes>,
    /// The leaf key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The serial as lowercase hex of its unsigned value, without leading zero bytes.
    pub serial_hex: String,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// NotBefore as written (now − backdate, whole seconds).
    pub not_before: OffsetDateTime,
    /// NotAfter as written (now + TTL, whole seconds).
    pub not_after: OffsetDateTime,
    /// The roles in the subject.
    pub roles: Vec<Role>,
}

/// Why a leaf was not issued.
#[derive(Debug, Error)]
pub enum IssueError {
    /// The CA input holds no `CERTIFICATE` PEM block.
    #[error("the CA certificate is not a PEM CERTIFICATE")]
    CaNotPem,
    /// The CA certificate does not parse.
    #[error("the CA certificate does not parse: {reason}")]
    CaParse {
        /// The parser's message.
        reason: String,
    },
    /// The signing certificate is not a CA (BasicConstraints CA:TRUE) or may not sign certificates.
    #[error(
        "the signing certificate is not a CA allowed to sign certificates (needs CA:TRUE and keyCertSign)"
    )]
    NotACa,
    /// The signer's public key is not the CA certificate's.
    #[error("the signing key does not belong to the CA certificate")]
    SignerMismatch,
    /// The CA is not valid at the issuing time.
    #[error("the CA certificate is not valid at {now} (valid {ca_not_before} to {ca_not_after})")]
    CaNotValidNow {
        /// The issuing time.
        now: OffsetDateTime,
        /// The CA's NotBefore.
        ca_not_before: OffsetDateTime,
        /// The CA's NotAfter.
        ca_not_after: OffsetDateTime,
    },
    /// The leaf would outlive its CA; refused rather than shortened.
    #[error(
        "the certificate would expire at {leaf_not_after}, after its CA ({ca_not_after}); request a shorter TTL or rotate the CA"
    )]
    LeafOutlivesCa {
        /// The leaf's NotAfter.
        leaf_not_after: OffsetDateTime,
        /// The CA's NotAfter.
        ca_not_after: OffsetDateTime,
    },
    /// A CA key type talvault cannot issue under (supported: Ed25519, ECDSA P-256, RSA).
    #[error(
        "cannot issue under a CA with a {algorithm} key (supported: Ed25519, ECDSA P-256, RSA)"
    )]
    UnsupportedCaKey {
        /// The CA's key algorithm.
        algorithm: String,
    },
    /// Backdating outside 0 to 60 s.
    #[error("NotBefore backdating of {seconds}s is outside 0 to 60 s")]
    Backdate {
        /// The backdate given, in seconds.
        seconds: i64,
    },
    /// A time that X.509 cannot hold or arithmetic that overflowed.
    #[error("certificate validity is out of range")]
    TimeOutOfRange,
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key generation or encoding failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// RSA-4096 key generation (for an RSA CA) failed.
    #[error(transparent)]
    RsaKeygen(#[from] RsaKeygenError),
    /// Building or signing the certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The final template does not match the grant.
    #[error("refusing to sign: {0}")]
    Grant(#[from] GrantViolation),
    /// The signer returned something that does not make a parseable certificate.
    #[error("the signer produced a malformed certificate")]
    SignatureCheck,
}

/// Why a CSR was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CsrError {
    /// A PEM block with another label.
    #[error("expected a PEM CERTIFICATE REQUEST, found {label:?}")]
    PemLabel {
        /// The label found.
        label: String,
    },
    /// PEM armour that does not decode.
    #[error("the CSR PEM does not decode")]
    Pem,
    /// Not a PKCS#10 request.
    #[error("the CSR does not parse: {reason}")]
    Parse {
        /// The parser's message.
        reason: String,
    },
    /// Bytes after the request.
    #[error("the CSR has trailing data")]
    TrailingData,
    /// A key type talvault does not certify.
    #[error(
        "the CSR has a {algorithm} key; talvault certifies Ed25519 and ECDSA P-256 keys only (as Talos's own tooling makes)"
    )]
    UnsupportedKey {
        /// The key's algorithm.
        algorithm: String,
    },
    /// The self-signature does not verify: the requester does not hold the key.
    #[error("the CSR signature does not verify")]
    BadSignature,
    /// The request asks to be a CA (BasicConstraints CA:TRUE, keyCertSign or cRLSign).
    #[error("the CSR asks for a CA certificate; only client certificates are issued")]
    AsksForCa,
    /// The request asks for extended key usages besides clientAuth.
    #[error("the CSR asks for extended key usage {}; only clientAuth is issued", usages.join(", "))]
    AsksForUsage {
        /// What it asks for besides clientAuth.
        usages: Vec<String>,
    },
}

/// A CSR whose signature verified. Only its public key is used: the subject, SANs and requested
/// extensions are ignored (roles come from the policy and flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    spki_der: Vec<u8>,
    algorithm: KeyAlgorithm,
    requested_subject: String,
    has_requested_extensions: bool,
    requested: RequestedUsage,
}

/// What a CSR's extension request asks for beyond a client certificate (ignored when issuing,
/// but a request that asks to be a CA or a server is refused by `kubeconfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedUsage {
    /// BasicConstraints CA:TRUE.
    pub ca: bool,
    /// KeyUsage keyCertSign or cRLSign.
    pub cert_sign: bool,
    /// ExtendedKeyUsage other than clientAuth (serverAuth, anyExtendedKeyUsage, …), as names
    /// or dotted OIDs.
    pub other_eku: Vec<String>,
}

impl VerifiedCsr {
    /// The SubjectPublicKeyInfo DER that will be certified.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The subject the CSR asked for, as text (ignored; for messages only).
    pub fn requested_subject(&self) -> &str {
        &self.requested_subject
    }

    /// Whether the CSR asked for extensions (ignored; for a warning).
    pub fn has_requested_extensions(&self) -> bool {
        self.has_requested_extensions
    }

    /// What the extension request asks for beyond a client certificate.
    pub fn requested_usage(&self) -> &RequestedUsage {
        &self.requested
    }
}

fn requested_usage(csr: &X509CertificationRequest<'_>) -> RequestedUsage {
    let mut out = RequestedUsage::default();
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::BasicConstraints(bc) => out.ca |= bc.ca,
            ParsedExtension::KeyUsage(ku) => out.cert_sign |= ku.key_cert_sign() || ku.crl_sign(),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                for (set, name) in [
                    (eku.any, "anyExtendedKeyUsage"),
                    (eku.server_auth, "serverAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ] {
                    if set {
                        out.other_eku.push(name.to_owned());
                    }
                }
                out.other_eku
                    .extend(eku.other.iter().map(|o| o.to_id_string()));
            }
            _ => {}
        }
    }
    out
}

/// Reads a PKCS#10 CSR (PEM `CERTIFICATE REQUEST` or DER), checks its key type and verifies its
/// self-signature.
pub fn verify_csr(pem_or_der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let pem_block;
    let der: &[u8] = if pem_or_der.windows(11).any(|w| w == b"-----BEGIN ") {
        pem_block = keys::pem_decode_first(pem_or_der).ok_or(CsrError::Pem)?;
        if pem_block.label != "CERTIFICATE REQUEST" && pem_block.label != "NEW CERTIFICATE REQUEST"
        {
            return Err(CsrError::PemLabel {
                label: pem_block.label.clone(),
            });
        }
        &pem_block.der
    } else {
        pem_or_der
    };
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| CsrError::Parse {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CsrError::TrailingData);
    }
    let info = &csr.certification_request_info;
    let algorithm = supported_key(&info.subject_pki)?;
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    Ok(VerifiedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        algorithm,
        requested_subject: info.subject.to_string(),
        has_requested_extensions: csr.requested_extensions().is_some(),
        requested: requested_usage(&csr),
    })
}

/// The key algorithm of an SPKI, or a description of what it is when unsupported.
fn key_algorithm(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyAlgorithm, String> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_ED25519 => Ok(KeyAlgorithm::Ed25519),
        OID_RSA => Ok(KeyAlgorithm::Rsa),
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(KeyAlgorithm::EcdsaP256),
                Some(OID_P384) => Err("ECDSA P-384".into()),
                Some(OID_P521) => Err("ECDSA P-521".into()),
                Some(other) => Err(format!("ECDSA (curve {other})")),
                None => Err("ECDSA (explicit or missing curve)".into()),
            }
        }
        other => Err(format!("unknown (OID {other})")),
    }
}

fn supported_key(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyAlgorithm, CsrError> {
    match key_algorithm(spki) {
        Ok(alg @ (KeyAlgorithm::Ed25519 | KeyAlgorithm::EcdsaP256)) => Ok(alg),
        Ok(KeyAlgorithm::Rsa) => Err(CsrError::UnsupportedKey {
            algorithm: "RSA".into(),
        }),
        Err(algorithm) => Err(CsrError::UnsupportedKey { algorithm }),
    }
}

/// Mints a leaf for `grant` under the CA whose certificate is `ca_cert_pem` and whose key signs
/// through `ca_signer` (in memory or in a token).
pub fn issue_leaf(
    ca_cert_pem: &[u8],
    ca_signer: &dyn rcgen::SigningKey,
    grant: &Grant,
    subject_key: SubjectKey,
    time: IssueTime,
    rng: &dyn SecureRandom,
) -> Result<IssuedLeaf, IssueError> {
    let order = LeafOrder {
        subject: grant.subject_der().map_err(CertError::from)?,
        ttl: grant.ttl(),
        check: &|template| grant.check_template(template),
    };
    let mut leaf = mint_leaf(ca_cert_pem, ca_signer, &order, subject_key, time, rng)?;
    leaf.roles = grant.roles().to_vec();
    Ok(leaf)
}

/// What a client leaf carries besides the profile every client leaf shares: its subject, its
/// lifetime, and the grant's last check of the final template ("check policy twice").
pub(crate) struct LeafOrder<'a> {
    /// The subject Name DER.
    pub subject: Vec<u8>,
    /// The lifetime from the issuing moment.
    pub ttl: super::ttl::Ttl,
    /// The grant's check of the final template, just before signing.
    pub check: &'a dyn Fn(&CertificateTemplate) -> Result<(), GrantViolation>,
}

/// Mints a client leaf in the profile Talos gives its clients (module documentation) with the
/// subject and lifetime of `order`; `roles` of the result is empty.
pub(crate) fn mint_leaf(
    ca_cert_pem: &[u8],
    ca_signer: &dyn rcgen::SigningKey,
    order: &LeafOrder<'_>,
    subject_key: SubjectKey,
    time: IssueTime,
    rng: &dyn SecureRandom,
) -> Result<IssuedLeaf, IssueError> {
    if time.backdate < Duration::ZERO || time.backdate > MAX_BACKDATE {
        return Err(IssueError::Backdate {
            seconds: time.backdate.whole_seconds(),
        });
    }
    let block = keys::pem_decode_first(ca_cert_pem).ok_or(IssueError::CaNotPem)?;
    if block.label != keys::LABEL_CERTIFICATE {
        return Err(IssueError::CaNotPem);
    }
    let (_, ca) = X509Certificate::from_der(&block.der).map_err(|e| IssueError::CaParse {
        reason: e.to_string(),
    })?;
    let ca_facts = CaFacts::read(&ca)?;
    if ca_signer.der_bytes() != ca.public_key().subject_public_key.data.as_ref() {
        return Err(IssueError::SignerMismatch);
    }

    let now = time
        .now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| IssueError::TimeOutOfRange)?;
    if now < ca_facts.not_before || now > ca_facts.not_after {
        return Err(IssueError::CaNotValidNow {
            now,
            ca_not_before: ca_facts.not_before,
            ca_not_after: ca_facts.not_after,
        });
    }
    let not_before = now
        .checked_sub(time.backdate)
        .ok_or(IssueError::TimeOutOfRange)?;
    let not_after = now
        .checked_add(order.ttl.as_duration())
        .ok_or(IssueError::TimeOutOfRange)?;
    if not_after > ca_facts.not_after {
        return Err(IssueError::LeafOutlivesCa {
            leaf_not_after: not_after,
            ca_not_after: ca_facts.not_after,
        });
    }

    let (spki, key_pem, key_algorithm) = match subject_key {
        SubjectKey::FromCsr(csr) => (csr.spki_der, None, csr.algorithm),
        SubjectKey::Generate => {
            let key = match ca_facts.algorithm {
                KeyAlgorithm::Ed25519 => PrivateKey::generate_ed25519(rng)?,
                KeyAlgorithm::EcdsaP256 => PrivateKey::generate_p256(rng)?,
                KeyAlgorithm::Rsa => PrivateKey::from_rsa_pkcs1(&generate_rsa4096(rng)?)?,
            };
            (
                key.public_key_info()?,
                Some(key.to_talos_pem()?),
                key.algorithm(),
            )
        }
    };

    let template = CertificateTemplate {
        serial: random_serial(rng)?,
        // Go: template.Issuer is replaced by parent.RawSubject (crypto/x509 CreateCertificate).
        issuer: ca.tbs_certificate.subject.as_raw().to_vec(),
        subject: order.subject.clone(),
        not_before,
        not_after,
        subject_public_key_info: spki,
        key_usage: KeyUsage {
            digital_signature: true,
            ..KeyUsage::default()
        },
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
        ca: None,
        // Go gives non-CA leaves no SKI (reference/talos-formats.md §0.3).
        subject_key_id: None,
        authority_key_id: Some(ca_facts.key_id),
    };
    // Check policy twice: the final template against the grant, just before signing.
    (order.check)(&template)?;
    let cert_der = template.sign(ca_signer)?;
    // The result must parse as a certificate. Checking the signature itself is the job of
    // signers that can return garbage (a remote or PKCS#11 key verifies its own output); an
    // in-memory ring key cannot, and an Ed25519 verification would double the cost here.
    X509Certificate::from_der(&cert_der).map_err(|_| IssueError::SignatureCheck)?;

    let significant: Vec<u8> = template
        .serial
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    Ok(IssuedLeaf {
        cert_pem: keys::pem_encode(keys::LABEL_CERTIFICATE, &cert_der).to_vec(),
        fingerprint_sha256: hex(digest::digest(&digest::SHA256, &cert_der).as_ref()),
        cert_der,
        key_pem,
        key_algorithm,
        serial_hex: hex(&significant),
        not_before,
        not_after,
        roles: Vec::new(),
    })
}

/// What issuance needs from the CA certificate.
struct CaFacts {
    algorithm: KeyAlgorithm,
    key_id: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl CaFacts {
    fn read(ca: &X509Certificate<'_>) -> Result<CaFacts, IssueError> {
        // Go's x509.Verify rejects a parent that is not a CA (BasicConstraints CA:TRUE) and, when
        // KeyUsage is present, one without keyCertSign.
        if !ca.is_ca() {
            return Err(IssueError::NotACa);
        }
        let key_usage = ca.key_usage().map_err(|e| IssueError::CaParse {
            reason: e.to_string(),
        })?;
        if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(IssueError::NotACa);
        }
        let algorithm = key_algorithm(ca.public_key())
            .map_err(|algorithm| IssueError::UnsupportedCaKey { algorithm })?;
        let ski = ca
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        // AKI = the CA's SKI, as Go copies parent.SubjectKeyId. A CA without an SKI gets the
        // RFC 5280 §4.2.1.2 method-1 id (SHA-1 of the subjectPublicKey bits), which is what Go
        // would have put into the CA's SKI; verifiers match it against the CA key or ignore it.
        let key_id = ski.unwrap_or_else(|| {
            digest::digest(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                &ca.public_key().subject_public_key.data,
            )
            .as_ref()
            .to_vec()
        });
        let validity = ca.validity();
        Ok(CaFacts {
            algorithm,
            key_id,
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
        })
    }
}

fn random_serial(rng: &dyn SecureRandom) -> Result<Vec<u8>, IssueError> {
    crate::pki::cert::random_serial(rng).ok_or(IssueError::Random)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::bundle::CaName;
    use crate::bundle::generate::new_ca;
    use crate::der::{self, tag};
    use crate::pki::cert::CaConstraints;
    use crate::pki::name;
    use crate::pki::policy::{Holder, Policy, Request};
    use ring::rand::SystemRandom;
    use x509_parser::oid_registry;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00:00.750 UTC)
    }

    struct Ca {
        pem: Vec<u8>,
        key: PrivateKey,
    }

    fn ca(kind: CaName) -> Ca {
        let c = new_ca(kind, now() - Duration::days(1), &SystemRandom::new()).unwrap();
        Ca {
            pem: c.crt,
            key: PrivateKey::from_talos_pem(c.key.expose()).unwrap(),
        }
    }

    fn grant(roles: &[&str], holder: Option<&str>) -> Grant {
        Policy::default()
            .grant(&Request {
                roles: Role::parse_set(roles.iter().copied()).unwrap(),
                ttl: None,
                holder: holder.map(|h| Holder::parse(h).unwrap()),
                break_glass: None,
            })
            .unwrap()
    }

    fn issue(ca: &Ca, g: &Grant, key: SubjectKey) -> Result<IssuedLeaf, IssueError> {
        issue_leaf(
            &ca.pem,
            &ca.key.key_pair().unwrap(),
            g,
            key,
            IssueTime::new(now()),
            &SystemRandom::new(),
        )
    }

    const GO_SUBJECT_ADMIN_READER_BACKUP: &str = "303c313a300f060355040a13086f733a61646d696e3010060355040a13096f733a7265616465723015060355040a130e6f733a657463643a6261636b7570";

    #[test]
    fn subject_bytes_match_go() {
        // Go 1.19: asn1.Marshal(pkix.Name{Organization: []string{"os:admin", "os:reader",
        // "os:etcd:backup"}}.ToRDNSequence()).
        let g = grant(&["os:reader", "os:etcd:backup", "os:admin"], None);
        assert_eq!(
            hex(&g.subject_der().unwrap()),
            GO_SUBJECT_ADMIN_READER_BACKUP
        );
        let leaf = issue(&ca(CaName::Os), &g, SubjectKey::Generate).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert_eq!(hex(cert.subject().as_raw()), GO_SUBJECT_ADMIN_READER_BACKUP);
        let orgs: Vec<&str> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["os:admin", "os:reader", "os:etcd:backup"]);
    }

    fn pin_profile(ca_pem: &[u8], leaf: &IssuedLeaf, ttl: Duration) {
        let ca_block = keys::pem_decode_first(ca_pem).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_block.der).unwrap();
        let (rest, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.version().0, 2);
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        cert.verify_signature(Some(ca.public_key())).unwrap();
        // Serial: positive, at most 16 bytes.
        let serial = cert.tbs_certificate.serial.to_bytes_be();
        assert!(!serial.is_empty() && serial.len() <= 16);
        assert_eq!(hex(&serial), leaf.serial_hex);
        // Validity: now − 10 s .. now + TTL, whole seconds.
        let nb = cert.validity().not_before.to_datetime();
        let na = cert.validity().not_after.to_datetime();
        let whole_now = now().replace_nanosecond(0).unwrap();
        assert_eq!(nb, whole_now - DEFAULT_BACKDATE);
        assert_eq!(na, whole_now + ttl);
        assert_eq!((nb, na), (leaf.not_before, leaf.not_after));
        // Extensions in Go's order: KU (critical), EKU, AKI; nothing else.
        let oids: Vec<String> = cert
            .extensions()
            .iter()
            .map(|e| e.oid.to_id_string())
            .collect();
        assert_eq!(oids, ["2.5.29.15", "2.5.29.37", "2.5.29.35"]);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert_eq!(ku.value.flags, 1, "digitalSignature only");
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(!eku.critical);
        assert!(eku.value.client_auth && !eku.value.server_auth && !eku.value.any);
        assert!(eku.value.other.is_empty());
        assert_eq!(
            cert.extensions()[1].value,
            [
                0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02
            ]
        );
        assert!(cert.basic_constraints().unwrap().is_none());
        assert!(!cert.is_ca());
        let ca_ski = ca
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.key_identifier.unwrap().0, &ca_ski[..]);
        assert!(aki.authority_cert_issuer.is_none() && aki.authority_cert_serial.is_none());
        assert_eq!(
            leaf.fingerprint_sha256,
            hex(digest::digest(&digest::SHA256, &leaf.cert_der).as_ref())
        );
        assert_eq!(
            keys::pem_decode_first(&leaf.cert_pem)
                .unwrap()
                .der
                .as_slice(),
            &leaf.cert_der[..]
        );
    }

    #[test]
    fn ed25519_ca_gives_ed25519_leaf_with_talos_profile() {
        let ca = ca(CaName::Os);
        let g = grant(&["os:operator"], Some("alice"));
        let leaf = issue(&ca, &g, SubjectKey::Generate).unwrap();
        pin_profile(&ca.pem, &leaf, Duration::hours(24));
        assert_eq!(leaf.key_algorithm, KeyAlgorithm::Ed25519);
        let key_pem = leaf.key_pem.as_ref().unwrap();
        assert!(
            key_pem
                .expose()
                .starts_with(b"-----BEGIN ED25519 PRIVATE KEY-----\n")
        );
        let key = PrivateKey::from_talos_pem(key_pem.expose()).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert_eq!(cert.public_key().raw, &key.public_key_info().unwrap()[..]);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            oid_registry::OID_SIG_ED25519
        );
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["alice"]);
        assert_eq!(leaf.roles, Role::parse_set(["os:operator"]).unwrap());
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn ecdsa_ca_gives_p256_leaf() {
        let ca = ca(CaName::Etcd);
        let leaf = issue(&ca, &grant(&["os:reader"], None), SubjectKey::Generate).unwrap();
        pin_profile(&ca.pem, &leaf, Duration::hours(720));
        assert_eq!(leaf.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert!(
            leaf.key_pem
                .unwrap()
                .expose()
                .starts_with(b"-----BEGIN EC PRIVATE KEY-----\n")
        );
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert_eq!(
            cert.signature_algorithm.algorithm,
            oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
        assert_eq!(cert.subject().iter_common_name().count(), 0);
    }

    /// A PKCS#10 request signed by `key`, built by hand: SEQUENCE { info, algId, signature }.
    fn csr(key: &PrivateKey, subject: &[u8]) -> Vec<u8> {
        let kp = key.key_pair().unwrap();
        let info = der::sequence(&[
            &der::tlv(tag::INTEGER, &[0]).unwrap(),
            subject,
            &key.public_key_info().unwrap(),
            &[0xa0, 0x00],
        ])
        .unwrap();
        let alg =
            crate::pki::cert::algorithm_identifier(rcgen::PublicKeyData::algorithm(&kp)).unwrap();
        let sig = rcgen::SigningKey::sign(&kp, &info).unwrap();
        let mut bits = vec![0];
        bits.extend_from_slice(&sig);
        der::sequence(&[&info, alg, &der::tlv(tag::BIT_STRING, &bits).unwrap()]).unwrap()
    }

    #[test]
    fn csr_keys_are_certified_and_subjects_ignored() {
        let rng = SystemRandom::new();
        for ca_kind in [CaName::Os, CaName::Etcd] {
            let ca = ca(ca_kind);
            for key in [
                PrivateKey::generate_ed25519(&rng).unwrap(),
                PrivateKey::generate_p256(&rng).unwrap(),
            ] {
                let der = csr(
                    &key,
                    &name::encode(&["os:admin", "os:impersonator"], Some("mallory")).unwrap(),
                );
                let pem = keys::pem_encode("CERTIFICATE REQUEST", &der);
                for input in [&der[..], &pem[..]] {
                    let verified = verify_csr(input).unwrap();
                    assert_eq!(verified.algorithm(), key.algorithm());
                    assert!(verified.requested_subject().contains("mallory"));
                    assert!(!verified.has_requested_extensions());
                    let g = grant(&["os:reader"], None);
                    let leaf = issue(&ca, &g, SubjectKey::FromCsr(verified)).unwrap();
                    assert!(leaf.key_pem.is_none());
                    assert_eq!(leaf.key_algorithm, key.algorithm());
                    pin_profile(&ca.pem, &leaf, Duration::hours(720));
                    let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
                    assert_eq!(cert.public_key().raw, &key.public_key_info().unwrap()[..]);
                    assert_eq!(
                        cert.subject().as_raw(),
                        &name::encode(&["os:reader"], None).unwrap()[..]
                    );
                }
            }
        }
    }

    #[test]
    fn csr_refusals() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate_ed25519(&rng).unwrap();
        let mut der = csr(&key, &name::encode(&[], None).unwrap());
        let last = der.len() - 1;
        der[last] ^= 1;
        assert_eq!(verify_csr(&der), Err(CsrError::BadSignature));
        let cert_pem = keys::pem_encode(keys::LABEL_CERTIFICATE, &der);
        assert_eq!(
            verify_csr(&cert_pem),
            Err(CsrError::PemLabel {
                label: "CERTIFICATE".into()
            })
        );
        assert!(matches!(
            verify_csr(b"not a csr"),
            Err(CsrError::Parse { .. })
        ));
        let mut trailing = csr(&key, &name::encode(&[], None).unwrap());
        trailing.push(0);
        assert_eq!(verify_csr(&trailing), Err(CsrError::TrailingData));

        // P-384: ring can make one; talvault refuses it by name.
        let p384 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(p384.as_ref()),
            &rcgen::PKCS_ECDSA_P384_SHA384,
        )
        .unwrap();
        let info = der::sequence(&[
            &der::tlv(tag::INTEGER, &[0]).unwrap(),
            &name::encode(&[], None).unwrap(),
            &rcgen::PublicKeyData::subject_public_key_info(&kp),
            &[0xa0, 0x00],
        ])
        .unwrap();
        let sig = rcgen::SigningKey::sign(&kp, &info).unwrap();
        let mut bits = vec![0];
        bits.extend_from_slice(&sig);
        let alg = [
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
        ];
        let p384_csr =
            der::sequence(&[&info, &alg, &der::tlv(tag::BIT_STRING, &bits).unwrap()]).unwrap();
        let err = verify_csr(&p384_csr).unwrap_err();
        assert_eq!(
            err,
            CsrError::UnsupportedKey {
                algorithm: "ECDSA P-384".into()
            }
        );
        assert!(err.to_string().contains("Ed25519 and ECDSA P-256"), "{err}");
    }

    #[test]
    fn ca_without_ski_gets_sha1_key_id() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate_ed25519(&rng).unwrap();
        let subject = name::encode(&["talos"], None).unwrap();
        let template = CertificateTemplate {
            serial: vec![1; 16],
            issuer: subject.clone(),
            subject,
            not_before: now() - Duration::days(1),
            not_after: now() + Duration::days(3650),
            subject_public_key_info: key.public_key_info().unwrap(),
            key_usage: KeyUsage {
                digital_signature: true,
                key_cert_sign: true,
                crl_sign: false,
            },
            extended_key_usage: vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
            ca: Some(CaConstraints { path_len: None }),
            subject_key_id: None,
            authority_key_id: None,
        };
        let signer = key.key_pair().unwrap();
        let ca = Ca {
            pem: keys::pem_encode(keys::LABEL_CERTIFICATE, &template.sign(&signer).unwrap())
                .to_vec(),
            key,
        };
        let leaf = issue(&ca, &grant(&["os:reader"], None), SubjectKey::Generate).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        let spki = ca.key.public_key_info().unwrap();
        // The Ed25519 SPKI is 12 bytes of header then the 32-byte key.
        let expected = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &spki[12..]);
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, expected.as_ref());
    }

    #[test]
    fn refusals() {
        let os = ca(CaName::Os);
        let etcd = ca(CaName::Etcd);
        let g = grant(&["os:reader"], None);
        let rng = SystemRandom::new();

        // The signer must own the CA certificate.
        let err = issue_leaf(
            &os.pem,
            &etcd.key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            IssueTime::new(now()),
            &rng,
        )
        .unwrap_err();
        assert!(matches!(err, IssueError::SignerMismatch), "{err}");

        // A leaf is not a CA.
        let leaf = issue(&os, &g, SubjectKey::Generate).unwrap();
        let leaf_key = PrivateKey::from_talos_pem(leaf.key_pem.as_ref().unwrap().expose()).unwrap();
        let not_ca = Ca {
            pem: leaf.cert_pem.clone(),
            key: leaf_key,
        };
        assert!(matches!(
            issue(&not_ca, &g, SubjectKey::Generate),
            Err(IssueError::NotACa)
        ));

        // Backdating is bounded.
        for seconds in [-1, 61] {
            let t = IssueTime {
                now: now(),
                backdate: Duration::seconds(seconds),
            };
            let err = issue_leaf(
                &os.pem,
                &os.key.key_pair().unwrap(),
                &g,
                SubjectKey::Generate,
                t,
                &rng,
            )
            .unwrap_err();
            assert!(matches!(err, IssueError::Backdate { .. }), "{err}");
        }
        let t = IssueTime {
            now: now(),
            backdate: Duration::ZERO,
        };
        let zero = issue_leaf(
            &os.pem,
            &os.key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            t,
            &rng,
        )
        .unwrap();
        assert_eq!(zero.not_before, now().replace_nanosecond(0).unwrap());

        // Outside the CA's validity, or outliving it.
        let t = IssueTime::new(now() - Duration::days(2));
        let err = issue_leaf(
            &os.pem,
            &os.key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            t,
            &rng,
        )
        .unwrap_err();
        assert!(matches!(err, IssueError::CaNotValidNow { .. }), "{err}");
        let t = IssueTime::new(now() + Duration::days(3650) - Duration::days(10));
        let err = issue_leaf(
            &os.pem,
            &os.key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            t,
            &rng,
        )
        .unwrap_err();
        assert!(matches!(err, IssueError::LeafOutlivesCa { .. }), "{err}");
        assert!(err.to_string().contains("request a shorter TTL"), "{err}");

        // Not PEM.
        let err = issue_leaf(
            b"junk",
            &os.key.key_pair().unwrap(),
            &g,
            SubjectKey::Generate,
            IssueTime::new(now()),
            &rng,
        )
        .unwrap_err();
        assert!(matches!(err, IssueError::CaNotPem));
    }

    #[test]
    fn serials_are_fresh_and_positive() {
        let os = ca(CaName::Os);
        let g = grant(&["os:reader"], None);
        let a = issue(&os, &g, SubjectKey::Generate).unwrap();
        let b = issue(&os, &g, SubjectKey::Generate).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        assert!(a.serial_hex.len() <= 32 && !a.serial_hex.starts_with("00"));
        assert_ne!(a.fingerprint_sha256, b.fingerprint_sha256);
    }
}
