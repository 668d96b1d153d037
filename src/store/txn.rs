//! EDGE: multi-file transactions, so that a command's files change together or not at all.
//!
//! `commit` writes every new file as a temporary file beside its target and a journal naming
//! each (temporary, target, SHA-256 of the content), then makes all of them durable with one
//! syncfs(2): that is the commit point. It then renames each temporary file into place, syncs
//! again, and removes the journal. Renames start only after the first sync returned, so after a
//! crash `recover` (run under the vault lock by every command before it reads anything) finds
//! either every entry intact (its temporary file present with the right hash, or its target
//! already holding that content) and rolls forward, or an incomplete commit that never renamed
//! anything and rolls back by deleting the temporary files. Readers never see a mix. Two syncs
//! per commit, whatever the number of files. It must not interpret file contents.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: applies and recovers multi-file commits"
)]

use std::path::{Component, Path, PathBuf};

use zeroize::Zeroizing;

use super::fs::{self, Mode, StoreError, TEMP_PREFIX};

/// The journal file at the vault root; present only while a commit is being applied.
pub const JOURNAL: &str = ".talvault-journal";

/// Present at the vault root while a commit may have temporary files on disk. `recover` looks
/// for leftover temporaries only when it (or a journal) is there, so that opening a vault with
/// 100,000 records does not walk them all on every command.
pub const DIRTY: &str = ".talvault-dirty";

/// The journal's last line, so that a journal cut short is recognised.
const JOURNAL_END: &str = "end";

/// First field of a journal line that removes a file (`remove<TAB>target`). Two fields, so a
/// talvault that predates removals skips the line rather than misreading it.
const JOURNAL_REMOVE: &str = "remove";

/// Largest journal read back (a renewal of thousands of holders writes two files each, about
/// 250 bytes of journal per file).
const JOURNAL_MAX: u64 = 64 << 20;

/// Largest file whose hash recovery checks (sealed bundles are far smaller).
const RECOVERY_FILE_MAX: u64 = 64 << 20;

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
    /// Files removed after every write is in place (records retired by `backup prune`).
    removes: Vec<PathBuf>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::digest::sha256_hex(bytes)
}

impl Transaction {
    /// An empty transaction on the vault at `root`. The caller must hold the vault lock.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            ops: Vec::new(),
            removes: Vec::new(),
        }
    }

    /// Removes the regular file `rel` when the writes are applied (a missing file counts as
    /// removed; a link or anything else fails the commit before anything changes).
    pub fn remove(&mut self, rel: impl Into<PathBuf>) {
        self.removes.push(rel.into());
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

    /// Where the transaction stands now (operations and removals staged so far), for
    /// [`Transaction::file_hashes_since`].
    pub fn mark(&self) -> (usize, usize) {
        (self.ops.len(), self.removes.len())
    }

    /// The content hash of every file the transaction writes below `dir` (relative to it), and
    /// of the vault's `talvault.yaml` (as `/talvault.yaml`) when it writes that, and `None` for
    /// every file it removes below `dir`: what an audit event names to account for the
    /// command's files (a removed holder or pruned backup record is accounted for as removed).
    pub fn file_hashes(&self, dir: &Path) -> std::collections::BTreeMap<String, Option<String>> {
        self.file_hashes_since(dir, (0, 0))
    }

    /// [`Transaction::file_hashes`] of what was staged since `mark`: what one event of a
    /// transaction that stages several (one per certificate of a renewal) accounts for.
    pub fn file_hashes_since(
        &self,
        dir: &Path,
        mark: (usize, usize),
    ) -> std::collections::BTreeMap<String, Option<String>> {
        let key = |rel: &Path| {
            if let Ok(below) = rel.strip_prefix(dir) {
                (!below.starts_with("audit")).then(|| below.display().to_string())
            } else if rel == Path::new(crate::model::VAULT_FILE) {
                Some(format!("/{}", crate::model::VAULT_FILE))
            } else {
                None
            }
        };
        let mut out = std::collections::BTreeMap::new();
        for rel in self.removes.iter().skip(mark.1) {
            if let Some(k) = key(rel) {
                out.insert(k, None);
            }
        }
        // A file both removed and written ends up written (writes are applied first, but a
        // transaction never does both to one file).
        for Op::Write { rel, bytes, .. } in self.ops.iter().skip(mark.0) {
            if let Some(k) = key(rel) {
                out.insert(k, Some(sha256_hex(bytes)));
            }
        }
        out
    }

    /// The directories this transaction will create (missing parents of its files), parents
    /// before children, relative to the root.
    fn new_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for Op::Write { rel, .. } in &self.ops {
            let mut dir = PathBuf::new();
            for c in rel.parent().into_iter().flat_map(Path::components) {
                dir.push(c);
                if !out.contains(&dir) && self.root.join(&dir).symlink_metadata().is_err() {
                    out.push(dir.clone());
                }
            }
        }
        out
    }

    /// Applies every write, or none. Returns the paths written.
    pub fn commit(self) -> Result<Vec<PathBuf>, StoreError> {
        // Mark before the first temporary file or directory exists; cleared once the commit is
        // complete. The mark lists the directories the commit will create, so that recovery
        // can remove them again when the commit never happened (an empty `issuers/<id>/` left
        // by a crash would otherwise be taken for a broken issuer). With new directories the
        // mark is made durable first (they are: `ensure_dir` fsyncs each); without, it need
        // not be: after a power loss the unsynced temporaries it would point at are gone too,
        // and a leftover temporary is harmless (git-ignored, never read).
        let dirty = self.root.join(DIRTY);
        let new_dirs = self.new_dirs();
        let mut mark = String::new();
        for d in &new_dirs {
            mark.push_str(&format!("dir\t{}\n", d.display()));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dirty)
            .map_err(|e| fs::io_err(&dirty, e))?;
        if !new_dirs.is_empty() {
            std::io::Write::write_all(&mut file, mark.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fs::io_err(&dirty, e))?;
            fs::sync_dir_of(&dirty)?;
        }
        drop(file);
        let result = self.commit_marked();
        // On success nothing is left; on failure the commit removed its own temporaries, or it
        // failed after its commit point and the journal (which `recover` always honours) is
        // still there.
        let _ = std::fs::remove_file(&dirty);
        result
    }

    fn commit_marked(self) -> Result<Vec<PathBuf>, StoreError> {
        // One file is atomic on its own: skip the journal.
        if self.removes.is_empty()
            && let [
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
        let mut journal = String::new();
        let journal_path = self.root.join(JOURNAL);
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
                    fs::ensure_dir(&self.root, parent, Mode::Public)?;
                }
                let temp = fs::stage(&target, bytes, *mode)?;
                let t = temp.strip_prefix(&self.root).unwrap_or(&temp);
                journal.push_str(&format!(
                    "{}\t{}\t{}\n",
                    t.display(),
                    rel.display(),
                    sha256_hex(bytes)
                ));
                staged.push((temp, target));
            }
            for rel in &self.removes {
                check_relative(rel)?;
                // Refused now (a link, a directory) rather than half-way through applying.
                fs::remove_below(&self.root, rel, true)?;
                journal.push_str(&format!("{JOURNAL_REMOVE}\t{}\n", rel.display()));
            }
            journal.push_str(JOURNAL_END);
            journal.push('\n');
            // The journal goes straight to its name; a journal cut short by a crash has no
            // end line, and one whose files were not all made durable fails its hash checks.
            let mut j = std::fs::OpenOptions::new();
            std::os::unix::fs::OpenOptionsExt::mode(j.write(true).create_new(true), 0o600);
            let mut file = j
                .open(&journal_path)
                .map_err(|e| fs::io_err(&journal_path, e))?;
            std::io::Write::write_all(&mut file, journal.as_bytes())
                .map_err(|e| fs::io_err(&journal_path, e))?;
            drop(file);
            // The commit point: the temporary files and the journal are durable together.
            fs::sync_filesystem(&self.root)?;
            apply(&self.root, &staged, &self.removes)
        })();
        if result.is_err() && staged.iter().all(|(t, _)| t.exists()) {
            // Nothing was renamed: undo completely.
            for (temp, _) in &staged {
                let _ = std::fs::remove_file(temp);
            }
            let _ = std::fs::remove_file(&journal_path);
        }
        result?;
        Ok(staged.into_iter().map(|(_, target)| target).collect())
    }
}

/// Renames the staged files into place, removes the files to remove, makes it durable, removes
/// the journal.
fn apply(
    root: &Path,
    staged: &[(PathBuf, PathBuf)],
    removes: &[PathBuf],
) -> Result<(), StoreError> {
    for (temp, target) in staged {
        std::fs::rename(temp, target).map_err(|e| fs::io_err(target, e))?;
    }
    for rel in removes {
        fs::remove_below(root, rel, false)?;
    }
    fs::sync_filesystem(root)?;
    // A journal whose removal is lost in a crash is harmless: recovery finds every target
    // already holding its content (or superseded) and no temporary file, and just deletes it.
    let journal = root.join(JOURNAL);
    std::fs::remove_file(&journal).map_err(|e| fs::io_err(&journal, e))
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
    /// Temporary files removed (of an incomplete commit or a crashed write).
    pub removed_temporaries: usize,
    /// Empty directories an incomplete commit had created, removed.
    pub removed_dirs: usize,
}

struct Entry {
    temp: PathBuf,
    target: PathBuf,
    hash: String,
}

fn file_hash(root: &Path, rel: &Path) -> Option<String> {
    fs::read_bounded(root, rel, RECOVERY_FILE_MAX)
        .ok()
        .map(|b| sha256_hex(&Zeroizing::new(b)))
}

/// Finishes or undoes an interrupted commit (if a journal exists) and removes leftover
/// temporary files below `envs/`. Run under the vault lock before reading anything.
pub fn recover(root: &Path) -> Result<Recovery, StoreError> {
    let mut rec = Recovery::default();
    let journal_path = root.join(JOURNAL);
    let journal_found = journal_path.symlink_metadata().is_ok();
    if journal_found {
        let text = fs::read_bounded(root, Path::new(JOURNAL), JOURNAL_MAX)?;
        let text = String::from_utf8_lossy(&text);
        let complete = text.lines().last() == Some(JOURNAL_END);
        let mut entries = Vec::new();
        let mut removes = Vec::new();
        for line in text.lines() {
            if let Some(rel) = line
                .strip_prefix(JOURNAL_REMOVE)
                .and_then(|l| l.strip_prefix('\t'))
            {
                let rel = PathBuf::from(rel);
                if check_relative(&rel).is_ok() {
                    removes.push(rel);
                }
                continue;
            }
            let mut parts = line.split('\t');
            let (Some(temp), Some(target), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (temp, target) = (PathBuf::from(temp), PathBuf::from(target));
            // Never trust a journal to rename outside the vault or anything but our own
            // temporary files.
            let is_temp = temp
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
            if check_relative(&temp).is_ok() && check_relative(&target).is_ok() && is_temp {
                entries.push(Entry {
                    temp,
                    target,
                    hash: hash.to_owned(),
                });
            }
        }
        let temp_ok = |e: &Entry| file_hash(root, &e.temp).as_deref() == Some(e.hash.as_str());
        let applied = |e: &Entry| file_hash(root, &e.target).as_deref() == Some(e.hash.as_str());
        let any_temp = entries.iter().any(|e| root.join(&e.temp).exists());
        let intact = complete && entries.iter().all(|e| temp_ok(e) || applied(e));
        // Removals come after every rename: a complete journal whose renames are all done may
        // still have files to remove.
        let any_remove = removes
            .iter()
            .any(|r| fs::remove_below(root, r, true).unwrap_or(false));
        if (any_temp || any_remove) && intact {
            for e in &entries {
                if root.join(&e.temp).symlink_metadata().is_ok() {
                    // Not a path-based rename: a journal (it may have come with a pulled
                    // commit) naming `envs/<link>/…` must not move a file out of the vault.
                    fs::rename_below(root, &e.temp, &e.target)?;
                    rec.rolled_forward += 1;
                }
            }
            for r in &removes {
                if fs::remove_below(root, r, false)? {
                    rec.rolled_forward += 1;
                }
            }
            fs::sync_filesystem(root)?;
        }
        // Otherwise the commit never reached its commit point (nothing was renamed): its
        // temporary files are removed below; or it was finished long ago (no temporary file).
        std::fs::remove_file(&journal_path).map_err(|e| fs::io_err(&journal_path, e))?;
    }
    // The caches are written outside transactions (after a command succeeded): a write killed
    // half way leaves a temporary there, so they are swept every time (a few files).
    rec.removed_temporaries = remove_temporaries(&root.join(".cache"), 4);
    let dirty = root.join(DIRTY);
    if journal_found || dirty.symlink_metadata().is_ok() {
        rec.removed_temporaries +=
            remove_temporaries(&root.join("envs"), 0) + remove_temporaries_in(root);
        // Directories an unfinished commit created and never filled: deepest first, and only
        // while empty (a finished commit's directories hold its files and stay).
        let mark = fs::read_bounded(root, Path::new(DIRTY), JOURNAL_MAX).unwrap_or_default();
        let mut dirs: Vec<PathBuf> = String::from_utf8_lossy(&mark)
            .lines()
            .filter_map(|l| l.strip_prefix("dir\t"))
            .map(PathBuf::from)
            .filter(|d| check_relative(d).is_ok())
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if fs::remove_empty_dir_below(root, &d) {
                rec.removed_dirs += 1;
            }
        }
        std::fs::remove_file(&dirty).or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(fs::io_err(&dirty, e))
            }
        })?;
    }
    Ok(rec)
}

/// Removes our temporary files directly in `dir` (the vault root, `.cache`), not below.
fn remove_temporaries_in(dir: &Path) -> usize {
    if !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn remove_temporaries(dir: &Path, depth: usize) -> usize {
    // Entries below are typed without following links; the top (`envs`) is checked here, so a
    // vault whose `envs` is a link never has files deleted elsewhere.
    if depth > 6 || !dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
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

    fn journal_line(temp: &str, target: &str, content: &[u8]) -> String {
        format!("{temp}\t{target}\t{}\n", sha256_hex(content))
    }

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
        assert_eq!(
            std::fs::read_dir(d.path().join("envs/a")).unwrap().count(),
            2
        );
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
        assert!(!d.path().join(JOURNAL).exists());
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("envs/a")).unwrap();
        std::fs::write(d.path().join("envs/a/x"), b"old-x").unwrap();
        std::fs::write(d.path().join("envs/a/y"), b"old-y").unwrap();
        d
    }

    #[test]
    fn temporaries_are_swept_only_after_a_commit_left_its_marker() {
        let d = setup();
        let p = d.path();
        let mut t = Transaction::new(p);
        t.write("envs/a/x", b"new-x", Mode::Public);
        t.write("envs/a/y", b"new-y", Mode::Public);
        t.commit().unwrap();
        assert!(
            !p.join(DIRTY).exists(),
            "a finished commit leaves no marker"
        );
        let temp = p.join("envs/a").join(format!("{TEMP_PREFIX}x-1-1"));
        std::fs::write(&temp, b"half").unwrap();
        // No marker, no journal: recovery does not walk the records.
        assert_eq!(recover(p).unwrap().removed_temporaries, 0);
        assert!(temp.exists());
        // A commit killed while staging leaves the marker: the next recovery sweeps.
        std::fs::write(p.join(DIRTY), b"").unwrap();
        assert_eq!(recover(p).unwrap().removed_temporaries, 1);
        assert!(!temp.exists() && !p.join(DIRTY).exists());
    }

    /// A commit killed after it created `issuers/<id>/` but before its commit point leaves
    /// neither the directory nor its temporary files; one killed after it finished keeps both.
    #[test]
    fn directories_of_an_unfinished_commit_are_removed() {
        let d = setup();
        let p = d.path();
        let mut t = Transaction::new(p);
        t.create("envs/a/issuers/e1-ab/key.age", b"k", Mode::Secret);
        t.create("envs/a/issuers/e1-ab/issuer.yaml", b"i", Mode::Public);
        let dirs = t.new_dirs();
        assert_eq!(
            dirs,
            [
                PathBuf::from("envs/a/issuers"),
                PathBuf::from("envs/a/issuers/e1-ab")
            ]
        );
        // What commit does up to its first staged file, then a crash.
        let mark: String = dirs
            .iter()
            .map(|d| format!("dir\t{}\n", d.display()))
            .collect();
        std::fs::write(p.join(DIRTY), &mark).unwrap();
        fs::ensure_dir(p, Path::new("envs/a/issuers/e1-ab"), Mode::Public).unwrap();
        std::fs::write(
            p.join(format!("envs/a/issuers/e1-ab/{TEMP_PREFIX}key.age-1-1")),
            b"k",
        )
        .unwrap();
        // A root-level and a cache temporary from crashed single writes are swept too.
        std::fs::write(p.join(format!("{TEMP_PREFIX}talvault.yaml-1-2")), b"x").unwrap();
        std::fs::create_dir_all(p.join(".cache")).unwrap();
        std::fs::write(p.join(format!(".cache/{TEMP_PREFIX}idx-1-3")), b"x").unwrap();
        assert_eq!(
            recover(p).unwrap(),
            Recovery {
                rolled_forward: 0,
                removed_temporaries: 3,
                removed_dirs: 2,
            }
        );
        assert!(!p.join("envs/a/issuers").exists());
        assert!(!p.join(DIRTY).exists());
        // Finished, but killed before the mark was removed: everything stays.
        t.commit().unwrap();
        std::fs::write(p.join(DIRTY), &mark).unwrap();
        assert_eq!(recover(p).unwrap().removed_dirs, 0);
        assert_eq!(
            std::fs::read(p.join("envs/a/issuers/e1-ab/key.age")).unwrap(),
            b"k"
        );
    }

    #[test]
    fn recover_rolls_forward_an_intact_commit_half_renamed() {
        let d = setup();
        let p = d.path();
        // x already renamed, y still staged.
        std::fs::write(p.join("envs/a/x"), b"new-x").unwrap();
        std::fs::write(p.join(format!("envs/a/{TEMP_PREFIX}y-1")), b"new-y").unwrap();
        let journal = journal_line(&format!("envs/a/{TEMP_PREFIX}x-1"), "envs/a/x", b"new-x")
            + &journal_line(&format!("envs/a/{TEMP_PREFIX}y-1"), "envs/a/y", b"new-y")
            + "../../etc/passwd\tx\tff\nend\n";
        std::fs::write(p.join(JOURNAL), journal).unwrap();
        let rec = recover(p).unwrap();
        assert_eq!(rec.rolled_forward, 1);
        assert_eq!(std::fs::read(p.join("envs/a/x")).unwrap(), b"new-x");
        assert_eq!(std::fs::read(p.join("envs/a/y")).unwrap(), b"new-y");
        assert!(!p.join(JOURNAL).exists());
    }

    #[test]
    fn removals_apply_with_the_writes_and_refuse_links() {
        let d = setup();
        let p = d.path();
        let mut t = Transaction::new(p);
        t.create("envs/a/event", b"pruned x", Mode::Public);
        t.remove("envs/a/x");
        t.remove("envs/a/gone-already");
        t.commit().unwrap();
        assert!(!p.join("envs/a/x").exists());
        assert_eq!(std::fs::read(p.join("envs/a/event")).unwrap(), b"pruned x");
        assert!(!p.join(JOURNAL).exists());
        // A link where a record should be: refused before anything changes.
        std::os::unix::fs::symlink(p.join("envs/a/y"), p.join("envs/a/link")).unwrap();
        let mut t = Transaction::new(p);
        t.create("envs/a/event2", b"x", Mode::Public);
        t.remove("envs/a/link");
        assert!(matches!(t.commit(), Err(StoreError::SymlinkRefused { .. })));
        assert!(!p.join("envs/a/event2").exists());
        assert!(p.join("envs/a/link").symlink_metadata().is_ok());
        assert_eq!(std::fs::read(p.join("envs/a/y")).unwrap(), b"old-y");
        let mut t = Transaction::new(p);
        t.remove("../outside");
        t.create("envs/a/event3", b"x", Mode::Public);
        assert!(t.commit().is_err());
    }

    #[test]
    fn recover_finishes_removals_after_the_renames() {
        let d = setup();
        let p = d.path();
        // The write was renamed into place, the removal had not happened yet.
        std::fs::write(p.join("envs/a/event"), b"pruned y").unwrap();
        let journal = journal_line(
            &format!("envs/a/{TEMP_PREFIX}event-1"),
            "envs/a/event",
            b"pruned y",
        ) + "remove\tenvs/a/y\nremove\t../../etc/passwd\nend\n";
        std::fs::write(p.join(JOURNAL), journal).unwrap();
        let rec = recover(p).unwrap();
        assert_eq!(rec.rolled_forward, 1);
        assert!(!p.join("envs/a/y").exists());
        assert!(p.join("envs/a/x").exists());
        assert!(!p.join(JOURNAL).exists());
        // A journal cut short never removes anything.
        std::fs::write(p.join(JOURNAL), "remove\tenvs/a/x\n").unwrap();
        recover(p).unwrap();
        assert!(p.join("envs/a/x").exists());
    }

    #[test]
    fn recover_rolls_back_when_a_staged_file_is_damaged_or_the_journal_cut_short() {
        for (damaged, end) in [(true, "end\n"), (false, "")] {
            let d = setup();
            let p = d.path();
            let y_content: &[u8] = if damaged { b"new" } else { b"new-y" };
            std::fs::write(p.join(format!("envs/a/{TEMP_PREFIX}x-1")), b"new-x").unwrap();
            std::fs::write(p.join(format!("envs/a/{TEMP_PREFIX}y-1")), y_content).unwrap();
            let journal = journal_line(&format!("envs/a/{TEMP_PREFIX}x-1"), "envs/a/x", b"new-x")
                + &journal_line(&format!("envs/a/{TEMP_PREFIX}y-1"), "envs/a/y", b"new-y")
                + end;
            std::fs::write(p.join(JOURNAL), journal).unwrap();
            let rec = recover(p).unwrap();
            assert_eq!(
                rec,
                Recovery {
                    rolled_forward: 0,
                    removed_temporaries: 2,
                    removed_dirs: 0,
                }
            );
            assert_eq!(std::fs::read(p.join("envs/a/x")).unwrap(), b"old-x");
            assert_eq!(std::fs::read(p.join("envs/a/y")).unwrap(), b"old-y");
            assert!(!p.join(JOURNAL).exists());
        }
    }

    #[test]
    fn recover_never_renames_through_a_link() {
        let d = setup();
        let p = d.path();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), p.join("envs/evil")).unwrap();
        std::fs::write(
            p.join(format!("envs/a/{TEMP_PREFIX}k-1")),
            b"ssh-ed25519 AAAA evil",
        )
        .unwrap();
        let journal = journal_line(
            &format!("envs/a/{TEMP_PREFIX}k-1"),
            "envs/evil/authorized_keys",
            b"ssh-ed25519 AAAA evil",
        ) + "end\n";
        std::fs::write(p.join(JOURNAL), journal).unwrap();
        let err = recover(p).unwrap_err();
        assert!(matches!(err, StoreError::SymlinkRefused { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // `envs` itself a link: leftover temporaries there are not ours to delete.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(format!("{TEMP_PREFIX}keep")), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("envs")).unwrap();
        assert_eq!(recover(d.path()).unwrap(), Recovery::default());
        assert!(outside.path().join(format!("{TEMP_PREFIX}keep")).exists());
    }

    #[test]
    fn a_stale_journal_is_just_removed() {
        let d = setup();
        let p = d.path();
        // Long applied, and y superseded since: nothing staged, nothing to do.
        let journal = journal_line(&format!("envs/a/{TEMP_PREFIX}x-1"), "envs/a/x", b"old-x")
            + &journal_line(&format!("envs/a/{TEMP_PREFIX}y-1"), "envs/a/y", b"older-y")
            + "end\n";
        std::fs::write(p.join(JOURNAL), journal).unwrap();
        let stray = p.join(format!("envs/a/{TEMP_PREFIX}z-9"));
        std::fs::write(&stray, b"crashed single write").unwrap();
        assert_eq!(
            recover(p).unwrap(),
            Recovery {
                rolled_forward: 0,
                removed_temporaries: 1,
                removed_dirs: 0,
            }
        );
        assert_eq!(std::fs::read(p.join("envs/a/y")).unwrap(), b"old-y");
        assert!(!p.join(JOURNAL).exists() && !stray.exists());
    }
}
