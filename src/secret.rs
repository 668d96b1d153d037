//! Secret newtypes: zeroized on drop, redacted in `Debug`, and never `Display`/`Serialize`.
//!
//! Every plaintext secret the library holds (PEM private keys, tokens, encryption secrets, whole
//! decrypted bundles) lives in one of these types. They deliberately have no `Clone` unless a
//! call site needs it, no `Display`, and their `Debug` prints only the kind and the length.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Secret bytes (for example a PEM-encoded private key or a decrypted file).
#[derive(Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when the value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new secret buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self::new(v)
    }

    /// The secret bytes. Callers must not copy them into unwiped buffers.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A second copy, also wiped on drop. Explicit so copies stay visible in review.
    pub fn duplicate(&self) -> Self {
        Self::copy_from(&self.0)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// A secret string (for example a bootstrap token or a base64 encryption secret).
#[derive(Default, PartialEq, Eq)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Takes ownership of `s`; it is wiped when the value is dropped.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret text. Callers must not copy it into unwiped buffers.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (Go's "absent").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A second copy, also wiped on drop.
    pub fn duplicate(&self) -> Self {
        Self::new(self.0.as_str().to_owned())
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretText([redacted; {} chars])", self.0.len())
    }
}

/// Wipes a `String` that held secret text and was not already in a zeroizing wrapper.
pub fn wipe_string(mut s: String) {
    s.zeroize();
}

/// Appends `text` to a zeroizing string without leaving an unwiped copy behind. `String::push_str`
/// reallocates when the capacity runs out and frees the old buffer as it is; here the contents
/// move to a fresh zeroizing buffer (at least twice as large) and the old one is wiped on drop.
pub fn push_zeroizing(buf: &mut Zeroizing<String>, text: &str) {
    if buf.capacity() - buf.len() < text.len() {
        let capacity = (buf.len() + text.len()).max(buf.capacity().saturating_mul(2));
        let mut bigger = Zeroizing::new(String::with_capacity(capacity));
        bigger.push_str(buf);
        std::mem::swap(buf, &mut bigger);
    }
    buf.push_str(text);
}

/// Reads `reader` into a zeroizing buffer of `capacity` bytes, growing (by copying into a fresh
/// zeroizing buffer, so no unwiped copy is left behind) only up to `limit` bytes.
/// `read_to_end` would reallocate and leave the old buffers unwiped in freed memory.
pub fn read_zeroizing<R: std::io::Read>(
    mut reader: R,
    capacity: usize,
    limit: usize,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; capacity.clamp(1, limit.max(1))]);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled >= limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("larger than {limit} bytes"),
                ));
            }
            let mut bigger = Zeroizing::new(vec![0u8; (filled * 2).min(limit)]);
            bigger[..filled].copy_from_slice(&buf[..filled]);
            buf = bigger;
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_zeroizing_grows_into_a_new_buffer() {
        let mut buf = Zeroizing::new(String::with_capacity(4));
        push_zeroizing(&mut buf, "abc");
        let first = buf.as_ptr();
        push_zeroizing(&mut buf, "defgh");
        assert_eq!(buf.as_str(), "abcdefgh");
        assert_ne!(
            buf.as_ptr(),
            first,
            "grown by moving, not by realloc in place"
        );
        assert!(buf.capacity() >= 8);
        let before = buf.as_ptr();
        push_zeroizing(&mut buf, "");
        assert_eq!(buf.as_ptr(), before);
    }

    #[test]
    fn debug_is_redacted() {
        let b = SecretBytes::copy_from(b"-----BEGIN PRIVATE KEY-----");
        let t = SecretText::from("abcdef.0123456789abcdef");
        let shown = format!("{b:?} {t:?}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(!shown.contains("abcdef"), "{shown}");
        assert!(shown.contains("27 bytes"), "{shown}");
    }
}
