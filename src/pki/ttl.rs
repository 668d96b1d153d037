//! PURE: certificate lifetimes (`Ttl`) written as Go durations, the way `talosctl --crt-ttl` takes them.
//!
//! Parsing follows Go's `time.ParseDuration` (units `ns us µs μs ms s m h`, decimals, several
//! terms such as `1h30m`) and adds `d` (24 h) and `w` (168 h), which Go lacks. A TTL must be
//! positive and a whole number of seconds (X.509 validity has second precision), and it is never
//! rounded or clamped silently. This module does no I/O and reads no clock.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Go's `time.Duration` is an int64 of nanoseconds; larger inputs overflow there, so here too.
const MAX_NANOS: u128 = i64::MAX as u128;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// A TTL string that is not an acceptable certificate lifetime. The messages follow Go's
/// `time.ParseDuration` where Go has one.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TtlError {
    /// Not a duration at all (Go: `time: invalid duration "…"`).
    #[error("invalid duration {input:?}")]
    Invalid {
        /// The text given.
        input: String,
    },
    /// A number without a unit (Go: `time: missing unit in duration "…"`).
    #[error("missing unit in duration {input:?} (use h, m, s, d or w, e.g. \"8h\")")]
    MissingUnit {
        /// The text given.
        input: String,
    },
    /// A unit Go does not know and `d`/`w` are not (Go: `time: unknown unit "x" in duration "…"`).
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m, h, d or w)")]
    UnknownUnit {
        /// The unrecognised unit.
        unit: String,
        /// The text given.
        input: String,
    },
    /// Zero or negative: a certificate must be valid for some time
    /// (siderolabs/talos: v1alpha1_server.go "crt_ttl should be positive").
    #[error("duration {input:?} is not positive; a TTL must be greater than zero")]
    NotPositive {
        /// The text given.
        input: String,
    },
    /// Beyond Go's `time.Duration` range (about 292 years).
    #[error("duration {input:?} is too large")]
    TooLarge {
        /// The text given.
        input: String,
    },
    /// Has a fractional second, which a certificate cannot express; refused rather than rounded.
    #[error("duration {input:?} is not a whole number of seconds")]
    FractionalSecond {
        /// The text given.
        input: String,
    },
}

/// A certificate lifetime: positive, whole seconds, at most Go's `time.Duration` maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// `hours` hours; `None` for zero or out of range. For constants and tests.
    pub const fn from_hours(hours: u64) -> Option<Ttl> {
        Ttl::from_seconds(hours.saturating_mul(3600))
    }

    /// `seconds` seconds; `None` for zero or beyond Go's duration range.
    pub const fn from_seconds(seconds: u64) -> Option<Ttl> {
        if seconds == 0 || seconds as u128 * NANOS_PER_SECOND > MAX_NANOS {
            None
        } else {
            Some(Ttl(seconds))
        }
    }

    /// The lifetime in seconds.
    pub const fn as_seconds(self) -> u64 {
        self.0
    }

    /// The lifetime as a `time::Duration`.
    pub fn as_duration(self) -> time::Duration {
        // as_seconds() ≤ i64::MAX / 10^9, so the conversion cannot wrap.
        time::Duration::seconds(self.0 as i64)
    }

    /// Parses a Go duration (plus `d` and `w`), as `talosctl --crt-ttl` would take it.
    pub fn parse(input: &str) -> Result<Ttl, TtlError> {
        let nanos = parse_go_duration(input)?;
        if nanos <= 0 {
            return Err(TtlError::NotPositive {
                input: input.to_owned(),
            });
        }
        let nanos = nanos.unsigned_abs();
        if nanos % NANOS_PER_SECOND != 0 {
            return Err(TtlError::FractionalSecond {
                input: input.to_owned(),
            });
        }
        let seconds = u64::try_from(nanos / NANOS_PER_SECOND).map_err(|_| TtlError::TooLarge {
            input: input.to_owned(),
        })?;
        Ttl::from_seconds(seconds).ok_or_else(|| TtlError::TooLarge {
            input: input.to_owned(),
        })
    }
}

/// Canonical form: hours, minutes and seconds, zero parts left out (`8h`, `720h`, `1h30m`,
/// `45s`). Hours are not folded into days so that the text matches talosctl's `--crt-ttl`.
impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl FromStr for Ttl {
    type Err = TtlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ttl::parse(s)
    }
}

impl serde::Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ttl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Nanoseconds per unit. Go's table (time/format.go `unitMap`) plus `d` and `w`.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        "d" => 86_400 * NANOS_PER_SECOND,
        "w" => 604_800 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`), exact instead of Go's float64
/// for fractions: the result is truncated to whole nanoseconds as Go does. Returns signed
/// nanoseconds within Go's int64 range.
fn parse_go_duration(input: &str) -> Result<i128, TtlError> {
    let invalid = || TtlError::Invalid {
        input: input.to_owned(),
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    // Go special-cases a bare "0" (with sign).
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // The next character must be '.' or a digit.
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = s.split_at(int_len);
        let mut frac_digits = "";
        let mut rest = rest;
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            // "." or ".s": no digits at all.
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        s = &rest[unit_len..];
        if unit.is_empty() {
            return Err(TtlError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let per_unit = unit_nanos(unit).ok_or_else(|| TtlError::UnknownUnit {
            unit: unit.to_owned(),
            input: input.to_owned(),
        })?;
        let too_large = || TtlError::TooLarge {
            input: input.to_owned(),
        };
        let whole = parse_digits(int_digits).ok_or_else(too_large)?;
        let mut term = whole.checked_mul(per_unit).ok_or_else(too_large)?;
        if !frac_digits.is_empty() {
            // Digits beyond nanosecond precision of the largest unit cannot change the result.
            // 23 digits keep numerator × per_unit below 2^128 (10^23 × 6.048·10^14 for `w`);
            // 24 overflowed (fuzz: a panic with overflow checks, a wrong TTL without).
            let frac_digits = &frac_digits[..frac_digits.len().min(23)];
            let numerator = parse_digits(frac_digits).ok_or_else(too_large)?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            let fraction = numerator.checked_mul(per_unit).ok_or_else(too_large)? / scale;
            term = term.checked_add(fraction).ok_or_else(too_large)?;
        }
        total = total.checked_add(term).ok_or_else(too_large)?;
        if total > MAX_NANOS {
            return Err(too_large());
        }
    }
    let total = i128::try_from(total).map_err(|_| TtlError::TooLarge {
        input: input.to_owned(),
    })?;
    Ok(if negative { -total } else { total })
}

fn parse_digits(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    // Leading zeros are allowed by Go; 39 significant digits overflow u128 anyway.
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 38 {
        return None;
    }
    if trimmed.is_empty() {
        return Some(0);
    }
    trimmed.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_talosctl() {
        for (text, seconds, canonical) in [
            ("720h", 720 * 3600, "720h"),
            ("8h", 8 * 3600, "8h"),
            ("90m", 5400, "1h30m"),
            ("1h30m", 5400, "1h30m"),
            ("45s", 45, "45s"),
            ("1.5h", 5400, "1h30m"),
            (".5h", 1800, "30m"),
            ("5.h", 5 * 3600, "5h"),
            ("+2h", 7200, "2h"),
            ("1d", 86_400, "24h"),
            ("2w", 2 * 604_800, "336h"),
            ("1w1d", 8 * 86_400, "192h"),
            ("8760h0m0s", 8760 * 3600, "8760h"),
            ("1h0.5m", 3630, "1h30s"),
            ("1500ms", 0, ""),
            ("3000ms", 3, "3s"),
            ("2000000000ns", 2, "2s"),
            ("1000000\u{b5}s", 1, "1s"),
            ("0.25m", 15, "15s"),
            ("1h1m1s", 3661, "1h1m1s"),
            ("007m", 420, "7m"),
        ] {
            match Ttl::parse(text) {
                Ok(ttl) => {
                    assert_eq!(ttl.as_seconds(), seconds, "{text}");
                    assert_eq!(ttl.to_string(), canonical, "{text}");
                    assert_eq!(Ttl::parse(canonical), Ok(ttl), "round trip of {text}");
                }
                Err(e) => {
                    assert_eq!(seconds, 0, "{text}: {e}");
                    assert!(
                        matches!(e, TtlError::FractionalSecond { .. }),
                        "{text}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_fractions_of_large_units_do_not_overflow() {
        // Fuzz finding: 24 fractional digits of `w` overflowed u128.
        let t = Ttl::parse("0.750000000000000000000000w").unwrap();
        assert_eq!(t.to_string(), "126h");
        assert!(matches!(
            Ttl::parse("1.9999999999999999999999999999w"),
            Err(TtlError::FractionalSecond { .. })
        ));
    }

    #[test]
    fn refuses_what_go_refuses_and_non_positive() {
        for (text, want) in [
            ("", "invalid duration \"\""),
            ("h", "invalid duration \"h\""),
            (".h", "invalid duration \".h\""),
            ("1", "missing unit"),
            ("1h2", "missing unit"),
            ("8 h", "unknown unit \" h\""),
            ("8H", "unknown unit \"H\""),
            ("3y", "unknown unit \"y\""),
            ("0", "not positive"),
            ("0h", "not positive"),
            ("-1h", "not positive"),
            ("-0", "not positive"),
            ("0.5s", "not a whole number of seconds"),
            ("2562048h", "too large"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("1e3h", "unknown unit \"e\""),
        ] {
            let err = Ttl::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // Go's limit, 2562047h47m16.854775807s, truncated to whole seconds is refused as a
        // fraction; the whole-second value just under it is accepted.
        assert!(Ttl::parse("2562047h47m16s").is_ok());
    }

    #[test]
    fn serde_uses_the_text_form() {
        let ttl: Ttl = serde_yaml::from_str("1h30m").unwrap();
        assert_eq!(ttl.as_seconds(), 5400);
        assert_eq!(serde_yaml::to_string(&ttl).unwrap(), "1h30m\n");
        assert!(serde_yaml::from_str::<Ttl>("0s").is_err());
    }

    #[test]
    fn constructors() {
        assert_eq!(Ttl::from_hours(8).map(Ttl::as_seconds), Some(28_800));
        assert_eq!(Ttl::from_hours(0), None);
        assert_eq!(Ttl::from_seconds(u64::MAX), None);
        assert_eq!(
            Ttl::from_hours(2).unwrap().as_duration(),
            time::Duration::hours(2)
        );
    }
}
