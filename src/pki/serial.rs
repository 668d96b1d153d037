//! PURE: certificate serials as the vault names them (records, revocations, CRL entries): the
//! lower-case hex of the significant bytes. Parsing accepts what people paste (any case, `:`
//! separators as `openssl x509 -serial` and browsers show them, a `0x` prefix, leading zeros).

use std::fmt;

use thiserror::Error;

/// A serial that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SerialError {
    /// Characters other than hex digits and `:` separators.
    #[error("invalid serial {0:?}: expected hexadecimal digits (`:` separators allowed)")]
    NotHex(String),
    /// All zeros (RFC 5280 §4.1.2.2: serials are positive).
    #[error("serial {0} is zero; certificate serials are positive integers")]
    Zero(String),
    /// More than 20 octets (RFC 5280 §4.1.2.2).
    #[error("serial is {0} hex digits long; certificate serials have at most 40 (20 octets)")]
    TooLong(usize),
}

/// A certificate serial: 1 to 40 lower-case hex digits, no leading zero octet, even length.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(String);

impl Serial {
    /// Normalises a serial as typed.
    pub fn parse(text: &str) -> Result<Self, SerialError> {
        let trimmed = text.trim();
        let body = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed);
        let digits: String = body.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SerialError::NotHex(text.chars().take(48).collect()));
        }
        let significant = digits.trim_start_matches('0').to_ascii_lowercase();
        if significant.is_empty() {
            return Err(SerialError::Zero(text.trim().chars().take(48).collect()));
        }
        let even = if significant.len() % 2 == 1 {
            format!("0{significant}")
        } else {
            significant
        };
        if even.len() > 40 {
            return Err(SerialError::TooLong(even.len()));
        }
        Ok(Serial(even))
    }

    /// The serial of a certificate from its DER INTEGER content bytes (sign octet allowed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SerialError> {
        Self::parse(&crate::hex::encode(bytes))
    }

    /// The hex form records use (and file names).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The big-endian bytes (no sign octet).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::hex::decode(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalise_and_refuse() {
        for (typed, want) in [
            ("abcdef", "abcdef"),
            ("AB:CD:EF", "abcdef"),
            ("0x0abc", "0abc"),
            ("000001", "01"),
            (" 7f ", "7f"),
        ] {
            assert_eq!(Serial::parse(typed).unwrap().as_str(), want, "{typed}");
        }
        assert_eq!(
            Serial::parse("00").unwrap_err().to_string(),
            "serial 00 is zero; certificate serials are positive integers"
        );
        assert!(matches!(
            Serial::parse("../../etc"),
            Err(SerialError::NotHex(_))
        ));
        assert!(matches!(Serial::parse(""), Err(SerialError::NotHex(_))));
        assert!(matches!(Serial::parse("zz11"), Err(SerialError::NotHex(_))));
        assert!(matches!(
            Serial::parse(&"1".repeat(41)),
            Err(SerialError::TooLong(42))
        ));
        assert_eq!(Serial::from_bytes(&[0, 0x80, 1]).unwrap().as_str(), "8001");
        assert_eq!(Serial::parse("8001").unwrap().to_bytes(), vec![0x80, 1]);
    }
}
