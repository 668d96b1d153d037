//! The backup room's requests, pending operations, streams and views.

use super::*;

/// What `backup seal` records besides what it reads.
#[derive(Debug, Clone, Default)]
pub struct SealRequest {
    /// How messages name the input (a path, or `stdin`).
    pub input: String,
    /// The operator's label.
    pub label: Option<String>,
    /// Where the sealed file will live.
    pub location: Option<String>,
    /// The input is a copy of a data directory's `member/snap/db` (no SHA-256 trailer).
    pub db_copy: bool,
}

/// A sealed backup whose record is not written yet: [`Vault::backup_record`] writes it once the
/// sealed file is in place.
pub struct PendingSeal {
    pub(super) env: String,
    pub(super) record: BackupRecord,
}

impl PendingSeal {
    /// The record that will be written.
    pub fn record(&self) -> &BackupRecord {
        &self.record
    }
}

/// Where `backup open` sends the plaintext, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenTo {
    /// A file (mode 0600), published only once the whole backup checked out.
    File,
    /// Standard output (not a terminal).
    Stdout,
    /// A program, through a pipe; `program` is its file name only.
    Exec {
        /// The program's file name.
        program: String,
    },
}

/// An opened backup whose use is not audited yet: [`Vault::backup_opened`] records it.
pub struct PendingOpen {
    pub(super) env: String,
    pub(super) id: String,
    pub(super) sealed_sha256: String,
    pub(super) opened_by: OpenedBy,
    pub(super) reason: Option<String>,
}

/// A backup being decrypted: read the plaintext with [`BackupStream::copy_to`], then
/// [`BackupStream::finish`] says whether it matched its record.
pub struct BackupStream<'a> {
    pub(super) inner: OpenStream<'a>,
    pub(super) scan: Background<etcd::Scan>,
    pub(super) read: u64,
    pub(super) record: BackupRecord,
    pub(super) file: String,
}

/// What [`BackupStream::copy_to`] did.
#[derive(Debug)]
pub struct Copied {
    /// Plaintext bytes read (and checked).
    pub read: u64,
    /// Plaintext bytes the destination took.
    pub written: u64,
    /// Why the destination stopped taking them (a program that exited, a closed pipe); the
    /// rest was still read and checked.
    pub write_error: Option<io::Error>,
}

impl BackupStream<'_> {
    /// The backup's record.
    pub fn record(&self) -> &BackupRecord {
        &self.record
    }

    /// Decrypts the whole backup into `out` in 64 KiB pieces, checking every byte. A
    /// destination that stops taking bytes is left alone and the rest is read and checked
    /// anyway; a damaged sealed file stops the copy with [`VaultError::BackupDamaged`].
    pub fn copy_to(&mut self, out: &mut dyn Write) -> Result<Copied, VaultError> {
        let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
        let mut copied = Copied {
            read: 0,
            written: 0,
            write_error: None,
        };
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(VaultError::BackupDamaged {
                        file: self.file.clone(),
                        id: self.record.id.clone(),
                        detail: damage(&e),
                        plaintext: self.read,
                    });
                }
            };
            self.scan.update(&buf[..n]);
            self.read += n as u64;
            copied.read += n as u64;
            if copied.write_error.is_none() {
                match out.write_all(&buf[..n]) {
                    Ok(()) => copied.written += n as u64,
                    Err(e) => copied.write_error = Some(e),
                }
            }
        }
        if copied.write_error.is_none()
            && let Err(e) = out.flush()
        {
            copied.write_error = Some(e);
        }
        Ok(copied)
    }

    /// Checks what was read against the record: the plaintext's size and SHA-256, then an etcd
    /// snapshot's own trailer. (The sealed file's head and size were checked when it was
    /// found, and age authenticated every chunk: with the plaintext's SHA-256 that pins every
    /// sealed byte, see `backup::find_by_head`.)
    pub fn finish(self) -> Result<BackupRecord, VaultError> {
        let mismatch = |problem| VaultError::BackupMismatch {
            file: self.file.clone(),
            id: self.record.id.clone(),
            problem: Box::new(problem),
        };
        let outcome = self.scan.finish().finish();
        backup::check_contents(&self.record.contents, &outcome).map_err(mismatch)?;
        Ok(self.record)
    }
}

/// age's words for a damaged stream, for people.
pub(super) fn damage(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "it ends before age's last chunk (truncated)".into(),
        io::ErrorKind::InvalidData => {
            "a chunk failed authentication (a changed byte, a cut, or bytes appended)".into()
        }
        _ => format!("reading it failed: {e}"),
    }
}

/// A re-sealed backup whose record is not updated yet: [`Vault::backup_resealed`].
pub struct PendingReseal {
    pub(super) env: String,
    pub(super) previous_sha256: String,
    pub(super) record: BackupRecord,
    pub(super) opened_by: OpenedBy,
}

/// A backup as `backup list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    /// Id.
    pub id: String,
    /// Label.
    pub label: Option<String>,
    /// When it was sealed.
    pub created: String,
    /// Who sealed it.
    pub actor: String,
    /// Where it lives.
    pub location: Option<String>,
    /// `file`, `etcd-snapshot` or `etcd-db-copy`.
    pub format: &'static str,
    /// Plaintext bytes.
    pub size: u64,
    /// Plaintext SHA-256.
    pub sha256: String,
    /// The etcd snapshot's own SHA-256.
    pub etcd_sha256: Option<String>,
    /// Sealed bytes.
    pub sealed_size: u64,
    /// Sealed file's SHA-256.
    pub sealed_sha256: String,
    /// When it was last re-sealed.
    pub resealed: Option<String>,
    /// When its current sealed file was last verified.
    pub verified: Option<String>,
    /// Recipients it is sealed to that are no longer current (they can still open it).
    pub sealed_to_removed: usize,
    /// Current recipients it is not sealed to (they cannot open it).
    pub missing_current: usize,
}

/// A backup sealed to another set than the current recipients, for `recipients add|remove`.
#[derive(Debug, Clone, Serialize)]
pub struct StaleBackup {
    /// Id.
    pub id: String,
    /// Label.
    pub label: Option<String>,
    /// When it was sealed.
    pub created: String,
    /// Where it lives.
    pub location: Option<String>,
    /// Recipients it is sealed to that are no longer current.
    pub sealed_to_removed: usize,
    /// Current recipients it is not sealed to.
    pub missing_current: usize,
}
