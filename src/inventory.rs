//! PURE: the environment's inventory: one-line summaries of its certificate and revocation
//! records, and the facts `status`, `issuer list` and `revoke` report from them. It must not read
//! files (`store::index` caches the lines) or decide what to sign.
//!
//! A summary is checked when it is made from a record (lowercase hex serial, a `sha256:`
//! fingerprint, RFC 3339 times, no tab or newline anywhere), so the cache line format
//! (tab-separated fields) cannot be broken by a hostile record.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{Api, CertRecord, OS_CA, RevocationRecord};

/// A record that cannot be summarised (its field and why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SummaryError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

fn bad(field: &'static str, problem: &'static str) -> SummaryError {
    SummaryError { field, problem }
}

/// Parses an RFC 3339 time to Unix seconds.
pub fn unix_time(field: &'static str, text: &str) -> Result<i64, SummaryError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| bad(field, "not an RFC 3339 time"))
}

fn check_serial(serial: &str) -> Result<(), SummaryError> {
    if serial.is_empty()
        || serial.len() > 40
        || !serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("serial", "not 1-40 lower-case hex digits"));
    }
    Ok(())
}

fn check_fingerprint(fp: &str) -> Result<(), SummaryError> {
    match fp.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(bad("fingerprint", "not sha256:<64 hex digits>")),
    }
}

fn check_ca(ca: &str) -> Result<(), SummaryError> {
    if ca == OS_CA
        || (!ca.is_empty()
            && ca.len() <= 64
            && ca
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        Ok(())
    } else {
        Err(bad("signed_by.ca", "not `os` or an issuer id"))
    }
}

/// Holders and roles go into tab-separated lines (roles joined by commas).
fn check_text(field: &'static str, s: &str, separator: Option<char>) -> Result<(), SummaryError> {
    if s.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(field, "contains a control character"));
    }
    if separator.is_some_and(|c| s.contains(c)) {
        return Err(bad(field, "contains a comma"));
    }
    Ok(())
}

/// One issued certificate, as `status` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// `os` or the issuer id.
    pub ca: String,
    /// Holder, if recorded.
    pub holder: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Break-glass certificate.
    pub break_glass: bool,
    /// The API it is for.
    pub api: Api,
    /// Hex SHA-256 of the record file, to check it against the audit chain (set by the reader
    /// of the file; empty until then).
    pub file_sha256: String,
}

impl CertEntry {
    /// Summarises a record, checking every field that goes into a cache line.
    pub fn from_record(r: &CertRecord) -> Result<Self, SummaryError> {
        check_serial(&r.serial)?;
        check_fingerprint(&r.fingerprint)?;
        check_ca(&r.signed_by.ca)?;
        if let Some(h) = &r.holder {
            check_text("holder", h, None)?;
        }
        for role in &r.roles {
            check_text("roles", role, Some(','))?;
        }
        Ok(Self {
            serial: r.serial.clone(),
            ca: r.signed_by.ca.clone(),
            holder: r.holder.clone(),
            roles: r.roles.clone(),
            not_before: unix_time("not_before", &r.not_before)?,
            not_after: unix_time("not_after", &r.not_after)?,
            break_glass: r.break_glass,
            api: r.api,
            file_sha256: String::new(),
        })
    }

    /// Whether it is valid at `now` (Unix seconds).
    pub fn live_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// The cache line (tab-separated, no newline).
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.serial,
            self.ca,
            self.holder.as_deref().unwrap_or(""),
            self.roles.join(","),
            self.not_before,
            self.not_after,
            u8::from(self.break_glass),
            self.api.as_str(),
            self.file_sha256
        )
    }

    /// Reads a cache line; `None` if it is not one.
    pub fn from_line(line: &str) -> Option<Self> {
        let mut f = line.split('\t');
        let mut next = || f.next();
        let (serial, ca, holder, roles) = (next()?, next()?, next()?, next()?);
        let (nb, na, bg, api, hash) = (next()?, next()?, next()?, next()?, next()?);
        if next().is_some() {
            return None;
        }
        Some(Self {
            serial: serial.to_owned(),
            ca: ca.to_owned(),
            holder: (!holder.is_empty()).then(|| holder.to_owned()),
            roles: if roles.is_empty() {
                Vec::new()
            } else {
                roles.split(',').map(str::to_owned).collect()
            },
            not_before: nb.parse().ok()?,
            not_after: na.parse().ok()?,
            break_glass: match bg {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            api: match api {
                "talos" => Api::Talos,
                "kubernetes" => Api::Kubernetes,
                _ => return None,
            },
            file_sha256: hash.to_owned(),
        })
    }
}

/// One revocation, as the CRL, `status` and the denylist need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// `sha256:…` of the certificate DER.
    pub fingerprint: String,
    /// `os` or the issuer id.
    pub ca: String,
    /// RFC 5280 reason name.
    pub reason: String,
    /// When revoked, Unix seconds.
    pub revoked: i64,
    /// The certificate's notAfter, Unix seconds.
    pub not_after: i64,
    /// Hex SHA-256 of the record file (set by its reader; empty until then).
    pub file_sha256: String,
}

impl RevokedEntry {
    /// Summarises a record.
    pub fn from_record(r: &RevocationRecord) -> Result<Self, SummaryError> {
        check_serial(&r.serial)?;
        check_fingerprint(&r.fingerprint)?;
        check_ca(&r.signed_by.ca)?;
        if r.reason.is_empty() || !r.reason.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad("reason", "not an RFC 5280 reason name"));
        }
        Ok(Self {
            serial: r.serial.clone(),
            fingerprint: r.fingerprint.clone(),
            ca: r.signed_by.ca.clone(),
            reason: r.reason.clone(),
            revoked: unix_time("revoked", &r.revoked)?,
            not_after: unix_time("not_after", &r.not_after)?,
            file_sha256: String::new(),
        })
    }

    /// The cache line.
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.serial,
            self.fingerprint,
            self.ca,
            self.reason,
            self.revoked,
            self.not_after,
            self.file_sha256
        )
    }

    /// Reads a cache line.
    pub fn from_line(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split('\t').collect();
        let [serial, fingerprint, ca, reason, revoked, na, hash] = f.as_slice() else {
            return None;
        };
        Some(Self {
            serial: (*serial).to_owned(),
            fingerprint: (*fingerprint).to_owned(),
            ca: (*ca).to_owned(),
            reason: (*reason).to_owned(),
            revoked: revoked.parse().ok()?,
            not_after: na.parse().ok()?,
            file_sha256: (*hash).to_owned(),
        })
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-27T17:00:00Z`), as `time` would, without its
/// general formatter: `status` formats one per live certificate. Years outside 0..=9999 fall
/// back to `time`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-compatible low-level date
    // algorithms", days_from_civil inverse).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return OffsetDateTime::from_unix_timestamp(unix)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| unix.to_string());
    }
    // Digits by hand: the formatting machinery was a visible share of `status`.
    fn push2(out: &mut String, n: i64) {
        // 0 <= n < 100 here (year halves, month, day, hour, minute, second).
        let n = u8::try_from(n.rem_euclid(100)).unwrap_or(0);
        out.push(char::from(b'0' + n / 10));
        out.push(char::from(b'0' + n % 10));
    }
    let mut out = String::with_capacity(20);
    push2(&mut out, year / 100);
    push2(&mut out, year % 100);
    for (sep, n) in [
        ('-', month),
        ('-', day),
        ('T', secs / 3600),
        (':', secs % 3600 / 60),
        (':', secs % 60),
    ] {
        out.push(sep);
        push2(&mut out, n);
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignedBy;

    fn record() -> CertRecord {
        CertRecord {
            serial: "0a1b".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            roles: vec!["os:reader".into(), "os:etcd:backup".into()],
            holder: Some("alice smith".into()),
            not_before: "2026-11-27T10:00:00Z".into(),
            not_after: "2026-11-27T18:00:00Z".into(),
            ttl: "8h".into(),
            signed_by: SignedBy {
                ca: "e1-abcd".into(),
                fingerprint: "sha256:00".into(),
            },
            mode: "issuer".into(),
            key: "generated".into(),
            actor: "me".into(),
            issued: "2026-11-27T10:00:10Z".into(),
            break_glass: false,
            reason: None,
            certificate: String::new(),
            api: Default::default(),
        }
    }

    #[test]
    fn rfc3339_matches_the_time_crate() {
        let mut t: i64 = -2_208_988_800; // 1900-01-01
        while t < 253_402_300_799 {
            let expected = OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(rfc3339(t), expected, "{t}");
            t += 86_399 * 37 + 7_919; // strides over every month, leap days and times of day
        }
        for t in [0, 951_782_400, 1_709_164_800, 4_107_542_399] {
            let expected = OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(rfc3339(t), expected);
        }
    }

    #[test]
    fn cert_lines_round_trip() {
        let e = CertEntry::from_record(&record()).unwrap();
        assert_eq!(CertEntry::from_line(&e.to_line()), Some(e.clone()));
        assert!(e.live_at(e.not_before) && e.live_at(e.not_after));
        assert!(!e.live_at(e.not_after + 1));
        let mut none = record();
        none.holder = None;
        none.roles.clear();
        let e = CertEntry::from_record(&none).unwrap();
        assert_eq!(CertEntry::from_line(&e.to_line()), Some(e));
    }

    #[test]
    fn hostile_records_are_refused() {
        type Edit = Box<dyn Fn(&mut CertRecord)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|r| r.serial = "../x".into()), "serial"),
            (Box::new(|r| r.serial = "0A".into()), "serial"),
            (Box::new(|r| r.holder = Some("a\tb".into())), "holder"),
            (Box::new(|r| r.holder = Some("a\nb".into())), "holder"),
            (Box::new(|r| r.roles = vec!["a,b".into()]), "roles"),
            (
                Box::new(|r| r.signed_by.ca = "../../x".into()),
                "signed_by.ca",
            ),
            (Box::new(|r| r.fingerprint = "md5:00".into()), "fingerprint"),
            (Box::new(|r| r.not_after = "tomorrow".into()), "not_after"),
        ];
        for (edit, field) in cases {
            let mut r = record();
            edit(&mut r);
            assert_eq!(CertEntry::from_record(&r).unwrap_err().field, field);
        }
    }

    #[test]
    fn revoked_lines_round_trip() {
        let r = RevocationRecord {
            serial: "ff".into(),
            fingerprint: format!("sha256:{}", "cd".repeat(32)),
            signed_by: SignedBy {
                ca: "os".into(),
                fingerprint: "sha256:00".into(),
            },
            reason: "keyCompromise".into(),
            revoked: "2026-11-27T11:00:00Z".into(),
            actor: "me".into(),
            holder: None,
            roles: vec![],
            not_after: "2026-11-28T11:00:00Z".into(),
        };
        let e = RevokedEntry::from_record(&r).unwrap();
        assert_eq!(RevokedEntry::from_line(&e.to_line()), Some(e));
        assert_eq!(CertEntry::from_line("a\tb"), None);
        assert_eq!(RevokedEntry::from_line("a\tb\tc\td\tx\t1"), None);
    }
}
