//! PURE: SHA-256, the one hash talvault uses of its own accord (certificate and CA
//! fingerprints, content hashes, audit event ids), and fingerprints in talosctl's form.

use serde::Serialize;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::encode(&sha256(bytes))
}

/// A SHA-256 fingerprint written `sha256:<hex>` (the form of talosctl's `<org>.sha256`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(format!("sha256:{}", sha256_hex(bytes)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_answer() {
        // FIPS 180-2 appendix B.1: SHA-256("abc").
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            super::Fingerprint::of(b"abc").0,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
