//! The derived chain state, cached: `.cache/<env>/chain-keys.state` (derived with the audit
//! keys) and `chain-structure.state` (on structure alone), so that a command on an unchanged
//! trail reads one file instead of summarising and ordering every event and checking every MAC.
//!
//! A cache is used only when every month directory of the trail has the stamp (inode, mtime)
//! it had when the state was derived, and had been still for two seconds by then (the rule the
//! record caches follow: a change within the same clock tick cannot hide), when it is of the
//! same kind, and when its tag verifies: with keys, HMACs under every key held
//! (`Keyring::cache_tag`), so a cache written with other keys or edited is never used; on
//! structure, a SHA-256. Like the record caches it trusts that an event file is not rewritten in
//! place without its directory changing; `audit verify` never uses it and reads every event.
//! It is saved only once the command that derived it has succeeded.

use super::*;

const HEADER: &str = "talvault-chain v1";

/// The cache file of `env` for a state derived with keys or on structure.
fn cache_rel(env: &Env, keyed: bool) -> std::path::PathBuf {
    std::path::Path::new(store::index::CACHE_DIR)
        .join(env.as_str())
        .join(if keyed {
            "chain-keys.state"
        } else {
            "chain-structure.state"
        })
}

/// The stamps line: each month directory with its stamp.
fn stamps_line(stamps: &[(String, audit_dir::Stamp)]) -> String {
    let dirs: Vec<String> = stamps
        .iter()
        .map(|(m, (ino, s, ns))| format!("{m}:{ino}:{s}:{ns}"))
        .collect();
    format!("dirs {}", dirs.join(","))
}

fn tag(keys: Option<&Keyring>, digest: &str) -> String {
    match keys {
        Some(k) => k.cache_tag(digest),
        None => format!("sha256:{digest}"),
    }
}

/// Where a derived state would be cached, and under which stamps.
pub(super) struct CacheKey {
    rel: std::path::PathBuf,
    stamps: String,
    /// The newest month directory's mtime (seconds).
    newest: i64,
}

impl Vault {
    /// The cache key of `env`'s trail now.
    pub(super) fn chain_cache_key(&self, env: &Env, keyed: bool) -> Result<CacheKey, VaultError> {
        let stamps = match audit_dir::month_stamps(&self.root, &env.dir()) {
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        Ok(CacheKey {
            rel: cache_rel(env, keyed),
            newest: stamps.iter().map(|(_, (_, s, _))| *s).max().unwrap_or(0),
            stamps: stamps_line(&stamps),
        })
    }

    /// The cached state for `key`, if one is there, current and genuine.
    pub(super) fn cached_chain(
        &self,
        key: &CacheKey,
        keys: Option<&Keyring>,
    ) -> Option<ChainState> {
        let text = store::index::read_cache_text(&self.root, &key.rel);
        let mut lines = text.splitn(4, '\n');
        let built: i64 = lines
            .next()?
            .strip_prefix(HEADER)?
            .strip_prefix(" built ")?
            .parse()
            .ok()?;
        let stamps = lines.next()?;
        let stored_tag = lines.next()?.strip_prefix("tag ")?;
        let body = lines.next()?;
        if stamps != key.stamps || built < key.newest + 2 {
            return None;
        }
        let digest = crate::digest::sha256_hex(format!("{stamps}\n{body}").as_bytes());
        if stored_tag != tag(keys, &digest) {
            return None;
        }
        let state = ChainState::from_cache(body)?;
        // A state derived with keys says it was authenticated exactly when main keys are held.
        (state.authenticated == keys.is_some_and(Keyring::has_main)).then_some(state)
    }

    /// Queues `state` to be cached under `key` once the command succeeds.
    pub(super) fn cache_chain(&self, key: CacheKey, keys: Option<&Keyring>, state: &ChainState) {
        let body = state.to_cache();
        let digest = crate::digest::sha256_hex(format!("{}\n{body}", key.stamps).as_bytes());
        let text = format!(
            "{HEADER} built {}\n{}\ntag {}\n{body}",
            store::index::unix_now(),
            key.stamps,
            tag(keys, &digest)
        );
        self.caches
            .borrow_mut()
            .push(store::index::CacheUpdate::new(key.rel, text));
    }
}
