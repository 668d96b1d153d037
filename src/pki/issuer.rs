//! PURE: an environment's client-issuing CA certificate (an "issuer"): made, and read back and
//! checked. No I/O, no clock, no randomness of its own; it signs only through the given signer.
//!
//! Profile (design.md §2; reference/talos-formats.md §6.3): a **self-signed** root, never signed
//! by the Talos OS CA, so that dropping it from `machine.acceptedCAs` really cuts off every leaf
//! it signed; BasicConstraints CA:TRUE with pathLenConstraint 0 (critical); KeyUsage
//! digitalSignature + keyCertSign + cRLSign (critical); EKU **clientAuth only**, so that Go's
//! chain EKU check refuses it for server certificates on the nodes (talos-formats.md §6.3 item 4);
//! SubjectKeyIdentifier = SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1); no
//! AuthorityKeyIdentifier, as Go omits it on self-signed certificates (talos-formats.md §0.3);
//! subject `O=talvault, CN=<name>`; a random positive 128-bit serial; Ed25519 or ECDSA P-256 as
//! the signer's key.

use ring::digest;
use ring::rand::SecureRandom;
use thiserror::Error;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use super::cert::{
    CaConstraints, CertError, CertificateTemplate, ExtendedKeyUsage, KeyUsage, random_serial,
};
use super::name;
use crate::digest::Fingerprint;
use crate::hex::encode as hex;
use crate::keys::{self, KeyAlgorithm};

/// The Organization every issuer subject carries.
pub const ISSUER_ORGANIZATION: &str = "talvault";

/// X.520 ub-common-name (RFC 5280 Appendix A): the longest CN a conforming subject may carry.
const MAX_COMMON_NAME_CHARS: usize = 64;

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_KU: &str = "2.5.29.15";
const OID_EKU: &str = "2.5.29.37";
const OID_BC: &str = "2.5.29.19";

/// Default issuer lifetime: a year, rotated well before it ends.
pub const DEFAULT_LIFETIME: &str = "8760h";
/// Shortest issuer lifetime accepted.
pub const MIN_LIFETIME_HOURS: u64 = 1;
/// Longest issuer lifetime accepted (10 years, as Talos' own CAs).
pub const MAX_LIFETIME_HOURS: u64 = 87600;

/// Whether `lifetime` is one an issuer may have: 1 h to 10 years.
pub fn lifetime_in_bounds(lifetime: crate::pki::ttl::Ttl) -> bool {
    (MIN_LIFETIME_HOURS * 3600..=MAX_LIFETIME_HOURS * 3600).contains(&lifetime.as_seconds())
}

/// The key algorithms an issuer can have (what Talos nodes and hardware tokens both handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerAlgorithm {
    /// Ed25519, as the Talos OS CA.
    Ed25519,
    /// ECDSA P-256, what most hardware tokens sign.
    EcdsaP256,
}

impl IssuerAlgorithm {
    /// The name records and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerAlgorithm::Ed25519 => "ed25519",
            IssuerAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// What to put into a new issuer certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerSpec<'a> {
    /// The subject CN, naming the issuer (e.g. `prod issuer e3 2026-11`).
    pub common_name: &'a str,
    /// NotBefore (sub-seconds are dropped, as DER does).
    pub not_before: OffsetDateTime,
    /// NotAfter (sub-seconds are dropped).
    pub not_after: OffsetDateTime,
}

/// A freshly made issuer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerCertificate {
    /// The certificate DER.
    pub der: Vec<u8>,
    /// The certificate PEM (`CERTIFICATE`, LF line endings, as Go writes it).
    pub pem: String,
    /// The SubjectKeyIdentifier (20 bytes).
    pub subject_key_id: Vec<u8>,
    /// The serial as lowercase hex of its unsigned value, without leading zero bytes.
    pub serial_hex: String,
    /// SHA-256 of the certificate DER (`sha256:<hex>`).
    pub fingerprint: Fingerprint,
}

/// What a stored issuer certificate says, once checked by [`read_issuer_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerFacts {
    /// The raw subject Name DER (also the issuer Name of everything it signs).
    pub subject_der: Vec<u8>,
    /// The subject CN.
    pub common_name: String,
    /// The SubjectKeyIdentifier.
    pub subject_key_id: Vec<u8>,
    /// The raw subjectPublicKey bits (the Ed25519 key or the uncompressed P-256 point), comparable
    /// to `rcgen::PublicKeyData::der_bytes()` of a signer.
    pub public_key: Vec<u8>,
    /// The key algorithm.
    pub algorithm: KeyAlgorithm,
    /// NotBefore.
    pub not_before: OffsetDateTime,
    /// NotAfter.
    pub not_after: OffsetDateTime,
    /// The serial as lowercase hex of its unsigned value, without leading zero bytes.
    pub serial_hex: String,
    /// SHA-256 of the certificate DER (`sha256:<hex>`).
    pub fingerprint: Fingerprint,
}

impl IssuerFacts {
    /// Whether `signer` holds this issuer's key (its public key equals the certificate's). Use it
    /// to match a PKCS#11 key, or a key read from `key.age`, against `issuer.yaml`.
    pub fn matches_signer(&self, signer: &dyn rcgen::PublicKeyData) -> bool {
        signer.der_bytes() == self.public_key.as_slice()
    }
}

/// Why an issuer certificate was not made, or a stored one is not a talvault issuer.
#[derive(Debug, Error)]
pub enum IssuerError {
    /// The common name is empty.
    #[error("the issuer name (subject CN) is empty")]
    EmptyCommonName,
    /// The common name is longer than X.520 allows.
    #[error("the issuer name has {chars} characters; at most {max} fit in a certificate CN")]
    CommonNameTooLong {
        /// Its length in characters.
        chars: usize,
        /// The X.520 upper bound.
        max: usize,
    },
    /// The common name holds control characters.
    #[error("the issuer name {name:?} holds control characters")]
    CommonNameControlCharacters {
        /// The name given.
        name: String,
    },
    /// NotAfter is not after NotBefore.
    #[error(
        "the issuer validity is empty: notAfter {not_after} is not after notBefore {not_before}"
    )]
    EmptyValidity {
        /// NotBefore.
        not_before: OffsetDateTime,
        /// NotAfter.
        not_after: OffsetDateTime,
    },
    /// A key type issuers do not use.
    #[error("issuers use Ed25519 or ECDSA P-256 keys, not {algorithm}")]
    UnsupportedKey {
        /// What the key is.
        algorithm: String,
    },
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Building or signing the certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The input is PEM but holds no decodable block.
    #[error("the issuer certificate PEM does not decode")]
    Pem,
    /// A PEM block that is not a certificate.
    #[error("expected a PEM CERTIFICATE, found {label:?}")]
    PemLabel {
        /// The label found.
        label: String,
    },
    /// The certificate does not parse.
    #[error("the issuer certificate does not parse: {reason}")]
    Parse {
        /// The parser's message.
        reason: String,
    },
    /// Bytes after the certificate.
    #[error("the issuer certificate has trailing data")]
    TrailingData,
    /// Not an X.509 v3 certificate.
    #[error("the issuer certificate is not X.509 v3")]
    NotV3,
    /// Issuer Name differs from subject Name: not a self-signed root (design.md §2).
    #[error("the issuer certificate is not self-signed (issuer {issuer} ≠ subject {subject})")]
    NotSelfSigned {
        /// The issuer Name as text.
        issuer: String,
        /// The subject Name as text.
        subject: String,
    },
    /// The self-signature does not verify under the certificate's own key.
    #[error("the issuer certificate's self-signature does not verify")]
    BadSignature,
    /// The subject is not `O=talvault, CN=<name>`.
    #[error("the issuer certificate subject {subject:?} is not O={ISSUER_ORGANIZATION}, CN=<name>")]
    Subject {
        /// The subject as text.
        subject: String,
    },
    /// BasicConstraints is missing, not critical, not CA:TRUE, or its path length is not 0.
    #[error(
        "the issuer certificate must have critical BasicConstraints CA:TRUE, pathlen:0 (found {found})"
    )]
    BasicConstraints {
        /// What was found.
        found: String,
    },
    /// KeyUsage is missing, not critical, or lacks keyCertSign or cRLSign.
    #[error(
        "the issuer certificate must have critical KeyUsage with keyCertSign and cRLSign (found {found})"
    )]
    KeyUsage {
        /// What was found.
        found: String,
    },
    /// The EKU is not exactly `[clientAuth]` (talos-formats.md §6.3 item 4).
    #[error(
        "the issuer certificate's ExtendedKeyUsage must be exactly [clientAuth] (found {found})"
    )]
    ExtendedKeyUsage {
        /// What was found.
        found: String,
    },
    /// No SubjectKeyIdentifier (leaves and CRLs name the issuer by it).
    #[error("the issuer certificate has no SubjectKeyIdentifier")]
    MissingSubjectKeyId,
    /// A critical extension talvault does not write; Go would refuse the chain.
    #[error("the issuer certificate has an unexpected critical extension {oid}")]
    UnexpectedCriticalExtension {
        /// The extension's OID.
        oid: String,
    },
    /// The signed result is not the certificate talvault meant to sign (a signer returned a bad
    /// signature, or the template drifted from the profile).
    #[error("refusing the new issuer certificate: {0}")]
    SelfCheck(Box<IssuerError>),
}

/// Makes a self-signed issuer certificate for the key behind `signer` (in memory or in a token),
/// then reads it back through [`read_issuer_certificate`] so that a bad signature or profile
/// drift is caught before the certificate is stored.
pub fn create_issuer_certificate(
    signer: &dyn rcgen::SigningKey,
    spec: &IssuerSpec<'_>,
    rng: &dyn SecureRandom,
) -> Result<IssuerCertificate, IssuerError> {
    check_common_name(spec.common_name)?;
    let not_before = whole_seconds(spec.not_before)?;
    let not_after = whole_seconds(spec.not_after)?;
    if not_after <= not_before {
        return Err(IssuerError::EmptyValidity {
            not_before,
            not_after,
        });
    }
    let alg = signer.algorithm();
    if alg != &rcgen::PKCS_ED25519 && alg != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(IssuerError::UnsupportedKey {
            algorithm: format!("{alg:?}"),
        });
    }
    // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value (the key bits,
    // without tag, length or unused-bits octet), which is what Go ≤ 1.24 writes for CA templates.
    let subject_key_id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, signer.der_bytes())
        .as_ref()
        .to_vec();
    let subject =
        name::encode(&[ISSUER_ORGANIZATION], Some(spec.common_name)).map_err(CertError::from)?;
    let template = CertificateTemplate {
        serial: random_serial(rng).ok_or(IssuerError::Random)?,
        // Self-signed: issuer = subject (design.md §2: never signed by the OS CA).
        issuer: subject.clone(),
        subject,
        not_before,
        not_after,
        subject_public_key_info: signer.subject_public_key_info(),
        key_usage: KeyUsage {
            digital_signature: true,
            key_cert_sign: true,
            crl_sign: true,
        },
        // Talos: a CA in acceptedCAs also vouches for server certificates unless its EKU
        // excludes serverAuth (talos-formats.md §6.3 item 4).
        extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
        // RFC 5280 §4.2.1.9: pathLenConstraint 0, the issuer signs leaves only.
        ca: Some(CaConstraints { path_len: Some(0) }),
        subject_key_id: Some(subject_key_id.clone()),
        // Go omits the AKI on self-signed certificates (talos-formats.md §0.3).
        authority_key_id: None,
    };
    let der = template.sign(signer)?;
    // Check policy twice: the signed result must read back as a talvault issuer.
    let facts = read_issuer_certificate(&der).map_err(|e| IssuerError::SelfCheck(Box::new(e)))?;
    let pem =
        String::from_utf8_lossy(&keys::pem_encode(keys::LABEL_CERTIFICATE, &der)).into_owned();
    Ok(IssuerCertificate {
        pem,
        subject_key_id,
        serial_hex: facts.serial_hex,
        fingerprint: facts.fingerprint,
        der,
    })
}

/// Parses a stored issuer certificate (PEM `CERTIFICATE` or DER; untrusted input read from
/// `issuer.yaml`) and checks that it is a talvault issuer: X.509 v3, self-signed (issuer Name =
/// subject Name and the signature verifies under its own key), subject `O=talvault, CN=<name>`,
/// critical BasicConstraints CA:TRUE pathlen 0, critical KeyUsage with keyCertSign and cRLSign,
/// EKU exactly `[clientAuth]`, an SKI, no unknown critical extension, and an Ed25519 or P-256 key.
pub fn read_issuer_certificate(pem_or_der: &[u8]) -> Result<IssuerFacts, IssuerError> {
    let block;
    let der: &[u8] = if pem_or_der.windows(11).any(|w| w == b"-----BEGIN ") {
        block = keys::pem_decode_first(pem_or_der).ok_or(IssuerError::Pem)?;
        if block.label != keys::LABEL_CERTIFICATE {
            return Err(IssuerError::PemLabel {
                label: block.label.clone(),
            });
        }
        &block.der
    } else {
        pem_or_der
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| IssuerError::Parse {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(IssuerError::TrailingData);
    }
    if cert.version() != X509Version::V3 {
        return Err(IssuerError::NotV3);
    }
    let subject = cert.subject();
    if cert.issuer().as_raw() != subject.as_raw() {
        return Err(IssuerError::NotSelfSigned {
            issuer: cert.issuer().to_string(),
            subject: subject.to_string(),
        });
    }

    let spki = cert.public_key();
    let algorithm = match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_ED25519 => KeyAlgorithm::Ed25519,
        OID_EC_PUBLIC_KEY
            if spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .is_some_and(|c| c.to_id_string() == OID_P256) =>
        {
            KeyAlgorithm::EcdsaP256
        }
        other => {
            return Err(IssuerError::UnsupportedKey {
                algorithm: format!("a key with algorithm OID {other}"),
            });
        }
    };
    // Self-signed means the signature verifies under the certificate's own key.
    cert.verify_signature(None)
        .map_err(|_| IssuerError::BadSignature)?;

    // The subject: exactly O=talvault and one CN, nothing else.
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    let cns: Vec<&str> = subject
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    let attributes = subject.iter_attributes().count();
    let common_name = match (orgs.as_slice(), cns.as_slice()) {
        ([ISSUER_ORGANIZATION], [cn]) if attributes == 2 && !cn.is_empty() => (*cn).to_owned(),
        _ => {
            return Err(IssuerError::Subject {
                subject: subject.to_string(),
            });
        }
    };

    let parse_err = |e: x509_parser::error::X509Error| IssuerError::Parse {
        reason: e.to_string(),
    };
    // RFC 5280 §4.2.1.9: a CA that signs only end-entity certificates: pathLenConstraint 0.
    match cert.basic_constraints().map_err(parse_err)? {
        Some(bc) if bc.critical && bc.value.ca && bc.value.path_len_constraint == Some(0) => {}
        Some(bc) => {
            return Err(IssuerError::BasicConstraints {
                found: format!(
                    "critical={}, CA={}, pathlen={:?}",
                    bc.critical, bc.value.ca, bc.value.path_len_constraint
                ),
            });
        }
        None => {
            return Err(IssuerError::BasicConstraints {
                found: "no BasicConstraints".into(),
            });
        }
    }
    // RFC 5280 §4.2.1.3: keyCertSign to sign leaves, cRLSign to sign its CRL.
    match cert.key_usage().map_err(parse_err)? {
        Some(ku) if ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign() => {}
        Some(ku) => {
            return Err(IssuerError::KeyUsage {
                found: format!("critical={}, {}", ku.critical, ku.value),
            });
        }
        None => {
            return Err(IssuerError::KeyUsage {
                found: "no KeyUsage".into(),
            });
        }
    }
    // Talos: clientAuth only, so nodes never accept it for serverAuth (talos-formats.md §6.3).
    match cert.extended_key_usage().map_err(parse_err)? {
        Some(eku)
            if eku.value.client_auth
                && !eku.value.server_auth
                && !eku.value.any
                && !eku.value.code_signing
                && !eku.value.email_protection
                && !eku.value.time_stamping
                && !eku.value.ocsp_signing
                && eku.value.other.is_empty() => {}
        Some(eku) => {
            return Err(IssuerError::ExtendedKeyUsage {
                found: format!("{:?}", eku.value),
            });
        }
        None => {
            return Err(IssuerError::ExtendedKeyUsage {
                found: "no ExtendedKeyUsage (any purpose)".into(),
            });
        }
    }
    let mut subject_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
            _ => {
                let oid = ext.oid.to_id_string();
                if ext.critical && ![OID_KU, OID_EKU, OID_BC].contains(&oid.as_str()) {
                    return Err(IssuerError::UnexpectedCriticalExtension { oid });
                }
            }
        }
    }
    let subject_key_id = subject_key_id
        .filter(|id| !id.is_empty())
        .ok_or(IssuerError::MissingSubjectKeyId)?;

    let serial = cert.tbs_certificate.serial.to_bytes_be();
    let significant: Vec<u8> = serial.iter().copied().skip_while(|&b| b == 0).collect();
    let validity = cert.validity();
    Ok(IssuerFacts {
        subject_der: subject.as_raw().to_vec(),
        common_name,
        subject_key_id,
        public_key: spki.subject_public_key.data.to_vec(),
        algorithm,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        serial_hex: hex(&significant),
        fingerprint: Fingerprint::of(der),
    })
}

fn check_common_name(cn: &str) -> Result<(), IssuerError> {
    if cn.trim().is_empty() {
        return Err(IssuerError::EmptyCommonName);
    }
    let chars = cn.chars().count();
    if chars > MAX_COMMON_NAME_CHARS {
        return Err(IssuerError::CommonNameTooLong {
            chars,
            max: MAX_COMMON_NAME_CHARS,
        });
    }
    if cn.chars().any(char::is_control) {
        return Err(IssuerError::CommonNameControlCharacters {
            name: cn.to_owned(),
        });
    }
    Ok(())
}

fn whole_seconds(t: OffsetDateTime) -> Result<OffsetDateTime, IssuerError> {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| IssuerError::Cert(CertError::TimeOutOfRange))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::pki::cert::algorithm_identifier;
    use ring::rand::SystemRandom;
    use time::Duration;
    use time::macros::datetime;

    fn spec(cn: &str) -> IssuerSpec<'_> {
        IssuerSpec {
            common_name: cn,
            not_before: datetime!(2026-03-01 12:00:00.5 UTC),
            not_after: datetime!(2027-03-01 12:00:00 UTC),
        }
    }

    fn keys() -> Vec<PrivateKey> {
        let rng = SystemRandom::new();
        vec![
            PrivateKey::generate_ed25519(&rng).unwrap(),
            PrivateKey::generate_p256(&rng).unwrap(),
        ]
    }

    #[test]
    fn profile_round_trips() {
        let rng = SystemRandom::new();
        for key in keys() {
            let signer = key.key_pair().unwrap();
            let cert =
                create_issuer_certificate(&signer, &spec("prod issuer e3 2026-11"), &rng).unwrap();
            assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
            assert!(!cert.pem.contains('\r'));
            assert_eq!(cert.subject_key_id.len(), 20);
            let facts = read_issuer_certificate(cert.pem.as_bytes()).unwrap();
            assert_eq!(facts, read_issuer_certificate(&cert.der).unwrap());
            assert_eq!(facts.common_name, "prod issuer e3 2026-11");
            assert_eq!(facts.algorithm, key.algorithm());
            assert_eq!(facts.subject_key_id, cert.subject_key_id);
            assert_eq!(facts.serial_hex, cert.serial_hex);
            assert_eq!(facts.fingerprint, cert.fingerprint);
            assert_eq!(facts.fingerprint, Fingerprint::of(&cert.der));
            // Sub-seconds dropped.
            assert_eq!(facts.not_before, datetime!(2026-03-01 12:00:00 UTC));
            assert_eq!(
                facts.subject_der,
                name::encode(&["talvault"], Some("prod issuer e3 2026-11")).unwrap()
            );
            assert!(facts.matches_signer(&signer));
            assert!(!facts.matches_signer(&keys()[0].key_pair().unwrap()));
            // SKI = SHA-1 of the key bits (RFC 5280 §4.2.1.2 method 1).
            let expected = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &facts.public_key);
            assert_eq!(cert.subject_key_id, expected.as_ref());
            // Exactly KU, EKU, BC, SKI in Go's order; no AKI on a self-signed certificate.
            let (_, parsed) = X509Certificate::from_der(&cert.der).unwrap();
            let oids: Vec<String> = parsed
                .extensions()
                .iter()
                .map(|e| e.oid.to_id_string())
                .collect();
            assert_eq!(oids, ["2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.14"]);
            let ku = parsed.key_usage().unwrap().unwrap();
            assert!(
                ku.value.digital_signature() && ku.value.key_cert_sign() && ku.value.crl_sign()
            );
            let serial = parsed.tbs_certificate.serial.to_bytes_be();
            assert!(!serial.is_empty() && serial.len() <= 16);
        }
    }

    #[test]
    fn serials_are_fresh() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate_ed25519(&rng).unwrap();
        let signer = key.key_pair().unwrap();
        let a = create_issuer_certificate(&signer, &spec("a"), &rng).unwrap();
        let b = create_issuer_certificate(&signer, &spec("a"), &rng).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        // Same key, same SKI.
        assert_eq!(a.subject_key_id, b.subject_key_id);
    }

    #[test]
    fn spec_refusals() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate_ed25519(&rng).unwrap();
        let signer = key.key_pair().unwrap();
        let make = |s: &IssuerSpec<'_>| create_issuer_certificate(&signer, s, &rng).unwrap_err();
        assert!(matches!(make(&spec(" ")), IssuerError::EmptyCommonName));
        let long = "x".repeat(65);
        assert!(matches!(
            make(&spec(&long)),
            IssuerError::CommonNameTooLong { chars: 65, max: 64 }
        ));
        assert!(matches!(
            make(&spec("a\nb")),
            IssuerError::CommonNameControlCharacters { .. }
        ));
        let mut backwards = spec("a");
        backwards.not_after = backwards.not_before - Duration::seconds(1);
        let err = make(&backwards);
        assert!(matches!(err, IssuerError::EmptyValidity { .. }), "{err}");
        // Sub-second-only validity is empty once truncated.
        let mut tiny = spec("a");
        tiny.not_after = datetime!(2026-03-01 12:00:00.9 UTC);
        assert!(matches!(make(&tiny), IssuerError::EmptyValidity { .. }));
    }

    #[test]
    fn rsa_signers_are_refused() {
        struct Rsa;
        impl rcgen::PublicKeyData for Rsa {
            fn der_bytes(&self) -> &[u8] {
                &[1, 2, 3]
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &rcgen::PKCS_RSA_SHA256
            }
        }
        impl rcgen::SigningKey for Rsa {
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
                Ok(vec![])
            }
        }
        let err = create_issuer_certificate(&Rsa, &spec("a"), &SystemRandom::new()).unwrap_err();
        assert!(matches!(err, IssuerError::UnsupportedKey { .. }), "{err}");
    }

    /// A signer that returns a corrupted signature: the read-back check must refuse it.
    struct Corrupting(rcgen::KeyPair);
    impl rcgen::PublicKeyData for Corrupting {
        fn der_bytes(&self) -> &[u8] {
            self.0.der_bytes()
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            rcgen::PublicKeyData::algorithm(&self.0)
        }
    }
    impl rcgen::SigningKey for Corrupting {
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
            let mut sig = self.0.sign(msg)?;
            sig[5] ^= 1;
            Ok(sig)
        }
    }

    #[test]
    fn bad_signatures_are_caught_before_storing() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate_ed25519(&rng).unwrap();
        let err = create_issuer_certificate(&Corrupting(key.key_pair().unwrap()), &spec("a"), &rng)
            .unwrap_err();
        assert!(
            matches!(&err, IssuerError::SelfCheck(inner) if matches!(**inner, IssuerError::BadSignature)),
            "{err}"
        );
    }

    /// Signs `template` with `key` (for certificates that break one rule of the profile).
    fn signed(template: &CertificateTemplate, key: &PrivateKey) -> Vec<u8> {
        template.sign(&key.key_pair().unwrap()).unwrap()
    }

    fn good_template(key: &PrivateKey) -> CertificateTemplate {
        let subject = name::encode(&["talvault"], Some("x")).unwrap();
        let spki = key.public_key_info().unwrap();
        CertificateTemplate {
            serial: vec![7; 16],
            issuer: subject.clone(),
            subject,
            not_before: datetime!(2026-01-01 0:00 UTC),
            not_after: datetime!(2027-01-01 0:00 UTC),
            subject_public_key_info: spki,
            key_usage: KeyUsage {
                digital_signature: true,
                key_cert_sign: true,
                crl_sign: true,
            },
            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
            ca: Some(CaConstraints { path_len: Some(0) }),
            subject_key_id: Some(vec![1; 20]),
            authority_key_id: None,
        }
    }

    #[test]
    fn stored_certificates_breaking_the_profile_are_refused() {
        let key = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let t = good_template(&key);
        read_issuer_certificate(&signed(&t, &key)).unwrap();

        let mut no_crl = t.clone();
        no_crl.key_usage.crl_sign = false;
        assert!(matches!(
            read_issuer_certificate(&signed(&no_crl, &key)),
            Err(IssuerError::KeyUsage { .. })
        ));
        let mut server = t.clone();
        server.extended_key_usage =
            vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth];
        assert!(matches!(
            read_issuer_certificate(&signed(&server, &key)),
            Err(IssuerError::ExtendedKeyUsage { .. })
        ));
        let mut no_eku = t.clone();
        no_eku.extended_key_usage.clear();
        assert!(matches!(
            read_issuer_certificate(&signed(&no_eku, &key)),
            Err(IssuerError::ExtendedKeyUsage { .. })
        ));
        for path_len in [None, Some(1)] {
            let mut unconstrained = t.clone();
            unconstrained.ca = Some(CaConstraints { path_len });
            assert!(matches!(
                read_issuer_certificate(&signed(&unconstrained, &key)),
                Err(IssuerError::BasicConstraints { .. })
            ));
        }
        let mut leaf = t.clone();
        leaf.ca = None;
        assert!(matches!(
            read_issuer_certificate(&signed(&leaf, &key)),
            Err(IssuerError::BasicConstraints { .. })
        ));
        let mut no_ski = t.clone();
        no_ski.subject_key_id = None;
        assert!(matches!(
            read_issuer_certificate(&signed(&no_ski, &key)),
            Err(IssuerError::MissingSubjectKeyId)
        ));
        let mut talos = t.clone();
        talos.subject = name::encode(&["talos"], None).unwrap();
        talos.issuer = talos.subject.clone();
        assert!(matches!(
            read_issuer_certificate(&signed(&talos, &key)),
            Err(IssuerError::Subject { .. })
        ));
        // Signed by another key under the OS CA's name: not self-signed.
        let mut under_os = t.clone();
        under_os.issuer = name::encode(&["talos"], None).unwrap();
        assert!(matches!(
            read_issuer_certificate(&signed(&under_os, &key)),
            Err(IssuerError::NotSelfSigned { .. })
        ));
        // Right names, wrong key: the self-signature does not verify.
        let other = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        assert!(matches!(
            read_issuer_certificate(&signed(&t, &other)),
            Err(IssuerError::BadSignature)
        ));
    }

    #[test]
    fn input_refusals() {
        let key = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let der = signed(&good_template(&key), &key);
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(
            read_issuer_certificate(&trailing),
            Err(IssuerError::TrailingData)
        ));
        let key_pem = key.to_talos_pem().unwrap();
        assert!(matches!(
            read_issuer_certificate(key_pem.expose()),
            Err(IssuerError::PemLabel { .. })
        ));
        assert!(matches!(
            read_issuer_certificate(
                b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
            ),
            Err(IssuerError::Pem)
        ));
        assert!(matches!(
            read_issuer_certificate(b"junk"),
            Err(IssuerError::Parse { .. })
        ));
        // The algorithm identifier helper agrees with what was signed.
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            parsed.signature_algorithm.algorithm.to_id_string(),
            "1.3.101.112"
        );
        assert!(algorithm_identifier(&rcgen::PKCS_ED25519).is_ok());
    }
}
