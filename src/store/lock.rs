//! The vault lock: one advisory lock on `<root>/.lock`, held by a mutating command from before it
//! reads state until after its last write. It must not be used for anything but mutual
//! exclusion between talvault processes, and it never deletes the lock file (deleting it would
//! let a second process lock a fresh inode while the first still holds the old one).

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, OFlags};
use thiserror::Error;

/// Name of the lock file in the vault root (git-ignored).
pub const LOCK_FILE: &str = ".lock";

/// Why the lock could not be taken.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process held the lock for the whole timeout.
    #[error(
        "another talvault process holds the vault lock {} (waited {} ms)",
        path.display(),
        waited.as_millis()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

impl LockError {
    /// A one-line suggestion for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LockError::Held { .. } => Some(
                "wait for the other talvault command on this vault to finish, then retry; the lock is released when that process exits",
            ),
            LockError::Io { .. } => None,
        }
    }
}

/// The held vault lock. Released when dropped (and by the kernel if the process dies, so a
/// crash never leaves a stale lock).
#[derive(Debug)]
pub struct VaultLock {
    file: File,
    path: PathBuf,
}

impl VaultLock {
    /// Locks `<root>/.lock` exclusively, creating it if needed (mode 0600), polling until
    /// `timeout` has passed.
    ///
    /// `File::lock` is flock(2) on Linux: the lock belongs to the open file description, so two
    /// acquisitions in one process exclude each other just as two processes do.
    pub fn acquire(root: &Path, timeout: Duration) -> Result<Self, LockError> {
        let path = root.join(LOCK_FILE);
        let io_err = |source: io::Error| LockError::Io {
            path: path.clone(),
            source,
        };
        // O_NOFOLLOW: a `.lock` link committed to the repository must not make us create or lock
        // a file elsewhere.
        let fd = rfs::open(
            &path,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rfs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(e.into()))?;
        let file = File::from(fd);

        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(VaultLock { file, path }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(LockError::Held { path, waited });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for VaultLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes the release
        // independent of any duplicated descriptor.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn second_waits_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let first = VaultLock::acquire(&root, Duration::from_secs(1)).unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            let start = Instant::now();
            let lock = VaultLock::acquire(&root, Duration::from_secs(10)).unwrap();
            (start.elapsed(), lock.path().to_path_buf())
        });
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(first);
        let (waited, path) = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(path, dir.path().join(".lock"));
    }

    #[test]
    fn times_out_with_a_clear_error_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let _held = VaultLock::acquire(dir.path(), Duration::ZERO).unwrap();
        let root = dir.path().to_path_buf();
        let err = std::thread::spawn(move || {
            VaultLock::acquire(&root, Duration::from_millis(150)).unwrap_err()
        })
        .join()
        .unwrap();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        assert!(text.contains("another talvault process"), "{text}");
        assert!(text.contains(".lock"), "{text}");
        assert!(err.hint().is_some());
    }

    #[test]
    fn lock_file_is_private_and_reusable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(VaultLock::acquire(dir.path(), Duration::ZERO).unwrap());
        let mode = std::fs::metadata(dir.path().join(LOCK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Released on drop: an immediate second acquisition succeeds without waiting.
        VaultLock::acquire(dir.path(), Duration::ZERO).unwrap();
    }

    #[test]
    fn refuses_a_linked_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).unwrap();
        let err = VaultLock::acquire(dir.path(), Duration::ZERO).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(!target.exists());
    }
}
