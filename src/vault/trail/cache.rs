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
//!
//! A command that writes events folds them into the state it derived (`ChainState::fold`:
//! only events written on the heads, which come last in any causal order) and caches the result
//! under the stamps its commit left; since those directories have not been still for two
//! seconds, that cache also records the digest of every event file name below them, and a
//! reader uses it only while the listing still gives that digest.

use super::*;

const HEADER: &str = "talvault-chain v1";

/// The cache file of `env` for a state derived with keys or on structure.
fn cache_rel(env: &str, keyed: bool) -> std::path::PathBuf {
    std::path::Path::new(store::index::CACHE_DIR)
        .join(env)
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
    /// The event file names' digest (`listing`), for a cache written before the
    /// directories had been still for two seconds.
    names: Option<String>,
    /// How many entries the month directories held when the state was derived.
    pub(super) entries: usize,
}

/// How many entries the month directories hold and, with `digest`, the SHA-256 of every
/// entry name below them, `yyyy/mm/name` one per line, in directory order: an unchanged
/// directory lists in the same order, and a changed one gives another digest (at worst a
/// reordering is taken for a change, and the state derived again).
pub(super) fn listing(
    root: &std::path::Path,
    env_dir: &std::path::Path,
    digest: bool,
) -> Result<(usize, Option<String>), StoreError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut count = 0;
    let months = match audit_dir::months(root, env_dir) {
        Err(StoreError::NotFound { .. }) => Vec::new(),
        other => other?,
    };
    for (year, month) in months {
        let dir = store::fs::open_dir(
            root,
            &env_dir.join(audit_dir::AUDIT_DIR).join(&year).join(&month),
        )?;
        if digest {
            ctx.update(format!("{year}/{month}/\n").as_bytes());
        }
        dir.visit(|name, _, _| {
            count += 1;
            if digest {
                ctx.update(name.as_bytes());
                ctx.update(b"\n");
            }
            Ok(())
        })?;
    }
    Ok((
        count,
        digest.then(|| crate::hex::encode(ctx.finish().as_ref())),
    ))
}

impl Vault {
    /// The cache key of `env`'s trail now.
    pub(super) fn chain_cache_key(&self, env: &Env, keyed: bool) -> Result<CacheKey, VaultError> {
        let stamps = match audit_dir::month_stamps(&self.root, &env.dir()) {
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        Ok(CacheKey {
            rel: cache_rel(env.as_str(), keyed),
            newest: stamps.iter().map(|(_, (_, s, _))| *s).max().unwrap_or(0),
            stamps: stamps_line(&stamps),
            names: None,
            entries: 0,
        })
    }

    /// The cached state for `key`, if one is there, current and genuine.
    pub(super) fn cached_chain(
        &self,
        key: &CacheKey,
        keys: Option<&Keyring>,
    ) -> Option<(ChainState, usize)> {
        let text = store::index::read_cache_text(&self.root, &key.rel);
        let mut lines = text.splitn(5, '\n');
        let built: i64 = lines
            .next()?
            .strip_prefix(HEADER)?
            .strip_prefix(" built ")?
            .parse()
            .ok()?;
        let stamps = lines.next()?;
        let names_line = lines.next()?;
        let (entries, names) = names_line.strip_prefix("names ")?.split_once(' ')?;
        let entries: usize = entries.parse().ok()?;
        let stored_tag = lines.next()?.strip_prefix("tag ")?;
        let body = lines.next()?;
        if stamps != key.stamps {
            return None;
        }
        // Not still when it was written (a command's own commit): the listing must match.
        if built < key.newest + 2
            && (names == "-"
                || listing(&self.root, &env_dir(&key.rel)?, true).ok()?
                    != (entries, Some(names.to_owned())))
        {
            return None;
        }
        let digest =
            crate::digest::sha256_hex(format!("{stamps}\n{names_line}\n{body}").as_bytes());
        if stored_tag != tag(keys, &digest) {
            return None;
        }
        let state = ChainState::from_cache(body)?;
        // A state derived with keys says it was authenticated exactly when main keys are held.
        if state.authenticated != keys.is_some_and(Keyring::has_main) {
            return None;
        }
        // Checked by its listing, and the directories have been still since: saved again as a
        // still cache, so that later commands need not list them (the tag does not cover the
        // build time).
        let now = store::index::unix_now();
        if built < key.newest + 2 && now >= key.newest + 2 {
            let rest = &text[text.find('\n')?..];
            self.caches
                .borrow_mut()
                .push(store::index::CacheUpdate::new(
                    key.rel.clone(),
                    format!("{HEADER} built {now}{rest}"),
                ));
        }
        Some((state, entries))
    }

    /// Queues `state` to be cached under `key` once the command succeeds.
    pub(super) fn cache_chain(&self, key: CacheKey, keys: Option<&Keyring>, state: &ChainState) {
        let body = state.to_cache();
        let names_line = format!(
            "names {} {}",
            key.entries,
            key.names.as_deref().unwrap_or("-")
        );
        let digest =
            crate::digest::sha256_hex(format!("{}\n{names_line}\n{body}", key.stamps).as_bytes());
        let text = format!(
            "{HEADER} built {}\n{}\n{names_line}\ntag {}\n{body}",
            store::index::unix_now(),
            key.stamps,
            tag(keys, &digest)
        );
        self.caches
            .borrow_mut()
            .push(store::index::CacheUpdate::new(key.rel, text));
    }
}

/// The environment directory a cache file belongs to (`.cache/<env>/…` → `envs/<env>`).
fn env_dir(rel: &std::path::Path) -> Option<std::path::PathBuf> {
    let env = rel.parent()?.file_name()?;
    Some(std::path::Path::new("envs").join(env))
}

impl Vault {
    /// After a commit: folds the events it wrote into each environment's derived state and
    /// caches the result (best effort: anything unexpected leaves the next command to derive
    /// the state again).
    pub(in crate::vault) fn fold_committed(
        &self,
        staged: Vec<(String, std::path::PathBuf, EventSummary)>,
        written: &[std::path::PathBuf],
    ) {
        let mut by_env: Vec<(String, Vec<EventSummary>)> = Vec::new();
        let entries_before = std::mem::take(&mut *self.chain_entries.borrow_mut());
        let mut complete: std::collections::HashMap<String, bool> = Default::default();
        for (env, file, summary) in staged {
            let ok = written.contains(&self.root.join(&file));
            *complete.entry(env.clone()).or_insert(true) &= ok;
            match by_env.iter_mut().find(|(e, _)| *e == env) {
                Some((_, list)) => list.push(summary),
                None => by_env.push((env, vec![summary])),
            }
        }
        for (env, events) in by_env {
            if !complete.get(&env).copied().unwrap_or(false) {
                continue;
            }
            let Some(pre) = self.chains.borrow().get(&env).cloned() else {
                continue;
            };
            let mut state = (*pre).clone();
            if !events.iter().all(|e| state.fold(e)) {
                continue;
            }
            let keys = self.audit_keys.borrow().get(&env).cloned();
            let Ok(name) = store::EnvName::parse(&env) else {
                continue;
            };
            let dir = super::super::env_dir(&name);
            let Ok(stamps) = audit_dir::month_stamps(&self.root, &dir) else {
                continue;
            };
            // Every entry of the trail is one the state was derived from, or one this commit
            // wrote: an event that arrived meanwhile (a `git pull` while the command ran) leaves
            // the state to be derived again.
            let Ok((entries, Some(names))) = listing(&self.root, &dir, true) else {
                continue;
            };
            if Some(entries) != entries_before.get(&env).map(|n| n + events.len()) {
                continue;
            }
            let key = CacheKey {
                rel: cache_rel(&env, keys.is_some()),
                newest: stamps.iter().map(|(_, (_, s, _))| *s).max().unwrap_or(0),
                stamps: stamps_line(&stamps),
                names: Some(names),
                entries,
            };
            self.cache_chain(key, keys.as_deref(), &state);
        }
    }
}
