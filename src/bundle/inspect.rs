//! PURE: a public summary of a bundle: the CAs with pinning fingerprints, and the
//! contract-relevant facts. Never includes a secret value.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CaName, SecretsBundle};
use crate::digest::Fingerprint;
use crate::hex::encode as hex;
use crate::keys::PrivateKey;

/// Public facts about one CA.
#[derive(Debug, Clone, Serialize)]
pub struct CaSummary {
    /// `certs.<name>`.
    pub name: CaName,
    /// Subject as text (`O=talos`; empty for the aggregator CA).
    pub subject: String,
    /// Key algorithm of the certificate.
    pub key_type: String,
    /// Serial, hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the certificate DER.
    pub certificate_sha256: Fingerprint,
    /// SHA-256 of the SubjectPublicKeyInfo DER (for pinning).
    pub spki_sha256: Fingerprint,
    /// Subject key identifier, hex.
    pub subject_key_id: Option<String>,
}

/// Public facts about a bundle.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    /// The four CAs (those present and parseable), in Talos order.
    pub cas: Vec<CaSummary>,
    /// Which etcd encryption secret is present: `secretbox`, `aescbc`, `both` or `none`.
    pub encryption_secret: &'static str,
    /// Service-account key algorithm, if readable.
    pub service_account_key: Option<String>,
    /// `std`, `url` or `other`: the base64 alphabet of `cluster.id`.
    pub cluster_id_alphabet: Option<&'static str>,
    /// The contract this bundle looks generated for (by SA key and encryption secret).
    pub looks_like_contract: String,
    /// The CAs that are missing or cannot be read (`certs.etcd is missing`, …): the summary is
    /// incomplete when this is not empty.
    pub problems: Vec<String>,
}

/// Summarises one certificate PEM.
pub fn summarize_ca(name: CaName, crt_pem: &[u8]) -> Option<CaSummary> {
    let der = super::validate::parse_cert(crt_pem).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let key_type = match cert
        .tbs_certificate
        .subject_pki
        .algorithm
        .algorithm
        .to_id_string()
        .as_str()
    {
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.2.840.10045.2.1" => "ECDSA P-256".to_owned(),
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        other => other.to_owned(),
    };
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(hex(k.0)),
            _ => None,
        });
    let rfc3339 = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Some(CaSummary {
        name,
        subject: cert.subject().to_string(),
        key_type,
        serial: hex(&cert.serial.to_bytes_be()),
        not_before: rfc3339(cert.validity().not_before),
        not_after: rfc3339(cert.validity().not_after),
        certificate_sha256: Fingerprint::of(&der),
        spki_sha256: Fingerprint::of(spki),
        subject_key_id: ski,
    })
}

/// Summarises a bundle without exposing any secret.
pub fn summarize(b: &SecretsBundle) -> BundleSummary {
    let mut cas = Vec::new();
    let mut problems = Vec::new();
    for &n in CaName::ALL.iter() {
        match b.certs.as_ref().and_then(|c| c.ca(n)) {
            None => problems.push(format!("certs.{} is missing", n.key())),
            Some(ca) => match summarize_ca(n, &ca.crt) {
                Some(s) => cas.push(s),
                None => problems.push(format!(
                    "certs.{}.crt is not a readable certificate",
                    n.key()
                )),
            },
        }
    }
    let encryption_secret = match &b.secrets {
        None => "none",
        Some(s) => match (
            s.secretbox_encryption_secret.is_empty(),
            s.aescbc_encryption_secret.is_empty(),
        ) {
            (false, true) => "secretbox",
            (true, false) => "aescbc",
            (false, false) => "both",
            (true, true) => "none",
        },
    };
    let sa = b
        .certs
        .as_ref()
        .and_then(|c| c.k8s_service_account.as_ref())
        .and_then(|k| PrivateKey::from_talos_pem(k.key.expose()).ok())
        .map(|k| k.algorithm());
    let cluster_id_alphabet = b.cluster.as_ref().filter(|c| !c.id.is_empty()).map(|c| {
        if c.id.contains(['-', '_']) && URL_SAFE.decode(&c.id).is_ok() {
            "url"
        } else if STANDARD.decode(&c.id).is_ok() {
            "std"
        } else {
            "other"
        }
    });
    let looks_like_contract = match (encryption_secret, sa) {
        ("aescbc", _) => "v1.2 or older",
        ("secretbox", Some(crate::keys::KeyAlgorithm::EcdsaP256)) => "v1.3 to v1.6",
        ("secretbox", Some(crate::keys::KeyAlgorithm::Rsa)) => "v1.7 or newer",
        _ => "unknown",
    }
    .to_owned();
    BundleSummary {
        cas,
        encryption_secret,
        service_account_key: sa.map(|a| a.to_string()),
        cluster_id_alphabet,
        looks_like_contract,
        problems,
    }
}
