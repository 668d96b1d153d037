//! X.509 v3 certificates assembled field by field, in the layout Go's `crypto/x509` produces.
//!
//! Go writes extensions in the order KeyUsage (critical), ExtKeyUsage, BasicConstraints
//! (critical), SubjectKeyIdentifier, AuthorityKeyIdentifier, and validity as UTCTime before 2050
//! and GeneralizedTime from 2050 (reference/talos-formats.md §0.3). Building the TBS here, rather
//! than through rcgen's builder, lets the subject carry several O values in one RDN and keeps the
//! extension order; signing still goes through `rcgen::SigningKey` so a PKCS#11 key plugs in.

use rcgen::{SignatureAlgorithm, SigningKey};
use thiserror::Error;
use time::OffsetDateTime;

use crate::der::{self, DerError, tag};

/// Signing failed, or the template names an algorithm talvault does not write.
#[derive(Debug, Error)]
pub enum CertError {
    /// The signer returned an error.
    #[error("signing failed: {0}")]
    Sign(rcgen::Error),
    /// The signer's algorithm has no identifier here.
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// A validity time outside what X.509 can encode.
    #[error("validity time out of range")]
    TimeOutOfRange,
    /// DER encoding failed (a part larger than DER lengths allow).
    #[error("DER encoding failed: {0}")]
    Der(#[from] DerError),
}

/// KeyUsage bits (RFC 5280 §4.2.1.3), numbered as in the BIT STRING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyUsage {
    /// digitalSignature (0)
    pub digital_signature: bool,
    /// keyCertSign (5)
    pub key_cert_sign: bool,
    /// cRLSign (6)
    pub crl_sign: bool,
}

/// Extended key usages talvault writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendedKeyUsage {
    /// id-kp-serverAuth
    ServerAuth,
    /// id-kp-clientAuth
    ClientAuth,
}

/// BasicConstraints for a CA; `None` path length means unconstrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaConstraints {
    /// pathLenConstraint, if any.
    pub path_len: Option<u8>,
}

/// Everything that goes into the TBSCertificate.
#[derive(Debug, Clone)]
pub struct CertificateTemplate {
    /// Serial number, unsigned big-endian (encoded as a minimal positive INTEGER).
    pub serial: Vec<u8>,
    /// Issuer Name DER (for a certificate under a CA: the CA's raw subject bytes).
    pub issuer: Vec<u8>,
    /// Subject Name DER.
    pub subject: Vec<u8>,
    /// notBefore (sub-second precision is dropped).
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The subject's SubjectPublicKeyInfo DER.
    pub subject_public_key_info: Vec<u8>,
    /// KeyUsage, always critical when any bit is set.
    pub key_usage: KeyUsage,
    /// ExtendedKeyUsage, in the given order; absent when empty.
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    /// BasicConstraints CA:TRUE when set; absent otherwise (as Go with BasicConstraintsValid false).
    pub ca: Option<CaConstraints>,
    /// SubjectKeyIdentifier, when set.
    pub subject_key_id: Option<Vec<u8>>,
    /// AuthorityKeyIdentifier keyIdentifier, when set.
    pub authority_key_id: Option<Vec<u8>>,
}

const OID_KU: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EKU: &[u8] = &[0x55, 0x1d, 0x25];
const OID_BC: &[u8] = &[0x55, 0x1d, 0x13];
const OID_SKI: &[u8] = &[0x55, 0x1d, 0x0e];
const OID_AKI: &[u8] = &[0x55, 0x1d, 0x23];
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// 16 random bytes, never all zero: siderolabs/crypto x509.NewSerialNumber draws uniformly from
/// [0, 2^128); RFC 5280 §4.1.2.2 wants a positive serial, so a zero draw is drawn again.
/// `None` when the random source fails.
pub fn random_serial(rng: &dyn ring::rand::SecureRandom) -> Option<Vec<u8>> {
    let mut serial = vec![0u8; 16];
    for _ in 0..8 {
        rng.fill(&mut serial).ok()?;
        if serial.iter().any(|&b| b != 0) {
            return Some(serial);
        }
    }
    None
}

/// The DER AlgorithmIdentifier for a signature algorithm rcgen can sign with.
pub fn algorithm_identifier(alg: &SignatureAlgorithm) -> Result<&'static [u8], CertError> {
    if alg == &rcgen::PKCS_ED25519 {
        Ok(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70])
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(&[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ])
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(&[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ])
    } else if alg == &rcgen::PKCS_RSA_SHA512 {
        Ok(&[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05,
            0x00,
        ])
    } else {
        Err(CertError::UnsupportedAlgorithm)
    }
}

/// Encodes a time as RFC 5280 §4.1.2.5 requires: UTCTime through 2049, GeneralizedTime after.
pub fn encode_time(t: OffsetDateTime) -> Result<Vec<u8>, CertError> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    if !(1950..=9999).contains(&y) {
        return Err(CertError::TimeOutOfRange);
    }
    Ok(if y < 2050 {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        der::tlv(0x17, text.as_bytes())?
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        der::tlv(0x18, text.as_bytes())?
    })
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Result<Vec<u8>, DerError> {
    let oid = der::tlv(tag::OID, oid)?;
    let value = der::tlv(tag::OCTET_STRING, value)?;
    if critical {
        der::sequence(&[&oid, &[0x01, 0x01, 0xff], &value])
    } else {
        der::sequence(&[&oid, &value])
    }
}

fn key_usage_bits(ku: KeyUsage) -> Result<Vec<u8>, DerError> {
    let mut bits: u16 = 0;
    for (set, bit) in [
        (ku.digital_signature, 0),
        (ku.key_cert_sign, 5),
        (ku.crl_sign, 6),
    ] {
        if set {
            bits |= 0x8000 >> bit;
        }
    }
    let bytes = bits.to_be_bytes();
    // Minimal BIT STRING as Go's asn1 writes it: drop trailing zero octets, count unused bits.
    let len = if bytes[1] != 0 { 2 } else { 1 };
    let last = bytes[len - 1];
    let unused = if last == 0 {
        0
    } else {
        last.trailing_zeros() as u8
    };
    let mut content = vec![unused];
    content.extend_from_slice(&bytes[..len]);
    der::tlv(tag::BIT_STRING, &content)
}

impl CertificateTemplate {
    /// The DER TBSCertificate for signature algorithm `alg_id`.
    pub fn tbs_der(&self, alg_id: &[u8]) -> Result<Vec<u8>, CertError> {
        let mut exts: Vec<Vec<u8>> = Vec::new();
        let ku = self.key_usage;
        if ku.digital_signature || ku.key_cert_sign || ku.crl_sign {
            exts.push(extension(OID_KU, true, &key_usage_bits(ku)?)?);
        }
        if !self.extended_key_usage.is_empty() {
            let oids: Vec<Vec<u8>> = self
                .extended_key_usage
                .iter()
                .map(|e| {
                    der::tlv(
                        tag::OID,
                        match e {
                            ExtendedKeyUsage::ServerAuth => OID_SERVER_AUTH,
                            ExtendedKeyUsage::ClientAuth => OID_CLIENT_AUTH,
                        },
                    )
                })
                .collect::<Result<_, _>>()?;
            exts.push(extension(
                OID_EKU,
                false,
                &der::tlv(tag::SEQUENCE, &oids.concat())?,
            )?);
        }
        if let Some(ca) = self.ca {
            let mut content = vec![0x01, 0x01, 0xff];
            if let Some(n) = ca.path_len {
                content.extend_from_slice(&der::unsigned_integer(&[n])?);
            }
            exts.push(extension(
                OID_BC,
                true,
                &der::tlv(tag::SEQUENCE, &content)?,
            )?);
        }
        if let Some(ski) = &self.subject_key_id {
            exts.push(extension(
                OID_SKI,
                false,
                &der::tlv(tag::OCTET_STRING, ski)?,
            )?);
        }
        if let Some(aki) = &self.authority_key_id {
            exts.push(extension(
                OID_AKI,
                false,
                &der::sequence(&[&der::tlv(0x80, aki)?])?,
            )?);
        }
        let validity = der::sequence(&[
            &encode_time(self.not_before)?,
            &encode_time(self.not_after)?,
        ])?;
        let mut parts: Vec<Vec<u8>> = vec![
            vec![0xa0, 0x03, 0x02, 0x01, 0x02],
            der::unsigned_integer(&self.serial)?,
            alg_id.to_vec(),
            self.issuer.clone(),
            validity,
            self.subject.clone(),
            self.subject_public_key_info.clone(),
        ];
        if !exts.is_empty() {
            parts.push(der::tlv(0xa3, &der::tlv(tag::SEQUENCE, &exts.concat())?)?);
        }
        Ok(der::tlv(tag::SEQUENCE, &parts.concat())?)
    }

    /// Signs the certificate with `signer` and returns its DER.
    pub fn sign(&self, signer: &dyn SigningKey) -> Result<Vec<u8>, CertError> {
        let alg_id = algorithm_identifier(signer.algorithm())?;
        let tbs = self.tbs_der(alg_id)?;
        let signature = signer.sign(&tbs).map_err(CertError::Sign)?;
        let mut bits = Vec::with_capacity(signature.len() + 1);
        bits.push(0);
        bits.extend_from_slice(&signature);
        Ok(der::sequence(&[
            &tbs,
            alg_id,
            &der::tlv(tag::BIT_STRING, &bits)?,
        ])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_usage_encodings_match_go() {
        let ca = KeyUsage {
            digital_signature: true,
            key_cert_sign: true,
            crl_sign: false,
        };
        assert_eq!(key_usage_bits(ca).unwrap(), vec![0x03, 0x02, 0x02, 0x84]);
        let leaf = KeyUsage {
            digital_signature: true,
            ..Default::default()
        };
        assert_eq!(key_usage_bits(leaf).unwrap(), vec![0x03, 0x02, 0x07, 0x80]);
        let issuer = KeyUsage {
            digital_signature: true,
            key_cert_sign: true,
            crl_sign: true,
        };
        assert_eq!(
            key_usage_bits(issuer).unwrap(),
            vec![0x03, 0x02, 0x01, 0x86]
        );
    }

    #[test]
    fn times_switch_at_2050() {
        let t = time::macros::datetime!(2049-12-31 23:59:59 UTC);
        assert_eq!(encode_time(t).unwrap()[0], 0x17);
        let t = time::macros::datetime!(2050-01-01 00:00:00 UTC);
        assert_eq!(
            encode_time(t).unwrap(),
            der::tlv(0x18, b"20500101000000Z").unwrap()
        );
    }
}
