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

/// SHA-256 over a stream of slices: `update` as the bytes go past, `finish` at the end. Clone
/// it to take the digest of a prefix without stopping (an etcd snapshot's hash covers all but
/// its last 32 bytes; the whole file's hash covers everything).
#[derive(Clone)]
pub struct Sha256Stream(ring::digest::Context);

impl Sha256Stream {
    /// An empty hash.
    pub fn new() -> Self {
        Sha256Stream(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> [u8; 32] {
        let digest = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }
}

impl Default for Sha256Stream {
    fn default() -> Self {
        Self::new()
    }
}

/// A SHA-256 fingerprint written `sha256:<hex>` (the form of talosctl's `<org>.sha256`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
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
        // The stream in pieces, and a clone taken part-way, give the one-shot digests.
        let mut s = super::Sha256Stream::new();
        s.update(b"a");
        let prefix = s.clone();
        s.update(b"bc");
        assert_eq!(s.finish(), super::sha256(b"abc"));
        assert_eq!(prefix.finish(), super::sha256(b"a"));
    }
}
