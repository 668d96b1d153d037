//! EDGE: multi-file transactions, so that a command's files change together or not at all.
//!
//! `commit` stages every new file as a fsynced temporary file beside its target, then writes a
//! journal naming the (temporary, target) pairs (atomically, then fsynced), then renames each
//! into place, then removes the journal. A process killed before the journal exists leaves only
//! temporary files (the old state); killed after, `recover` (run under the vault lock by every
//! command before it reads anything) finishes the renames (the new state). Readers therefore
//! never see a mix. It must not interpret file contents.

use std::path::{Component, Path, PathBuf};

use zeroize::Zeroizing;

use super::fs::{self, Mode, StoreError, TEMP_PREFIX};

/// The journal file at the vault root; present only while a commit is being applied.
pub const JOURNAL: &str = ".talvault-journal";

/// Largest journal read back.
const JOURNAL_MAX: u64 = 1 << 20;

enum Op {
    Write {
        rel: PathBuf,
        bytes: Zeroizing<Vec<u8>>,
        mode: Mode,
        create_only: bool,
    },
}

/// A set of file writes below a vault root, applied atomically by [`Transaction::commit`].
pub struct Transaction {
    root: PathBuf,
    ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction on the vault at `root`. The caller must hold the vault lock.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            ops: Vec::new(),
        }
    }

    /// Writes (or replaces) `rel` with `bytes`.
    pub fn write(&mut self, rel: impl Into<PathBuf>, bytes: &[u8], mode: Mode) {
        self.ops.push(Op::Write {
            rel: rel.into(),
            bytes: Zeroizing::new(bytes.to_vec()),
            mode,
            create_only: false,
        });
    }

    /// Creates `rel`; the commit fails if it already exists (records that are never replaced).
    pub fn create(&mut self, rel: impl Into<PathBuf>, bytes: &[u8], mode: Mode) {
        self.ops.push(Op::Write {
            rel: rel.into(),
            bytes: Zeroizing::new(bytes.to_vec()),
            mode,
            create_only: true,
        });
    }

    /// Applies every write, or none. Returns the paths written.
    pub fn commit(self) -> Result<Vec<PathBuf>, StoreError> {
        // One file is atomic on its own: skip the journal (and its fsyncs).
        if let [
            Op::Write {
                rel,
                bytes,
                mode,
                create_only,
            },
        ] = self.ops.as_slice()
        {
            check_relative(rel)?;
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::ensure_dir(&self.root, parent, Mode::Public)?;
            }
            let target = self.root.join(rel);
            if *create_only {
                fs::create_new_atomic(&target, bytes, *mode)?;
            } else {
                fs::write_atomic(&target, bytes, *mode)?;
            }
            return Ok(vec![target]);
        }
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(self.ops.len());
        let result = (|| {
            for op in &self.ops {
                let Op::Write {
                    rel,
                    bytes,
                    mode,
                    create_only,
                } = op;
                check_relative(rel)?;
                let target = self.root.join(rel);
                if *create_only && target.symlink_metadata().is_ok() {
                    return Err(StoreError::AlreadyExists { path: target });
                }
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // Directories of secrets and of public files alike are 0755 except where
                    // the caller created them before; files carry their own mode.
                    fs::ensure_dir(&self.root, parent, Mode::Public)?;
                }
                let temp = fs::stage(&target, bytes, *mode)?;
                staged.push((temp, target));
            }
            let mut journal = String::new();
            for (temp, target) in &staged {
                let t = temp.strip_prefix(&self.root).unwrap_or(temp);
                let g = target.strip_prefix(&self.root).unwrap_or(target);
                journal.push_str(&format!("{}\t{}\n", t.display(), g.display()));
            }
            // The commit point: once the journal is durable, recovery rolls forward.
            fs::write_atomic(&self.root.join(JOURNAL), journal.as_bytes(), Mode::Secret)?;
            apply(&self.root, &staged)
        })();
        if result.is_err() && !self.root.join(JOURNAL).exists() {
            for (temp, _) in &staged {
                let _ = std::fs::remove_file(temp);
            }
        }
        result?;
        Ok(staged.into_iter().map(|(_, target)| target).collect())
    }
}

fn apply(root: &Path, staged: &[(PathBuf, PathBuf)]) -> Result<(), StoreError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (temp, target) in staged {
        match std::fs::rename(temp, target) {
            Ok(()) => {}
            // Already renamed by an earlier, interrupted attempt.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.exists() => {}
            Err(e) => return Err(fs::io_err(target, e)),
        }
        if let Some(d) = target.parent()
            && !dirs.iter().any(|x| x == d)
        {
            dirs.push(d.to_path_buf());
        }
    }
    for d in &dirs {
        fs::sync_directory(d)?;
    }
    let journal = root.join(JOURNAL);
    std::fs::remove_file(&journal).map_err(|e| fs::io_err(&journal, e))?;
    fs::sync_directory(root)
}

fn check_relative(rel: &Path) -> Result<(), StoreError> {
    let ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ok && !rel.as_os_str().is_empty() {
        Ok(())
    } else {
        Err(StoreError::OutsideRoot {
            path: rel.to_path_buf(),
            root: PathBuf::from("."),
        })
    }
}

/// What `recover` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files renamed into place from an interrupted commit.
    pub rolled_forward: usize,
    /// Temporary files of uncommitted writes that were removed.
    pub removed_temporaries: usize,
}

/// Finishes an interrupted commit (if a journal exists) and removes leftover temporary files
/// below `envs/`. Run under the vault lock before reading anything.
pub fn recover(root: &Path) -> Result<Recovery, StoreError> {
    let mut rec = Recovery::default();
    let journal_path = root.join(JOURNAL);
    if journal_path.symlink_metadata().is_ok() {
        let text = fs::read_bounded(root, Path::new(JOURNAL), JOURNAL_MAX)?;
        let text = String::from_utf8_lossy(&text);
        let mut staged = Vec::new();
        for line in text.lines() {
            let Some((temp, target)) = line.split_once('\t') else {
                continue;
            };
            let (temp, target) = (Path::new(temp), Path::new(target));
            // A journal is ours, but never trust it to rename outside the vault or anything
            // but our own temporary files.
            let is_temp = temp
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
            if check_relative(temp).is_err() || check_relative(target).is_err() || !is_temp {
                continue;
            }
            if root.join(temp).exists() {
                rec.rolled_forward += 1;
            }
            staged.push((root.join(temp), root.join(target)));
        }
        staged.retain(|(t, _)| t.exists());
        apply(root, &staged)?;
    }
    rec.removed_temporaries = remove_temporaries(&root.join("envs"), 0);
    Ok(rec)
}

fn remove_temporaries(dir: &Path, depth: usize) -> usize {
    if depth > 6 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        if ft.is_file() && name.to_string_lossy().starts_with(TEMP_PREFIX) {
            if std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        } else if ft.is_dir() {
            n += remove_temporaries(&e.path(), depth + 1);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_writes_all_and_leaves_no_journal() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Transaction::new(d.path());
        t.write("envs/a/x.txt", b"one", Mode::Public);
        t.create("envs/a/y.age", b"two", Mode::Secret);
        t.commit().unwrap();
        assert_eq!(
            std::fs::read(d.path().join("envs/a/x.txt")).unwrap(),
            b"one"
        );
        assert!(!d.path().join(JOURNAL).exists());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.path().join("envs/a/y.age"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn create_refuses_existing_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("envs/a")).unwrap();
        std::fs::write(d.path().join("envs/a/y"), b"old").unwrap();
        let mut t = Transaction::new(d.path());
        t.write("envs/a/x", b"new", Mode::Public);
        t.create("envs/a/y", b"new", Mode::Public);
        assert!(matches!(t.commit(), Err(StoreError::AlreadyExists { .. })));
        assert!(!d.path().join("envs/a/x").exists());
        assert_eq!(std::fs::read(d.path().join("envs/a/y")).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(d.path().join("envs/a")).unwrap().count(),
            1
        );
    }

    #[test]
    fn recover_rolls_forward_a_journaled_commit() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("envs/a")).unwrap();
        let temp = d.path().join(format!("envs/a/{TEMP_PREFIX}x-1"));
        std::fs::write(&temp, b"new").unwrap();
        std::fs::write(d.path().join("envs/a/x"), b"old").unwrap();
        let stray = d.path().join(format!("envs/a/{TEMP_PREFIX}z-2"));
        std::fs::write(&stray, b"uncommitted").unwrap();
        std::fs::write(
            d.path().join(JOURNAL),
            format!("envs/a/{TEMP_PREFIX}x-1\tenvs/a/x\n../../etc/passwd\tx\n"),
        )
        .unwrap();
        let rec = recover(d.path()).unwrap();
        assert_eq!(
            rec,
            Recovery {
                rolled_forward: 1,
                removed_temporaries: 1
            }
        );
        assert_eq!(std::fs::read(d.path().join("envs/a/x")).unwrap(), b"new");
        assert!(!d.path().join(JOURNAL).exists() && !stray.exists());
    }
}
