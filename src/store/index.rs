//! EDGE: reads every record file of one directory (`certs/`, `revocations/`, an audit month
//! directory) as one-line summaries, with a local cache so that an environment with 100,000
//! certificates does not parse 100,000 YAML files on every `status`, nor every command read
//! every audit event to find the parents of its own. It must not decide what a record means
//! (the caller's `summarise` does) or write anything inside the versioned vault.
//!
//! The cache lives in `.cache/` at the vault root, which carries its own `.gitignore` (`*`), so
//! it never reaches git. Records are append-only and never rewritten in place (`store::fs` writes
//! a new file and renames it), so a cached line is reused only while the directory entry keeps
//! both its name and its inode number; anything else is read and parsed again. A missing,
//! unreadable or foreign cache only costs time.
#![cfg_attr(
    test,
    expect(
        clippy::disallowed_methods,
        reason = "tests edit record directories directly"
    )
)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::fs::{self, EntryKind, Mode, StoreError};

/// Directory (below the vault root) that holds caches.
pub const CACHE_DIR: &str = ".cache";
// v5: certificate lines carry the API (talos, kubernetes) and the record file's hash.
const HEADER: &str = "talvault-index v5";
/// Largest record file read.
const RECORD_MAX: u64 = 64 << 10;
/// Largest cache file read.
const CACHE_MAX: u64 = 1 << 30;

/// A summary that can live on one cache line.
pub trait CacheLine: Sized {
    /// The line (no newline; the name and inode are prepended by the cache).
    fn to_line(&self) -> String;
    /// Reads a line back; `None` if it is not valid.
    fn from_line(line: &str) -> Option<Self>;
}

impl CacheLine for crate::inventory::CertEntry {
    fn to_line(&self) -> String {
        crate::inventory::CertEntry::to_line(self)
    }
    fn from_line(line: &str) -> Option<Self> {
        crate::inventory::CertEntry::from_line(line)
    }
}

impl CacheLine for crate::audit::EventFile {
    fn to_line(&self) -> String {
        crate::audit::EventFile::to_line(self)
    }
    fn from_line(line: &str) -> Option<Self> {
        crate::audit::EventFile::from_line(line)
    }
}

impl CacheLine for crate::inventory::RevokedEntry {
    fn to_line(&self) -> String {
        crate::inventory::RevokedEntry::to_line(self)
    }
    fn from_line(line: &str) -> Option<Self> {
        crate::inventory::RevokedEntry::from_line(line)
    }
}

/// A rebuilt cache, to be saved (with [`save`]) once the command that read it has succeeded,
/// so that a refused command leaves the vault directory exactly as it was.
#[derive(Debug)]
pub struct CacheUpdate {
    rel: PathBuf,
    lines: String,
}

/// Which files of a directory are records, and how large one may be.
#[derive(Clone, Copy, Debug)]
pub struct Records {
    /// File name ending, e.g. `.yaml`.
    pub suffix: &'static str,
    /// Largest file read.
    pub max: u64,
}

/// Certificate and revocation records.
pub const YAML_RECORDS: Records = Records {
    suffix: ".yaml",
    max: RECORD_MAX,
};

/// Summaries of every record file (`records`) in `dir_rel` (below `root`), in directory order,
/// and the rebuilt cache when it is out of date. `summarise(file, bytes)` turns a file into its
/// summary (or refuses it); `cache_name` identifies the cache file under `.cache/`. A missing
/// directory gives an empty list.
pub fn scan<T, E>(
    root: &Path,
    dir_rel: &Path,
    cache_name: &str,
    records: Records,
    summarise: impl Fn(&str, &[u8]) -> Result<T, E>,
) -> Result<(Vec<T>, Option<CacheUpdate>), E>
where
    T: CacheLine,
    E: From<StoreError>,
{
    let dir = match fs::open_dir(root, dir_rel) {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => return Ok((Vec::new(), None)),
        Err(e) => return Err(e.into()),
    };
    let cache_rel = PathBuf::from(CACHE_DIR).join(format!("{cache_name}.idx"));
    let cache_text = read_cache(root, &cache_rel);
    let (header, cached) = index_cache(&cache_text);
    let stamp = dir.stamp()?;
    let now = unix_now();
    // Fast path: the directory is exactly as it was (same inode and mtime) and had been still
    // for two seconds when the cache was built, so no entry was added, removed or renamed since
    // (a change within the same timestamp tick as the last one is ruled out by the wait).
    if header.is_some_and(|h| h.stamp == stamp && h.built >= stamp.1 + 2) {
        let fast: Option<Vec<T>> = cached
            .values()
            .map(|(_, line)| T::from_line(line))
            .collect();
        if let Some(out) = fast {
            return Ok((out, None));
        }
    }
    let mut out = Vec::with_capacity(cached.len());
    // The cache as it should be now: borrowed cached lines for hits, new lines for misses;
    // written out only when something changed.
    let mut fresh: Vec<(u64, Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(cached.len());
    let mut changed = false;
    dir.visit(|name, kind, ino| {
        if !name.ends_with(records.suffix) {
            return Ok(());
        }
        if kind != EntryKind::File {
            // A link or anything else where a record should be: refuse, never follow.
            return Err(StoreError::NotAFile {
                path: dir.path().join(name),
            });
        }
        let hit = cached
            .get(&ino)
            .filter(|(cached_name, _)| *cached_name == name)
            .and_then(|(cached_name, line)| T::from_line(line).map(|s| (s, *cached_name, *line)));
        match hit {
            Some((summary, cached_name, line)) => {
                out.push(Ok(summary));
                fresh.push((ino, Cow::Borrowed(cached_name), Cow::Borrowed(line)));
            }
            None => {
                changed = true;
                let bytes = dir.read(name, records.max)?;
                let shown = dir_rel.join(name);
                let summary = summarise(&shown.display().to_string(), &bytes);
                if let Ok(s) = &summary {
                    fresh.push((ino, Cow::Owned(name.to_owned()), Cow::Owned(s.to_line())));
                }
                out.push(summary);
            }
        }
        Ok(())
    })?;
    let out = out.into_iter().collect::<Result<Vec<T>, E>>()?;
    // Rewrite when a record changed, or when the directory has now been still long enough for
    // the fast path and the cache does not say so yet.
    let settled = now >= stamp.1 + 2;
    let header_ok =
        header.is_some_and(|h| h.stamp == stamp && (h.built >= stamp.1 + 2 || !settled));
    let update = (changed || fresh.len() != cached.len() || !header_ok).then(|| {
        let mut lines = String::with_capacity(fresh.len() * 128);
        let _ = writeln!(
            lines,
            "{} {} {} {} {}",
            HEADER, stamp.0, stamp.1, stamp.2, now
        );
        for (ino, name, line) in &fresh {
            let _ = writeln!(lines, "{ino}\t{name}\t{line}");
        }
        CacheUpdate {
            rel: cache_rel,
            lines,
        }
    });
    Ok((out, update))
}

impl CacheUpdate {
    /// A cache file `rel` (below the vault root, under [`CACHE_DIR`]) with `lines`, to be saved
    /// with [`save`] once the command succeeded.
    pub fn new(rel: PathBuf, lines: String) -> Self {
        CacheUpdate { rel, lines }
    }
}

/// The text of cache file `rel` (below the vault root), or empty when it is missing or
/// unreadable (a cache is only ever a shortcut).
pub fn read_cache_text(root: &Path, rel: &Path) -> String {
    read_cache(root, rel)
}

/// Writes a rebuilt cache. Best effort: a cache that cannot be written only costs time later.
pub fn save(root: &Path, update: &CacheUpdate) {
    let _ = write_cache(root, &update.rel, &update.lines);
}

/// The cache file's text, or empty.
fn read_cache(root: &Path, rel: &Path) -> String {
    fs::read_bounded(root, rel, CACHE_MAX)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// Hashes inode numbers (already well spread) with one multiplication; SipHash over 100,000 keys
/// was a visible share of `status`.
#[derive(Default)]
struct InodeHasher(u64);

impl std::hash::Hasher for InodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type InodeMap<'a> = HashMap<u64, (&'a str, &'a str), std::hash::BuildHasherDefault<InodeHasher>>;

/// The cache's first line: the directory's (inode, mtime seconds, mtime nanoseconds) when it
/// was listed, and when the cache was built (Unix seconds).
#[derive(Clone, Copy)]
struct Header {
    stamp: (u64, i64, i64),
    built: i64,
}

fn parse_header(line: &str) -> Option<Header> {
    let rest = line.strip_prefix(HEADER)?.strip_prefix(' ')?;
    let mut f = rest.split(' ');
    let header = Header {
        stamp: (
            f.next()?.parse().ok()?,
            f.next()?.parse().ok()?,
            f.next()?.parse().ok()?,
        ),
        built: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(header)
}

/// Now, in Unix seconds: when a cache was built, to know when its directories had settled.
#[expect(
    clippy::disallowed_methods,
    reason = "the cache records when it was built, to know when the directory had settled"
)]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// The header and inode → (name, summary line), borrowed from the cache text.
fn index_cache(text: &str) -> (Option<Header>, InodeMap<'_>) {
    let mut map = InodeMap::default();
    let mut lines = text.lines();
    let Some(header) = lines.next().and_then(parse_header) else {
        return (None, map);
    };
    for line in lines {
        let mut parts = line.splitn(3, '\t');
        let (Some(ino), Some(name), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(ino) = ino.parse() {
            map.insert(ino, (name, rest));
        }
    }
    (Some(header), map)
}

fn write_cache(root: &Path, rel: &Path, lines: &str) -> Result<(), StoreError> {
    let dir = fs::ensure_dir(root, Path::new(CACHE_DIR), Mode::Public)?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        fs::write_atomic(
            &ignore,
            b"# Local caches of talvault; never committed.\n*\n",
            Mode::Public,
        )?;
    }
    if let Some(parent) = rel.parent() {
        fs::ensure_dir(root, parent, Mode::Public)?;
    }
    fs::write_cache_file(&root.join(rel), lines.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::RevokedEntry;

    fn entry(serial: &str) -> String {
        format!("serial: {serial}\nreason: keyCompromise\n")
    }

    fn parse(file: &str, bytes: &[u8]) -> Result<RevokedEntry, StoreError> {
        let text = String::from_utf8_lossy(bytes);
        let serial = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("serial: "))
            .ok_or_else(|| StoreError::NotAFile { path: file.into() })?;
        Ok(RevokedEntry {
            serial: serial.to_owned(),
            fingerprint: format!("sha256:{}", "0".repeat(64)),
            ca: "os".into(),
            reason: "keyCompromise".into(),
            revoked: 1,
            not_after: 2,
            file_sha256: String::new(),
        })
    }

    fn scan_saved(
        root: &Path,
        rel: &Path,
        parse: impl Fn(&str, &[u8]) -> Result<RevokedEntry, StoreError>,
    ) -> Vec<RevokedEntry> {
        let (out, update) = scan(root, rel, "prod/revocations", YAML_RECORDS, parse).unwrap();
        if let Some(u) = update {
            save(root, &u);
        }
        out
    }

    /// `rel` below `root` with revocation records 01 and 02.
    fn two_records(root: &Path, rel: &Path) {
        fs::ensure_dir(root, rel, Mode::Public).unwrap();
        for s in ["01", "02"] {
            let path = root.join(rel).join(format!("{s}.yaml"));
            fs::write_atomic(&path, entry(s).as_bytes(), Mode::Public).unwrap();
        }
    }

    #[test]
    fn cache_is_reused_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let rel = Path::new("envs/prod/revocations");
        two_records(root, rel);
        let serials = |mut v: Vec<RevokedEntry>| {
            v.sort_by(|a, b| a.serial.cmp(&b.serial));
            v.into_iter().map(|e| e.serial).collect::<Vec<_>>()
        };
        // Nothing is written until the caller saves the update.
        let (got, update) = scan(root, rel, "prod/revocations", YAML_RECORDS, parse).unwrap();
        assert_eq!(serials(got), ["01", "02"]);
        let cache = root.join(".cache/prod/revocations.idx");
        assert!(!cache.exists());
        save(root, &update.unwrap());
        assert!(cache.is_file());
        assert!(root.join(".cache/.gitignore").is_file());

        // A second scan parses nothing (a parser that always fails proves it) and has no update.
        let (again, update) = scan(
            root,
            rel,
            "prod/revocations",
            YAML_RECORDS,
            |f: &str, _: &[u8]| -> Result<RevokedEntry, StoreError> {
                Err(StoreError::NotAFile { path: f.into() })
            },
        )
        .unwrap();
        assert_eq!(again.len(), 2);
        assert!(update.is_none());

        // A replaced file (new inode) is read again; a removed one disappears.
        let path = root.join(rel).join("02.yaml");
        fs::write_atomic(&path, entry("2b").as_bytes(), Mode::Public).unwrap();
        std::fs::remove_file(root.join(rel).join("01.yaml")).unwrap();
        assert_eq!(serials(scan_saved(root, rel, parse)), ["2b"]);

        // A garbage cache is ignored.
        std::fs::write(&cache, b"talvault-index v5 1 2 3 4\nxx\tyy\n\x00").unwrap();
        assert_eq!(scan_saved(root, rel, parse).len(), 1);
    }

    #[test]
    fn a_settled_directory_is_read_from_the_cache_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let rel = Path::new("envs/prod/revocations");
        two_records(root, rel);
        let (_, update) = scan(root, rel, "prod/revocations", YAML_RECORDS, parse).unwrap();
        save(root, &update.unwrap());
        // Pretend the cache was built three seconds after the directory's last change.
        let cache = root.join(".cache/prod/revocations.idx");
        let text = std::fs::read_to_string(&cache).unwrap();
        let (head, rest) = text.split_once('\n').unwrap();
        let mut f: Vec<i64> = head
            .strip_prefix(HEADER)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        f[3] = f[1] + 3;
        let settled = format!("{HEADER} {} {} {} {}\n{rest}", f[0], f[1], f[2], f[3]);
        std::fs::write(&cache, &settled).unwrap();
        let refuse = |p: &str, _: &[u8]| -> Result<RevokedEntry, StoreError> {
            Err(StoreError::NotAFile { path: p.into() })
        };
        // Nothing is listed or parsed: a parser that always fails proves it.
        let (fast, update) = scan(root, rel, "prod/revocations", YAML_RECORDS, refuse).unwrap();
        assert_eq!(fast.len(), 2);
        assert!(update.is_none());
        // A new record changes the directory: it is listed and parsed again.
        let path = root.join(rel).join("03.yaml");
        fs::write_atomic(&path, entry("03").as_bytes(), Mode::Public).unwrap();
        assert!(scan(root, rel, "prod/revocations", YAML_RECORDS, refuse).is_err());
        assert_eq!(scan_saved(root, rel, parse).len(), 3);
        // A header from another directory (another inode) is not trusted either.
        std::fs::write(&cache, settled.replacen(&f[0].to_string(), "1", 1)).unwrap();
        assert!(scan(root, rel, "prod/revocations", YAML_RECORDS, refuse).is_err());
    }

    #[test]
    fn links_in_record_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let rel = Path::new("envs/prod/certs");
        fs::ensure_dir(root, rel, Mode::Public).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join(rel).join("01.yaml")).unwrap();
        let err = scan(root, rel, "prod/certs", YAML_RECORDS, parse).unwrap_err();
        assert!(matches!(err, StoreError::NotAFile { .. }), "{err:?}");
        // A missing directory is simply empty.
        assert!(
            scan(
                root,
                Path::new("envs/prod/none"),
                "prod/none",
                YAML_RECORDS,
                parse
            )
            .unwrap()
            .0
            .is_empty()
        );
    }
}
