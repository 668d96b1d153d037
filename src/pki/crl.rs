//! PURE: RFC 5280 v2 certificate revocation lists, encoded here and signed through
//! `rcgen::SigningKey` (so a PKCS#11 key plugs in). No I/O, no clock: times come in as arguments.
//!
//! Encoded by hand rather than with rcgen's `CertificateRevocationListParams` because the CRL's
//! issuer Name must be the issuer certificate's raw subject bytes and its AuthorityKeyIdentifier
//! must be the issuer's SKI; rcgen rebuilds the Name from its own model and derives the AKI from
//! the key unless told otherwise, and a mismatch makes the CRL silently unusable
//! (reference/crates.md §4). Only issuers whose certificate carries cRLSign can sign one: the
//! Talos OS CA cannot (talos-formats.md §2, crates.md risk 2). Encoding is sized up front so that
//! 100,000 entries cost one allocation for the TBS and one for the result.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rcgen::SigningKey;
use thiserror::Error;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::cert::{CertError, algorithm_identifier, encode_time};
use crate::der::{self, DerError, tag, tlv_len, write_header};
use crate::hex::encode as hex;
use crate::keys;

/// PEM label of a CRL (RFC 7468 §6).
pub const LABEL_CRL: &str = "X509 CRL";

/// RFC 5280 §4.1.2.2: serial numbers are at most 20 octets.
const MAX_SERIAL_OCTETS: usize = 20;

const OID_AKI: &[u8] = &[0x55, 0x1d, 0x23]; // 2.5.29.35
const OID_CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14]; // 2.5.29.20
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_UTC_TIME: u8 = 0x17;

/// crlEntryExtensions holding only a non-critical reasonCode (2.5.29.21) whose ENUMERATED value
/// is the last octet: `SEQ { SEQ { OID 2.5.29.21, OCTET STRING { ENUMERATED code } } }`.
const REASON_EXTENSIONS_PREFIX: [u8; 13] = [
    0x30,
    0x0c,
    0x30,
    0x0a,
    0x06,
    0x03,
    0x55,
    0x1d,
    0x15,
    0x04,
    0x03,
    TAG_ENUMERATED,
    0x01,
];
const REASON_EXTENSIONS_LEN: usize = REASON_EXTENSIONS_PREFIX.len() + 1;

/// CRLReason (RFC 5280 §5.3.1). `removeFromCRL` (8) is not here: it is only for delta CRLs,
/// which talvault does not issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationReason {
    /// unspecified (0); written as no reasonCode extension (RFC 5280 §5.3.1 SHOULD).
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
}

impl RevocationReason {
    /// Every reason talvault writes, in code order.
    pub const ALL: [RevocationReason; 9] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 §5.3.1 name (`keyCompromise`, `cACompromise`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        }
    }

    /// The CRLReason ENUMERATED value (RFC 5280 §5.3.1; 7 is unused, 8 is removeFromCRL).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason with CRLReason value `code`, if talvault writes it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revocation reason that is not one talvault writes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReasonError {
    /// Not an RFC 5280 §5.3.1 reason name.
    #[error(
        "unknown revocation reason {given:?}; valid reasons: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise"
    )]
    Unknown {
        /// What was given.
        given: String,
    },
    /// removeFromCRL is meaningful only in delta CRLs (RFC 5280 §5.3.1), which talvault does not
    /// issue; a full CRL simply leaves the entry out.
    #[error(
        "removeFromCRL is only for delta CRLs, which talvault does not issue; to un-revoke, delete the revocation so the next CRL omits it"
    )]
    RemoveFromCrl,
}

impl FromStr for RevocationReason {
    type Err = ReasonError;

    /// Reads an RFC 5280 §5.3.1 name, case-insensitively, also in kebab-case (`key-compromise`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .trim()
            .chars()
            .filter(|&c| c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if folded == "removefromcrl" {
            return Err(ReasonError::RemoveFromCrl);
        }
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == folded)
            .ok_or_else(|| ReasonError::Unknown {
                given: s.to_owned(),
            })
    }
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// The serial, unsigned big-endian (leading zero bytes are ignored).
    pub serial: Vec<u8>,
    /// When the revocation was recorded (revocationDate; sub-seconds are dropped).
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// The CRL's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlParams {
    /// thisUpdate (sub-seconds are dropped).
    pub this_update: OffsetDateTime,
    /// nextUpdate, which RFC 5280 §5.1.2.5 requires; must be after thisUpdate.
    pub next_update: OffsetDateTime,
    /// CRLNumber (RFC 5280 §5.2.3): monotonically increasing per issuer.
    pub crl_number: u64,
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    /// The CertificateList DER.
    pub der: Vec<u8>,
}

impl Crl {
    /// The CRL as PEM (`X509 CRL`, 64-character lines, LF endings).
    pub fn pem(&self) -> String {
        String::from_utf8_lossy(&keys::pem_encode(LABEL_CRL, &self.der)).into_owned()
    }
}

/// Why a CRL was not signed.
#[derive(Debug, Error)]
pub enum CrlError {
    /// The issuer certificate does not parse.
    #[error("the CRL issuer certificate does not parse: {reason}")]
    IssuerParse {
        /// The parser's message.
        reason: String,
    },
    /// Bytes after the issuer certificate.
    #[error("the CRL issuer certificate has trailing data")]
    IssuerTrailingData,
    /// The issuer certificate's KeyUsage lacks cRLSign (RFC 5280 §4.2.1.3); the Talos OS CA is
    /// such a certificate. Verifiers (openssl, Go) reject CRLs signed under it.
    #[error(
        "the certificate {subject} may not sign CRLs (its KeyUsage lacks cRLSign); only talvault issuers can sign a CRL"
    )]
    NotCrlSigner {
        /// The certificate's subject as text.
        subject: String,
    },
    /// The issuer certificate has no SubjectKeyIdentifier to put into the CRL's AKI
    /// (RFC 5280 §5.2.1 requires the AKI).
    #[error("the CRL issuer certificate {subject} has no SubjectKeyIdentifier")]
    MissingSubjectKeyId {
        /// The certificate's subject as text.
        subject: String,
    },
    /// RFC 5280 §5.1.2.3: the CRL issuer Name must not be empty.
    #[error("the CRL issuer certificate has an empty subject")]
    EmptyIssuerName,
    /// The signer's public key is not the issuer certificate's.
    #[error("the signing key does not belong to the CRL issuer certificate")]
    SignerMismatch,
    /// nextUpdate not after thisUpdate (RFC 5280 §5.1.2.5), compared in whole seconds.
    #[error("the CRL nextUpdate {next_update} is not after thisUpdate {this_update}")]
    NextUpdateNotAfterThisUpdate {
        /// thisUpdate.
        this_update: OffsetDateTime,
        /// nextUpdate.
        next_update: OffsetDateTime,
    },
    /// A serial of zero (RFC 5280 §4.1.2.2 requires positive serials).
    #[error("a revoked serial is zero")]
    ZeroSerial,
    /// A serial longer than RFC 5280 §4.1.2.2 allows.
    #[error("the revoked serial {serial_hex} is longer than 20 octets")]
    SerialTooLong {
        /// The serial as hex.
        serial_hex: String,
    },
    /// The same serial listed twice.
    #[error("the serial {serial_hex} is listed twice")]
    DuplicateSerial {
        /// The serial as hex.
        serial_hex: String,
    },
    /// A time X.509 cannot hold, or an unsupported signature algorithm, or the signer failed.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// What the CRL needs from its issuer certificate.
struct CrlIssuer {
    subject_der: Vec<u8>,
    subject_key_id: Vec<u8>,
}

impl CrlIssuer {
    fn read(cert_der: &[u8], signer: &dyn SigningKey) -> Result<Self, CrlError> {
        let (rest, cert) =
            X509Certificate::from_der(cert_der).map_err(|e| CrlError::IssuerParse {
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(CrlError::IssuerTrailingData);
        }
        let subject = cert.subject();
        // RFC 5280 §4.2.1.3: cRLSign asserted. talvault requires the KeyUsage to be present and
        // say so (Go's CheckCRLSignature and openssl refuse a KeyUsage without it).
        let ku = cert.key_usage().map_err(|e| CrlError::IssuerParse {
            reason: e.to_string(),
        })?;
        if !ku.is_some_and(|ku| ku.value.crl_sign()) {
            return Err(CrlError::NotCrlSigner {
                subject: subject.to_string(),
            });
        }
        if subject.iter_attributes().next().is_none() {
            return Err(CrlError::EmptyIssuerName);
        }
        if signer.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(CrlError::SignerMismatch);
        }
        let subject_key_id = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .filter(|id| !id.is_empty())
            .ok_or_else(|| CrlError::MissingSubjectKeyId {
                subject: subject.to_string(),
            })?;
        Ok(CrlIssuer {
            subject_der: subject.as_raw().to_vec(),
            subject_key_id,
        })
    }
}

impl From<DerError> for CrlError {
    fn from(e: DerError) -> Self {
        CrlError::Cert(CertError::Der(e))
    }
}

/// One entry, checked and ready to encode.
struct Entry<'a> {
    /// The serial without leading zero bytes (non-empty).
    serial: &'a [u8],
    revoked_at: OffsetDateTime,
    reason: RevocationReason,
}

impl Entry<'_> {
    /// Content length of the INTEGER: a 0x00 pad keeps a set top bit positive (X.690 §8.3).
    fn serial_content_len(&self) -> usize {
        self.serial.len() + usize::from(self.serial[0] & 0x80 != 0)
    }

    /// Content length of the entry SEQUENCE.
    fn content_len(&self) -> Result<usize, DerError> {
        Ok(tlv_len(self.serial_content_len())?
            + time_tlv_len(self.revoked_at)
            + if self.reason == RevocationReason::Unspecified {
                0
            } else {
                REASON_EXTENSIONS_LEN
            })
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), CrlError> {
        write_header(out, tag::SEQUENCE, self.content_len()?)?;
        write_header(out, tag::INTEGER, self.serial_content_len())?;
        if self.serial[0] & 0x80 != 0 {
            out.push(0);
        }
        out.extend_from_slice(self.serial);
        write_time(out, self.revoked_at)?;
        // RFC 5280 §5.3.1: the reasonCode extension SHOULD be absent rather than unspecified.
        if self.reason != RevocationReason::Unspecified {
            out.extend_from_slice(&REASON_EXTENSIONS_PREFIX);
            out.push(self.reason.code());
        }
        Ok(())
    }
}

/// Numeric order of unsigned big-endian integers without leading zeros.
fn serial_order(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Signs a v2 CRL under the issuer whose certificate is `issuer_cert_der`, with its key behind
/// `signer`. Entries are written in serial order whatever order they come in.
pub fn sign_crl(
    issuer_cert_der: &[u8],
    signer: &dyn SigningKey,
    params: &CrlParams,
    revoked: &[RevokedCertificate],
) -> Result<Crl, CrlError> {
    let issuer = CrlIssuer::read(issuer_cert_der, signer)?;
    let this_update = whole_seconds(params.this_update)?;
    let next_update = whole_seconds(params.next_update)?;
    // RFC 5280 §5.1.2.5: nextUpdate MUST be present and later than thisUpdate.
    if next_update <= this_update {
        return Err(CrlError::NextUpdateNotAfterThisUpdate {
            this_update,
            next_update,
        });
    }
    let alg_id = algorithm_identifier(signer.algorithm())?;

    let mut entries = Vec::with_capacity(revoked.len());
    for r in revoked {
        let skip = r.serial.iter().take_while(|&&b| b == 0).count();
        let serial = &r.serial[skip..];
        if serial.is_empty() {
            return Err(CrlError::ZeroSerial);
        }
        let entry = Entry {
            serial,
            revoked_at: r.revoked_at,
            reason: r.reason,
        };
        if entry.serial_content_len() > MAX_SERIAL_OCTETS {
            return Err(CrlError::SerialTooLong {
                serial_hex: hex(serial),
            });
        }
        entries.push(entry);
    }
    entries.sort_unstable_by(|a, b| serial_order(a.serial, b.serial));
    if let Some(pair) = entries.windows(2).find(|w| w[0].serial == w[1].serial) {
        return Err(CrlError::DuplicateSerial {
            serial_hex: hex(pair[0].serial),
        });
    }

    // crlExtensions (RFC 5280 §5.2: AKI and CRLNumber are REQUIRED), both non-critical.
    // §5.2.1: AKI keyIdentifier = the issuer's SKI, so verifiers find the right key.
    let aki = der::sequence(&[
        &der::tlv(tag::OID, OID_AKI)?,
        &der::tlv(
            tag::OCTET_STRING,
            &der::sequence(&[&der::tlv(0x80, &issuer.subject_key_id)?])?,
        )?,
    ])?;
    // §5.2.3: CRLNumber, a non-negative INTEGER.
    let number = der::sequence(&[
        &der::tlv(tag::OID, OID_CRL_NUMBER)?,
        &der::tlv(
            tag::OCTET_STRING,
            &der::unsigned_integer(&params.crl_number.to_be_bytes())?,
        )?,
    ])?;
    let extensions = der::tlv(0xa0, &der::sequence(&[&aki, &number])?)?;
    let this_update = encode_time(this_update)?;
    let next_update = encode_time(next_update)?;

    // §5.1.2.6: revokedCertificates is absent, not empty, when nothing is revoked.
    let mut entries_len = 0usize;
    for entry in &entries {
        entries_len += tlv_len(entry.content_len()?)?;
    }
    let revoked_len = if entries.is_empty() {
        0
    } else {
        tlv_len(entries_len)?
    };
    // §5.1.2.1: version v2 (INTEGER 1), required since extensions are present.
    const VERSION_V2: [u8; 3] = [tag::INTEGER, 0x01, 0x01];
    let tbs_content_len = VERSION_V2.len()
        + alg_id.len()
        + issuer.subject_der.len()
        + this_update.len()
        + next_update.len()
        + revoked_len
        + extensions.len();
    let mut tbs = Vec::with_capacity(tlv_len(tbs_content_len)?);
    write_header(&mut tbs, tag::SEQUENCE, tbs_content_len)?;
    tbs.extend_from_slice(&VERSION_V2);
    // §5.1.2.2: the same AlgorithmIdentifier as signatureAlgorithm.
    tbs.extend_from_slice(alg_id);
    // §5.1.2.3: the issuer's subject, byte for byte.
    tbs.extend_from_slice(&issuer.subject_der);
    tbs.extend_from_slice(&this_update);
    tbs.extend_from_slice(&next_update);
    if !entries.is_empty() {
        write_header(&mut tbs, tag::SEQUENCE, entries_len)?;
        for entry in &entries {
            entry.write(&mut tbs)?;
        }
    }
    tbs.extend_from_slice(&extensions);
    debug_assert_eq!(Ok(tbs.len()), tlv_len(tbs_content_len));

    let signature = signer.sign(&tbs).map_err(CertError::Sign)?;
    let bits_len = signature.len() + 1;
    let content_len = tbs.len() + alg_id.len() + tlv_len(bits_len)?;
    let mut out = Vec::with_capacity(tlv_len(content_len)?);
    write_header(&mut out, tag::SEQUENCE, content_len)?;
    out.extend_from_slice(&tbs);
    drop(tbs);
    out.extend_from_slice(alg_id);
    write_header(&mut out, tag::BIT_STRING, bits_len)?;
    out.push(0);
    out.extend_from_slice(&signature);
    Ok(Crl { der: out })
}

fn whole_seconds(t: OffsetDateTime) -> Result<OffsetDateTime, CertError> {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| CertError::TimeOutOfRange)
}

/// Length of a Time as [`encode_time`] writes it: UTCTime (15) through 2049, else
/// GeneralizedTime (17) (RFC 5280 §5.1.2.4, §4.1.2.5).
fn time_tlv_len(t: OffsetDateTime) -> usize {
    if t.to_offset(time::UtcOffset::UTC).year() < 2050 {
        15
    } else {
        17
    }
}

/// Appends a Time without allocating: byte-identical to [`encode_time`] (a unit test pins it),
/// which allocates twice per call and would dominate a 100,000-entry CRL.
fn write_time(out: &mut Vec<u8>, t: OffsetDateTime) -> Result<(), CrlError> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    if !(1950..=9999).contains(&year) {
        return Err(CertError::TimeOutOfRange.into());
    }
    let push2 = |out: &mut Vec<u8>, v: u8| {
        out.push(b'0' + v / 10);
        out.push(b'0' + v % 10);
    };
    // The year range is checked above, so these casts cannot truncate.
    let year = year as u32;
    if year < 2050 {
        out.extend_from_slice(&[TAG_UTC_TIME, 13]);
        push2(out, (year % 100) as u8);
    } else {
        out.extend_from_slice(&[0x18, 15]);
        push2(out, (year / 100) as u8);
        push2(out, (year % 100) as u8);
    }
    push2(out, u8::from(t.month()));
    push2(out, t.day());
    push2(out, t.hour());
    push2(out, t.minute());
    push2(out, t.second());
    out.push(b'Z');
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::bundle::CaName;
    use crate::bundle::generate::new_ca;
    use crate::keys::PrivateKey;
    use crate::pki::issuer::{IssuerSpec, create_issuer_certificate};
    use ring::rand::SystemRandom;
    use time::Duration;
    use time::macros::datetime;
    use x509_parser::revocation_list::CertificateRevocationList;

    fn now() -> OffsetDateTime {
        datetime!(2026-03-01 12:00:00 UTC)
    }

    fn params() -> CrlParams {
        CrlParams {
            this_update: now(),
            next_update: now() + Duration::days(7),
            crl_number: 3,
        }
    }

    struct Issuer {
        der: Vec<u8>,
        key: PrivateKey,
    }

    fn issuer(key: PrivateKey) -> Issuer {
        let spec = IssuerSpec {
            common_name: "test issuer",
            not_before: now() - Duration::days(1),
            not_after: now() + Duration::days(365),
        };
        let cert = create_issuer_certificate(&key.key_pair().unwrap(), &spec, &SystemRandom::new())
            .unwrap();
        Issuer { der: cert.der, key }
    }

    fn ed25519_issuer() -> Issuer {
        issuer(PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap())
    }

    fn sign(i: &Issuer, revoked: &[RevokedCertificate]) -> Result<Crl, CrlError> {
        sign_crl(&i.der, &i.key.key_pair().unwrap(), &params(), revoked)
    }

    #[test]
    fn reason_names_and_codes() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
            assert_eq!(
                r.as_str()
                    .to_uppercase()
                    .parse::<RevocationReason>()
                    .unwrap(),
                r
            );
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(
            "key-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            "ca-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::CaCompromise
        );
        assert_eq!(
            "cessation-of-operation"
                .parse::<RevocationReason>()
                .unwrap(),
            RevocationReason::CessationOfOperation
        );
        assert_eq!(RevocationReason::PrivilegeWithdrawn.code(), 9);
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(RevocationReason::from_code(8), None);
        for s in ["removeFromCRL", "remove-from-crl"] {
            let err = s.parse::<RevocationReason>().unwrap_err();
            assert_eq!(err, ReasonError::RemoveFromCrl);
            assert!(err.to_string().contains("delta CRL"), "{err}");
        }
        let err = "lost".parse::<RevocationReason>().unwrap_err();
        assert!(err.to_string().contains("\"lost\""), "{err}");
        assert!(err.to_string().contains("keyCompromise"), "{err}");
        assert!(err.to_string().contains("aACompromise"), "{err}");
    }

    #[test]
    fn write_time_matches_encode_time() {
        for t in [
            datetime!(1950-01-01 00:00:00 UTC),
            datetime!(1999-12-31 23:59:59 UTC),
            datetime!(2026-03-01 12:00:00.999 UTC),
            datetime!(2026-03-01 12:00:00 +02:00),
            datetime!(2049-12-31 23:59:59 UTC),
            datetime!(2050-01-01 00:00:00 UTC),
            datetime!(9999-12-31 23:59:59 UTC),
        ] {
            let mut out = Vec::new();
            write_time(&mut out, t).unwrap();
            assert_eq!(out, encode_time(t).unwrap(), "{t}");
            assert_eq!(out.len(), time_tlv_len(t), "{t}");
        }
        let mut out = Vec::new();
        assert!(write_time(&mut out, datetime!(1949-12-31 23:59:59 UTC)).is_err());
    }

    #[test]
    fn lengths_match_the_der_writer() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24] {
            let mut out = Vec::new();
            write_header(&mut out, 0x30, len).unwrap();
            assert_eq!(out.len() + len, tlv_len(len).unwrap(), "{len}");
            let mut content = out.clone();
            content.resize(out.len() + len, 0);
            assert_eq!(der::parse_one(&content, 0x30).unwrap().content.len(), len);
        }
    }

    #[test]
    fn entries_are_sorted_and_reasons_written() {
        let i = ed25519_issuer();
        let revoked = vec![
            RevokedCertificate {
                serial: vec![0x80, 1],
                revoked_at: now(),
                reason: RevocationReason::KeyCompromise,
            },
            RevokedCertificate {
                serial: vec![0, 0, 5],
                revoked_at: now() - Duration::hours(1),
                reason: RevocationReason::Unspecified,
            },
            RevokedCertificate {
                serial: vec![0x7f; 16],
                revoked_at: datetime!(2051-01-01 0:00 UTC),
                reason: RevocationReason::AaCompromise,
            },
        ];
        let crl = sign(&i, &revoked).unwrap();
        let (rest, parsed) = CertificateRevocationList::from_der(&crl.der).unwrap();
        assert!(rest.is_empty());
        let (_, cert) = X509Certificate::from_der(&i.der).unwrap();
        parsed.verify_signature(cert.public_key()).unwrap();
        let serials: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string())
            .collect();
        assert_eq!(serials, ["05", "00:80:01", &vec!["7f"; 16].join(":")]);
        let reasons: Vec<Option<u8>> = parsed
            .iter_revoked_certificates()
            .map(|r| r.reason_code().map(|(_, c)| c.0))
            .collect();
        assert_eq!(reasons, [None, Some(1), Some(10)]);
        assert_eq!(parsed.issuer().as_raw(), cert.subject().as_raw());
        assert_eq!(
            parsed.crl_number().map(|n| n.to_u64_digits()),
            Some(vec![3])
        );
        assert!(crl.pem().starts_with("-----BEGIN X509 CRL-----\n"));
        assert!(crl.pem().ends_with("-----END X509 CRL-----\n"));
        assert!(!crl.pem().contains('\r'));
        // Input order does not matter.
        let mut reversed = revoked.clone();
        reversed.reverse();
        let again = sign(&i, &reversed).unwrap();
        let (_, again) = CertificateRevocationList::from_der(&again.der).unwrap();
        assert_eq!(again.tbs_cert_list.as_ref(), parsed.tbs_cert_list.as_ref());
    }

    #[test]
    fn refusals() {
        let i = ed25519_issuer();
        let one = |serial: Vec<u8>| RevokedCertificate {
            serial,
            revoked_at: now(),
            reason: RevocationReason::Superseded,
        };
        assert!(matches!(
            sign(&i, &[one(vec![0, 0])]),
            Err(CrlError::ZeroSerial)
        ));
        assert!(matches!(
            sign(&i, &[one(vec![])]),
            Err(CrlError::ZeroSerial)
        ));
        assert!(matches!(
            sign(&i, &[one(vec![0x80; 20])]),
            Err(CrlError::SerialTooLong { .. })
        ));
        sign(&i, &[one(vec![0x7f; 20])]).unwrap();
        let err = sign(&i, &[one(vec![1, 2]), one(vec![0, 1, 2])]).unwrap_err();
        assert!(
            matches!(&err, CrlError::DuplicateSerial { serial_hex } if serial_hex == "0102"),
            "{err}"
        );

        for next in [
            now(),
            now() - Duration::days(1),
            now() + Duration::milliseconds(900),
        ] {
            let p = CrlParams {
                next_update: next,
                ..params()
            };
            let err = sign_crl(&i.der, &i.key.key_pair().unwrap(), &p, &[]).unwrap_err();
            assert!(
                matches!(err, CrlError::NextUpdateNotAfterThisUpdate { .. }),
                "{err}"
            );
        }

        let other = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let err = sign_crl(&i.der, &other.key_pair().unwrap(), &params(), &[]).unwrap_err();
        assert!(matches!(err, CrlError::SignerMismatch), "{err}");

        // The Talos OS CA has no cRLSign.
        let os = new_ca(CaName::Os, now(), &SystemRandom::new()).unwrap();
        let os_key = PrivateKey::from_talos_pem(os.key.expose()).unwrap();
        let os_der = keys::pem_decode_first(&os.crt).unwrap().der.to_vec();
        let err = sign_crl(&os_der, &os_key.key_pair().unwrap(), &params(), &[]).unwrap_err();
        assert!(
            matches!(&err, CrlError::NotCrlSigner { subject } if subject.contains("talos")),
            "{err}"
        );

        let mut trailing = i.der.clone();
        trailing.push(0);
        assert!(matches!(
            sign_crl(&trailing, &i.key.key_pair().unwrap(), &params(), &[]),
            Err(CrlError::IssuerTrailingData)
        ));
        assert!(matches!(
            sign_crl(b"junk", &i.key.key_pair().unwrap(), &params(), &[]),
            Err(CrlError::IssuerParse { .. })
        ));
    }

    #[test]
    fn refuses_crl_signers_without_ski_or_subject() {
        use crate::pki::cert::{CaConstraints, CertificateTemplate, ExtendedKeyUsage, KeyUsage};
        let key = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let template = |subject: Vec<u8>, ski: Option<Vec<u8>>| CertificateTemplate {
            serial: vec![1],
            issuer: subject.clone(),
            subject,
            not_before: now(),
            not_after: now() + Duration::days(1),
            subject_public_key_info: key.public_key_info().unwrap(),
            key_usage: KeyUsage {
                digital_signature: true,
                key_cert_sign: true,
                crl_sign: true,
            },
            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
            ca: Some(CaConstraints { path_len: Some(0) }),
            subject_key_id: ski,
            authority_key_id: None,
        };
        let signer = key.key_pair().unwrap();
        let no_ski = template(crate::pki::name::encode(&["x"], None).unwrap(), None)
            .sign(&signer)
            .unwrap();
        assert!(matches!(
            sign_crl(&no_ski, &signer, &params(), &[]),
            Err(CrlError::MissingSubjectKeyId { .. })
        ));
        let empty = template(
            crate::pki::name::encode(&[], None).unwrap(),
            Some(vec![1; 20]),
        )
        .sign(&signer)
        .unwrap();
        assert!(matches!(
            sign_crl(&empty, &signer, &params(), &[]),
            Err(CrlError::EmptyIssuerName)
        ));
    }

    #[test]
    fn large_crls_have_exact_lengths() {
        let i = issuer(PrivateKey::generate_p256(&SystemRandom::new()).unwrap());
        let revoked: Vec<RevokedCertificate> = (0u32..5000)
            .map(|n| RevokedCertificate {
                serial: [&[0x80u8][..], &n.to_be_bytes(), &[0xaa; 11]].concat(),
                revoked_at: now() - Duration::seconds(i64::from(n)),
                reason: RevocationReason::ALL[(n % 9) as usize],
            })
            .collect();
        let crl = sign(&i, &revoked).unwrap();
        let (rest, parsed) = CertificateRevocationList::from_der(&crl.der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(parsed.iter_revoked_certificates().count(), 5000);
        let (_, cert) = X509Certificate::from_der(&i.der).unwrap();
        parsed.verify_signature(cert.public_key()).unwrap();
    }
}
