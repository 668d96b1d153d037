//! Confined access to the vault tree: every path is walked one component at a time from the
//! vault root with `openat(O_NOFOLLOW)`, for bounded reads, directory creation, listing,
//! recovery's renames, removing records and empty directories. It must not follow a symbolic link below
//! the root, leave the root (`..`), read more than the caller's limit, or interpret contents.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, OFlags};
use rustix::io::Errno;

use super::{Mode, StoreError, errno_error, io_error};

/// Classifies a failed `openat(dir, name, O_NOFOLLOW…)`. Linux reports a link met with
/// `O_DIRECTORY|O_NOFOLLOW` as ENOTDIR rather than ELOOP, so look at the entry itself.
fn openat_error(dir: &OwnedFd, name: &OsStr, shown: &Path, err: Errno) -> StoreError {
    if matches!(err, Errno::LOOP | Errno::NOTDIR)
        && let Ok(st) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        && FileType::from_raw_mode(st.st_mode) == FileType::Symlink
    {
        return StoreError::SymlinkRefused {
            path: shown.to_path_buf(),
        };
    }
    errno_error(shown, err)
}

/// Splits `path` into its components below `root`. `path` may start with `root` (as given, not
/// canonicalised) or be relative to it; `..`, and absolute paths elsewhere, are refused.
fn components_below<'a>(root: &Path, path: &'a Path) -> Result<Vec<&'a OsStr>, StoreError> {
    let outside = || StoreError::OutsideRoot {
        path: path.to_path_buf(),
        root: root.to_path_buf(),
    };
    let rel = if path.is_absolute() || path.starts_with(root) {
        path.strip_prefix(root).map_err(|_| outside())?
    } else {
        path
    };
    let mut out = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(outside());
            }
        }
    }
    Ok(out)
}

fn open_subdir(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )
}

/// Opens `root` (which may itself be a link: the user chose it) and then each of `components`
/// with `O_NOFOLLOW`, creating missing ones when `create` is set. Returns the last directory and
/// the path it stands for (for messages).
fn walk_dirs(
    root: &Path,
    components: &[&OsStr],
    create: Option<Mode>,
) -> Result<(OwnedFd, PathBuf), StoreError> {
    let mut dir = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )
    .map_err(|e| errno_error(root, e))?;
    let mut shown = root.to_path_buf();
    for name in components {
        shown.push(name);
        dir = match (open_subdir(&dir, name), create) {
            (Ok(fd), _) => fd,
            (Err(Errno::NOENT), Some(mode)) => {
                match rfs::mkdirat(&dir, *name, rfs::Mode::from_raw_mode(mode.dir_bits())) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno_error(&shown, e)),
                }
                // The new entry lives in the parent; fsync it so the directory survives a crash.
                rfs::fsync(&dir).map_err(|e| errno_error(&shown, e))?;
                open_subdir(&dir, name).map_err(|e| openat_error(&dir, name, &shown, e))?
            }
            (Err(e), _) => return Err(openat_error(&dir, name, &shown, e)),
        };
    }
    Ok((dir, shown))
}

/// Creates `rel` below `root` (and its missing parents) with `mode`'s directory bits, refusing
/// symbolic links on the way. Each new directory is made durable by fsyncing its parent.
/// Returns `root` joined with `rel`.
pub fn ensure_dir(root: &Path, rel: &Path, mode: Mode) -> Result<PathBuf, StoreError> {
    let components = components_below(root, rel)?;
    let (_, shown) = walk_dirs(root, &components, Some(mode))?;
    Ok(shown)
}

/// Reads the regular file `path` below `root`, refusing symbolic links anywhere below `root`,
/// anything that is not a regular file, and files larger than `max_len` bytes.
///
/// `path` may start with `root` or be relative to it. The result is not secret (vault files
/// are public or sealed); secrets are read through `store::age`.
pub fn read_bounded(root: &Path, path: &Path, max_len: u64) -> Result<Vec<u8>, StoreError> {
    let components = components_below(root, path)?;
    let Some((last, dirs)) = components.split_last() else {
        return Err(StoreError::NotAFile {
            path: root.to_path_buf(),
        });
    };
    let (dir, mut shown) = walk_dirs(root, dirs, None)?;
    shown.push(last);
    read_at(&dir, last, shown, max_len)
}

/// Reads the regular file `name` in the open directory `dir` (`shown` names it for messages),
/// without following a link, at most `max_len` bytes.
fn read_at(
    dir: &OwnedFd,
    name: &OsStr,
    shown: PathBuf,
    max_len: u64,
) -> Result<Vec<u8>, StoreError> {
    // O_NONBLOCK: opening a FIFO planted in the vault must not hang; it is refused below.
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        rfs::Mode::empty(),
    )
    .map_err(|e| openat_error(dir, name, &shown, e))?;
    let st = rfs::fstat(&fd).map_err(|e| errno_error(&shown, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(StoreError::NotAFile { path: shown });
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let too_large = |path: PathBuf| StoreError::TooLarge { path, max: max_len };
    if size > max_len {
        return Err(too_large(shown));
    }
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // Bound the read too: the file may grow between fstat and read.
    File::from(fd)
        .take(max_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| io_error(&shown, e))?;
    if u64::try_from(out.len()).unwrap_or(u64::MAX) > max_len {
        return Err(too_large(shown));
    }
    Ok(out)
}

/// Renames `from` to `to`, both below `root`, with renameat(2) between directories opened
/// component by component with `O_NOFOLLOW`: a link anywhere on either path (`envs/x` →
/// `~/.ssh`) is refused, never followed. A link at `to` itself is replaced, as rename(2) does.
/// For recovery, whose paths come from a journal file that may not be ours.
pub(crate) fn rename_below(root: &Path, from: &Path, to: &Path) -> Result<(), StoreError> {
    let open_parent = |path: &Path| -> Result<(OwnedFd, PathBuf, OsString), StoreError> {
        let components = components_below(root, path)?;
        let Some((last, dirs)) = components.split_last() else {
            return Err(StoreError::NotAFile {
                path: root.to_path_buf(),
            });
        };
        let (dir, shown) = walk_dirs(root, dirs, None)?;
        Ok((dir, shown.join(last), (*last).to_owned()))
    };
    let (from_dir, from_shown, from_name) = open_parent(from)?;
    let (to_dir, to_shown, to_name) = open_parent(to)?;
    // The source must be a regular file of ours, not a link or a directory.
    let st = rfs::statat(&from_dir, &from_name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| errno_error(&from_shown, e))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Symlink => return Err(StoreError::SymlinkRefused { path: from_shown }),
        _ => return Err(StoreError::NotAFile { path: from_shown }),
    }
    rfs::renameat(&from_dir, &from_name, &to_dir, &to_name).map_err(|e| errno_error(&to_shown, e))
}

/// Removes the regular file `rel` below `root`, its directories opened component by component
/// with `O_NOFOLLOW` (as [`rename_below`]): a link on the way, or at `rel` itself, is refused,
/// never followed. Returns whether there was a file; with `dry_run`, only checks. For
/// transactions that retire records (`backup prune`).
pub(crate) fn remove_below(root: &Path, rel: &Path, dry_run: bool) -> Result<bool, StoreError> {
    let components = components_below(root, rel)?;
    let Some((name, dirs)) = components.split_last() else {
        return Err(StoreError::NotAFile {
            path: root.to_path_buf(),
        });
    };
    let (dir, shown) = match walk_dirs(root, dirs, None) {
        Err(StoreError::NotFound { .. }) => return Ok(false),
        other => other?,
    };
    let shown = shown.join(name);
    match rfs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(errno_error(&shown, e)),
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(StoreError::SymlinkRefused { path: shown }),
            _ => return Err(StoreError::NotAFile { path: shown }),
        },
    }
    if !dry_run {
        match rfs::unlinkat(&dir, *name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(errno_error(&shown, e)),
        }
    }
    Ok(true)
}

/// What a directory entry is, as seen without following links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else (FIFO, socket, device), or a name that is not UTF-8.
    Other,
}

/// One entry of `list_dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (lossy if it was not UTF-8; its kind is then `Other`).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its inode number (from the directory entry; changes when a file is replaced).
    pub ino: u64,
}

/// Lists the directory `rel` below `root` (links refused on the way), sorted by name, without
/// `.` and `..`.
pub fn list_dir(root: &Path, rel: &Path) -> Result<Vec<DirEntry>, StoreError> {
    open_dir(root, rel)?.entries()
}

/// A directory below the vault root, opened once (links refused on the way), for listing and
/// reading many files without walking the path again for each.
pub struct OpenDir {
    fd: OwnedFd,
    shown: PathBuf,
}

/// Opens the directory `rel` below `root`, refusing links on the way.
pub fn open_dir(root: &Path, rel: &Path) -> Result<OpenDir, StoreError> {
    let components = components_below(root, rel)?;
    let (fd, shown) = walk_dirs(root, &components, None)?;
    Ok(OpenDir { fd, shown })
}

impl OpenDir {
    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// Its inode and modification time (seconds, nanoseconds): any entry added, removed or
    /// renamed in it changes the time.
    pub fn stamp(&self) -> Result<(u64, i64, i64), StoreError> {
        let st = rfs::fstat(&self.fd).map_err(|e| errno_error(&self.shown, e))?;
        Ok((
            st.st_ino,
            st.st_mtime,
            i64::try_from(st.st_mtime_nsec).unwrap_or(0),
        ))
    }

    /// Its entries, sorted by name, without `.` and `..`.
    pub fn entries(&self) -> Result<Vec<DirEntry>, StoreError> {
        let mut out = self.entries_unsorted()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Its entries in directory order, without `.` and `..`.
    pub fn entries_unsorted(&self) -> Result<Vec<DirEntry>, StoreError> {
        let mut out = Vec::new();
        self.visit(|name, kind, ino| {
            out.push(DirEntry {
                name: name.to_owned(),
                kind,
                ino,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f(name, kind, inode)` for each entry in directory order, without `.` and `..`
    /// and without allocating a name per entry. A name that is not UTF-8 is passed lossily with
    /// kind `Other`.
    pub fn visit(
        &self,
        mut f: impl FnMut(&str, EntryKind, u64) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (dir, shown) = (&self.fd, &self.shown);
        let entries = rfs::Dir::read_from(dir).map_err(|e| errno_error(shown, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| errno_error(shown, e))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let mut file_type = entry.file_type();
            if file_type == FileType::Unknown {
                // Some file systems do not fill d_type; ask without following links.
                file_type = rfs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode))
                    .map_err(|e| errno_error(&shown.join(OsStr::from_bytes(raw)), e))?;
            }
            match std::str::from_utf8(raw) {
                Ok(name) => f(
                    name,
                    match file_type {
                        FileType::RegularFile => EntryKind::File,
                        FileType::Directory => EntryKind::Dir,
                        FileType::Symlink => EntryKind::Symlink,
                        _ => EntryKind::Other,
                    },
                    entry.ino(),
                )?,
                Err(_) => f(&String::from_utf8_lossy(raw), EntryKind::Other, entry.ino())?,
            }
        }
        Ok(())
    }

    /// Reads the regular file `name` in this directory (a link or non-file is refused), at most
    /// `max_len` bytes.
    pub fn read(&self, name: &str, max_len: u64) -> Result<Vec<u8>, StoreError> {
        let name = OsStr::new(name);
        if Path::new(name).components().count() != 1 || name == ".." || name == "." {
            return Err(StoreError::OutsideRoot {
                path: self.shown.join(name),
                root: self.shown.clone(),
            });
        }
        read_at(&self.fd, name, self.shown.join(name), max_len)
    }
}

/// Removes the directory `rel` below `root` if it is empty, never following a link on the
/// way; whether it was removed.
pub(crate) fn remove_empty_dir_below(root: &Path, rel: &Path) -> bool {
    let Ok(components) = components_below(root, rel) else {
        return false;
    };
    let Some((last, parents)) = components.split_last() else {
        return false;
    };
    let Ok((parent, _)) = walk_dirs(root, parents, None) else {
        return false;
    };
    rfs::unlinkat(&parent, *last, rfs::AtFlags::REMOVEDIR).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use crate::store::fs::write_atomic;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn read_bounded_reads_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        ensure_dir(root, Path::new("envs/prod"), Mode::Public).unwrap();
        write_atomic(
            &root.join("envs/prod/env.yaml"),
            b"0123456789",
            Mode::Public,
        )
        .unwrap();
        assert_eq!(
            read_bounded(root, Path::new("envs/prod/env.yaml"), 10).unwrap(),
            b"0123456789"
        );
        // Absolute paths under the root work too.
        assert_eq!(
            read_bounded(root, &root.join("envs/prod/env.yaml"), 100).unwrap(),
            b"0123456789"
        );
        let err = read_bounded(root, Path::new("envs/prod/env.yaml"), 9).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max: 9, .. }),
            "{err:?}"
        );
        assert!(matches!(
            read_bounded(root, Path::new("envs/prod/missing"), 9),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            read_bounded(root, Path::new("envs/prod"), 9),
            Err(StoreError::NotAFile { .. })
        ));
    }

    #[test]
    fn read_bounded_refuses_links_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vault");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("envs")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("id_ed25519"), b"secret key").unwrap();

        // The file itself is a link.
        symlink(outside.join("id_ed25519"), root.join("envs/bundle.age")).unwrap();
        let err = read_bounded(&root, Path::new("envs/bundle.age"), 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::SymlinkRefused { .. }), "{err:?}");
        assert!(err.to_string().contains("envs/bundle.age"), "{err}");
        assert!(!err.to_string().contains("secret key"));

        // A directory on the way is a link.
        symlink(&outside, root.join("envs/prod")).unwrap();
        let err = read_bounded(&root, Path::new("envs/prod/id_ed25519"), 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::SymlinkRefused { .. }), "{err:?}");

        // `..` and absolute paths elsewhere.
        for escape in [
            PathBuf::from("../outside/id_ed25519"),
            PathBuf::from("envs/../../outside/id_ed25519"),
            outside.join("id_ed25519"),
        ] {
            let err = read_bounded(&root, &escape, 1 << 20).unwrap_err();
            assert!(matches!(err, StoreError::OutsideRoot { .. }), "{err:?}");
        }

        // ensure_dir refuses to walk through the link as well.
        let err = ensure_dir(&root, Path::new("envs/prod/audit"), Mode::Public).unwrap_err();
        assert!(matches!(err, StoreError::SymlinkRefused { .. }), "{err:?}");
        assert!(!outside.join("audit").exists());
    }

    #[test]
    fn ensure_dir_creates_with_modes_and_list_dir_reports_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let made = ensure_dir(root, Path::new("envs/prod/issuers"), Mode::Secret).unwrap();
        assert_eq!(made, root.join("envs/prod/issuers"));
        assert_eq!(mode_of(&made) & 0o077, 0);
        // Idempotent.
        ensure_dir(root, Path::new("envs/prod/issuers"), Mode::Secret).unwrap();

        write_atomic(&root.join("envs/prod/b"), b"", Mode::Public).unwrap();
        symlink("/etc/passwd", root.join("envs/prod/a")).unwrap();
        let listed = list_dir(root, Path::new("envs/prod")).unwrap();
        let kinds: Vec<_> = listed.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("a", EntryKind::Symlink),
                ("b", EntryKind::File),
                ("issuers", EntryKind::Dir)
            ]
        );
    }
}
