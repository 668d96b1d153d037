//! DER for the few structures talvault assembles itself (the X.509 TBS with Go's layout, CRLs,
//! multi-valued Names, Talos' key wrappings), in the shape they need: single-byte tags and
//! content slices. Length octets, INTEGER minimisation and header parsing are the `der` crate's
//! (X.690 §8.1.3, §8.3, §10.1); this module only adapts them, so no DER length is written by
//! hand anywhere in the workspace (`talvault-hsm` uses the crate directly).
//!
//! Only definite-length, single-byte-tag TLVs (everything in X.509, PKCS#1/#8 and SEC1) are
//! handled. It does no I/O and holds no secrets itself: callers wrap secret output in `Zeroizing`.

use der::{Decode as _, Encode as _, Header, Length, Reader as _, SliceReader};
use thiserror::Error;

/// A DER structure could not be read or written.
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

impl From<der::Error> for DerError {
    fn from(e: der::Error) -> Self {
        match e.kind() {
            der::ErrorKind::Incomplete { .. } => DerError::Truncated,
            der::ErrorKind::TrailingData { .. } => DerError::TrailingData,
            der::ErrorKind::TagNumberInvalid => DerError::HighTag,
            // Indefinite, non-canonical, over-long or out-of-range lengths, and anything else
            // the header decoder refuses.
            _ => DerError::BadLength,
        }
    }
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

    /// Reads the next element of any tag: the `der` crate decodes the header (DER length rules:
    /// definite, minimal, at most 4 octets) and bounds the content.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let input = self.rest;
        let &tag = input.first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTag);
        }
        let mut reader = SliceReader::new(input)?;
        let header = Header::decode(&mut reader)?;
        let content = reader.read_slice(header.length())?;
        let used = usize::try_from(reader.position())?;
        let (raw, rest) = input.split_at(used);
        self.rest = rest;
        Ok(Tlv { tag, content, raw })
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

/// Appends the tag octet and the DER length octets for `len` content octets (the `der` crate
/// writes the length: short form below 128, else the minimal long form).
pub fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) -> Result<(), DerError> {
    out.push(tag);
    Length::try_from(len)?.encode_to_vec(out)?;
    Ok(())
}

/// The size of a whole TLV with `content` octets (single-octet tag), to size buffers up front.
pub fn tlv_len(content: usize) -> Result<usize, DerError> {
    let length_octets = usize::try_from(Length::try_from(content)?.encoded_len()?)?;
    Ok(1 + length_octets + content)
}

/// Appends a TLV with `tag` and `content` to `out`.
pub fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) -> Result<(), DerError> {
    write_header(out, tag, content.len())?;
    out.extend_from_slice(content);
    Ok(())
}

/// Returns the TLV for `tag` and `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Result<Vec<u8>, DerError> {
    let mut out = Vec::with_capacity(tlv_len(content.len())?);
    write(&mut out, tag, content)?;
    Ok(out)
}

/// Returns a SEQUENCE whose content is the concatenation of `parts`.
pub fn sequence(parts: &[&[u8]]) -> Result<Vec<u8>, DerError> {
    // Wiped: a part may be a private key (PKCS#8 wrapping), and this copy is dropped here.
    let content = zeroize::Zeroizing::new(parts.concat());
    tlv(tag::SEQUENCE, &content)
}

/// Encodes an unsigned big-endian integer as a DER INTEGER (minimal, positive), through the `der`
/// crate's `UintRef`: leading zeros stripped, a 0x00 put in front of a set top bit (X.690 §8.3).
pub fn unsigned_integer(be: &[u8]) -> Result<Vec<u8>, DerError> {
    // The crate reads an empty slice as an empty INTEGER (invalid DER); no digits means zero.
    let be = if be.is_empty() { &[0u8][..] } else { be };
    Ok(der::asn1::UintRef::new(be)?.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lengths() {
        for len in [0usize, 1, 127, 128, 255, 256, 65535, 65536] {
            let content = vec![7u8; len];
            let enc = tlv(tag::OCTET_STRING, &content).unwrap();
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
    fn header_sizes_match_what_is_written() {
        for len in [0usize, 127, 128, 255, 256, 65535, 65536, 1 << 24] {
            let mut out = Vec::new();
            write_header(&mut out, tag::SEQUENCE, len).unwrap();
            assert_eq!(tlv_len(len).unwrap(), out.len() + len, "{len}");
        }
        let mut out = Vec::new();
        write_header(&mut out, tag::SEQUENCE, 300).unwrap();
        assert_eq!(out, [0x30, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn high_tags_are_refused() {
        assert_eq!(
            parse_one(&[0x1f, 0x81, 0x00, 0x00], 0x1f),
            Err(DerError::HighTag)
        );
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[0, 0, 1]).unwrap(), vec![2, 1, 1]);
        assert_eq!(unsigned_integer(&[0x80]).unwrap(), vec![2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[]).unwrap(), vec![2, 1, 0]);
        assert_eq!(unsigned_integer(&[0, 0]).unwrap(), vec![2, 1, 0]);
    }
}
