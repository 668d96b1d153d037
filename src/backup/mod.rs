//! PURE: sealed backups as data: the record kept in the vault for each one ([`BackupRecord`]),
//! what a stream of plaintext turned out to be ([`etcd::Scan`], [`classify`]), whether a stream
//! matches its record ([`find_by_head`], [`check_contents`]), which backups are sealed to a
//! set of recipients other than the current one ([`staleness`]), and how fresh an environment's
//! verified backups are ([`health`]). It does no I/O and reads no clock: the bytes, the time and
//! the audit marks come in as arguments, and nothing here holds a backup's contents.

pub mod background;
pub mod etcd;
mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use thiserror::Error;

pub use self::record::{
    BackupRecord, Contents, EtcdFacts, Format, ID_LEN, RECORD_VERSION, Sealed, is_id,
};
use crate::digest::Fingerprint;
use crate::hex;

/// The buffer size of every backup stream: age's own payload chunk (64 KiB, c2sp.org/age
/// "payload"), so one read becomes one age chunk and memory stays constant whatever the size.
pub const CHUNK: usize = 64 << 10;

/// The longest head (age header and payload nonce, [`Sealed::head_len`]) recorded or looked for:
/// age's own limit on a header line count keeps real ones far below (one X25519 recipient
/// makes about 200 bytes).
pub const MAX_HEAD_LEN: u64 = 1 << 20;

/// Longest label.
const MAX_LABEL: usize = 64;

/// A `--label` or `--location` that cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextProblem {
    /// Empty or only whitespace.
    #[error("it is empty")]
    Empty,
    /// Too long to show on one line.
    #[error("it is longer than {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A control character (records and audit events show it on one line).
    #[error("it contains a control character")]
    Control,
}

/// Checks a label (trimmed, at most 64 characters, no control characters).
pub fn label(text: &str) -> Result<String, TextProblem> {
    one_line(text, MAX_LABEL)
}

/// Checks a reason (trimmed, at most 512 characters, no control characters).
pub fn reason(text: &str) -> Result<String, TextProblem> {
    one_line(text, 512)
}

/// Checks a location (trimmed, at most 1024 characters, no control characters).
pub fn location(text: &str) -> Result<String, TextProblem> {
    one_line(text, 1024)
}

fn one_line(text: &str, max: usize) -> Result<String, TextProblem> {
    let t = text.trim();
    if t.is_empty() {
        return Err(TextProblem::Empty);
    }
    if t.chars().any(char::is_control) {
        return Err(TextProblem::Control);
    }
    if t.chars().count() > max {
        return Err(TextProblem::TooLong { max });
    }
    Ok(t.to_owned())
}

/// A recipient's fingerprint as records keep it: `sha256:` of its canonical text.
pub fn recipient_fingerprint(recipient: &str) -> Fingerprint {
    Fingerprint::of(recipient.as_bytes())
}

/// Why a plaintext stream cannot be sealed as what it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentsProblem {
    /// A bbolt database that is not an intact etcd snapshot (and was not declared a copy).
    #[error("{0}")]
    Etcd(etcd::Verdict),
    /// Declared a database copy, but it is not a bbolt database, or is cut short.
    #[error("{0}")]
    NotADbCopy(etcd::Verdict),
}

/// What the stream holds, as recorded: refuses a damaged or cut-short etcd snapshot, and a
/// database copy unless the operator declared one (`db_copy`).
pub fn classify(outcome: &etcd::Outcome, db_copy: bool) -> Result<Contents, ContentsProblem> {
    use etcd::Verdict;
    let (format, etcd) = match (&outcome.verdict, db_copy) {
        (Verdict::NotEtcd, false) => (Format::File, None),
        (Verdict::Snapshot { meta, sha256 }, _) => (
            Format::EtcdSnapshot,
            Some(EtcdFacts {
                page_size: meta.page_size,
                db_size: meta.db_size(),
                sha256: Some(hex::encode(sha256)),
            }),
        ),
        (v, true) if v.could_be_db_copy() => {
            let meta = v
                .meta()
                .copied()
                .ok_or_else(|| ContentsProblem::NotADbCopy(v.clone()))?;
            (
                Format::EtcdDbCopy,
                Some(EtcdFacts {
                    page_size: meta.page_size,
                    db_size: meta.db_size(),
                    sha256: None,
                }),
            )
        }
        (v, true) => return Err(ContentsProblem::NotADbCopy(v.clone())),
        (v, false) => return Err(ContentsProblem::Etcd(v.clone())),
    };
    Ok(Contents {
        format,
        size: outcome.size,
        sha256: hex::encode(&outcome.sha256),
        etcd,
    })
}

/// How a stream differs from its record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    /// A different length.
    #[error("{what} is {found} bytes, the record says {recorded}")]
    Size {
        /// `the sealed file` or `the decrypted backup`.
        what: &'static str,
        /// Per the record.
        recorded: u64,
        /// Read.
        found: u64,
    },
    /// The same length, other bytes.
    #[error(
        "{what} hashes to {}…, the record says {}…",
        short(found),
        short(recorded)
    )]
    Sha256 {
        /// `the sealed file` or `the decrypted backup`.
        what: &'static str,
        /// Per the record (hex).
        recorded: String,
        /// Read (hex).
        found: String,
    },
    /// The record says etcd snapshot; the bytes are not an intact one.
    #[error("{0}")]
    Etcd(etcd::Verdict),
}

/// The first 12 hex digits, for messages.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// Checks the decrypted plaintext against the record: size, SHA-256, then (for an etcd
/// snapshot) the snapshot's own trailer again, so an edited record cannot vouch for a damaged
/// snapshot.
pub fn check_contents(recorded: &Contents, outcome: &etcd::Outcome) -> Result<(), Mismatch> {
    const WHAT: &str = "the decrypted backup";
    if outcome.size != recorded.size {
        return Err(Mismatch::Size {
            what: WHAT,
            recorded: recorded.size,
            found: outcome.size,
        });
    }
    let found = hex::encode(&outcome.sha256);
    if found != recorded.sha256 {
        return Err(Mismatch::Sha256 {
            what: WHAT,
            recorded: recorded.sha256.clone(),
            found,
        });
    }
    if recorded.format == Format::EtcdSnapshot {
        match &outcome.verdict {
            etcd::Verdict::Snapshot { sha256, .. }
                if recorded.etcd.as_ref().and_then(|e| e.sha256.as_deref())
                    == Some(hex::encode(sha256).as_str()) => {}
            etcd::Verdict::Snapshot { .. } => {
                // Intact, but another snapshot than recorded: only an edited record does that.
                return Err(Mismatch::Sha256 {
                    what: "the etcd snapshot's own hash",
                    recorded: recorded
                        .etcd
                        .as_ref()
                        .and_then(|e| e.sha256.clone())
                        .unwrap_or_default(),
                    found: hex::encode(&outcome.sha256),
                });
            }
            other => return Err(Mismatch::Etcd(other.clone())),
        }
    }
    Ok(())
}

/// A sealed file as written: its length and SHA-256, and its head (the age header and the
/// 16-byte payload nonce) with the head's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedDigest {
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Length of the head.
    pub head_len: u64,
    /// SHA-256 of the head.
    pub head_sha256: [u8; 32],
}

/// The record whose head is the start of `prefix` (the first bytes of a sealed file, at least
/// the longest recorded head when the file is that long).
///
/// Why the head, and not the whole file's SHA-256, identifies a sealed file when it is read
/// back: the head fixes the file key (the header MAC binds the stanzas to it) and the payload
/// nonce, hence the payload key; age's STREAM is deterministic under that key, and every chunk
/// is authenticated. So a file with the recorded head whose chunks all authenticate and whose
/// plaintext has the recorded SHA-256 is byte for byte the sealed file (barring a SHA-256
/// collision), and `open` and `verify` need not hash the sealed bytes a second time.
pub fn find_by_head<'a>(records: &'a [BackupRecord], prefix: &[u8]) -> Option<&'a BackupRecord> {
    records.iter().find(|r| {
        usize::try_from(r.sealed.head_len)
            .ok()
            .and_then(|n| prefix.get(..n))
            .is_some_and(|head| hex::encode(&crate::digest::sha256(head)) == r.sealed.head_sha256)
    })
}

/// A backup sealed to another set of recipients than the environment's current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The record.
    pub id: String,
    /// Recipients it is sealed to that are no longer current (they can still open it).
    pub removed: usize,
    /// Current recipients it is not sealed to (they cannot open it).
    pub missing: usize,
}

/// The backups whose recipients differ from `current` (fingerprints of every current
/// recipient, environment and backup-only), in record order.
pub fn staleness<'a>(
    records: impl IntoIterator<Item = &'a BackupRecord>,
    current: &BTreeSet<Fingerprint>,
) -> Vec<Stale> {
    records
        .into_iter()
        .filter_map(|r| {
            let sealed: BTreeSet<&Fingerprint> = r.sealed.all_recipients().collect();
            let removed = sealed.iter().filter(|f| !current.contains(**f)).count();
            let missing = current.iter().filter(|f| !sealed.contains(f)).count();
            (removed + missing > 0).then(|| Stale {
                id: r.id.clone(),
                removed,
                missing,
            })
        })
        .collect()
}

/// One successful `backup verify`, as its audit event records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyMark {
    /// The backup id.
    pub id: String,
    /// The sealed file's SHA-256 that was verified (a reseal makes a new file to verify).
    pub sha256: String,
    /// When (Unix seconds).
    pub time: i64,
}

impl VerifyMark {
    /// One cache line: `ID SHA256 TIME`.
    pub fn to_line(&self) -> String {
        format!("{} {} {}", self.id, self.sha256, self.time)
    }

    /// The inverse of [`VerifyMark::to_line`].
    pub fn from_line(line: &str) -> Option<Self> {
        let mut f = line.split(' ');
        let mark = VerifyMark {
            id: f.next().filter(|s| is_id(s))?.to_owned(),
            sha256: f.next().filter(|s| s.len() == 64)?.to_owned(),
            time: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(mark)
    }
}

/// The last verification of each backup's current sealed file: id → Unix time.
pub fn last_verified(records: &[BackupRecord], marks: &[VerifyMark]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in records {
        let newest = marks
            .iter()
            .filter(|m| m.id == r.id && m.sha256 == r.sealed.sha256)
            .map(|m| m.time)
            .max();
        if let Some(t) = newest {
            out.insert(r.id.clone(), t);
        }
    }
    out
}

/// An environment's backups as `status` reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Records.
    pub backups: usize,
    /// The newest backup that has been verified: its id.
    pub newest_verified: Option<String>,
    /// When that backup was sealed (Unix seconds).
    pub newest_verified_sealed: Option<i64>,
    /// Its age now, in seconds.
    pub newest_verified_age: Option<i64>,
    /// `backup.max_age` of the policy (seconds).
    pub max_age: i64,
}

/// What is wrong with an environment's backups, for `status` (one line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProblem {
    /// Backups exist, none verified.
    NoneVerified {
        /// How many.
        backups: usize,
    },
    /// The newest verified backup is older than `max_age`.
    TooOld {
        /// Its id.
        id: String,
        /// Its age (seconds).
        age: i64,
        /// The policy maximum (seconds).
        max_age: i64,
    },
    /// No backups, and the policy has a backup section.
    NoBackups,
}

impl fmt::Display for HealthProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthProblem::NoneVerified { backups } => write!(
                f,
                "none of {backups} backup(s) has been verified (backup verify)"
            ),
            HealthProblem::TooOld { id, age, max_age } => write!(
                f,
                "the newest verified backup ({id}) is {} old, above backup.max_age {}",
                duration(*age),
                duration(*max_age)
            ),
            HealthProblem::NoBackups => {
                f.write_str("no backups recorded, and policy.yaml has a backup section")
            }
        }
    }
}

/// `3d4h`, `5h2m`, `40s`: an age for people.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// Grades an environment's backups at `now`: the newest verified one (by seal time) must be
/// younger than `max_age` seconds; backups that were never verified count as none; no backups
/// at all is a problem only when the policy asks for backups (`policy_section`).
pub fn health(
    records: &[(i64, &BackupRecord)],
    verified: &BTreeMap<String, i64>,
    max_age: i64,
    policy_section: bool,
    now: i64,
) -> (Health, Option<HealthProblem>) {
    let newest = records
        .iter()
        .filter(|(_, r)| verified.contains_key(&r.id))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let h = Health {
        backups: records.len(),
        newest_verified: newest.map(|(_, r)| r.id.clone()),
        newest_verified_sealed: newest.map(|(t, _)| *t),
        newest_verified_age: newest.map(|(t, _)| now - t),
        max_age,
    };
    let problem = match newest {
        None if records.is_empty() => policy_section.then_some(HealthProblem::NoBackups),
        None => Some(HealthProblem::NoneVerified {
            backups: records.len(),
        }),
        Some((sealed, r)) if now - sealed > max_age => Some(HealthProblem::TooOld {
            id: r.id.clone(),
            age: now - sealed,
            max_age,
        }),
        Some(_) => None,
    };
    (h, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &[u8] = include_bytes!("../../tests/data/etcd/snapshot-3.4.23.db");

    fn outcome(bytes: &[u8]) -> etcd::Outcome {
        let mut s = etcd::Scan::new();
        s.update(bytes);
        s.finish()
    }

    fn record(id: &str, sealed_sha: &str, contents: Contents) -> BackupRecord {
        BackupRecord {
            version: RECORD_VERSION,
            id: id.into(),
            label: None,
            created: "2026-01-01T00:00:00Z".into(),
            actor: "a".into(),
            location: None,
            contents,
            sealed: Sealed {
                size: 1,
                sha256: sealed_sha.into(),
                head_len: 100,
                head_sha256: "0".repeat(64),
                recipients: vec![recipient_fingerprint("r1")],
                backup_only: vec![recipient_fingerprint("dr")],
                resealed: None,
            },
        }
    }

    #[test]
    fn classify_refuses_damaged_snapshots_and_undeclared_copies() {
        let snap = classify(&outcome(SNAPSHOT), false).unwrap();
        assert_eq!(snap.format, Format::EtcdSnapshot);
        assert_eq!(snap.etcd.as_ref().unwrap().db_size, 32768);
        assert_eq!(
            snap.etcd.as_ref().unwrap().sha256.as_deref(),
            Some(hex::encode(&SNAPSHOT[32768..]).as_str())
        );
        assert_eq!(
            classify(&outcome(b"hello"), false).unwrap().format,
            Format::File
        );
        let raw = &SNAPSHOT[..32768];
        assert!(matches!(
            classify(&outcome(raw), false),
            Err(ContentsProblem::Etcd(etcd::Verdict::NoTrailer { .. }))
        ));
        let copy = classify(&outcome(raw), true).unwrap();
        assert_eq!(copy.format, Format::EtcdDbCopy);
        assert_eq!(copy.etcd.unwrap().sha256, None);
        // Declared a copy: must be a bbolt image, not cut short.
        assert!(matches!(
            classify(&outcome(b"hello"), true),
            Err(ContentsProblem::NotADbCopy(_))
        ));
        assert!(classify(&outcome(&SNAPSHOT[..20000]), true).is_err());
    }

    #[test]
    fn contents_are_checked_against_the_record_and_the_snapshot_itself() {
        let good = classify(&outcome(SNAPSHOT), false).unwrap();
        assert_eq!(check_contents(&good, &outcome(SNAPSHOT)), Ok(()));
        let mut flipped = SNAPSHOT.to_vec();
        flipped[9000] ^= 1;
        assert!(matches!(
            check_contents(&good, &outcome(&flipped)),
            Err(Mismatch::Sha256 { .. })
        ));
        assert!(matches!(
            check_contents(&good, &outcome(&SNAPSHOT[..100])),
            Err(Mismatch::Size { found: 100, .. })
        ));
        // A record edited to vouch for the damaged bytes: the trailer still gives them away.
        let mut forged = good.clone();
        forged.sha256 = hex::encode(&crate::digest::sha256(&flipped));
        let err = check_contents(&forged, &outcome(&flipped)).unwrap_err();
        assert!(matches!(
            err,
            Mismatch::Etcd(etcd::Verdict::HashMismatch { .. })
        ));
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn stale_backups_name_removed_and_missing_recipients() {
        let contents = classify(&outcome(b"x"), false).unwrap();
        let r = record("0000000000000001", &"1".repeat(64), contents);
        let current: BTreeSet<Fingerprint> =
            [recipient_fingerprint("r1"), recipient_fingerprint("dr")].into();
        assert!(staleness([&r], &current).is_empty());
        let current: BTreeSet<Fingerprint> =
            [recipient_fingerprint("r2"), recipient_fingerprint("dr")].into();
        assert_eq!(
            staleness([&r], &current),
            vec![Stale {
                id: r.id.clone(),
                removed: 1,
                missing: 1
            }]
        );
    }

    #[test]
    fn health_grades_the_newest_verified_backup() {
        let contents = classify(&outcome(b"x"), false).unwrap();
        let (a, b) = (
            record("000000000000000a", &"a".repeat(64), contents.clone()),
            record("000000000000000b", &"b".repeat(64), contents),
        );
        let day = 86_400;
        let records = [(10 * day, &a), (11 * day, &b)];
        let marks = [
            VerifyMark {
                id: a.id.clone(),
                sha256: "a".repeat(64),
                time: 10 * day + 60,
            },
            // A verification of b's earlier (pre-reseal) file does not count.
            VerifyMark {
                id: b.id.clone(),
                sha256: "f".repeat(64),
                time: 11 * day + 60,
            },
        ];
        let verified = last_verified(&[a.clone(), b.clone()], &marks);
        assert_eq!(verified.keys().collect::<Vec<_>>(), [&a.id]);
        let (h, p) = health(&records, &verified, day, false, 10 * day + 3600);
        assert_eq!(h.newest_verified.as_deref(), Some(a.id.as_str()));
        assert_eq!(h.newest_verified_age, Some(3600));
        assert_eq!(p, None);
        let (_, p) = health(&records, &verified, day, false, 12 * day);
        assert!(matches!(p, Some(HealthProblem::TooOld { age, .. }) if age == 2 * day));
        let (_, p) = health(&records, &BTreeMap::new(), day, false, 12 * day);
        assert_eq!(p, Some(HealthProblem::NoneVerified { backups: 2 }));
        assert_eq!(health(&[], &verified, day, false, 0).1, None);
        assert_eq!(
            health(&[], &verified, day, true, 0).1,
            Some(HealthProblem::NoBackups)
        );
        for m in &marks {
            assert_eq!(VerifyMark::from_line(&m.to_line()).as_ref(), Some(m));
        }
        assert_eq!(VerifyMark::from_line("x y 1"), None);
        assert_eq!(duration(3 * day + 7200), "3d2h");
        assert_eq!(duration(5400), "1h30m");
    }

    #[test]
    fn records_are_found_by_their_head() {
        let contents = classify(&outcome(b"x"), false).unwrap();
        let file = b"age-encryption.org/v1\n-> X25519 abc\n--- mac\n0123456789abcdefPAYLOAD";
        let head_len = 60;
        let mut a = record("000000000000000a", &"a".repeat(64), contents.clone());
        a.sealed.head_len = head_len as u64;
        a.sealed.head_sha256 = hex::encode(&crate::digest::sha256(&file[..head_len]));
        let mut b = record("000000000000000b", &"b".repeat(64), contents);
        b.sealed.head_len = 10;
        let records = [b, a];
        assert_eq!(
            find_by_head(&records, file).map(|r| r.id.as_str()),
            Some("000000000000000a")
        );
        // A cut head, a changed byte, or no head at all: not found.
        assert!(find_by_head(&records, &file[..head_len - 1]).is_none());
        let mut other = file.to_vec();
        other[30] ^= 1;
        assert!(find_by_head(&records, &other).is_none());
        assert!(find_by_head(&records, b"").is_none());
    }

    #[test]
    fn labels_are_one_short_line() {
        assert_eq!(label("  nightly "), Ok("nightly".into()));
        assert_eq!(label(""), Err(TextProblem::Empty));
        assert_eq!(label("a\nb"), Err(TextProblem::Control));
        assert_eq!(
            label(&"x".repeat(65)),
            Err(TextProblem::TooLong { max: 64 })
        );
    }
}
