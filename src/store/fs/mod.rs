//! Vault files on disk: the one function that writes every file (`write_atomic`), its
//! never-overwrite twin for append-only records, bounded reads confined to the vault, directory
//! creation and listing. It must not interpret file contents, decide policy, or follow a symbolic
//! link inside the vault.
//!
//! Why so strict: a vault is a git checkout, and git stores symbolic links. A pulled commit that
//! turns `envs/prod/bundle.age` (or `envs/prod` itself) into a link to `~/.ssh/id_ed25519` must not
//! make talvault read or overwrite that file. Reads walk the path one component at a time with
//! `openat(O_NOFOLLOW)`, so a link anywhere below the vault root is refused, not resolved.
//!
//! This file holds what every vault file operation shares (`Mode`, `StoreError`) and the write
//! path with its temporary files, which `user_file` uses too; the confined walks (reads,
//! directory creation and listing, recovery's renames) are in `confined.rs`.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: the one place that writes vault files"
)]

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs as rfs;
use rustix::io::Errno;
use thiserror::Error;

mod confined;

pub use confined::{DirEntry, EntryKind, OpenDir, ensure_dir, list_dir, open_dir, read_bounded};
pub(crate) use confined::{remove_below, remove_empty_dir_below, rename_below};

/// Who may read a file; decides the permission bits it is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Secret material (sealed files, anything a reviewer need not read): files 0600,
    /// directories 0700.
    Secret,
    /// Public metadata meant for review in a pull request: files 0644, directories 0755.
    Public,
}

impl Mode {
    /// Permission bits for a file written in this mode.
    pub const fn file_bits(self) -> u32 {
        match self {
            Mode::Secret => 0o600,
            Mode::Public => 0o644,
        }
    }

    /// Permission bits for a directory created in this mode (before the process umask).
    pub const fn dir_bits(self) -> u32 {
        match self {
            Mode::Secret => 0o700,
            Mode::Public => 0o755,
        }
    }
}

/// Prefix of the temporary files `write_atomic` creates next to their target. A crash can leave
/// one behind; it is never a vault file, so `.gitignore` may list `.talvault-tmp-*`.
pub const TEMP_PREFIX: &str = ".talvault-tmp-";

/// What went wrong touching a vault file. Every variant names the path; none carries contents.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error not covered by a more specific variant.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// `create_new_atomic` found the target already present.
    #[error("{} already exists and is never overwritten", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The file or one of its directories is missing.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// A component below the vault root is a symbolic link.
    #[error("{} is a symbolic link; talvault does not follow links inside a vault", path.display())]
    SymlinkRefused {
        /// The link.
        path: PathBuf,
    },
    /// The path names something other than a regular file (directory, FIFO, device, ...).
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// A component that must be a directory is not one.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// The file exceeds the caller's size limit.
    #[error("{} is larger than the {max}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        max: u64,
    },
    /// The path leaves the vault root (`..`, or an absolute path elsewhere).
    #[error("{} is outside the vault {}", path.display(), root.display())]
    OutsideRoot {
        /// The path as given.
        path: PathBuf,
        /// The vault root.
        root: PathBuf,
    },
}

impl StoreError {
    /// A one-line suggestion for the user, when there is a useful one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            StoreError::SymlinkRefused { .. } => Some(
                "replace the link with the real file; a link in a vault could point talvault at files outside it",
            ),
            StoreError::TooLarge { .. } | StoreError::NotAFile { .. } => {
                Some("this is not a file talvault wrote; inspect the vault with `git status`")
            }
            StoreError::OutsideRoot { .. } => {
                Some("paths inside a vault are relative to its root and never contain `..`")
            }
            _ => None,
        }
    }
}

pub(super) fn io_error(path: &Path, source: io::Error) -> StoreError {
    match source.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound {
            path: path.to_path_buf(),
        },
        io::ErrorKind::AlreadyExists => StoreError::AlreadyExists {
            path: path.to_path_buf(),
        },
        _ => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn errno_error(path: &Path, err: Errno) -> StoreError {
    match err {
        Errno::LOOP => StoreError::SymlinkRefused {
            path: path.to_path_buf(),
        },
        Errno::NOTDIR => StoreError::NotADirectory {
            path: path.to_path_buf(),
        },
        _ => io_error(path, err.into()),
    }
}

/// A temporary file beside its target, removed on drop unless it was renamed into place.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    armed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    pub(super) fn create(dir: &Path, target: &OsStr, mode: Mode) -> Result<Self, StoreError> {
        let mut last_error = None;
        for _ in 0..16 {
            let mut name = OsString::from(TEMP_PREFIX);
            name.push(target);
            name.push(format!(
                "-{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let path = dir.join(&name);
            // create_new = O_CREAT|O_EXCL: never opens an existing file or follows a planted link.
            // The mode applies at creation, so a secret is never readable by others, not even
            // for an instant.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode.file_bits())
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        file,
                        armed: true,
                    };
                    // The umask may have narrowed the bits; set exactly what the mode promises.
                    temp.file
                        .set_permissions(Permissions::from_mode(mode.file_bits()))
                        .map_err(|e| io_error(&temp.path, e))?;
                    return Ok(temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Err(StoreError::Io {
            path: dir.to_path_buf(),
            source: last_error.unwrap_or_else(|| io::Error::other("no free temporary name")),
        })
    }

    /// Writes `bytes` and fsyncs them, so the rename that follows publishes complete data.
    pub(super) fn fill(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_error(&self.path, e))
    }

    /// The temporary name is gone (renamed into place); nothing to clean up.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover temp file is harmless and carries the prefix.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(super) fn split_target(path: &Path) -> Result<(&Path, &OsStr), StoreError> {
    let name = path.file_name().ok_or_else(|| StoreError::NotAFile {
        path: path.to_path_buf(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// fsyncs a directory so that a rename or link inside it is durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// fsyncs the directory holding `path`.
pub(crate) fn sync_dir_of(path: &Path) -> Result<(), StoreError> {
    let (dir, _) = split_target(path)?;
    sync_dir(dir)
}

/// Writes `bytes` to a new temporary file beside `path` (created with `mode`'s bits, fsynced)
/// and returns the temporary file's path, for a multi-file transaction to rename into place
/// later (see `store::txn`). The file is kept even when the caller fails afterwards; recovery
/// removes such leftovers by their `TEMP_PREFIX`.
pub(crate) fn stage(path: &Path, bytes: &[u8], mode: Mode) -> Result<PathBuf, StoreError> {
    let (dir, name) = split_target(path)?;
    let mut temp = TempFile::create(dir, name, mode)?;
    // No fsync here: the transaction makes all staged files durable with one syncfs(2).
    temp.file
        .write_all(bytes)
        .map_err(|e| io_error(&temp.path, e))?;
    temp.disarm();
    Ok(temp.path.clone())
}

/// Makes everything written on the file system holding `dir` durable (syncfs(2)): one flush
/// for many files, where an fsync per file would cost one flush each.
pub(crate) fn sync_filesystem(dir: &Path) -> Result<(), StoreError> {
    let d = File::open(dir).map_err(|e| io_error(dir, e))?;
    rfs::syncfs(&d).map_err(|e| errno_error(dir, e))
}

/// Maps an I/O error on `path` to a `StoreError`.
pub(crate) fn io_err(path: &Path, source: io::Error) -> StoreError {
    io_error(path, source)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (O_EXCL, created
/// with `mode`'s bits), write, fsync, rename over the target, fsync the directory. A reader sees
/// the old file or the new one, never a mix; after a crash the target is one or the other.
///
/// The directory must exist (see `ensure_dir`, which also vets it for links). A link at `path`
/// itself is replaced, not followed: rename(2) acts on the name.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
    let (dir, name) = split_target(path)?;
    let mut temp = TempFile::create(dir, name, mode)?;
    temp.fill(bytes)?;
    std::fs::rename(&temp.path, path).map_err(|e| io_error(path, e))?;
    temp.disarm();
    sync_dir(dir)
}

/// Replaces a derived, rebuildable file (a cache) atomically but without fsync: after a crash it
/// may be missing or old, never torn, and it is rebuilt. Never for vault state.
pub fn write_cache_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (dir, name) = split_target(path)?;
    let mut temp = TempFile::create(dir, name, Mode::Public)?;
    temp.file
        .write_all(bytes)
        .map_err(|e| io_error(&temp.path, e))?;
    std::fs::rename(&temp.path, path).map_err(|e| io_error(path, e))?;
    temp.disarm();
    Ok(())
}

/// Like `write_atomic`, but refuses an existing target (`StoreError::AlreadyExists`), for records
/// that must never be overwritten (audit events, issued-certificate records).
///
/// Race-free: the final step is renameat2(RENAME_NOREPLACE) on Linux, or link(2) where that is
/// unavailable; both fail atomically if the name exists, so two writers cannot both win.
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
    let (dir, name) = split_target(path)?;
    let mut temp = TempFile::create(dir, name, mode)?;
    temp.fill(bytes)?;
    publish_no_replace(&mut temp, path)?;
    sync_dir(dir)
}

pub(super) fn publish_no_replace(temp: &mut TempFile, path: &Path) -> Result<(), StoreError> {
    #[cfg(target_os = "linux")]
    match rfs::renameat_with(
        rfs::CWD,
        &temp.path,
        rfs::CWD,
        path,
        rfs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => {
            temp.disarm();
            return Ok(());
        }
        Err(Errno::EXIST) => {
            return Err(StoreError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        // The file system lacks RENAME_NOREPLACE: use link(2) below.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(errno_error(path, e)),
    }
    // link(2) fails with EEXIST when the name exists; the temp name is dropped afterwards.
    std::fs::hard_link(&temp.path, path).map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_sets_modes_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("bundle.age");
        let public = dir.path().join("env.yaml");
        write_atomic(&secret, b"sealed", Mode::Secret).unwrap();
        write_atomic(&public, b"name: prod\n", Mode::Public).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        assert_eq!(mode_of(&public), 0o644);
        assert_eq!(std::fs::read(&secret).unwrap(), b"sealed");

        // Overwrite keeps the mode the caller asks for, even if the old file was wider.
        std::fs::set_permissions(&secret, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&secret, b"resealed", Mode::Secret).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        assert_eq!(std::fs::read(&secret).unwrap(), b"resealed");
        assert_eq!(names(dir.path()), ["bundle.age", "env.yaml"]);
    }

    #[test]
    fn write_atomic_failure_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory, so the final rename fails.
        let target = dir.path().join("occupied");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"x").unwrap();
        let err = write_atomic(&target, b"data", Mode::Public).unwrap_err();
        assert!(err.to_string().contains("occupied"), "{err}");
        assert_eq!(names(dir.path()), ["occupied"]);
    }

    #[test]
    fn write_atomic_replaces_a_link_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        let link = dir.path().join("bundle.age");
        symlink(&outside, &link).unwrap();
        write_atomic(&link, b"new", Mode::Secret).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }

    #[test]
    fn create_new_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        create_new_atomic(&path, b"first", Mode::Public).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        let err = create_new_atomic(&path, b"second", Mode::Public).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A dangling link counts as existing too.
        let dangling = dir.path().join("dangling.json");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            create_new_atomic(&dangling, b"x", Mode::Public),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(names(dir.path()), ["dangling.json", "event.json"]);
    }

    #[test]
    fn create_new_has_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || create_new_atomic(path, &[i], Mode::Public).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(names(dir.path()), ["record"]);
    }
}
