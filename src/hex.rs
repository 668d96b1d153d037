//! Hexadecimal text (serials, fingerprints, key identifiers): the one encoder and decoder of the
//! workspace, over `base16ct` (RustCrypto, constant time, already in the tree through `sec1`).
//! Pure; `talvault-hsm` calls `base16ct` directly, since it sits below this crate.

/// Lowercase hex of `bytes`, two digits per byte (`[0xab, 0x01]` → `"ab01"`).
pub fn encode(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// The bytes of an even-length hex string, upper- or lowercase; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        assert_eq!(encode(&[0x00, 0xab, 0x7f, 0xff]), "00ab7fff");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("00ab7FFF"), Some(vec![0x00, 0xab, 0x7f, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "abc", "0g", "+a", " 0a", "0a "] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
