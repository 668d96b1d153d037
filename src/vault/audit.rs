//! The audit trail as commands read it: `audit log` (every event, parents before children) and
//! `audit verify` (the pure `audit::verify_with` over each environment's event files, checked
//! against the vault's id, the clock tolerance, the audit keys when an identity opens them, and
//! the hashes of every file the environment holds; plus what a git merge can make
//! inconsistent, and what changed since a git revision).

use std::collections::{BTreeMap, HashSet};

use super::trail::AUDIT_KEYS_FILE;
use super::{BUNDLE_FILE, Context, Env, Vault, VaultError};
use crate::audit::{self, Event, Report, VerifyInput};
use crate::store::audit_dir;

/// What `audit verify` found in one environment.
#[derive(Debug)]
pub struct AuditOutcome {
    /// The environment.
    pub env: String,
    /// The chain's report.
    pub report: Report,
    /// What a merge made inconsistent (two active issuers of one epoch), with the fix.
    pub conflicts: Vec<String>,
    /// Events and records changed or removed since the git revision asked about.
    pub rewritten: Vec<String>,
}

impl AuditOutcome {
    /// Whether nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.report.is_intact() && self.conflicts.is_empty() && self.rewritten.is_empty()
    }
}

/// One change git reports between a revision and the working tree (`git diff --name-status`):
/// `A`, `M`, `D`, … and the path relative to the vault root.
pub type GitChange = (char, String);

/// Orders events so that every parent comes before its children (events within one second
/// share a timestamp), ties broken by time, then id.
fn causal_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| {
        a.time()
            .cmp(&b.time())
            .then_with(|| a.id().as_str().cmp(b.id().as_str()))
    });
    let mut done: HashSet<String> = HashSet::new();
    let ids: HashSet<String> = events.iter().map(|e| e.id().as_str().to_owned()).collect();
    let mut out = Vec::with_capacity(events.len());
    while !events.is_empty() {
        let ready = events.iter().position(|e| {
            e.parents()
                .iter()
                .all(|p| done.contains(p.as_str()) || !ids.contains(p.as_str()))
        });
        // A cycle cannot occur with hash links; if the input is odd anyway, keep time order.
        let i = ready.unwrap_or(0);
        let e = events.remove(i);
        done.insert(e.id().as_str().to_owned());
        out.push(e);
    }
    out
}

/// Whether a path (relative to the vault root) is append-only: events and records are never
/// rewritten or removed once written.
fn append_only(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["envs", _, "audit", ..])
        || matches!(parts.as_slice(), ["envs", _, "certs" | "revocations", _])
        || matches!(parts.as_slice(), ["envs", _, "issuers", _, "issuer.yaml"])
}

impl Vault {
    /// `audit log`: every event of the environment(s), oldest first.
    pub fn audit_log(&self, env: Option<&str>) -> Result<Vec<Event>, VaultError> {
        let mut out = Vec::new();
        for env in self.envs(env)? {
            for (_, bytes) in audit_dir::load_all_below(&self.root, &env.dir())? {
                if let Ok(e) = Event::from_json(&bytes) {
                    out.push(e);
                }
            }
        }
        Ok(causal_order(out))
    }

    /// The audit keys of `env`, when the caller can open them, and whether they belong to its
    /// bundle, with the backup lane's keys (when there is a lane file and it opens) and whether
    /// they belong; `Err` says why authenticity cannot be checked.
    #[expect(
        clippy::type_complexity,
        reason = "two key files, each with whether it belongs to the bundle"
    )]
    fn verification_keys(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(audit::AuditKeys, bool, Option<(audit::AuditKeys, bool)>), String> {
        if ctx.identities.is_empty() && ctx.passphrase.is_none() {
            return Err("no identity was given to open the audit keys".into());
        }
        let (keys, _) = self
            .open_audit_keys(env, ctx)
            .map_err(|e| format!("cannot open {AUDIT_KEYS_FILE}: {e}"))?;
        let bundle = env.dir().join(BUNDLE_FILE);
        let (plain, _) = self
            .open_sealed(env, &bundle, ctx)
            .map_err(|e| format!("cannot open {BUNDLE_FILE}: {e}"))?;
        let bundle_sha256 = crate::digest::sha256_hex(plain.expose());
        let bound = bundle_sha256 == keys.bundle_sha256;
        let lane = self.open_lane_keys(env, ctx).ok().flatten().map(|l| {
            let bound = l.bundle_sha256 == bundle_sha256;
            (l, bound)
        });
        Ok((keys, bound, lane))
    }

    /// `audit verify`: per environment, the chain's report (authenticated when `ctx` can open
    /// the audit keys), merge conflicts, and what changed since a git revision (`since`: the
    /// changes git reports, or `None`).
    pub fn audit_verify(
        &self,
        env: Option<&str>,
        ctx: &Context,
        since: Option<&[GitChange]>,
    ) -> Result<Vec<AuditOutcome>, VaultError> {
        let mut out = Vec::new();
        let vault_file = self.read(std::path::Path::new(super::VAULT_FILE), super::META_MAX)?;
        for env in self.envs(env)? {
            // Each event file is parsed as it is read and only its summary kept, while a second
            // thread reads and hashes every other file of the environment.
            let mut verifier = audit::Verifier::default();
            let (root, dir) = (self.root.as_path(), env.dir());
            let (events, hashes) = std::thread::scope(|scope| {
                let hashing = scope.spawn(|| audit_dir::file_hashes(root, &dir));
                let events = audit_dir::for_each_below(root, &dir, |rel, bytes| {
                    verifier.add(rel, &bytes);
                });
                let hashes = hashing
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e));
                (events, hashes)
            });
            events?;
            let mut disk: BTreeMap<String, String> = hashes?;
            disk.insert(
                format!("/{}", super::VAULT_FILE),
                crate::digest::sha256_hex(&vault_file),
            );
            let keys = if self.sealed() {
                self.verification_keys(&env, ctx)
            } else {
                Err("the vault is format 1".into())
            };
            let report = verifier.finish(&VerifyInput {
                vault: self.vault_id(),
                env: Some(env.as_str()),
                tolerance: self.config.clock_skew_seconds(),
                // A key file that is not the bundle's authenticates nothing: its keys may
                // be the attacker's (reported as ForeignKeyFile).
                keys: match &keys {
                    Ok((k, true, _)) => Ok(k),
                    Ok((_, false, _)) => Err(format!(
                        "{AUDIT_KEYS_FILE} does not belong to this environment's bundle"
                    )),
                    Err(why) => Err(why.clone()),
                },
                keys_bound: keys.as_ref().ok().map(|(_, bound, _)| *bound),
                // Likewise lane keys that are not the bundle's check no lane MAC.
                lane_keys: keys.as_ref().ok().and_then(|(_, _, lane)| {
                    lane.as_ref().and_then(|(l, bound)| bound.then_some(l))
                }),
                lane_bound: keys
                    .as_ref()
                    .ok()
                    .and_then(|(_, _, lane)| lane.as_ref().map(|(_, b)| *b)),
                // Whenever the environment has sealed events, whatever talvault.yaml says:
                // a vault file set back to format 1 must not switch the file checks off (the
                // events recorded the format-2 file, so the downgrade itself is a finding).
                disk: Some(&disk),
            });
            // Two active issuers of one epoch (concurrent rotations merged in git). Issuer ids
            // are `e<epoch>-<suffix>`. From the events just read (never the cache), as the
            // verification found them (authenticated when the keys opened).
            let chain = &report.chain;
            let mut by_epoch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (id, step) in &chain.issuers {
                if step.state == "active" {
                    let epoch = id.split('-').next().unwrap_or(id);
                    by_epoch.entry(epoch).or_default().push(id);
                }
            }
            let conflicts = by_epoch
                .into_iter()
                .filter(|(_, ids)| ids.len() > 1)
                .map(|(epoch, ids)| {
                    format!(
                        "issuers {} are all active in epoch {} (concurrent rotations merged); keep one: talvault issuer retire {} {}",
                        ids.join(", "),
                        // e1 (Talos) or k1 (Kubernetes): the prefix is kept for Kubernetes.
                        epoch.trim_start_matches('e'),
                        env.as_str(),
                        ids[1..].join(" ")
                    )
                })
                .collect();
            let prefix = format!("envs/{}/", env.as_str());
            let rewritten = since
                .unwrap_or_default()
                .iter()
                .filter(|(status, path)| {
                    path.starts_with(&prefix) && append_only(path) && *status != 'A'
                })
                .map(|(status, path)| {
                    format!(
                        "{path}: {} since the revision (events and records are append-only)",
                        if *status == 'D' { "removed" } else { "changed" }
                    )
                })
                .collect();
            out.push(AuditOutcome {
                env: env.as_str().to_owned(),
                report,
                conflicts,
                rewritten,
            });
        }
        // A report of tampering leaves the vault directory as it was, caches included (the
        // exit code is not 0): whoever investigates sees it as the attacker left it.
        if out.iter().all(|o| {
            o.report.problems.is_empty() && o.conflicts.is_empty() && o.rewritten.is_empty()
        }) {
            self.save_caches();
        }
        Ok(out)
    }
}
