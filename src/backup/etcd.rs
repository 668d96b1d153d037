//! PURE: etcd snapshots (`etcdctl snapshot save`, `talosctl etcd snapshot`) recognised and
//! checked as a stream, trusting nothing in them and holding none of them: a bbolt image of
//! `pgid × pageSize` bytes followed by the SHA-256 of exactly those bytes
//! (`reference/etcd-snapshots.md` §1, §2, §6). [`Scan`] is fed the plaintext slice by slice and
//! also takes the whole stream's SHA-256 on the way, so one pass over the bytes gives both. It
//! must not do I/O or keep more than a few fixed buffers.

use std::fmt;

use crate::digest::Sha256Stream;
use crate::hex;

/// The bytes of a bbolt meta page that matter: the 16-byte page header and the meta struct up
/// to and including its checksum (bbolt internal/common/page.go `Page`, meta.go `Meta`).
const META_LEN: usize = 80;
/// The SHA-256 that `snapshot save` appends (etcd clientv3 `Maintenance.Snapshot`).
pub const TRAILER_LEN: u64 = 32;
/// bbolt `common.Magic`.
const MAGIC: u32 = 0xED0C_DAED;
/// bbolt `common.Version`.
const VERSION: u32 = 2;
/// bbolt page flag of a meta page.
const FLAG_META: u16 = 0x04;
/// bbolt `PgidNoFreelist`: etcd sets `NoFreelistSync` on Linux, so snapshots carry this.
const NO_FREELIST: u64 = u64::MAX;
/// Page sizes accepted (powers of two; a policy choice, reference §2).
const PAGE_SIZES: std::ops::RangeInclusive<u32> = 1024..=65536;
/// The largest database image accepted: 1 TiB, far above etcd's 8 GiB quota ceiling, so that a
/// forged header cannot make the length arithmetic mean anything absurd.
pub const MAX_DB_SIZE: u64 = 1 << 40;

/// The facts of bbolt meta page 0 (the snapshot's header), little-endian as written on amd64
/// and arm64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// bbolt page size (the OS page size when the database was created).
    pub page_size: u32,
    /// Root bucket page.
    pub root: u64,
    /// Freelist page, or `u64::MAX` (none).
    pub freelist: u64,
    /// High-water mark: the number of pages.
    pub pgid: u64,
    /// bbolt transaction id (not the etcd revision).
    pub txid: u64,
}

impl Meta {
    /// Length of the database image: `pgid × pageSize` (checked when parsed).
    pub fn db_size(&self) -> u64 {
        self.pgid.saturating_mul(u64::from(self.page_size))
    }
}

/// Why the first page of something that starts like a bbolt database is not a usable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The stream ends inside the first meta page.
    TooShort,
    /// Page id is not 0 (or 1 for the second meta page).
    PageId,
    /// Not bbolt format version 2.
    Version,
    /// Page size not a power of two between 1 KiB and 64 KiB.
    PageSize,
    /// The FNV-1a checksum of the meta page does not match.
    Checksum,
    /// Root or freelist page outside the image, or fewer pages than a database has.
    Pages,
    /// The image would be larger than [`MAX_DB_SIZE`].
    TooLarge,
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderProblem::TooShort => "it ends inside its first page",
            HeaderProblem::PageId => "wrong page id",
            HeaderProblem::Version => "not bbolt format version 2",
            HeaderProblem::PageSize => "page size is not a power of two between 1 KiB and 64 KiB",
            HeaderProblem::Checksum => "meta page checksum mismatch",
            HeaderProblem::Pages => "root or freelist page outside the database",
            HeaderProblem::TooLarge => "database size above 1 TiB",
        })
    }
}

fn u32_at(b: &[u8; META_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; META_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// FNV-1a 64, the non-cryptographic checksum bbolt keeps in each meta page (`Meta.Sum64`:
/// Go `hash/fnv.New64a` over the meta struct up to the checksum field, page bytes 16..72).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `page` claims to be a bbolt meta page: the meta flag and the magic. Anything that
/// does not is some other file, not a damaged database.
fn looks_like_bbolt(page: &[u8]) -> bool {
    page.len() >= 20
        && u16::from_le_bytes([page[8], page[9]]) == FLAG_META
        && u32::from_le_bytes([page[16], page[17], page[18], page[19]]) == MAGIC
}

/// Parses and checks a meta page that claims to be bbolt (bbolt `Meta.Validate`, plus the
/// bounds of reference §6 step 1).
fn parse_meta(page: &[u8; META_LEN], id: u64) -> Result<Meta, HeaderProblem> {
    if u64_at(page, 0) != id {
        return Err(HeaderProblem::PageId);
    }
    if u32_at(page, 20) != VERSION {
        return Err(HeaderProblem::Version);
    }
    let page_size = u32_at(page, 24);
    if !page_size.is_power_of_two() || !PAGE_SIZES.contains(&page_size) {
        return Err(HeaderProblem::PageSize);
    }
    if u64_at(page, 72) != fnv1a64(&page[16..72]) {
        return Err(HeaderProblem::Checksum);
    }
    let meta = Meta {
        page_size,
        root: u64_at(page, 32),
        freelist: u64_at(page, 48),
        pgid: u64_at(page, 56),
        txid: u64_at(page, 64),
    };
    // Pages 0 and 1 are the meta pages; the root and a freelist lie above them, below pgid.
    let inside = |p: u64| p >= 2 && p < meta.pgid;
    if !inside(meta.root) || !(meta.freelist == NO_FREELIST || inside(meta.freelist)) {
        return Err(HeaderProblem::Pages);
    }
    match meta.pgid.checked_mul(u64::from(page_size)) {
        Some(n) if n <= MAX_DB_SIZE => Ok(meta),
        _ => Err(HeaderProblem::TooLarge),
    }
}

/// What a stream turned out to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a bbolt database: some other file.
    NotEtcd,
    /// An etcd snapshot whose appended SHA-256 matches its image, exactly as `snapshot save`
    /// writes it.
    Snapshot {
        /// Meta page 0.
        meta: Meta,
        /// The SHA-256 of the image (the trailer, checked).
        sha256: [u8; 32],
    },
    /// Starts like a bbolt database, but its first page is not a valid header.
    BadHeader(HeaderProblem),
    /// Shorter than its header promises (image plus trailer). `snapshot save`'s own size test
    /// (length ≡ 32 mod 512) misses cuts of whole pages; this does not (reference §4).
    Truncated {
        /// Meta page 0.
        meta: Meta,
        /// Bytes read.
        len: u64,
    },
    /// Exactly the image, no trailer: a snapshot cut by exactly 32 bytes, or a copy of a data
    /// directory's `member/snap/db`.
    NoTrailer {
        /// Meta page 0.
        meta: Meta,
    },
    /// More bytes than image plus trailer: something appended, or a data-directory copy that
    /// bbolt had grown ahead of use.
    TrailingData {
        /// Meta page 0.
        meta: Meta,
        /// Bytes read.
        len: u64,
    },
    /// The trailer is not the SHA-256 of the image: the snapshot is damaged.
    HashMismatch {
        /// Meta page 0.
        meta: Meta,
        /// The trailer.
        stated: [u8; 32],
        /// What the image hashes to.
        computed: [u8; 32],
    },
    /// The second meta page does not match the first (`Tx.WriteTo` writes the same meta with
    /// id 1 and txid − 1).
    Meta1Mismatch {
        /// Meta page 0.
        meta: Meta,
    },
}

impl Verdict {
    /// Meta page 0, when the header was readable.
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Verdict::NotEtcd | Verdict::BadHeader(_) => None,
            Verdict::Snapshot { meta, .. }
            | Verdict::Truncated { meta, .. }
            | Verdict::NoTrailer { meta }
            | Verdict::TrailingData { meta, .. }
            | Verdict::HashMismatch { meta, .. }
            | Verdict::Meta1Mismatch { meta } => Some(meta),
        }
    }

    /// Whether this could be a copy of a data directory's `member/snap/db` (which has no
    /// trailer and may be longer than its image): the only shapes accepted when the operator
    /// declares such a copy. A cut-short image never is.
    pub fn could_be_db_copy(&self) -> bool {
        matches!(
            self,
            Verdict::NoTrailer { .. } | Verdict::TrailingData { .. } | Verdict::Snapshot { .. }
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |h: &[u8; 32]| hex::encode(&h[..6]);
        match self {
            Verdict::NotEtcd => f.write_str("not an etcd snapshot"),
            Verdict::Snapshot { sha256, .. } => {
                write!(f, "etcd snapshot, SHA-256 {} verified", short(sha256))
            }
            Verdict::BadHeader(p) => write!(
                f,
                "it starts like an etcd (bbolt) database, but its header is invalid: {p}"
            ),
            Verdict::Truncated { meta, len } => write!(
                f,
                "the etcd snapshot is truncated: {len} bytes, where its header promises {} ({} of database and a 32-byte SHA-256)",
                meta.db_size() + TRAILER_LEN,
                meta.db_size()
            ),
            Verdict::NoTrailer { meta } => write!(
                f,
                "the etcd database ({} bytes) has no SHA-256 trailer: a snapshot cut short by exactly 32 bytes, or a copy of member/snap/db",
                meta.db_size()
            ),
            Verdict::TrailingData { meta, len } => write!(
                f,
                "{} bytes follow the etcd snapshot's SHA-256 trailer: something was appended, or this is a copy of member/snap/db",
                len - (meta.db_size() + TRAILER_LEN).min(*len)
            ),
            Verdict::HashMismatch {
                stated, computed, ..
            } => write!(
                f,
                "the etcd snapshot is damaged: its SHA-256 trailer says {}…, its contents hash to {}…",
                short(stated),
                short(computed)
            ),
            Verdict::Meta1Mismatch { .. } => f.write_str(
                "the etcd snapshot is damaged: its second meta page does not match the first",
            ),
        }
    }
}

/// What [`Scan::finish`] found: the whole stream's length and SHA-256, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes read.
    pub size: u64,
    /// SHA-256 of every byte read.
    pub sha256: [u8; 32],
    /// What the stream is.
    pub verdict: Verdict,
}

/// What the scan knows about the stream so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Fewer than 80 bytes seen.
    Unknown,
    /// Some other file, or a bad header: only the whole-stream hash is taken.
    Other(Option<HeaderProblem>),
    /// A bbolt image of `meta.db_size()` bytes, maybe followed by a trailer.
    Bbolt(Meta),
}

/// Reads a stream slice by slice: its SHA-256 and length, and whether it is an intact etcd
/// snapshot. Holds three small buffers, whatever the stream's size.
#[derive(Clone)]
pub struct Scan {
    hash: Sha256Stream,
    total: u64,
    kind: Kind,
    head: [u8; META_LEN],
    meta1: [u8; META_LEN],
    meta1_len: usize,
    db_sha256: Option<[u8; 32]>,
    trailer: [u8; 32],
}

impl Default for Scan {
    fn default() -> Self {
        Self::new()
    }
}

impl Scan {
    /// Nothing read yet.
    pub fn new() -> Self {
        Scan {
            hash: Sha256Stream::new(),
            total: 0,
            kind: Kind::Unknown,
            head: [0; META_LEN],
            meta1: [0; META_LEN],
            meta1_len: 0,
            db_sha256: None,
            trailer: [0; 32],
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Takes the next bytes of the stream.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = match self.kind {
                Kind::Unknown => {
                    let at = self.total as usize;
                    let take = bytes.len().min(META_LEN - at);
                    self.head[at..at + take].copy_from_slice(&bytes[..take]);
                    if at + take == META_LEN {
                        self.kind = if looks_like_bbolt(&self.head) {
                            match parse_meta(&self.head, 0) {
                                Ok(meta) => Kind::Bbolt(meta),
                                Err(p) => Kind::Other(Some(p)),
                            }
                        } else {
                            Kind::Other(None)
                        };
                    }
                    take
                }
                Kind::Other(_) => bytes.len(),
                Kind::Bbolt(meta) => {
                    let n = meta.db_size();
                    if self.total < n {
                        // The image: up to its end, capturing meta page 1 on the way.
                        let take = clamp(n - self.total, bytes.len());
                        self.capture_meta1(&meta, &bytes[..take]);
                        take
                    } else if self.total < n + TRAILER_LEN {
                        let at = (self.total - n) as usize;
                        let take = bytes.len().min(32 - at);
                        self.trailer[at..at + take].copy_from_slice(&bytes[..take]);
                        take
                    } else {
                        bytes.len()
                    }
                }
            };
            self.hash.update(&bytes[..take]);
            self.total += take as u64;
            if let Kind::Bbolt(meta) = self.kind
                && self.total == meta.db_size()
                && self.db_sha256.is_none()
            {
                // The image's own digest is the whole stream's so far.
                self.db_sha256 = Some(self.hash.clone().finish());
            }
            bytes = &bytes[take..];
        }
    }

    /// Copies the part of `piece` (which starts at `self.total`) that falls in meta page 1.
    fn capture_meta1(&mut self, meta: &Meta, piece: &[u8]) {
        let window = u64::from(meta.page_size);
        let (start, end) = (self.total, self.total + piece.len() as u64);
        let from = start.max(window);
        let to = end.min(window + META_LEN as u64);
        if from < to {
            let (src, dst) = ((from - start) as usize, (from - window) as usize);
            let len = (to - from) as usize;
            self.meta1[dst..dst + len].copy_from_slice(&piece[src..src + len]);
            self.meta1_len = self.meta1_len.max(dst + len);
        }
    }

    /// The whole stream's digest and length, and the verdict.
    pub fn finish(self) -> Outcome {
        let size = self.total;
        let verdict = match self.kind {
            Kind::Unknown if looks_like_bbolt(&self.head[..size as usize]) => {
                Verdict::BadHeader(HeaderProblem::TooShort)
            }
            Kind::Unknown | Kind::Other(None) => Verdict::NotEtcd,
            Kind::Other(Some(p)) => Verdict::BadHeader(p),
            Kind::Bbolt(meta) => self.judge(meta),
        };
        Outcome {
            size,
            sha256: self.hash.finish(),
            verdict,
        }
    }

    /// Reference §6 steps 3–5, in the order that names the most basic problem first.
    fn judge(&self, meta: Meta) -> Verdict {
        let n = meta.db_size();
        let len = self.total;
        if len < n || (len > n && len < n + TRAILER_LEN) {
            return Verdict::Truncated { meta, len };
        }
        if len == n {
            return Verdict::NoTrailer { meta };
        }
        if len > n + TRAILER_LEN {
            return Verdict::TrailingData { meta, len };
        }
        let computed = self.db_sha256.unwrap_or([0; 32]);
        if computed != self.trailer {
            return Verdict::HashMismatch {
                meta,
                stated: self.trailer,
                computed,
            };
        }
        let meta1_ok = self.meta1_len == META_LEN
            && parse_meta(&self.meta1, 1).is_ok_and(|m1| {
                m1.page_size == meta.page_size
                    && m1.pgid == meta.pgid
                    && m1.txid.checked_add(1) == Some(meta.txid)
            });
        if !meta1_ok {
            return Verdict::Meta1Mismatch { meta };
        }
        Verdict::Snapshot {
            meta,
            sha256: computed,
        }
    }
}

/// `min(remaining, available)` as a slice length.
fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `etcdctl snapshot save` of a 50-key etcd 3.4.23 (tests/data/etcd/README.md).
    const SNAPSHOT: &[u8] = include_bytes!("../../tests/data/etcd/snapshot-3.4.23.db");

    /// Feeds `bytes` in pieces of `step` bytes.
    fn scan(bytes: &[u8], step: usize) -> Outcome {
        let mut s = Scan::new();
        for piece in bytes.chunks(step.max(1)) {
            s.update(piece);
        }
        s.finish()
    }

    #[test]
    fn the_vector_is_an_intact_snapshot_read_in_any_pieces() {
        let image = SNAPSHOT.len() - 32;
        for step in [1, 7, 80, 81, 4096, 4097, 65536] {
            let out = scan(SNAPSHOT, step);
            assert_eq!(out.size, SNAPSHOT.len() as u64);
            assert_eq!(out.sha256, crate::digest::sha256(SNAPSHOT), "{step}");
            let Verdict::Snapshot { meta, sha256 } = out.verdict else {
                panic!("{step}: {:?}", out.verdict);
            };
            assert_eq!(meta.page_size, 4096);
            assert_eq!(meta.db_size(), image as u64);
            assert_eq!(meta.freelist, NO_FREELIST);
            assert_eq!(&sha256[..], &SNAPSHOT[image..]);
        }
    }

    /// Reference §6 "Golden tests": each damage is named for what it is.
    #[test]
    fn damage_is_named() {
        let n = SNAPSHOT.len() - 32;
        let mut flipped = SNAPSHOT.to_vec();
        flipped[9000] ^= 1;
        assert!(matches!(
            scan(&flipped, 4096).verdict,
            Verdict::HashMismatch { .. }
        ));
        for cut in [1, 31, 4096, n - 100] {
            let v = scan(&SNAPSHOT[..SNAPSHOT.len() - cut], 1000).verdict;
            assert!(matches!(v, Verdict::Truncated { .. }), "cut {cut}: {v:?}");
            assert!(!v.could_be_db_copy());
        }
        // Trailer cut exactly, which is also what a raw member/snap/db copy looks like.
        let raw = scan(&SNAPSHOT[..n], 333).verdict;
        assert!(matches!(raw, Verdict::NoTrailer { .. }), "{raw:?}");
        assert!(raw.could_be_db_copy());
        let mut appended = SNAPSHOT.to_vec();
        appended.extend_from_slice(b"more");
        assert!(matches!(
            scan(&appended, 4096).verdict,
            Verdict::TrailingData { len, .. } if len == SNAPSHOT.len() as u64 + 4
        ));
        // A second meta page that was edited (and re-checksummed would still need txid − 1).
        let mut meta1 = SNAPSHOT.to_vec();
        meta1[4096 + 64] ^= 1;
        let mut fixed = meta1[..n].to_vec();
        let digest = crate::digest::sha256(&fixed);
        fixed.extend_from_slice(&digest);
        assert_eq!(
            scan(&fixed, 4096).verdict,
            Verdict::Meta1Mismatch {
                meta: *scan(SNAPSHOT, 4096).verdict.meta().unwrap()
            }
        );
    }

    #[test]
    fn headers_are_checked_before_anything_is_believed() {
        let edit = |at: usize, value: &[u8]| {
            let mut b = SNAPSHOT.to_vec();
            b[at..at + value.len()].copy_from_slice(value);
            scan(&b, 4096).verdict
        };
        // Any edit of the meta struct breaks its checksum.
        assert_eq!(
            edit(56, &[0xff; 8]),
            Verdict::BadHeader(HeaderProblem::Checksum)
        );
        assert_eq!(
            edit(20, &[3, 0, 0, 0]),
            Verdict::BadHeader(HeaderProblem::Version)
        );
        assert_eq!(edit(0, &[1]), Verdict::BadHeader(HeaderProblem::PageId));
        assert_eq!(
            edit(24, &[0, 3, 0, 0]),
            Verdict::BadHeader(HeaderProblem::PageSize)
        );
        // A huge pgid with a valid checksum: refused by size, no overflow.
        let mut huge = SNAPSHOT[..80].to_vec();
        huge[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
        let sum = fnv1a64(&huge[16..72]);
        huge[72..80].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            scan(&huge, 80).verdict,
            Verdict::BadHeader(HeaderProblem::TooLarge)
        );
        assert_eq!(
            scan(&SNAPSHOT[..50], 7).verdict,
            Verdict::BadHeader(HeaderProblem::TooShort)
        );
        // Without the meta flag and magic it is simply another file.
        for other in [&b""[..], b"hello", &[0u8; 200], &SNAPSHOT[1..]] {
            let out = scan(other, 64);
            assert_eq!(out.verdict, Verdict::NotEtcd);
            assert_eq!(out.sha256, crate::digest::sha256(other));
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let n = SNAPSHOT.len() - 32;
        let text = scan(&SNAPSHOT[..SNAPSHOT.len() - 4096], 4096)
            .verdict
            .to_string();
        assert!(
            text.contains("truncated") && text.contains("32800"),
            "{text}"
        );
        let text = scan(&SNAPSHOT[..n], 4096).verdict.to_string();
        assert!(text.contains("no SHA-256 trailer"), "{text}");
    }
}
