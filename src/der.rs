//! A minimal DER reader and writer for the few structures talvault assembles by hand.
//!
//! Only definite-length, single-byte-tag TLVs (everything in X.509, PKCS#1/#8 and SEC1) are
//! handled. It does no I/O and holds no secrets itself: callers wrap secret output in `Zeroizing`.

use thiserror::Error;

/// A DER structure could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DerError {
    /// The input ended inside a TLV.
    #[error("DER truncated")]
    Truncated,
    /// A length form DER forbids (indefinite, non-minimal or too large).
    #[error("DER length invalid")]
    BadLength,
    /// A tag other than the one required.
    #[error("DER tag {found:#04x} where {expected:#04x} was expected")]
    UnexpectedTag {
        /// The tag that was required.
        expected: u8,
        /// The tag that was found.
        found: u8,
    },
    /// Multi-byte (high) tag numbers are not used by the formats talvault reads.
    #[error("DER high tag numbers are not supported")]
    HighTag,
    /// Bytes left over after the outermost element.
    #[error("DER has trailing data")]
    TrailingData,
}

/// Tag numbers used in this crate.
pub mod tag {
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// UTF8String
    pub const UTF8_STRING: u8 = 0x0c;
    /// PrintableString
    pub const PRINTABLE_STRING: u8 = 0x13;
    /// SEQUENCE
    pub const SEQUENCE: u8 = 0x30;
    /// SET
    pub const SET: u8 = 0x31;
}

/// One element: its tag, its content and the whole encoding (tag + length + content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The identifier octet.
    pub tag: u8,
    /// The content octets.
    pub content: &'a [u8],
    /// The complete encoding of this element.
    pub raw: &'a [u8],
}

/// Reads consecutive elements from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next element of any tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTag);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            if after_len.len() < n {
                return Err(DerError::Truncated);
            }
            let mut len = 0usize;
            for &b in &after_len[..n] {
                len = (len << 8) | usize::from(b);
            }
            // DER: minimal length encoding.
            if len < 0x80 || after_len[0] == 0 {
                return Err(DerError::BadLength);
            }
            after_len = &after_len[n..];
            len
        };
        if after_len.len() < len {
            return Err(DerError::Truncated);
        }
        let header = input.len() - after_len.len();
        let raw = &input[..header + len];
        self.rest = &input[header + len..];
        Ok(Tlv {
            tag,
            content: &after_len[..len],
            raw,
        })
    }

    /// Reads the next element and requires `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, DerError> {
        let tlv = self.any()?;
        if tlv.tag != tag {
            return Err(DerError::UnexpectedTag {
                expected: tag,
                found: tlv.tag,
            });
        }
        Ok(tlv)
    }

    /// Requires that nothing follows.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Parses exactly one element spanning all of `input`.
pub fn parse_one(input: &[u8], tag: u8) -> Result<Tlv<'_>, DerError> {
    let mut r = Reader::new(input);
    let tlv = r.expect(tag)?;
    r.finish()?;
    Ok(tlv)
}

/// Appends a TLV with `tag` and `content` to `out`.
pub fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    write_len(out, content.len());
    out.extend_from_slice(content);
}

/// Returns the TLV for `tag` and `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    write(&mut out, tag, content);
    out
}

/// Returns a SEQUENCE whose content is the concatenation of `parts`.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    // Wiped: a part may be a private key (PKCS#8 wrapping), and this copy is dropped here.
    let content = zeroize::Zeroizing::new(parts.concat());
    tlv(tag::SEQUENCE, &content)
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Fits in the short form; the cast cannot truncate.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    let n = bytes.len() - skip;
    out.push(0x80 | n as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Encodes an unsigned big-endian integer as a DER INTEGER (minimal, positive).
pub fn unsigned_integer(be: &[u8]) -> Vec<u8> {
    let trimmed = {
        let skip = be.iter().take_while(|&&b| b == 0).count();
        &be[skip..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(tag::INTEGER, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let enc = tlv(tag::OCTET_STRING, &content);
            let t = parse_one(&enc, tag::OCTET_STRING).unwrap();
            assert_eq!(t.content.len(), len);
            assert_eq!(t.raw, &enc[..]);
        }
    }

    #[test]
    fn rejects_non_minimal_and_truncated() {
        assert_eq!(
            parse_one(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], tag::OCTET_STRING),
            Err(DerError::BadLength)
        );
        assert_eq!(
            parse_one(&[0x04, 0x05, 1, 2], tag::OCTET_STRING),
            Err(DerError::Truncated)
        );
        assert_eq!(
            parse_one(&[0x04, 0x80], tag::OCTET_STRING),
            Err(DerError::BadLength)
        );
        assert_eq!(
            parse_one(&[0x04, 0x00, 0x00], tag::OCTET_STRING),
            Err(DerError::TrailingData)
        );
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[0, 0, 1]), vec![2, 1, 1]);
        assert_eq!(unsigned_integer(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[]), vec![2, 1, 0]);
    }
}
