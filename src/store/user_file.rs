//! EDGE: the files a user names on the command line (`-o FILE`, `--merge FILE`, an outbox
//! directory), outside the vault. A destination is opened before any work is done, so one that
//! cannot be written fails before anything is signed, recorded or audited; it is replaced
//! atomically; only regular files are ever replaced (never a link, FIFO, device or directory);
//! and a merge target is read, merged and replaced under a lock, so concurrent merges lose
//! nothing. An outbox takes many files with one sync for all of them.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: this module is file access"
)]

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::fs::{
    Mode, StoreError, TempFile, io_error, publish_no_replace, split_target, stage, sync_dir,
    sync_filesystem,
};

/// A file that will be written at `path`: its temporary sibling exists from [`prepare`] on;
/// [`PendingFile::publish`] fills it and renames it into place; dropping it removes the
/// temporary file and leaves `path` as it was.
pub struct PendingFile {
    temp: TempFile,
    path: PathBuf,
    replace: bool,
}

/// What is at a path, without following a link.
fn existing(path: &Path) -> Result<Option<std::fs::Metadata>, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Prepares to write `path`: refuses an existing file unless `replace`, and anything but a
/// regular file even then (a link, FIFO, device or directory is never replaced); creates the
/// temporary sibling now, so a missing or read-only directory fails here.
pub fn prepare(path: &Path, mode: Mode, replace: bool) -> Result<PendingFile, StoreError> {
    match existing(path)? {
        Some(_) if !replace => {
            return Err(StoreError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        Some(m) if !m.file_type().is_file() => {
            return Err(StoreError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        _ => {}
    }
    let (dir, name) = split_target(path)?;
    let temp = TempFile::create(dir, name, mode)?;
    Ok(PendingFile {
        temp,
        path: path.to_path_buf(),
        replace,
    })
}

impl PendingFile {
    /// The path it will be written at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` (fsynced) and renames the file into place; without `replace`, a file
    /// that appeared meanwhile is not overwritten.
    pub fn publish(mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.temp.fill(bytes)?;
        self.rename_into_place()
    }

    /// Publishes what was written through [`std::io::Write`] (a streamed artifact): fsyncs it
    /// and renames it into place, as [`PendingFile::publish`] does. Dropping the file instead
    /// removes what was written and leaves `path` as it was.
    pub fn publish_written(self) -> Result<(), StoreError> {
        self.temp
            .file
            .sync_all()
            .map_err(|e| io_error(&self.temp.path, e))?;
        self.rename_into_place()
    }

    fn rename_into_place(mut self) -> Result<(), StoreError> {
        let (dir, _) = split_target(&self.path)?;
        if self.replace {
            // Checked again: something other than a regular file may have appeared since.
            if let Some(m) = existing(&self.path)?
                && !m.file_type().is_file()
            {
                return Err(StoreError::NotAFile { path: self.path });
            }
            std::fs::rename(&self.temp.path, &self.path).map_err(|e| io_error(&self.path, e))?;
            self.temp.disarm();
        } else {
            publish_no_replace(&mut self.temp, &self.path)?;
        }
        sync_dir(dir)
    }
}

/// A directory that receives many files at once (`renew -o DIR`): each is written beside its
/// name and renamed into place, replacing only a regular file, and one syncfs(2) makes all of
/// them durable (an fsync per file would cost a flush each).
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens `dir`, which must be an existing directory we may write in (checked by creating
    /// and removing a temporary file).
    pub fn open(dir: &Path) -> Result<Outbox, StoreError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io_error(dir, e)),
        }
        // Dropped at once: removes itself.
        TempFile::create(dir, std::ffi::OsStr::new("probe"), Mode::Public)?;
        Ok(Outbox {
            dir: dir.to_path_buf(),
        })
    }

    /// The path `name` takes in the outbox; refused when something other than a regular file
    /// is there.
    pub fn check(&self, name: &str) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(name);
        match existing(&path)? {
            Some(m) if !m.file_type().is_file() => Err(StoreError::NotAFile { path }),
            _ => Ok(path),
        }
    }

    /// Writes every `(name, bytes)` (replacing regular files of those names), then syncs once.
    /// Returns the paths written.
    pub fn write_all(
        &self,
        files: &[(String, &[u8])],
        mode: Mode,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let path = self.check(name)?;
            let temp = stage(&path, bytes, mode)?;
            if let Err(e) = std::fs::rename(&temp, &path) {
                let _ = std::fs::remove_file(&temp);
                return Err(io_error(&path, e));
            }
            out.push(path);
        }
        sync_filesystem(&self.dir)?;
        Ok(out)
    }
}

/// Streams into the temporary file; nothing is at `path` until
/// [`PendingFile::publish_written`].
impl std::io::Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.file.flush()
    }
}

/// A merge target, locked: its contents as read under the lock, and the file that will replace
/// it. The lock is held until this is dropped (after [`LockedFile::publish`]).
pub struct LockedFile {
    _lock: File,
    contents: Zeroizing<Vec<u8>>,
    pending: PendingFile,
}

/// Locks `path` (an existing regular file) for read-merge-replace and reads it (at most
/// `max` bytes). Replacing renames a new file over the name, so a waiter that got the lock on
/// the old file sees that the name moved on and takes the lock again on the new one.
pub fn lock_for_merge(path: &Path, mode: Mode, max: u64) -> Result<LockedFile, StoreError> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| {
                // O_NOFOLLOW refuses a link with ELOOP.
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    StoreError::NotAFile {
                        path: path.to_path_buf(),
                    }
                } else {
                    io_error(path, e)
                }
            })?;
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if !meta.file_type().is_file() {
            return Err(StoreError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        file.lock().map_err(|e| io_error(path, e))?;
        // Still the file the name points to? Otherwise someone replaced it while we waited.
        match existing(path)? {
            Some(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
            _ => continue,
        }
        if meta.len() > max {
            return Err(StoreError::TooLarge {
                path: path.to_path_buf(),
                max,
            });
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        (&file)
            .take(max + 1)
            .read_to_end(&mut contents)
            .map_err(|e| io_error(path, e))?;
        if contents.len() as u64 > max {
            return Err(StoreError::TooLarge {
                path: path.to_path_buf(),
                max,
            });
        }
        let pending = prepare(path, mode, true)?;
        return Ok(LockedFile {
            _lock: file,
            contents,
            pending,
        });
    }
}

impl LockedFile {
    /// The contents read under the lock.
    pub fn contents(&self) -> &[u8] {
        &self.contents
    }

    /// The locked path.
    pub fn path(&self) -> &Path {
        self.pending.path()
    }

    /// Replaces the file with `bytes`, then releases the lock.
    pub fn publish(self, bytes: &[u8]) -> Result<(), StoreError> {
        let LockedFile { _lock, pending, .. } = self;
        pending.publish(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_refuses_what_it_must_and_publishes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let pending = prepare(&target, Mode::Secret, false).unwrap();
        assert!(!target.exists(), "nothing at the target before publish");
        pending.publish(b"one").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        assert!(matches!(
            prepare(&target, Mode::Secret, false),
            Err(StoreError::AlreadyExists { .. })
        ));
        prepare(&target, Mode::Secret, true)
            .unwrap()
            .publish(b"two")
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        // Dropped without publish: the target is untouched and no temporary file is left.
        drop(prepare(&target, Mode::Secret, true).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Links, directories and missing directories are refused before anything is written.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            prepare(&link, Mode::Secret, true),
            Err(StoreError::NotAFile { .. })
        ));
        assert!(matches!(
            prepare(dir.path(), Mode::Secret, true),
            Err(StoreError::NotAFile { .. })
        ));
        assert!(prepare(&dir.path().join("no/such/dir"), Mode::Secret, true).is_err());
        assert!(matches!(
            lock_for_merge(&link, Mode::Secret, 100),
            Err(StoreError::NotAFile { .. })
        ));
    }

    #[test]
    fn streamed_files_appear_only_when_published() {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("big");
        let mut pending = prepare(&target, Mode::Secret, false).unwrap();
        for _ in 0..3 {
            pending.write_all(&[1u8; 1000]).unwrap();
        }
        assert!(!target.exists());
        pending.publish_written().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), vec![1u8; 3000]);
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Abandoned half-way (a hash mismatch): nothing at the target, no temporary left.
        let other = dir.path().join("half");
        let mut pending = prepare(&other, Mode::Secret, false).unwrap();
        pending.write_all(b"partial").unwrap();
        drop(pending);
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_merges_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("merged");
        std::fs::write(&target, b"").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let target = target.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let locked = lock_for_merge(&target, Mode::Secret, 1 << 20).unwrap();
                        let mut next = locked.contents().to_vec();
                        next.extend_from_slice(format!("{i}-{j}\n").as_bytes());
                        locked.publish(&next).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&target).unwrap();
        assert_eq!(text.lines().count(), 80, "{text}");
    }
}
