//! PURE: the facts of a client certificate that `verify` and `revoke` judge, and the one chain
//! step they need (is this leaf signed by that CA?), read with x509-parser. It must not decide
//! whether a certificate is good (`vault::verify` weighs the facts) or touch files.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::digest::Fingerprint;
use crate::hex::encode as hex;
use crate::keys;

/// Public facts of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// Serial, lowercase hex of its significant bytes (as records name it).
    pub serial_hex: String,
    /// `sha256:…` of the DER.
    pub fingerprint: String,
    /// The subject's O values: the roles apid reads.
    pub organizations: Vec<String>,
    /// The subject's CN (the holder), if any.
    pub common_name: Option<String>,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// Extended key usages as dotted OIDs, in order.
    pub extended_key_usage: Vec<String>,
    /// BasicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// id-kp-clientAuth.
pub const CLIENT_AUTH_OID: &str = "1.3.6.1.5.5.7.3.2";

impl LeafFacts {
    /// Talos apid: a non-CA certificate's EKU must be exactly `[clientAuth]`
    /// (siderolabs/talos internal/app/apid/service.go `verifyExtKeyUsage`).
    pub fn eku_is_client_auth_only(&self) -> bool {
        self.extended_key_usage == [CLIENT_AUTH_OID]
    }
}

/// Decodes a PEM (or DER) certificate to DER.
pub fn certificate_der(pem_or_der: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(block) = keys::pem_decode_first(pem_or_der) {
        if block.label != keys::LABEL_CERTIFICATE {
            return Err(format!("a PEM {:?} block, not a certificate", block.label));
        }
        return Ok(block.der.to_vec());
    }
    if pem_or_der.first() == Some(&0x30) {
        return Ok(pem_or_der.to_vec());
    }
    Err("not a PEM or DER certificate".into())
}

/// Reads the facts of a certificate (DER).
pub fn leaf_facts(der: &[u8]) -> Result<LeafFacts, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing data after the certificate".into());
    }
    let serial = cert.raw_serial();
    let significant: Vec<u8> = serial.iter().copied().skip_while(|&b| b == 0).collect();
    let subject = cert.subject();
    let organizations = subject
        .iter_organization()
        .map(|a| {
            a.as_str()
                .map(str::to_owned)
                .map_err(|_| "unreadable O value".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let mut extended_key_usage = Vec::new();
    for ext in cert.iter_extensions() {
        if let ParsedExtension::ExtendedKeyUsage(eku) = ext.parsed_extension() {
            if eku.any {
                extended_key_usage.push("2.5.29.37.0".to_owned());
            }
            for (set, oid) in [
                (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                (eku.client_auth, CLIENT_AUTH_OID),
                (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
            ] {
                if set {
                    extended_key_usage.push(oid.to_owned());
                }
            }
            extended_key_usage.extend(eku.other.iter().map(|o| o.to_id_string()));
        }
    }
    let validity = cert.validity();
    Ok(LeafFacts {
        serial_hex: hex(&significant),
        fingerprint: Fingerprint::of(der).0,
        organizations,
        common_name,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        extended_key_usage,
        is_ca: cert.is_ca(),
    })
}

/// Whether `leaf` (DER) names `ca` (DER) as its issuer and carries a signature by `ca`'s key.
/// Validity and EKU are judged separately.
pub fn signed_by(leaf: &[u8], ca: &[u8]) -> bool {
    let (Ok((_, leaf)), Ok((_, ca))) = (
        X509Certificate::from_der(leaf),
        X509Certificate::from_der(ca),
    ) else {
        return false;
    };
    leaf.issuer().as_raw() == ca.subject().as_raw()
        && leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// notAfter of a PEM certificate.
pub fn not_after(pem: &[u8]) -> Result<OffsetDateTime, String> {
    let der = certificate_der(pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| format!("not a certificate: {e}"))?;
    Ok(cert.validity().not_after.to_datetime())
}

/// The CRL number of a DER CRL, if it has one that fits in 64 bits. Walks the TBSCertList
/// without reading its entries (RFC 5280 §5.1: the extensions are the `[0]` element after the
/// optional revokedCertificates), so a 100,000-entry CRL costs no more than an empty one. The
/// signature is not checked: the number only keeps the next CRL's number increasing.
pub fn crl_number(der: &[u8]) -> Option<u64> {
    use crate::der::{self, Reader, tag};
    let list = der::parse_one(der, tag::SEQUENCE).ok()?;
    let tbs = Reader::new(list.content).expect(tag::SEQUENCE).ok()?;
    let mut fields = Reader::new(tbs.content);
    let extensions = loop {
        let field = fields.any().ok()?;
        if field.tag == 0xa0 {
            break field;
        }
    };
    let mut list = Reader::new(
        Reader::new(extensions.content)
            .expect(tag::SEQUENCE)
            .ok()?
            .content,
    );
    while !list.is_empty() {
        let mut ext = Reader::new(list.expect(tag::SEQUENCE).ok()?.content);
        let oid = ext.expect(tag::OID).ok()?;
        let mut value = ext.any().ok()?;
        if value.tag == 0x01 {
            value = ext.any().ok()?; // critical BOOLEAN
        }
        // id-ce-cRLNumber 2.5.29.20
        if oid.content == [0x55, 0x1d, 0x14] && value.tag == tag::OCTET_STRING {
            let n = der::parse_one(value.content, tag::INTEGER).ok()?;
            let bytes = n.content;
            if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                return None;
            }
            let bytes = match bytes {
                [0, rest @ ..] => rest,
                _ => bytes,
            };
            if bytes.len() > 8 {
                return None;
            }
            return Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::pki::crl::{CrlParams, RevocationReason, RevokedCertificate, sign_crl};
    use crate::pki::issuer::{IssuerSpec, create_issuer_certificate};

    #[test]
    fn crl_number_is_read_without_parsing_entries() {
        let rng = ring::rand::SystemRandom::new();
        let key = crate::keys::PrivateKey::generate_ed25519(&rng).unwrap();
        let pair = key.key_pair().unwrap();
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let issuer = create_issuer_certificate(
            &pair,
            &IssuerSpec {
                common_name: "t issuer",
                not_before: now,
                not_after: now + time::Duration::days(30),
            },
            &rng,
        )
        .unwrap();
        for (number, entries) in [(0u64, 0usize), (1_795_802_848, 3), (u64::MAX, 1000)] {
            let revoked: Vec<RevokedCertificate> = (0..entries)
                .map(|i| RevokedCertificate {
                    serial: (i as u32 + 1).to_be_bytes().to_vec(),
                    revoked_at: now,
                    reason: RevocationReason::KeyCompromise,
                })
                .collect();
            let crl = sign_crl(
                &issuer.der,
                &pair,
                &CrlParams {
                    this_update: now,
                    next_update: now + time::Duration::days(7),
                    crl_number: number,
                },
                &revoked,
            )
            .unwrap();
            assert_eq!(crl_number(&crl.der), Some(number));
        }
        assert_eq!(crl_number(b"\x30\x00"), None);
        assert_eq!(crl_number(&issuer.der), None, "a certificate is not a CRL");
    }
}
