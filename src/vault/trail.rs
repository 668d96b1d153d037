//! The kernel's audit-trail half: the summaries of an environment's events (through the record
//! cache), the state the chain implies (which the rooms trust instead of loose files), the audit
//! key events are MACed with (format 2: opened from `audit.age` with the caller's identity), and
//! staging an event that names its parents, its vault, the hashes of the files its transaction
//! writes, and its MAC.
//!
//! The backup lane (`backup-audit.age`, sealed to the recipients and the backup-only
//! recipients): a backup-only identity opens only those keys, and its events (`backup.*` only)
//! are MACed under them and marked `"lane": "backup"`; the chain trusts such an event for
//! backup records and nothing else (`audit::lane_may_record`).

use std::rc::Rc;

use super::{BUNDLE_FILE, ChainCheck, Context, Env, Vault, VaultError};
use crate::audit::{
    self as events, Action, AuditKeys, ChainState, EpochKey, EventBody, EventFile, EventSummary,
    Keyring, Seal,
};
use crate::model::Sealing;
use crate::secret::SecretBytes;
use crate::store::age::{self as agestore, AgeError, OpenedBy, Recipient};
use crate::store::txn::Transaction;
use crate::store::{self, Mode, StoreError, audit_dir};

/// Where an event goes in the trail: the files it accounts for, and its parents (`None`: the
/// current heads).
pub(super) struct EventPlace {
    /// Path below the environment → content hash (`None`: removed).
    pub files: std::collections::BTreeMap<String, Option<String>>,
    /// The events it follows.
    pub parents: Option<Vec<events::EventId>>,
}

mod cache;
mod keys;

/// The sealed audit key file in an environment directory.
pub(super) const AUDIT_KEYS_FILE: &str = "audit.age";

/// The sealed backup lane key file in an environment directory (recipients and backup-only
/// recipients open it).
pub(super) const LANE_KEYS_FILE: &str = "backup-audit.age";

/// The backup-only recipients of an environment: they can open its backups and the backup
/// lane keys, never its bundle or issuer keys (nothing that seals those reads this file).
pub const BACKUP_RECIPIENTS_FILE: &str = "backup-recipients.txt";

/// A new audit key file: one random root key (epoch 1), bound to the bundle's plaintext.
pub(super) fn new_audit_keys(
    rng: &ring::rand::SystemRandom,
    bundle: &[u8],
) -> Result<AuditKeys, VaultError> {
    let mut root = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(rng, &mut root[..])
        .map_err(|_| VaultError::Generate("no randomness".into()))?;
    Ok(AuditKeys {
        bundle_sha256: crate::digest::sha256_hex(bundle),
        keys: vec![EpochKey::new(1, &root)],
    })
}

impl Vault {
    /// Every event of the environment, summarised (read month by month through the record
    /// cache, so only events added since the cache was built are parsed). Files that are not
    /// events are left out (`audit verify` reports them).
    pub(super) fn summaries(&self, env: &Env) -> Result<Vec<EventSummary>, VaultError> {
        let dir = env.dir();
        let months = match audit_dir::months(&self.root, &dir) {
            // A new environment's directory does not exist yet: no events.
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        let mut out = Vec::new();
        for (year, month) in months {
            let scanned = store::index::scan(
                &self.root,
                &dir.join(audit_dir::AUDIT_DIR).join(&year).join(&month),
                &format!("{}/audit-{year}-{month}", env.as_str()),
                audit_dir::EVENT_RECORDS,
                |_, bytes| Ok::<_, VaultError>(EventFile::read(bytes)),
            )?;
            out.extend(self.keep_cache(scanned).into_iter().filter_map(|f| f.0));
        }
        Ok(out)
    }

    /// What the chain says the environment is (derived once per command and environment, and
    /// read from the derived-state cache while the trail is unchanged: `trail/cache.rs`).
    pub(super) fn chain(&self, env: &Env) -> Result<Rc<ChainState>, VaultError> {
        if let Some(c) = self.chains.borrow().get(env.as_str()) {
            return Ok(Rc::clone(c));
        }
        let keys = self.audit_keys.borrow().get(env.as_str()).cloned();
        let key = self.chain_cache_key(env, keys.is_some())?;
        let (state, basis) = match self.cached_chain(&key, keys.as_deref()) {
            Some((state, basis)) => (state, Some(basis)),
            None => {
                let basis = Self::derived_basis(&key);
                let summaries = self.summaries(env)?;
                let state = match &keys {
                    Some(keys) => {
                        let check = |lane: bool, epoch: u32, id: &events::EventId, mac: &str| {
                            keys.check_any(lane, epoch, id, mac)
                        };
                        let mut c = ChainState::checked(&summaries, Some(&check));
                        // A backup-only identity checks lane events only: the rest rests on
                        // structure.
                        c.authenticated = keys.has_main();
                        c
                    }
                    None => ChainState::of(&summaries),
                };
                self.cache_chain(key, keys.as_deref(), &state);
                (state, basis)
            }
        };
        self.chain_basis
            .borrow_mut()
            .insert(env.as_str().to_owned(), basis);
        let chain = Rc::new(state);
        self.chains
            .borrow_mut()
            .insert(env.as_str().to_owned(), Rc::clone(&chain));
        Ok(chain)
    }

    /// Lets go of the derived chain states without freeing them one string at a time (no
    /// secret is in them): for a command about to exit, where freeing 100,000 file entries
    /// costs more than deriving them did.
    pub fn forget_chain_states(&self) {
        std::mem::forget(std::mem::take(&mut *self.chains.borrow_mut()));
    }

    /// The break-glass taint the chain records.
    pub(super) fn taint(&self, env: &Env) -> Result<Option<crate::model::Taint>, VaultError> {
        Ok(self
            .chain(env)?
            .taint
            .as_ref()
            .map(|t| crate::model::Taint {
                since: crate::inventory::rfc3339(t.since),
                reason: t.reason.clone().unwrap_or_default(),
                serial: t.serial.clone(),
            }))
    }

    /// Checks a file against the chain (format 2): `Err(Disagrees)` when the chain accounts for
    /// the file and names other contents, or does not account for it at all.
    pub(super) fn agrees(&self, env: &Env, file: &str, sha256: &str) -> Result<(), VaultError> {
        let chain = self.chain(env)?;
        // Format 1 accounts for no file. (Deleting every event of a format-2 environment does
        // not make it format 1: the vault says which format it is.)
        if !chain.sealed && !self.sealed() {
            return Ok(());
        }
        let shown = env.dir().join(file).display().to_string();
        if chain.accepts(file, sha256) {
            return Ok(());
        }
        match chain.files.get(file) {
            Some((_, event)) => Err(VaultError::Disagrees {
                file: shown,
                message: format!(
                    "its contents are not what audit event {} recorded",
                    event.short()
                ),
            }),
            None => Err(VaultError::Disagrees {
                file: shown,
                message: "no audit event accounts for it".into(),
            }),
        }
    }

    /// Whether this vault writes authenticated (format 2) events.
    pub(super) fn sealed(&self) -> bool {
        self.config.sealed()
    }

    /// The vault's id (format 2).
    pub(super) fn vault_id(&self) -> Option<&str> {
        self.config.vault_id.as_deref()
    }

    /// Loads an environment for a backup command: like [`Vault::env_for`], except that with
    /// [`ChainCheck::Required`] an identity that opens only the backup lane's keys (a
    /// backup-only identity) is enough: its events are MACed under the lane, and it trusts
    /// the rest of the chain on structure.
    pub(super) fn env_for_backup(&self, env: &str, ctx: &Context) -> Result<Env, VaultError> {
        let env = self.env(env)?;
        // A talvault.yaml edited back to format 1 is refused first, as everywhere.
        if !self.sealed() && self.chain(&env)?.sealed {
            self.authenticate(&env, ctx)?;
        }
        if ctx.chain == ChainCheck::Required
            && !self.audit_keys.borrow().contains_key(env.as_str())
            && self.env_sealed(&env)?
            && let Err(full) =
                match self.open_sealed_unchecked(&env, &env.dir().join(BUNDLE_FILE), ctx) {
                    Ok(bundle) => {
                        // An identity that opens the bundle: whatever is wrong after that is
                        // tampering, never a reason to fall back to the lane.
                        self.load_audit_keys_beside(&env, ctx, bundle)?;
                        Ok(())
                    }
                    Err(e) if Self::cannot_open(&e) => Err(e),
                    Err(e) => return Err(e),
                }
        {
            match self.open_lane_keys(&env, ctx) {
                Ok(Some(lane)) => self.use_keys(&env, None, Some(&lane))?,
                // Lane keys the chain did not record (copied, replaced): say so.
                Err(e @ VaultError::Disagrees { .. }) => return Err(e),
                // Neither opens: the reason the audit keys did not is the one to give.
                _ => return Err(full),
            }
        }
        self.authenticate(&env, ctx)?;
        Ok(env)
    }

    /// The backup-only recipients (none when the file does not exist), checked against the
    /// chain: a recipient slipped in would be sealed to by the next backup, and a file
    /// removed behind the chain's back would drop the disaster-recovery key unnoticed.
    pub(super) fn backup_only_recipients(&self, env: &Env) -> Result<Vec<Recipient>, VaultError> {
        let rel = env.dir().join(BACKUP_RECIPIENTS_FILE);
        match self.read(&rel, super::META_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => {
                match self.chain(env)?.files.get(BACKUP_RECIPIENTS_FILE) {
                    Some((Some(_), event)) => Err(VaultError::Disagrees {
                        file: rel.display().to_string(),
                        message: format!(
                            "it is missing, but audit event {} wrote it",
                            event.short()
                        ),
                    }),
                    _ => Ok(Vec::new()),
                }
            }
            Err(e) => Err(e),
            Ok(text) => {
                let parsed = agestore::parse_recipients(
                    &String::from_utf8_lossy(&text),
                    &self.root.join(&rel),
                )?;
                self.agrees(
                    env,
                    BACKUP_RECIPIENTS_FILE,
                    &crate::digest::sha256_hex(&text),
                )?;
                Ok(parsed)
            }
        }
    }

    /// Stages a new backup lane epoch in `t` (format 2, recipient-sealed environments): the
    /// lane's previous keys, opened with `ctx` (none for a new lane), plus a fresh root key,
    /// bound to the bundle (`bundle_sha256`) and sealed to `main` and `only`. The event this
    /// command stages names the new lane epoch, which retires the older ones for new events
    /// (a removed backup-only recipient keeps the old keys, and they no longer count).
    pub(super) fn stage_lane_keys(
        &self,
        t: &mut Transaction,
        env: &Env,
        ctx: &Context,
        bundle_sha256: &str,
        main: &[Recipient],
        only: &[Recipient],
    ) -> Result<(), VaultError> {
        if !self.sealed() || main.is_empty() || env.meta.sealing != Sealing::Recipients {
            return Ok(());
        }
        let mut keys = self.open_lane_keys(env, ctx)?.unwrap_or(AuditKeys {
            bundle_sha256: String::new(),
            keys: Vec::new(),
        });
        keys.bundle_sha256 = bundle_sha256.to_owned();
        let epoch = keys.current().map_or(0, |k| k.epoch) + 1;
        let mut root = zeroize::Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut root[..])
            .map_err(|_| VaultError::Generate("no randomness".into()))?;
        keys.keys.push(EpochKey::new(epoch, &root));
        let mut all: Vec<Recipient> = main.to_vec();
        all.extend(only.iter().filter(|r| !main.contains(r)).cloned());
        t.write(
            env.dir().join(LANE_KEYS_FILE),
            &agestore::seal(&keys.to_json(), &all)?,
            Mode::Secret,
        );
        self.lane_rotations
            .borrow_mut()
            .insert(env.as_str().to_owned(), epoch);
        Ok(())
    }

    /// Authenticates `env`'s chain for this command as `ctx.chain` asks: with
    /// [`ChainCheck::Required`] the audit keys must open (every command that writes an event or
    /// a secret), with [`ChainCheck::IfIdentity`] they are used when the given identity opens
    /// them, and otherwise the chain rests on structure (readers without an identity; their
    /// reports say so).
    ///
    /// Then `env.yaml` must be what the chain recorded: it holds the endpoints, pins and CA
    /// certificates every command relies on, and is never rewritten after `env create`.
    pub(super) fn authenticate(&self, env: &Env, ctx: &Context) -> Result<(), VaultError> {
        // A format-2 chain under a talvault.yaml that says format 1 would have commands write
        // unauthenticated events: the file was edited. (First: the audit keys need the vault
        // id that file no longer has.)
        if !self.sealed() && self.chain(env)?.sealed {
            return Err(VaultError::Disagrees {
                file: super::VAULT_FILE.to_owned(),
                message: format!(
                    "it says format 1, but environment {:?} has authenticated (format 2) events",
                    env.as_str()
                ),
            });
        }
        self.open_chain(env, ctx)?;
        self.agrees(env, "env.yaml", &env.meta_sha256)
    }

    /// The audit-key half of [`Vault::authenticate`].
    fn open_chain(&self, env: &Env, ctx: &Context) -> Result<(), VaultError> {
        if self.audit_keys.borrow().contains_key(env.as_str()) || !self.env_sealed(env)? {
            return Ok(());
        }
        match ctx.chain {
            ChainCheck::Structure => Ok(()),
            ChainCheck::IfIdentity if ctx.identities.is_empty() => Ok(()),
            ChainCheck::IfIdentity => {
                match self.open_sealed_unchecked(env, &env.dir().join(BUNDLE_FILE), ctx) {
                    // Another environment's identity, or none that opens this one: structure
                    // only (the reports say so).
                    Err(e) if Self::cannot_open(&e) => Ok(()),
                    Err(e) => Err(e),
                    // An identity that opens the bundle: whatever is wrong after that (a key
                    // file or bundle that does not belong, fails the pins, is not what the
                    // chain recorded, does not open) is tampering, refused as a command that
                    // needs the keys refuses it, never read on structure alone.
                    Ok(bundle) => self.load_audit_keys_beside(env, ctx, bundle),
                }
            }
            ChainCheck::Required => self.load_audit_keys(env, ctx),
        }
    }

    /// Loads an environment for a command acting as `ctx`, its chain authenticated as `ctx`
    /// asks ([`Vault::authenticate`]).
    pub(super) fn env_for(&self, env: &str, ctx: &Context) -> Result<Env, VaultError> {
        let env = self.env(env)?;
        self.authenticate(&env, ctx)?;
        Ok(env)
    }

    /// The epoch and key this command MACs `env`'s events with (opened once per command).
    fn audit_key(&self, env: &Env, ctx: &Context) -> Result<(u32, Rc<Keyring>), VaultError> {
        if let Some(keys) = self.audit_keys.borrow().get(env.as_str()) {
            return Ok((keys.current, Rc::clone(keys)));
        }
        self.load_audit_keys(env, ctx)?;
        let cached = self.audit_keys.borrow();
        let keys = cached
            .get(env.as_str())
            .ok_or_else(|| VaultError::Generate("audit key".into()))?;
        Ok((keys.current, Rc::clone(keys)))
    }

    /// Adds an audit event for `env` to the transaction, on top of the current heads. In a
    /// format-2 vault the event names the vault, the key epoch and the hash of every file the
    /// transaction writes for the environment, and carries a MAC (which needs the identity that
    /// opens `audit.age`).
    pub(super) fn stage_event(
        &self,
        t: &mut Transaction,
        env: &Env,
        ctx: &Context,
        opened_by: Option<&OpenedBy>,
        action: &Action,
    ) -> Result<(), VaultError> {
        let files = t.file_hashes(&env.dir());
        self.stage_event_naming(t, env, ctx, opened_by, action, files)
    }

    /// [`Vault::stage_event`] naming `files` (the upgrade names every file, not just the written).
    pub(super) fn stage_event_naming(
        &self,
        t: &mut Transaction,
        env: &Env,
        ctx: &Context,
        opened_by: Option<&OpenedBy>,
        action: &Action,
        files: std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<(), VaultError> {
        self.stage_event_on(
            t,
            env,
            ctx,
            opened_by,
            action,
            EventPlace {
                files,
                parents: None,
            },
        )
        .map(|_| ())
    }

    /// [`Vault::stage_event_naming`] at `place`; returns the new event's id, the parent of the
    /// next event a command that stages several writes (one per certificate of a renewal, in
    /// one transaction).
    pub(super) fn stage_event_on(
        &self,
        t: &mut Transaction,
        env: &Env,
        ctx: &Context,
        opened_by: Option<&OpenedBy>,
        action: &Action,
        place: EventPlace,
    ) -> Result<events::EventId, VaultError> {
        let EventPlace { files, parents } = place;
        let mut body = EventBody::new(
            ctx.now,
            &ctx.actor,
            opened_by.map(|o| o.to_string()),
            env.as_str(),
            action,
        )?;
        let key = if self.sealed() {
            let (epoch, key) = self.audit_key(env, ctx)?;
            // A backup-only identity: its `backup.*` events go through the lane, nothing else.
            let lane = if key.has_main() {
                None
            } else {
                match key.lane_signing() {
                    Some((lane_epoch, _))
                        if events::lane_may_record(
                            action.name(),
                            files.keys().map(String::as_str),
                        ) =>
                    {
                        Some(lane_epoch)
                    }
                    _ => {
                        return Err(VaultError::BackupOnlyIdentity {
                            env: env.as_str().to_owned(),
                            action: action.name().to_owned(),
                        });
                    }
                }
            };
            body.seal = Some(Seal {
                vault: self.vault_id().unwrap_or_default().to_owned(),
                epoch: lane.unwrap_or(epoch),
                files,
                lane: lane.map(|_| events::BACKUP_LANE.to_owned()),
                lane_epoch: if lane.is_none() {
                    self.lane_rotations.borrow_mut().remove(env.as_str())
                } else {
                    None
                },
            });
            Some((key, lane.is_some()))
        } else {
            None
        };
        // The heads of the chain this command trusts (authenticated: the audit key is open),
        // never those of every file: a forged event inserted as a side branch must not be
        // linked in, and so made an ancestor of genuine events. A command staging several
        // events in one transaction (renew) names the previous one instead.
        let parents = match parents {
            Some(p) => p,
            None => self.chain(env)?.heads.clone(),
        };
        let event = events::new_event(parents, body)?;
        let signing = match &key {
            Some((ring, true)) => ring.lane_signing().map(|(_, k)| k),
            Some((ring, false)) => ring.signing(),
            None => None,
        };
        let event = match signing {
            Some(k) => event.with_mac(k),
            None => event,
        };
        let file = env
            .dir()
            .join(audit_dir::AUDIT_DIR)
            .join(event.relative_path());
        t.create(&file, &event.to_json(), Mode::Public);
        if !self.fold_bases.borrow().contains_key(env.as_str()) {
            let base = self.fold_base(env);
            self.fold_bases
                .borrow_mut()
                .insert(env.as_str().to_owned(), base);
        }
        self.staged
            .borrow_mut()
            .push((env.as_str().to_owned(), file, EventSummary::of(&event)));
        Ok(event.id().clone())
    }
}
