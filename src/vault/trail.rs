//! The kernel's audit-trail half: the summaries of an environment's events (through the record
//! cache), the state the chain implies (which the rooms trust instead of loose files), the audit
//! key events are MACed with (format 2: opened from `audit.age` with the caller's identity), and
//! staging an event that names its parents, its vault, the hashes of the files its transaction
//! writes, and its MAC.

use std::rc::Rc;

use super::{BUNDLE_FILE, ChainCheck, Context, Env, Vault, VaultError};
use crate::audit::{
    self as events, Action, AuditKeys, ChainState, EpochKey, EventBody, EventFile, EventSummary,
    Keyring, Seal,
};
use crate::store::age::OpenedBy;
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

/// The sealed audit key file in an environment directory.
pub(super) const AUDIT_KEYS_FILE: &str = "audit.age";

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

    /// What the chain says the environment is (derived once per command and environment).
    pub(super) fn chain(&self, env: &Env) -> Result<Rc<ChainState>, VaultError> {
        if let Some(c) = self.chains.borrow().get(env.as_str()) {
            return Ok(Rc::clone(c));
        }
        let summaries = self.summaries(env)?;
        let keys = self.audit_keys.borrow().get(env.as_str()).cloned();
        let chain = Rc::new(match keys {
            Some(keys) => {
                let check =
                    |epoch: u32, id: &events::EventId, mac: &str| keys.check(epoch, id, mac);
                ChainState::checked(&summaries, Some(&check))
            }
            None => ChainState::of(&summaries),
        });
        self.chains
            .borrow_mut()
            .insert(env.as_str().to_owned(), Rc::clone(&chain));
        Ok(chain)
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

    /// Opens the environment's audit key file (checked against the chain).
    pub(super) fn open_audit_keys(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(AuditKeys, OpenedBy), VaultError> {
        let (keys, opened_by, sealed_sha256) = self.open_audit_keys_raw(env, ctx)?;
        self.agrees(env, AUDIT_KEYS_FILE, &sealed_sha256)?;
        Ok((keys, opened_by))
    }

    /// [`Vault::open_audit_keys`] without the check against the chain; the SHA-256 of the
    /// sealed file for the caller to check once the keys are in use.
    fn open_audit_keys_unchecked(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(AuditKeys, String), VaultError> {
        let (keys, _, sealed_sha256) = self.open_audit_keys_raw(env, ctx)?;
        Ok((keys, sealed_sha256))
    }

    fn open_audit_keys_raw(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(AuditKeys, OpenedBy, String), VaultError> {
        let rel = env.dir().join(AUDIT_KEYS_FILE);
        let (plain, opened_by, sealed_sha256) = match self.open_sealed_unchecked(env, &rel, ctx) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => {
                return Err(VaultError::AuditKeys {
                    file: rel.display().to_string(),
                    message: "it is missing (every format-2 environment has one)".into(),
                });
            }
            other => other?,
        };
        let keys =
            AuditKeys::from_json(plain.expose()).map_err(|message| VaultError::AuditKeys {
                file: rel.display().to_string(),
                message,
            })?;
        Ok((keys, opened_by, sealed_sha256))
    }

    /// Makes `keys` the audit keys of `env` for this command: the newest epoch MACs the events
    /// it writes, every epoch authenticates the events it trusts (the chain is derived again).
    pub(super) fn use_audit_keys(&self, env: &Env, keys: &AuditKeys) -> Result<(), VaultError> {
        let bad = |message: &str| VaultError::AuditKeys {
            file: env.dir().join(AUDIT_KEYS_FILE).display().to_string(),
            message: message.to_owned(),
        };
        let vault = self.vault_id().ok_or_else(|| bad("the vault has no id"))?;
        let ring = Keyring::derive(keys, vault, env.as_str()).map_err(bad)?;
        self.audit_keys
            .borrow_mut()
            .insert(env.as_str().to_owned(), Rc::new(ring));
        self.chains.borrow_mut().remove(env.as_str());
        Ok(())
    }

    /// Whether `env` is under format 2: the vault is, or the environment holds audit keys.
    fn env_sealed(&self, env: &Env) -> Result<bool, VaultError> {
        if self.sealed() {
            return Ok(true);
        }
        match store::fs::list_dir(&self.root, &env.dir()) {
            Ok(entries) => Ok(entries.iter().any(|e| e.name == AUDIT_KEYS_FILE)),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `env`'s audit keys with the caller's identity, checks that they belong to its
    /// bundle (a file sealed to the public recipients by someone who cannot open the bundle is
    /// refused), and uses them.
    fn load_audit_keys(&self, env: &Env, ctx: &Context) -> Result<(), VaultError> {
        // The bundle first: it is what the caller expects to open, and its pins are checked.
        // Neither file is checked against the chain until the keys that authenticate the chain
        // are in use (else the whole chain would be derived twice).
        let (plain, _, bundle_sha256) =
            self.open_sealed_unchecked(env, &env.dir().join(BUNDLE_FILE), ctx)?;
        let rel = env.dir().join(AUDIT_KEYS_FILE);
        let (keys, keys_sha256) = self.open_audit_keys_unchecked(env, ctx)?;
        if crate::digest::sha256_hex(plain.expose()) != keys.bundle_sha256 {
            // Say which file the chain disowns, if it does (on structure: no keys to trust).
            self.agrees(env, BUNDLE_FILE, &bundle_sha256)?;
            self.pinned_bundle(env, &plain)?;
            self.agrees(env, AUDIT_KEYS_FILE, &keys_sha256)?;
            return Err(VaultError::AuditKeys {
                file: rel.display().to_string(),
                message: "it does not belong to this environment's bundle (anyone can seal a \
                          file to the public recipients: one of the two was replaced)"
                    .into(),
            });
        }
        self.use_audit_keys(env, &keys)?;
        self.agrees(env, BUNDLE_FILE, &bundle_sha256)?;
        self.pinned_bundle(env, &plain)?;
        self.agrees(env, AUDIT_KEYS_FILE, &keys_sha256)
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
            ChainCheck::IfIdentity => match self.load_audit_keys(env, ctx) {
                // An identity that opens the bundle and a key file (or bundle) that does not
                // belong to it, or is not what the chain recorded: tampering, not a missing
                // identity. Refused, as a command that needs the keys refuses it, rather than
                // read on structure alone.
                Err(e @ (VaultError::AuditKeys { .. } | VaultError::Disagrees { .. })) => Err(e),
                // Another environment's identity, or none that opens this one: structure only.
                _ => Ok(()),
            },
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
            body.seal = Some(Seal {
                vault: self.vault_id().unwrap_or_default().to_owned(),
                epoch,
                files,
            });
            Some(key)
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
        let event = match key.as_ref().and_then(|k| k.signing()) {
            Some(k) => event.with_mac(k),
            None => event,
        };
        t.create(
            env.dir()
                .join(audit_dir::AUDIT_DIR)
                .join(event.relative_path()),
            &event.to_json(),
            Mode::Public,
        );
        Ok(event.id().clone())
    }
}
