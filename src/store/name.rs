//! Validators for path components that come from users (environment names, serials, ids). They
//! must stay strict and must not touch the file system: a name that passes is safe to join onto a
//! vault path on any platform (no separators, no `..`, no leading dot, no upper case that a
//! case-insensitive file system would fold).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A name that does not satisfy its rule. The rejected value is shown quoted and shortened;
/// names are public input, never secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {shown}: {rule}")]
pub struct NameError {
    kind: &'static str,
    shown: String,
    rule: &'static str,
}

impl NameError {
    fn new(kind: &'static str, value: &str, rule: &'static str) -> Self {
        const SHOWN_CHARS: usize = 40;
        let mut short: String = value.chars().take(SHOWN_CHARS).collect();
        if value.chars().count() > SHOWN_CHARS {
            short.push('…');
        }
        NameError {
            kind,
            shown: format!("{short:?}"),
            rule,
        }
    }

    /// What kind of name was rejected ("environment name", "serial", ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

fn check(
    kind: &'static str,
    value: &str,
    rule: &'static str,
    max_len: usize,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
) -> Result<(), NameError> {
    let bytes = value.as_bytes();
    let ok = match bytes.split_first() {
        Some((&head, tail)) => {
            bytes.len() <= max_len && first(head) && tail.iter().all(|&b| rest(b))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(NameError::new(kind, value, rule))
    }
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// An environment name: `^[a-z0-9][a-z0-9-]{0,62}$` (a DNS label's alphabet and length, so it
/// also fits cluster names and file names everywhere).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

impl EnvName {
    /// The rule, for help texts.
    pub const RULE: &'static str =
        "1 to 63 characters from a-z, 0-9 and '-', starting with a letter or digit";

    /// Checks `s` against the rule.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check("environment name", s, Self::RULE, 63, lower_alnum, |b| {
            lower_alnum(b) || b == b'-'
        })?;
        Ok(EnvName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EnvName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EnvName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EnvName> for String {
    fn from(n: EnvName) -> String {
        n.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EnvName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The rule `check_id` applies.
pub const ID_RULE: &str =
    "1 to 128 characters from a-z, 0-9, '-' and '_', starting with a letter or digit";

/// Checks a generic identifier used as a path component (issuer ids and the like):
/// `^[a-z0-9][a-z0-9_-]{0,127}$`. No dots at all, so no `..`, hidden files or extension tricks.
pub fn check_id<'a>(kind: &'static str, s: &'a str) -> Result<&'a str, NameError> {
    check(kind, s, ID_RULE, 128, lower_alnum, |b| {
        lower_alnum(b) || b == b'-' || b == b'_'
    })?;
    Ok(s)
}

/// Checks lower-case hexadecimal of 1 to `max_len` digits (certificate serials, event ids).
pub fn check_hex<'a>(kind: &'static str, s: &'a str, max_len: usize) -> Result<&'a str, NameError> {
    fn hex(b: u8) -> bool {
        b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
    }
    check(
        kind,
        s,
        "lower-case hexadecimal digits only",
        max_len,
        hex,
        hex,
    )?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        for ok in ["prod", "a", "0", "staging-eu-1", &"a".repeat(63), "x-"] {
            assert!(EnvName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-prod",
            "Prod",
            "prod_1",
            "prod.1",
            "..",
            ".",
            "a/b",
            "a\\b",
            "ä",
            " prod",
            &"a".repeat(64),
            "prod\n",
        ] {
            let err = EnvName::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid environment name"),
                "{err}"
            );
        }
    }

    #[test]
    fn env_name_serde_validates() {
        let n: EnvName = serde_json::from_str("\"prod\"").unwrap();
        assert_eq!(n.as_str(), "prod");
        assert!(serde_json::from_str::<EnvName>("\"../x\"").is_err());
    }

    #[test]
    fn ids_and_hex() {
        assert!(check_id("issuer id", "2026-11_a").is_ok());
        for bad in ["", "_a", "a.b", "..", "A", "a/b"] {
            assert!(check_id("issuer id", bad).is_err(), "{bad}");
        }
        assert!(check_hex("serial", "00ff", 40).is_ok());
        assert!(check_hex("serial", "00FF", 40).is_err());
        assert!(check_hex("serial", "", 40).is_err());
        assert!(check_hex("serial", &"a".repeat(41), 40).is_err());
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let err = EnvName::parse(&"A".repeat(500)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }
}
