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
//! only main events written on the heads under the newest epoch, which come last in any causal
//! order), when the trail holds exactly the entries it held when the command staged its first
//! event (itself unchanged since the state was derived) plus the ones the commit wrote, and
//! caches the result under the stamps its commit left; since those directories have not been
//! still for two seconds, that cache also records the digest of every entry name below them,
//! and a reader uses it only while the listing still gives that digest.

use super::*;
use crate::vault::Basis;

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
    /// When the stamps were read (Unix seconds): a cache is "still" when this is two seconds
    /// past the newest stamp.
    built: i64,
    pub(super) stamps: String,
    /// The newest month directory's mtime (seconds).
    newest: i64,
    /// How many entries the month directories held, and the digest of their names
    /// (`names_digest`), for a cache written before the directories had been still.
    names: Option<(usize, String)>,
}

/// Every entry below the month directories, as `yyyy/mm/name`, sorted.
pub(super) fn trail_names(
    root: &std::path::Path,
    env_dir: &std::path::Path,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (year, month) in audit_dir::months(root, env_dir)? {
        let dir = store::fs::open_dir(
            root,
            &env_dir.join(audit_dir::AUDIT_DIR).join(&year).join(&month),
        )?;
        dir.visit(|name, _, _| {
            out.push(format!("{year}/{month}/{name}"));
            Ok(())
        })?;
    }
    out.sort_unstable();
    Ok(out)
}

/// The SHA-256 of sorted names, one per line.
fn names_digest(names: &[String]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for n in names {
        ctx.update(n.as_bytes());
        ctx.update(b"\n");
    }
    crate::hex::encode(ctx.finish().as_ref())
}

impl Vault {
    /// The cache key of the trail of the environment in `env_dir` now.
    fn cache_key_of(
        &self,
        env: &str,
        env_dir: &std::path::Path,
        keyed: bool,
    ) -> Result<CacheKey, VaultError> {
        // Before the stamps: the listing or derivation that follows sees every change made up
        // to then.
        let built = store::index::unix_now();
        let stamps = audit_dir::month_stamps(&self.root, env_dir)?;
        Ok(CacheKey {
            rel: cache_rel(env, keyed),
            built,
            newest: stamps.iter().map(|(_, (_, s, _))| *s).max().unwrap_or(0),
            stamps: stamps_line(&stamps),
            names: None,
        })
    }

    /// The cache key of `env`'s trail now.
    pub(super) fn chain_cache_key(&self, env: &Env, keyed: bool) -> Result<CacheKey, VaultError> {
        self.cache_key_of(env.as_str(), &env.dir(), keyed)
    }

    /// The cached state for `key`, if one is there, current and genuine.
    pub(super) fn cached_chain(
        &self,
        key: &CacheKey,
        keys: Option<&Keyring>,
    ) -> Option<(ChainState, Basis)> {
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
        let stored_tag = lines.next()?.strip_prefix("tag ")?;
        let body = lines.next()?;
        if stamps != key.stamps {
            return None;
        }
        // Not still when it was written (a command's own commit): the listing must match.
        let still = built >= key.newest + 2;
        let basis = if still {
            Basis::Stamps(key.stamps.clone())
        } else {
            let (count, digest) = names_line.strip_prefix("names ")?.split_once(' ')?;
            let names = trail_names(&self.root, &env_dir(&key.rel)?).ok()?;
            if count != names.len().to_string() || digest != names_digest(&names) {
                return None;
            }
            Basis::Names(digest.to_owned())
        };
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
        // Checked by a listing made after the directories had been still for two seconds:
        // saved again as a still cache, so that later commands need not list them (the tag does
        // not cover the build time).
        if !still && key.built >= key.newest + 2 {
            let rest = &text[text.find('\n')?..];
            self.caches
                .borrow_mut()
                .push(store::index::CacheUpdate::new(
                    key.rel.clone(),
                    format!("{HEADER} built {}{rest}", key.built),
                ));
        }
        Some((state, basis))
    }

    /// The basis of a state derived from the events under `key`: their stamps if the
    /// directories had been still for two seconds when they were read, else none (a change
    /// within the same clock tick could hide, so the state is not folded).
    pub(super) fn derived_basis(key: &CacheKey) -> Option<Basis> {
        (key.built >= key.newest + 2).then(|| Basis::Stamps(key.stamps.clone()))
    }

    /// Queues `state` to be cached under `key` once the command succeeds.
    pub(super) fn cache_chain(&self, key: CacheKey, keys: Option<&Keyring>, state: &ChainState) {
        let body = state.to_cache();
        let names_line = match &key.names {
            Some((count, digest)) => format!("names {count} {digest}"),
            None => "names -".to_owned(),
        };
        let digest =
            crate::digest::sha256_hex(format!("{}\n{names_line}\n{body}", key.stamps).as_bytes());
        let text = format!(
            "{HEADER} built {}\n{}\n{names_line}\ntag {}\n{body}",
            key.built,
            key.stamps,
            tag(keys, &digest)
        );
        self.caches
            .borrow_mut()
            .push(store::index::CacheUpdate::new(key.rel, text));
    }

    /// When a command stages its first event in `env`: the trail's entries now, if the trail
    /// is still what the state was derived from ([`Basis`]); `None` otherwise (the state will
    /// not be folded).
    pub(super) fn fold_base(&self, env: &Env) -> Option<Vec<String>> {
        let basis = self.chain_basis.borrow().get(env.as_str()).cloned()??;
        match basis {
            Basis::Stamps(derived) => {
                let now = self.chain_cache_key(env, false).ok()?;
                if now.stamps != derived {
                    return None;
                }
                trail_names(&self.root, &env.dir()).ok()
            }
            Basis::Names(digest) => {
                let names = trail_names(&self.root, &env.dir()).ok()?;
                (names_digest(&names) == digest).then_some(names)
            }
        }
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
        bases: std::collections::HashMap<String, Option<Vec<String>>>,
        written: &[std::path::PathBuf],
    ) {
        let mut by_env: Vec<(String, Vec<(std::path::PathBuf, EventSummary)>)> = Vec::new();
        for (env, file, summary) in staged {
            match by_env.iter_mut().find(|(e, _)| *e == env) {
                Some((_, list)) => list.push((file, summary)),
                None => by_env.push((env, vec![(file, summary)])),
            }
        }
        for (env, events) in by_env {
            let Some(Some(base)) = bases.get(&env) else {
                continue;
            };
            let Some(pre) = self.chains.borrow().get(&env).cloned() else {
                continue;
            };
            let Ok(name) = store::EnvName::parse(&env) else {
                continue;
            };
            let dir = super::super::env_dir(&name);
            let audit = dir.join(audit_dir::AUDIT_DIR);
            // Every event this command staged was written by this commit (one staged by a
            // transaction that was dropped was not).
            let mut expected = base.clone();
            for (file, _) in &events {
                let (true, Ok(rel)) = (
                    written.contains(&self.root.join(file)),
                    file.strip_prefix(&audit),
                ) else {
                    continue;
                };
                expected.push(rel.display().to_string());
            }
            if expected.len() != base.len() + events.len() {
                continue;
            }
            expected.sort_unstable();
            let mut state = (*pre).clone();
            if !events.iter().all(|(_, e)| state.fold(e)) {
                continue;
            }
            let keys = self.audit_keys.borrow().get(&env).cloned();
            let Ok(mut key) = self.cache_key_of(&env, &dir, keys.is_some()) else {
                continue;
            };
            // The trail holds exactly what it held when the first event was staged plus what
            // this commit wrote: an entry that arrived or went meanwhile (a `git pull` while
            // the command ran) leaves the state to be derived again.
            match trail_names(&self.root, &dir) {
                Ok(names) if names == expected => {
                    key.names = Some((names.len(), names_digest(&names)));
                }
                _ => continue,
            }
            self.cache_chain(key, keys.as_deref(), &state);
        }
    }
}
