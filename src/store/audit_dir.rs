//! EDGE: the audit directory of one environment, `<env_dir>/audit/<yyyy>/<mm>/*.json`: append an
//! event (never overwriting) and load every file for `audit::verify`. It must not judge events;
//! verification and naming live in the pure `audit` module.

use std::path::{Path, PathBuf};

use super::fs::{self, EntryKind, Mode, StoreError, TEMP_PREFIX};
use crate::audit::Event;

/// The audit directory's name inside an environment directory.
pub const AUDIT_DIR: &str = "audit";

/// Largest event file read (real events are well under 4 KiB).
pub const EVENT_FILE_MAX: u64 = 1 << 20;

/// Event files as records for the cache (`store::index`).
pub const EVENT_RECORDS: super::index::Records = super::index::Records {
    suffix: ".json",
    max: EVENT_FILE_MAX,
};

/// Deepest directory nesting walked below `audit/` (events sit at depth 2).
const MAX_DEPTH: usize = 4;

/// Writes `event` to `<env_dir>/audit/<its relative_path>` (public, 0644) with
/// `create_new_atomic`: an event file is never overwritten. Returns the path written.
pub fn append(env_dir: &Path, event: &Event) -> Result<PathBuf, StoreError> {
    let rel = PathBuf::from(AUDIT_DIR).join(event.relative_path());
    let dir_rel = rel.parent().unwrap_or(Path::new(AUDIT_DIR));
    let dir = fs::ensure_dir(env_dir, dir_rel, Mode::Public)?;
    let path = match rel.file_name() {
        Some(name) => dir.join(name),
        None => env_dir.join(&rel),
    };
    fs::create_new_atomic(&path, &event.to_json(), Mode::Public)?;
    Ok(path)
}

/// Reads every event file below `<env_dir>/audit/`, as (path relative to `audit/` with `/`
/// separators, contents), sorted by path. A missing audit directory is an empty log. Files in
/// unexpected places are returned too, so `verify` reports them; symbolic links are refused;
/// temporary files left by a crash (`.talvault-tmp-*`) are skipped.
pub fn load_all(env_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    load_all_below(env_dir, Path::new(""))
}

/// [`load_all`] for the environment directory `env_rel` below the vault `root`: every
/// directory from `root` down is opened without following links, so a vault whose `envs` or
/// `envs/<env>` is a link is refused rather than read through (`load_all(root.join(env_rel))`
/// would trust everything above `audit/`).
pub fn load_all_below(root: &Path, env_rel: &Path) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for_each_below(root, env_rel, |rel, bytes| out.push((rel, bytes)))?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Like [`load_all_below`], but hands each file to `f` as it is read (`audit verify` keeps
/// only what it needs of each, not every file's bytes at once), in directory order.
pub fn for_each_below(
    root: &Path,
    env_rel: &Path,
    mut f: impl FnMut(String, Vec<u8>),
) -> Result<(), StoreError> {
    let audit = env_rel.join(AUDIT_DIR);
    match walk(root, &audit, "", 0, &mut f) {
        Err(StoreError::NotFound { path }) if path == root.join(&audit) => Ok(()),
        other => other,
    }
}

/// A directory's stamp: inode, mtime seconds, mtime nanoseconds.
pub type Stamp = (u64, i64, i64);

/// Each month directory's stamp (inode, mtime seconds, nanoseconds), as `yyyy/mm`: any event
/// added, removed or renamed changes one (or adds a month).
pub fn month_stamps(root: &Path, env_rel: &Path) -> Result<Vec<(String, Stamp)>, StoreError> {
    months(root, env_rel)?
        .into_iter()
        .map(|(year, month)| {
            let dir = fs::open_dir(root, &env_rel.join(AUDIT_DIR).join(&year).join(&month))?;
            Ok((format!("{year}/{month}"), dir.stamp()?))
        })
        .collect()
}

/// The month directories that hold events, `(yyyy, mm)`, below `<env_rel>/audit/` (below the
/// vault `root`): four-digit year and two-digit month directory names only, which is where
/// [`Event::relative_path`] puts every event. A missing audit directory has none; a link where a
/// year or month directory should be is refused.
pub fn months(root: &Path, env_rel: &Path) -> Result<Vec<(String, String)>, StoreError> {
    let audit = env_rel.join(AUDIT_DIR);
    let years = match fs::list_dir(root, &audit) {
        // No audit directory (or no environment directory yet): no events. A month directory
        // that vanishes while it is listed is an error, not an empty trail.
        Err(StoreError::NotFound { path }) if root.join(&audit).starts_with(&path) => {
            return Ok(Vec::new());
        }
        other => other?,
    };
    let digits = |name: &str, n: usize| name.len() == n && name.bytes().all(|b| b.is_ascii_digit());
    let mut out = Vec::new();
    for year in years.iter().filter(|e| digits(&e.name, 4)) {
        let year_rel = audit.join(&year.name);
        match year.kind {
            EntryKind::Dir => {}
            EntryKind::Symlink => {
                return Err(StoreError::SymlinkRefused {
                    path: root.join(year_rel),
                });
            }
            EntryKind::File | EntryKind::Other => continue,
        }
        for month in fs::list_dir(root, &year_rel)? {
            if !digits(&month.name, 2) {
                continue;
            }
            match month.kind {
                EntryKind::Dir => out.push((year.name.clone(), month.name)),
                EntryKind::Symlink => {
                    return Err(StoreError::SymlinkRefused {
                        path: root.join(year_rel.join(&month.name)),
                    });
                }
                EntryKind::File | EntryKind::Other => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The event files of one month directory (`<env_rel>/audit/<yyyy>/<mm>/*.json`) below the
/// vault `root`, as (file name, contents), by name (so by time).
pub fn load_month(
    root: &Path,
    env_rel: &Path,
    year: &str,
    month: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let dir = env_rel.join(AUDIT_DIR).join(year).join(month);
    let mut out = Vec::new();
    for entry in fs::list_dir(root, &dir)? {
        if entry.kind == EntryKind::File
            && entry.name.ends_with(".json")
            && !entry.name.starts_with(TEMP_PREFIX)
        {
            let bytes = fs::read_bounded(root, &dir.join(&entry.name), EVENT_FILE_MAX)?;
            out.push((entry.name, bytes));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Largest file hashed by [`file_hashes`] (sealed bundles and keys are far smaller).
const HASHED_FILE_MAX: u64 = 64 << 20;

/// The content hash (hex SHA-256) of every file of the environment directory `env_rel` below
/// the vault `root`, by path relative to it, except the audit directory and temporary files:
/// what the audit chain must account for. A link or anything but a regular file gets the mark
/// `link` or `other` instead of a hash (it can match no event), and is not followed.
pub fn file_hashes(
    root: &Path,
    env_rel: &Path,
) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
    fn visit(
        root: &Path,
        dir: &Path,
        prefix: &str,
        depth: usize,
        out: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let opened = fs::open_dir(root, dir)?;
        for entry in opened.entries()? {
            if entry.name.starts_with(TEMP_PREFIX) || (depth == 0 && entry.name == AUDIT_DIR) {
                continue;
            }
            let rel = format!("{prefix}{}", entry.name);
            let path = dir.join(&entry.name);
            match entry.kind {
                EntryKind::File => {
                    let bytes = opened.read(&entry.name, HASHED_FILE_MAX)?;
                    out.insert(rel, crate::digest::sha256_hex(&bytes));
                }
                EntryKind::Dir if depth < 8 => {
                    visit(root, &path, &format!("{rel}/"), depth + 1, out)?;
                }
                EntryKind::Symlink => {
                    out.insert(rel, "link".into());
                }
                EntryKind::Dir | EntryKind::Other => {
                    out.insert(rel, "other".into());
                }
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    visit(root, env_rel, "", 0, &mut out)?;
    Ok(out)
}

fn walk(
    env_dir: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut dyn FnMut(String, Vec<u8>),
) -> Result<(), StoreError> {
    // Opened once: each file is read relative to it, not walked to from the root again.
    let opened = fs::open_dir(env_dir, dir)?;
    for entry in opened.entries()? {
        if entry.name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let rel = format!("{prefix}{}", entry.name);
        let path = dir.join(&entry.name);
        match entry.kind {
            EntryKind::File => {
                let bytes = opened.read(&entry.name, EVENT_FILE_MAX)?;
                out(rel, bytes);
            }
            EntryKind::Dir if depth < MAX_DEPTH => {
                walk(env_dir, &path, &format!("{rel}/"), depth + 1, out)?;
            }
            EntryKind::Dir | EntryKind::Other => {
                return Err(StoreError::NotAFile {
                    path: env_dir.join(path),
                });
            }
            EntryKind::Symlink => {
                return Err(StoreError::SymlinkRefused {
                    path: env_dir.join(path),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests build fixtures on disk")]
mod tests {
    use super::*;
    use crate::audit::{self, EventBody, Tamper};
    use std::os::unix::fs::PermissionsExt;
    use time::macros::datetime;

    fn event(parents: Vec<audit::EventId>, time: time::OffsetDateTime) -> Event {
        audit::new_event(
            parents,
            EventBody {
                time,
                actor: "alice".into(),
                opened_by: None,
                env: "prod".into(),
                action: "issue".into(),
                data: serde_json::Map::new(),
                seal: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn append_load_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join("envs/prod");
        std::fs::create_dir_all(&env_dir).unwrap();
        assert!(load_all(&env_dir).unwrap().is_empty());

        let a = event(vec![], datetime!(2026-05-31 23:59:59 UTC));
        let b = event(vec![a.id().clone()], datetime!(2026-06-01 00:00:00 UTC));
        let pa = append(&env_dir, &a).unwrap();
        append(&env_dir, &b).unwrap();
        assert_eq!(pa, env_dir.join("audit").join(a.relative_path()));
        assert_eq!(
            std::fs::metadata(&pa).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Never overwritten.
        assert!(matches!(
            append(&env_dir, &a),
            Err(StoreError::AlreadyExists { .. })
        ));

        let files = load_all(&env_dir).unwrap();
        assert_eq!(
            files.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
            [a.relative_path(), b.relative_path()]
        );
        let report = audit::verify(&files);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.heads, vec![b.id().clone()]);

        // Deleting a file on disk is caught.
        std::fs::remove_file(&pa).unwrap();
        let report = audit::verify(&load_all(&env_dir).unwrap());
        assert_eq!(
            report
                .problems
                .iter()
                .map(|p| p.tamper())
                .collect::<Vec<_>>(),
            [Tamper::Deleted]
        );
    }

    #[test]
    fn stray_files_are_reported_and_links_refused() {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path();
        let a = event(vec![], datetime!(2026-05-01 00:00:00 UTC));
        append(env_dir, &a).unwrap();
        std::fs::write(
            env_dir.join("audit/2026/05/.talvault-tmp-x-1-2"),
            b"partial",
        )
        .unwrap();
        std::fs::write(env_dir.join("audit/README"), b"hello").unwrap();
        let files = load_all(env_dir).unwrap();
        assert_eq!(files.len(), 2);
        let report = audit::verify(&files);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);

        std::os::unix::fs::symlink("/etc/passwd", env_dir.join("audit/2026/05/x.json")).unwrap();
        assert!(matches!(
            load_all(env_dir),
            Err(StoreError::SymlinkRefused { .. })
        ));
    }
}
