//! PURE: `envs/ENV/backups/<id>.yaml`, the public record of one sealed backup: what went in
//! (size, SHA-256, format and, for an etcd snapshot, the facts read from it), what came out
//! (size, SHA-256, the first bytes' SHA-256 and the recipients' fingerprints), who and when.
//! Written once by `backup seal`, replaced only by `backup reseal`, removed by `backup prune`.
//! It never holds a secret or a byte of the backup.

use serde::{Deserialize, Serialize};

use crate::digest::Fingerprint;
use crate::model::{self, MetaError};

/// The record format this build reads and writes.
pub const RECORD_VERSION: u32 = 1;

/// Length of a backup id: the first 16 hex digits of the sealed file's SHA-256 at seal time.
pub const ID_LEN: usize = 16;

/// What the sealed plaintext is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Any file (not a bbolt database).
    File,
    /// An etcd snapshot whose SHA-256 trailer matched at seal time.
    EtcdSnapshot,
    /// A copy of a data directory's `member/snap/db`, declared so by the operator: no trailer,
    /// nothing to check it against (restore needs `--skip-hash-check`).
    EtcdDbCopy,
}

impl Format {
    /// The name written in records and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::File => "file",
            Format::EtcdSnapshot => "etcd-snapshot",
            Format::EtcdDbCopy => "etcd-db-copy",
        }
    }
}

/// Facts an etcd snapshot states about itself, read without trusting them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFacts {
    /// bbolt page size.
    pub page_size: u32,
    /// Database image size (pgid × page size), without the trailer.
    pub db_size: u64,
    /// The snapshot's own integrity hash: its SHA-256 trailer, checked against the image.
    /// Absent for a database copy, which has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The plaintext that was sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    /// What it is.
    pub format: Format,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// For etcd formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdFacts>,
}

/// The sealed (age) file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Length of its head: the age header and the 16-byte payload nonce.
    pub head_len: u64,
    /// SHA-256 of its head: recognises the file among the environment's backups before it is
    /// read through, and (with every chunk authenticated and the plaintext's SHA-256) stands
    /// for the whole file when it is read back (`backup::find_by_head`).
    pub head_sha256: String,
    /// Fingerprints (`sha256:` of the recipient text) of the environment's recipients it is
    /// sealed to.
    pub recipients: Vec<Fingerprint>,
    /// Fingerprints of the backup-only recipients it is sealed to.
    #[serde(default)]
    pub backup_only: Vec<Fingerprint>,
    /// When `backup reseal` last re-encrypted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resealed: Option<String>,
}

impl Sealed {
    /// Every recipient fingerprint, environment and backup-only.
    pub fn all_recipients(&self) -> impl Iterator<Item = &Fingerprint> {
        self.recipients.iter().chain(self.backup_only.iter())
    }
}

/// `envs/ENV/backups/<id>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    /// Record format version.
    pub version: u32,
    /// The backup's id (also the file name).
    pub id: String,
    /// The operator's label (`--label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was sealed (RFC 3339).
    pub created: String,
    /// Who sealed it.
    pub actor: String,
    /// Where the sealed file went, as the operator named it (a path, or `--location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The plaintext.
    pub contents: Contents,
    /// The sealed file.
    pub sealed: Sealed,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a backup id: 16 lower-case hex digits.
pub fn is_id(s: &str) -> bool {
    is_hex(s, ID_LEN)
}

impl BackupRecord {
    /// Reads a record and checks that it is one talvault wrote: its version, that its id is
    /// `stem` (the file name without `.yaml`), and the shape of its hashes.
    pub fn from_yaml(file: &str, stem: &str, bytes: &[u8]) -> Result<Self, MetaError> {
        let r: BackupRecord = model::parse(file, bytes)?;
        let bad = |message: String| MetaError::Malformed {
            file: file.to_owned(),
            message,
        };
        if r.version > RECORD_VERSION {
            return Err(MetaError::NewerFormat {
                file: file.to_owned(),
                found: r.version,
                supported: RECORD_VERSION,
            });
        }
        if !is_id(&r.id) || r.id != stem {
            return Err(bad(format!(
                "id {:?} does not match the file name",
                r.id.chars().take(40).collect::<String>()
            )));
        }
        if r.sealed.head_len == 0
            || r.sealed.head_len > super::MAX_HEAD_LEN
            || r.sealed.head_len > r.sealed.size
        {
            return Err(bad("sealed.head_len is out of range".into()));
        }
        if r.created_unix().is_none() {
            return Err(bad("created is not an RFC 3339 time".into()));
        }
        let hashes = [
            ("contents.sha256", Some(r.contents.sha256.as_str())),
            ("sealed.sha256", Some(r.sealed.sha256.as_str())),
            ("sealed.head_sha256", Some(r.sealed.head_sha256.as_str())),
            (
                "contents.etcd.sha256",
                r.contents.etcd.as_ref().and_then(|e| e.sha256.as_deref()),
            ),
        ];
        for (field, value) in hashes {
            if let Some(v) = value
                && !is_hex(v, 64)
            {
                return Err(bad(format!("{field} is not a hex SHA-256")));
            }
        }
        let etcd_expected = r.contents.format != Format::File;
        if etcd_expected != r.contents.etcd.is_some()
            || (r.contents.format == Format::EtcdSnapshot)
                != r.contents.etcd.as_ref().is_some_and(|e| e.sha256.is_some())
        {
            return Err(bad(format!(
                "contents.etcd does not fit format {}",
                r.contents.format.as_str()
            )));
        }
        Ok(r)
    }

    /// When it was sealed, in Unix seconds (`None` if `created` is not RFC 3339; records read
    /// with [`BackupRecord::from_yaml`] always have it).
    pub fn created_unix(&self) -> Option<i64> {
        time::OffsetDateTime::parse(
            &self.created,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
    }

    /// Renders the record.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        Ok(format!(
            "# talvault backup record: public facts about one sealed backup (never its contents).\n{}",
            model::to_yaml("backup record", self)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupRecord {
        BackupRecord {
            version: RECORD_VERSION,
            id: "0123456789abcdef".into(),
            label: Some("nightly".into()),
            created: "2026-01-02T03:04:05Z".into(),
            actor: "alice".into(),
            location: Some("/backups/prod.age".into()),
            contents: Contents {
                format: Format::EtcdSnapshot,
                size: 32800,
                sha256: "a".repeat(64),
                etcd: Some(EtcdFacts {
                    page_size: 4096,
                    db_size: 32768,
                    sha256: Some("b".repeat(64)),
                }),
            },
            sealed: Sealed {
                size: 33000,
                sha256: "0123456789abcdef".to_owned() + &"c".repeat(48),
                head_len: 230,
                head_sha256: "d".repeat(64),
                recipients: vec![Fingerprint(format!("sha256:{}", "e".repeat(64)))],
                backup_only: vec![],
                resealed: None,
            },
        }
    }

    #[test]
    fn round_trip_and_strict_reading() {
        let r = sample();
        let yaml = r.to_yaml().unwrap();
        assert!(yaml.contains("format: etcd-snapshot"), "{yaml}");
        assert_eq!(
            BackupRecord::from_yaml("f", "0123456789abcdef", yaml.as_bytes()).unwrap(),
            r
        );
        let refuse = |yaml: &str, stem: &str| {
            BackupRecord::from_yaml("f", stem, yaml.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(refuse(&yaml, "0123456789abcdee").contains("does not match the file name"));
        let edited = yaml.replace(&"a".repeat(64), "zz");
        assert!(refuse(&edited, "0123456789abcdef").contains("contents.sha256"));
        let edited = yaml.replace("format: etcd-snapshot", "format: file");
        assert!(refuse(&edited, "0123456789abcdef").contains("does not fit"));
        let edited = yaml.replace("version: 1", "version: 2");
        assert!(refuse(&edited, "0123456789abcdef").contains("newer"));
        let edited = format!("{yaml}colour: blue\n");
        assert!(refuse(&edited, "0123456789abcdef").contains("unknown field"));
    }
}
