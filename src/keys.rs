//! Private keys as Talos stores them: PEM labels, their DER forms, generation, and signing.
//!
//! Talos (siderolabs/crypto: x509/key.go, x509/certificate_key.go) writes `ED25519 PRIVATE KEY`
//! holding PKCS#8, `EC PRIVATE KEY` holding SEC1 with the curve named, and `RSA PRIVATE KEY`
//! holding PKCS#1, and reads keys strictly by label. This module converts between those forms and
//! the PKCS#8 that ring and rcgen load, through the RustCrypto encoders (`pkcs8`, `sec1`, `spki`,
//! `pkcs1`; one `der` generation). It does no I/O; randomness comes in as an argument. Key
//! bytes only ever sit in [`SecretBytes`] or `Zeroizing` buffers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pkcs8::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode as _, Encode as _};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{PrivateKeyInfoRef, der};
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

pub mod rsa;

/// PEM label of X.509 certificates.
pub const LABEL_CERTIFICATE: &str = "CERTIFICATE";
/// PEM label Talos uses for Ed25519 keys (PKCS#8 inside; non-standard label).
pub const LABEL_ED25519: &str = "ED25519 PRIVATE KEY";
/// PEM label for SEC1 EC keys.
pub const LABEL_EC: &str = "EC PRIVATE KEY";
/// PEM label for PKCS#1 RSA keys.
pub const LABEL_RSA: &str = "RSA PRIVATE KEY";
/// PEM label for PKCS#8 keys of any algorithm.
pub const LABEL_PKCS8: &str = "PRIVATE KEY";

/// id-Ed25519 (RFC 8410 §3).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ecPublicKey (RFC 5480 §2.1.1).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 (RFC 5480 §2.1.1.1).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// rsaEncryption (RFC 8017 A.1).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a key or PEM block could not be read. Messages follow siderolabs/crypto's `GetKey` where
/// Talos has one, and never include key material.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// No PEM block found (Go: `pem.Decode` returned nil).
    #[error("failed to parse PEM block")]
    NoPemBlock,
    /// A PEM label `GetKey` does not accept.
    #[error("unsupported key type: {0:?}")]
    UnsupportedLabel(String),
    /// `RSA PRIVATE KEY` that is not PKCS#1.
    #[error("failed to parse RSA key: {0}")]
    BadRsa(String),
    /// `ED25519 PRIVATE KEY` that is not PKCS#8.
    #[error("failed to parse Ed25519 key: {0}")]
    BadEd25519(String),
    /// `ED25519 PRIVATE KEY` holding another algorithm.
    #[error("failed parsing Ed25519 key, got wrong key type")]
    Ed25519WrongType,
    /// `EC PRIVATE KEY` that is not SEC1.
    #[error("failed to parse ECDSA key: {0}")]
    BadEc(String),
    /// `PRIVATE KEY` that is not PKCS#8.
    #[error("failed to parse key: {0}")]
    BadPkcs8(String),
    /// A key type talvault cannot sign with (e.g. an EC curve other than P-256).
    #[error("unsupported key algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// Key generation failed in the crypto library.
    #[error("key generation failed")]
    Generation,
}

/// One decoded PEM block.
pub struct PemBlock {
    /// The label between `BEGIN ` and `-----`.
    pub label: String,
    /// The decoded body; wiped on drop since it may be a private key.
    pub der: Zeroizing<Vec<u8>>,
}

/// Finds and decodes the first PEM block in `input`, as Go's `encoding/pem.Decode` does: leading
/// text is skipped, the BEGIN line must start a line, headers are skipped, the END label must
/// match, and a malformed block makes it look further.
pub fn pem_decode_first(input: &[u8]) -> Option<PemBlock> {
    let text = std::str::from_utf8(input).ok().or_else(|| {
        // Go works on bytes; a non-UTF-8 prefix is rare, so take the longest valid prefix.
        let valid = match std::str::from_utf8(input) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        std::str::from_utf8(&input[..valid]).ok()
    })?;
    let mut search = 0;
    while let Some(pos) = text[search..].find("-----BEGIN ") {
        let start = search + pos;
        search = start + 1;
        if start != 0 && !text[..start].ends_with('\n') {
            continue;
        }
        if let Some(block) = parse_block(&text[start..]) {
            return Some(block);
        }
    }
    None
}

fn parse_block(text: &str) -> Option<PemBlock> {
    let after_begin = &text["-----BEGIN ".len()..];
    let line_end = after_begin.find('\n').unwrap_or(after_begin.len());
    let first_line = after_begin[..line_end].trim_end_matches('\r').trim_end();
    let label = first_line.strip_suffix("-----")?;
    let end_marker = format!("-----END {label}-----");
    let body_and_rest = after_begin.get(line_end + 1..)?;
    let end = body_and_rest.find(&end_marker)?;
    if end != 0 && !body_and_rest[..end].ends_with('\n') {
        return None;
    }
    let body = &body_and_rest[..end];
    // Skip RFC 1421 headers ("Name: value" lines followed by a blank line), as Go does.
    let body = if body.lines().next().is_some_and(|l| l.contains(':')) {
        let blank = body.find("\n\n").or_else(|| body.find("\r\n\r\n"))?;
        &body[blank..]
    } else {
        body
    };
    let mut compact = Zeroizing::new(String::with_capacity(body.len()));
    compact.extend(body.chars().filter(|c| !c.is_ascii_whitespace()));
    let der = STANDARD.decode(compact.as_bytes()).ok()?;
    Some(PemBlock {
        label: label.to_owned(),
        der: Zeroizing::new(der),
    })
}

/// Encodes DER as PEM exactly as Go's `encoding/pem` writes it: 64-character lines, LF endings.
pub fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<Vec<u8>> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    Zeroizing::new(out)
}

/// The key algorithms Talos bundles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// Ed25519 (the Talos OS CA).
    Ed25519,
    /// ECDSA on P-256 (etcd, Kubernetes and aggregator CAs; SA key up to contract 1.6).
    EcdsaP256,
    /// RSA (SA key from contract 1.7; rare RSA CAs).
    Rsa,
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
            KeyAlgorithm::Rsa => "RSA",
        })
    }
}

/// A private key, held as PKCS#8 (what ring loads) plus its algorithm.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: SecretBytes,
    /// The SubjectPublicKeyInfo, when known without another scalar multiplication (a freshly
    /// generated key carries its public key); otherwise derived on first use.
    spki: std::sync::OnceLock<Vec<u8>>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.algorithm)
    }
}

impl PrivateKey {
    fn new(algorithm: KeyAlgorithm, pkcs8: Vec<u8>) -> Self {
        Self {
            algorithm,
            pkcs8: SecretBytes::new(pkcs8),
            spki: std::sync::OnceLock::new(),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Generates an Ed25519 key.
    pub fn generate_ed25519(rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyError::Generation)?;
        // ring writes PKCS#8 v2 (with the public key); Go writes v1. Keep v1 like Go.
        let seed = ed25519_seed_from_pkcs8(doc.as_ref())?;
        let key = Self::new(KeyAlgorithm::Ed25519, ed25519_pkcs8_v1(&seed)?.to_vec());
        // ring's v2 document ends with `[1] BIT STRING 0x00 ‖ public key` (RFC 8410 §7):
        // reuse it rather than derive the public key again.
        let public = doc.as_ref().get(doc.as_ref().len().saturating_sub(32)..);
        if let Some(public) = public.filter(|p| p.len() == 32) {
            // RFC 8410 §4: SubjectPublicKeyInfo { id-Ed25519 (no parameters), the 32 bytes }.
            let spki = SubjectPublicKeyInfoRef {
                algorithm: AlgorithmIdentifierRef {
                    oid: OID_ED25519,
                    parameters: None,
                },
                subject_public_key: BitStringRef::from_bytes(public).map_err(bad_ed25519)?,
            }
            .to_der()
            .map_err(bad_ed25519)?;
            let _ = key.spki.set(spki);
        }
        Ok(key)
    }

    /// Generates an ECDSA P-256 key.
    pub fn generate_p256(rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
            .map_err(|_| KeyError::Generation)?;
        Ok(Self::new(KeyAlgorithm::EcdsaP256, doc.as_ref().to_vec()))
    }

    /// Wraps a PKCS#1 RSAPrivateKey DER (checked by ring) as a key.
    pub fn from_rsa_pkcs1(pkcs1: &[u8]) -> Result<Self, KeyError> {
        ring::signature::RsaKeyPair::from_der(pkcs1)
            .map_err(|e| KeyError::BadRsa(e.to_string()))?;
        // RFC 8017 A.1: rsaEncryption carries NULL parameters.
        let pkcs8 = wrap_pkcs8(OID_RSA, Some(AnyRef::NULL), pkcs1)
            .map_err(|e| KeyError::BadRsa(e.to_string()))?;
        Ok(Self::new(KeyAlgorithm::Rsa, pkcs8.to_vec()))
    }

    /// Reads a PEM private key strictly by label, as siderolabs/crypto `GetKey` does.
    pub fn from_talos_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let block = pem_decode_first(pem).ok_or(KeyError::NoPemBlock)?;
        match block.label.as_str() {
            LABEL_RSA => {
                let pkcs1 = block.der.as_slice();
                pkcs1::RsaPrivateKeyRef::try_from(pkcs1)
                    .map_err(|e| KeyError::BadRsa(e.to_string()))?;
                Self::from_rsa_pkcs1(pkcs1)
            }
            LABEL_ED25519 => {
                let key = Self::from_pkcs8(&block.der).map_err(|e| match e {
                    KeyError::BadPkcs8(m) => KeyError::BadEd25519(m),
                    other => other,
                })?;
                if key.algorithm != KeyAlgorithm::Ed25519 {
                    return Err(KeyError::Ed25519WrongType);
                }
                Ok(key)
            }
            LABEL_EC => {
                let sec1 = block.der.as_slice();
                let parsed = sec1::EcPrivateKey::try_from(sec1)
                    .map_err(|e| KeyError::BadEc(e.to_string()))?;
                let curve = parsed
                    .parameters
                    .and_then(|p| p.named_curve())
                    .ok_or_else(|| KeyError::BadEc("x509: unknown elliptic curve".into()))?;
                if curve != OID_P256 {
                    return Err(KeyError::UnsupportedAlgorithm(format!("EC curve {curve}")));
                }
                // RFC 5915 §2 / crates.md §2: the SEC1 DER goes unchanged into the PKCS#8
                // privateKey, with the curve as the algorithm parameters.
                let pkcs8 = wrap_pkcs8(OID_EC_PUBLIC_KEY, Some(AnyRef::from(&OID_P256)), sec1)
                    .map_err(|e| KeyError::BadEc(e.to_string()))?;
                let key = Self::new(KeyAlgorithm::EcdsaP256, pkcs8.to_vec());
                key.check_loads()
                    .map_err(|e| KeyError::BadEc(e.to_string()))?;
                Ok(key)
            }
            LABEL_PKCS8 => Self::from_pkcs8(&block.der),
            other => Err(KeyError::UnsupportedLabel(other.to_owned())),
        }
    }

    /// Reads a PKCS#8 PrivateKeyInfo of a supported algorithm (RFC 5958, through `pkcs8`).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let bad = |e: der::Error| KeyError::BadPkcs8(e.to_string());
        let info = PrivateKeyInfoRef::from_der(pkcs8).map_err(bad)?;
        let algorithm = match info.algorithm.oid {
            OID_ED25519 => KeyAlgorithm::Ed25519,
            OID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| KeyError::BadPkcs8(e.to_string()))?;
                if curve != OID_P256 {
                    return Err(KeyError::UnsupportedAlgorithm(
                        "EC curve other than P-256".into(),
                    ));
                }
                KeyAlgorithm::EcdsaP256
            }
            OID_RSA => KeyAlgorithm::Rsa,
            _ => {
                return Err(KeyError::UnsupportedAlgorithm(
                    "unknown PKCS#8 algorithm".into(),
                ));
            }
        };
        let key = Self::new(algorithm, pkcs8.to_vec());
        key.check_loads()
            .map_err(|e| KeyError::BadPkcs8(e.to_string()))?;
        Ok(key)
    }

    fn check_loads(&self) -> Result<(), rcgen::Error> {
        self.key_pair().map(|_| ())
    }

    /// The key as an rcgen key pair, which signs with ring.
    pub fn key_pair(&self) -> Result<rcgen::KeyPair, rcgen::Error> {
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.expose());
        let alg = match self.algorithm {
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            // Talos signs with SHA512WithRSA under an RSA CA (crypto x509/certificate.go).
            KeyAlgorithm::Rsa => &rcgen::PKCS_RSA_SHA512,
        };
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
    }

    /// The DER SubjectPublicKeyInfo of this key.
    pub fn public_key_info(&self) -> Result<Vec<u8>, KeyError> {
        use rcgen::PublicKeyData as _;
        if let Some(spki) = self.spki.get() {
            return Ok(spki.clone());
        }
        let kp = self
            .key_pair()
            .map_err(|e| KeyError::BadPkcs8(e.to_string()))?;
        let spki = kp.subject_public_key_info();
        let _ = self.spki.set(spki.clone());
        Ok(spki)
    }

    /// Writes the key as Talos does: `ED25519 PRIVATE KEY` (PKCS#8 v1), `EC PRIVATE KEY` (SEC1
    /// with the named curve and the public key) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn to_talos_pem(&self) -> Result<SecretBytes, KeyError> {
        let bad = |e: der::Error| KeyError::BadPkcs8(e.to_string());
        let inner = pkcs8_private_key_octets(self.pkcs8.expose()).map_err(bad)?;
        let pem = match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                let seed = ed25519_seed_from_pkcs8(self.pkcs8.expose())?;
                pem_encode(LABEL_ED25519, &ed25519_pkcs8_v1(&seed)?)
            }
            KeyAlgorithm::Rsa => pem_encode(LABEL_RSA, inner),
            KeyAlgorithm::EcdsaP256 => {
                // ring's inner ECPrivateKey lacks [0] parameters; Go's ParseECPrivateKey then
                // fails with "x509: unknown elliptic curve", so re-insert the curve (crates.md §2).
                let parsed = sec1::EcPrivateKey::try_from(inner)
                    .map_err(|e| KeyError::BadEc(e.to_string()))?;
                let public = match parsed.public_key {
                    Some(p) => p.to_vec(),
                    None => self.p256_public_point()?,
                };
                // Go's MarshalECPrivateKey: version 1, the scalar, [0] the named curve,
                // [1] the public point (RFC 5915 §3).
                let sec1 = sec1::EcPrivateKey {
                    private_key: parsed.private_key,
                    parameters: Some(sec1::EcParameters::NamedCurve(OID_P256)),
                    public_key: Some(&public),
                }
                .to_der()
                .map(Zeroizing::new)
                .map_err(|e| KeyError::BadEc(e.to_string()))?;
                pem_encode(LABEL_EC, &sec1)
            }
        };
        Ok(SecretBytes::new(pem.to_vec()))
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "ring's EcdsaKeyPair::from_pkcs8 takes an rng; no key material is drawn"
    )]
    fn p256_public_point(&self) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, self.pkcs8.expose(), &rng)
                .map_err(|e| KeyError::BadEc(e.to_string()))?;
        Ok(kp.public_key().as_ref().to_vec())
    }
}

fn bad_ed25519(e: der::Error) -> KeyError {
    KeyError::BadEd25519(e.to_string())
}

/// PKCS#8 v1 for an Ed25519 seed, byte-identical to Go's `x509.MarshalPKCS8PrivateKey` (48 bytes):
/// RFC 8410 §7, the privateKey is the seed wrapped in its own OCTET STRING (CurvePrivateKey).
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let inner = OctetStringRef::new(seed)
        .and_then(|o| o.to_der())
        .map(Zeroizing::new)
        .map_err(bad_ed25519)?;
    wrap_pkcs8(OID_ED25519, None, &inner).map_err(bad_ed25519)
}

fn ed25519_seed_from_pkcs8(pkcs8: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let inner = pkcs8_private_key_octets(pkcs8).map_err(bad_ed25519)?;
    let seed = <&OctetStringRef>::from_der(inner).map_err(bad_ed25519)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if seed.as_bytes().len() != 32 {
        return Err(KeyError::BadEd25519("seed is not 32 bytes".into()));
    }
    out.copy_from_slice(seed.as_bytes());
    Ok(out)
}

/// The privateKey octets of a PKCS#8 PrivateKeyInfo (v1 or v2).
fn pkcs8_private_key_octets(pkcs8: &[u8]) -> Result<&[u8], der::Error> {
    Ok(PrivateKeyInfoRef::from_der(pkcs8)?.private_key.as_bytes())
}

/// PKCS#8 v1 (RFC 5958 §2, version 0, no public key) around `private_key`.
fn wrap_pkcs8(
    oid: ObjectIdentifier,
    parameters: Option<AnyRef<'_>>,
    private_key: &[u8],
) -> Result<Zeroizing<Vec<u8>>, der::Error> {
    PrivateKeyInfoRef {
        algorithm: AlgorithmIdentifierRef { oid, parameters },
        private_key: OctetStringRef::new(private_key)?,
        public_key: None,
    }
    .to_der()
    .map(Zeroizing::new)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn ed25519_written_like_go() {
        let key = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let pem = key.to_talos_pem().unwrap();
        let block = pem_decode_first(pem.expose()).unwrap();
        assert_eq!(block.label, LABEL_ED25519);
        assert_eq!(block.der.len(), 48);
        assert_eq!(
            &block.der[..16],
            &[
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );
        let again = PrivateKey::from_talos_pem(pem.expose()).unwrap();
        assert_eq!(again.to_talos_pem().unwrap().expose(), pem.expose());
        // The public key taken from ring's document equals the one derived from the key.
        assert_eq!(
            key.public_key_info().unwrap(),
            again.public_key_info().unwrap()
        );
    }

    #[test]
    fn p256_written_as_sec1_with_curve() {
        let key = PrivateKey::generate_p256(&SystemRandom::new()).unwrap();
        let pem = key.to_talos_pem().unwrap();
        let block = pem_decode_first(pem.expose()).unwrap();
        assert_eq!(block.label, LABEL_EC);
        let parsed = sec1::EcPrivateKey::try_from(block.der.as_slice()).unwrap();
        assert_eq!(parsed.parameters.unwrap().named_curve().unwrap(), OID_P256);
        assert!(parsed.public_key.is_some());
        let again = PrivateKey::from_talos_pem(pem.expose()).unwrap();
        assert_eq!(again.to_talos_pem().unwrap().expose(), pem.expose());
        assert_eq!(
            again.public_key_info().unwrap(),
            key.public_key_info().unwrap()
        );
    }

    #[test]
    fn labels_are_strict() {
        let cert = pem_encode(LABEL_CERTIFICATE, &[0x30, 0x00]);
        assert_eq!(
            PrivateKey::from_talos_pem(&cert).unwrap_err().to_string(),
            "unsupported key type: \"CERTIFICATE\""
        );
        assert_eq!(
            PrivateKey::from_talos_pem(b"").unwrap_err().to_string(),
            "failed to parse PEM block"
        );
    }

    #[test]
    fn pem_decode_skips_leading_text_and_crlf() {
        let pem = b"junk\r\n-----BEGIN X-----\r\nAAEC\r\n-----END X-----\r\n";
        let b = pem_decode_first(pem).unwrap();
        assert_eq!(b.label, "X");
        assert_eq!(b.der.as_slice(), &[0, 1, 2]);
        assert!(pem_decode_first(b"-----BEGIN X-----\nAAEC\n-----END Y-----\n").is_none());
    }
}
