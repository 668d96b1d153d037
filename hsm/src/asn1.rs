//! The few DER encodings PKCS#11 hands us or wants from us: EC parameters, CKA_EC_POINT values
//! and the raw r‖s ECDSA output that X.509 needs as a DER `Ecdsa-Sig-Value`.
//!
//! Pure functions over byte slices; nothing here talks to a token.

use crate::algorithm::KeyAlgorithm;
use crate::error::HsmError;

/// CKA_EC_PARAMS for Ed25519 as an OID: `id-Ed25519` 1.3.101.112 (RFC 8410 §3).
pub(crate) const ED25519_PARAMS_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// CKA_EC_PARAMS for Ed25519 as a curve name: PrintableString "edwards25519"
/// (PKCS#11 3.0 Current Mechanisms §2.3, Edwards-curve key objects).
pub(crate) const ED25519_PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";

/// CKA_EC_PARAMS for P-256: the namedCurve OID prime256v1 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1).
pub(crate) const P256_PARAMS_OID: &[u8] =
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The algorithm a key's CKA_EC_PARAMS names, if talvault can sign with it.
pub(crate) fn algorithm_for_params(edwards: bool, params: &[u8]) -> Option<KeyAlgorithm> {
    match (edwards, params) {
        (true, ED25519_PARAMS_OID | ED25519_PARAMS_NAME) => Some(KeyAlgorithm::Ed25519),
        (false, P256_PARAMS_OID) => Some(KeyAlgorithm::EcdsaP256),
        _ => None,
    }
}

/// The raw public key (what rcgen's `PublicKeyData::der_bytes` wants) from a CKA_EC_POINT value.
///
/// PKCS#11 v2.40 Current Mechanisms §2.3 says CKA_EC_POINT is the DER encoding of an ECPoint
/// OCTET STRING; SoftHSM 2.6.1 follows that (34 bytes for Ed25519, 67 for P-256), some HSMs return
/// the bare 32/65 bytes. A bare uncompressed P-256 point also starts with 0x04 (the OCTET STRING
/// tag), so the form is decided by the exact length, never by the first byte.
pub(crate) fn ec_point_to_raw(algorithm: KeyAlgorithm, point: &[u8]) -> Result<Vec<u8>, HsmError> {
    let malformed = |what: &str| HsmError::MalformedTokenData {
        function: "C_GetAttributeValue",
        reason: format!(
            "CKA_EC_POINT of a {algorithm} key is {what} ({} bytes)",
            point.len()
        ),
    };
    match algorithm {
        KeyAlgorithm::Ed25519 => match point {
            [0x04, 0x20, raw @ ..] if raw.len() == 32 => Ok(raw.to_vec()),
            raw if raw.len() == 32 => Ok(raw.to_vec()),
            _ => Err(malformed(
                "neither a 32-byte key nor a DER OCTET STRING holding one",
            )),
        },
        KeyAlgorithm::EcdsaP256 => match point {
            // SEC 1 v2 §2.3.3: 0x04 ‖ X ‖ Y is the uncompressed form, the only one rcgen writes.
            [0x04, 0x41, raw @ ..] if raw.len() == 65 && raw[0] == 0x04 => Ok(raw.to_vec()),
            raw if raw.len() == 65 && raw[0] == 0x04 => Ok(raw.to_vec()),
            _ => Err(malformed(
                "neither an uncompressed 65-byte point nor a DER OCTET STRING holding one",
            )),
        },
    }
}

/// Converts the raw ECDSA signature a token returns for CKM_ECDSA (r ‖ s, each half as long as the
/// curve order; PKCS#11 v2.40 Current Mechanisms §2.3, CKM_ECDSA) into the DER `Ecdsa-Sig-Value`
/// `SEQUENCE { r INTEGER, s INTEGER }` that X.509 carries (RFC 5480 §2.2, RFC 3279 §2.2.3).
///
/// The `der` crate writes it: each half becomes a minimal positive INTEGER (`der::asn1::UintRef`,
/// X.690 §8.3.2: leading zero bytes stripped, a 0x00 put back when the first remaining byte has
/// its top bit set) and the pair a SEQUENCE. A signature of odd or zero length, longer than
/// P-521's 132 bytes, or with r or s equal to zero (never a valid ECDSA signature, FIPS 186-5
/// §6.4.2) is refused.
pub fn raw_ecdsa_to_der(raw: &[u8]) -> Result<Vec<u8>, HsmError> {
    use der::Encode as _;
    use der::asn1::UintRef;

    let malformed = |reason: String| HsmError::MalformedTokenData {
        function: "C_Sign",
        reason,
    };
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return Err(malformed(format!(
            "a raw ECDSA signature (r ‖ s) must have an even length of at most 132 bytes, got {}",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    for (name, half) in [("r", r), ("s", s)] {
        if half.iter().all(|&b| b == 0) {
            return Err(malformed(format!(
                "ECDSA signature component {name} is zero"
            )));
        }
    }
    let integer =
        |half| UintRef::new(half).map_err(|e| malformed(format!("ECDSA signature component: {e}")));
    // Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }: a two-element SEQUENCE OF INTEGER
    // has the same encoding.
    [integer(r)?, integer(s)?]
        .to_der()
        .map_err(|e| malformed(format!("ECDSA signature: {e}")))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

    fn sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        assert_eq!(r.len(), 32);
        assert_eq!(s.len(), 32);
        [r, s].concat()
    }

    #[test]
    fn plain_halves_become_two_32_byte_integers() {
        let der = raw_ecdsa_to_der(&sig(&[0x11; 32], &[0x22; 32])).unwrap();
        let mut want = vec![0x30, 0x44, 0x02, 0x20];
        want.extend([0x11; 32]);
        want.extend([0x02, 0x20]);
        want.extend([0x22; 32]);
        assert_eq!(der, want);
    }

    #[test]
    fn leading_zero_of_r_is_stripped() {
        let mut r = [0x7f; 32];
        r[0] = 0;
        let der = raw_ecdsa_to_der(&sig(&r, &[0x01; 32])).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x43, 0x02, 0x1f]);
        assert_eq!(&der[4..35], &[0x7f; 31]);
        assert_eq!(&der[35..37], &[0x02, 0x20]);
    }

    #[test]
    fn several_leading_zeros_of_s_are_stripped() {
        let mut s = [0x01; 32];
        s[0] = 0;
        s[1] = 0;
        let der = raw_ecdsa_to_der(&sig(&[0x01; 32], &s)).unwrap();
        assert_eq!(der[1] as usize, der.len() - 2);
        assert_eq!(&der[2..4], &[0x02, 0x20]);
        assert_eq!(&der[36..38], &[0x02, 0x1e]);
        assert_eq!(&der[38..], &[0x01; 30]);
    }

    #[test]
    fn high_bit_r_and_s_get_a_zero_pad() {
        let der = raw_ecdsa_to_der(&sig(&[0xff; 32], &[0x80; 32])).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x46, 0x02, 0x21, 0x00]);
        assert_eq!(&der[5..37], &[0xff; 32]);
        assert_eq!(&der[37..40], &[0x02, 0x21, 0x00]);
        assert_eq!(&der[40..], &[0x80; 32]);
    }

    #[test]
    fn stripped_zero_followed_by_high_bit_is_padded_again() {
        let mut r = [0x80; 32];
        r[0] = 0;
        let der = raw_ecdsa_to_der(&sig(&r, &[0x01; 32])).unwrap();
        // 31 significant bytes starting 0x80 -> 0x00 pad -> length 32.
        assert_eq!(&der[2..5], &[0x02, 0x20, 0x00]);
        assert_eq!(&der[5..36], &[0x80; 31]);
    }

    #[test]
    fn zero_components_are_refused() {
        let e = raw_ecdsa_to_der(&sig(&[0; 32], &[1; 32])).unwrap_err();
        assert!(e.to_string().contains("component r is zero"), "{e}");
        let e = raw_ecdsa_to_der(&sig(&[1; 32], &[0; 32])).unwrap_err();
        assert!(e.to_string().contains("component s is zero"), "{e}");
        assert!(raw_ecdsa_to_der(&[0; 64]).is_err());
    }

    #[test]
    fn wrong_lengths_are_refused() {
        for len in [0, 1, 63, 65, 134] {
            let e = raw_ecdsa_to_der(&vec![1; len]).unwrap_err();
            assert!(e.to_string().contains(&format!("got {len}")), "{len}: {e}");
            assert!(
                e.to_string()
                    .starts_with("C_Sign returned a malformed value")
            );
        }
    }

    #[test]
    fn p521_sized_signatures_use_long_form_lengths() {
        let der = raw_ecdsa_to_der(&[0xff; 132]).unwrap();
        // Two INTEGERs of 1 + 1 + 67 bytes = 138 > 127: long form 0x81 0x8a.
        assert_eq!(&der[..3], &[0x30, 0x81, 138]);
        assert_eq!(der.len(), 3 + 138);
    }

    /// Independent check: ring's fixed-size P-256 signatures, converted, verify under ring's ASN.1
    /// verifier. 400 random signatures make leading-zero and high-bit halves all but certain.
    #[test]
    fn converted_ring_signatures_verify_as_asn1() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_ASN1,
            key.public_key().as_ref().to_vec(),
        );
        let (mut padded, mut stripped) = (0, 0);
        for i in 0u32..400 {
            let msg = i.to_be_bytes();
            let raw = key.sign(&rng, &msg).unwrap();
            let raw = raw.as_ref();
            padded += usize::from(raw[0] & 0x80 != 0) + usize::from(raw[32] & 0x80 != 0);
            stripped += usize::from(raw[0] == 0) + usize::from(raw[32] == 0);
            let der = raw_ecdsa_to_der(raw).unwrap();
            public.verify(&msg, &der).unwrap();
        }
        assert!(padded > 100, "expected many high-bit halves, saw {padded}");
        let _ = stripped; // usually 1-4; not asserted (it can be 0 by chance)
    }

    #[test]
    fn ec_point_unwraps_der_only_at_the_exact_length() {
        let ed = [7u8; 32];
        let wrapped = [&[0x04, 0x20][..], &ed].concat();
        assert_eq!(
            ec_point_to_raw(KeyAlgorithm::Ed25519, &wrapped).unwrap(),
            ed
        );
        assert_eq!(ec_point_to_raw(KeyAlgorithm::Ed25519, &ed).unwrap(), ed);
        assert!(ec_point_to_raw(KeyAlgorithm::Ed25519, &wrapped[..33]).is_err());

        let mut p = [9u8; 65];
        p[0] = 0x04;
        let wrapped = [&[0x04, 0x41][..], &p].concat();
        assert_eq!(
            ec_point_to_raw(KeyAlgorithm::EcdsaP256, &wrapped).unwrap(),
            p
        );
        // A bare point starts with 0x04 too; length decides.
        assert_eq!(ec_point_to_raw(KeyAlgorithm::EcdsaP256, &p).unwrap(), p);
        // Compressed points are refused.
        let mut c = [9u8; 33];
        c[0] = 0x02;
        let e = ec_point_to_raw(KeyAlgorithm::EcdsaP256, &c).unwrap_err();
        assert!(e.to_string().contains("33 bytes"), "{e}");
    }

    #[test]
    fn params_name_the_algorithm() {
        assert_eq!(
            algorithm_for_params(true, ED25519_PARAMS_OID),
            Some(KeyAlgorithm::Ed25519)
        );
        assert_eq!(
            algorithm_for_params(true, ED25519_PARAMS_NAME),
            Some(KeyAlgorithm::Ed25519)
        );
        assert_eq!(
            algorithm_for_params(false, P256_PARAMS_OID),
            Some(KeyAlgorithm::EcdsaP256)
        );
        // Ed448 (1.3.101.113) and P-384 are not supported.
        assert_eq!(
            algorithm_for_params(true, &[0x06, 0x03, 0x2b, 0x65, 0x71]),
            None
        );
        assert_eq!(
            algorithm_for_params(false, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
            None
        );
        // The OID form of one family does not name the other.
        assert_eq!(algorithm_for_params(false, ED25519_PARAMS_OID), None);
    }
}
