//! The audit keys of an environment: opening `audit.age` and the backup lane's
//! `backup-audit.age` with the caller's identity, checking that they belong to the bundle, are
//! not older than the events, and are what the chain recorded, then putting them in use.

use super::*;

impl Vault {
    /// Opens the environment's audit key file (checked against the chain).
    pub(in crate::vault) fn open_audit_keys(
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
    pub(in crate::vault) fn open_audit_keys_unchecked(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(AuditKeys, String), VaultError> {
        let (keys, _, sealed_sha256) = self.open_audit_keys_raw(env, ctx)?;
        Ok((keys, sealed_sha256))
    }

    pub(in crate::vault) fn open_audit_keys_raw(
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
    pub(in crate::vault) fn use_audit_keys(
        &self,
        env: &Env,
        keys: &AuditKeys,
    ) -> Result<(), VaultError> {
        self.use_keys(env, Some(keys), None)
    }

    /// Makes `main` (none: a backup-only identity) and `lane` the keys of `env` for this
    /// command.
    pub(in crate::vault) fn use_keys(
        &self,
        env: &Env,
        main: Option<&AuditKeys>,
        lane: Option<&AuditKeys>,
    ) -> Result<(), VaultError> {
        let file = if main.is_some() {
            AUDIT_KEYS_FILE
        } else {
            LANE_KEYS_FILE
        };
        let bad = |message: &str| VaultError::AuditKeys {
            file: env.dir().join(file).display().to_string(),
            message: message.to_owned(),
        };
        let vault = self.vault_id().ok_or_else(|| bad("the vault has no id"))?;
        let ring = match (main, lane) {
            (Some(main), None) => Keyring::derive(main, vault, env.as_str()),
            (Some(main), Some(lane)) => Keyring::derive(main, vault, env.as_str())
                .and_then(|r| r.with_lane(lane, vault, env.as_str())),
            (None, Some(lane)) => Keyring::lane_only(lane, vault, env.as_str()),
            (None, None) => Err("no keys"),
        }
        .map_err(bad)?;
        let mut ring = ring;
        let mut held = self.audit_keys.borrow_mut();
        // New main keys (a recipients change) keep the lane keys already opened: the lane's
        // events stay authentic, and this command's event names them as parents.
        if main.is_some()
            && lane.is_none()
            && let Some(previous) = held.remove(env.as_str())
        {
            ring.lane_current = previous.lane_current;
            ring.lane = previous.lane.clone();
        }
        held.insert(env.as_str().to_owned(), Rc::new(ring));
        drop(held);
        self.chains.borrow_mut().remove(env.as_str());
        Ok(())
    }

    /// Whether `env` is under format 2: the vault is, or the environment holds audit keys.
    pub(in crate::vault) fn env_sealed(&self, env: &Env) -> Result<bool, VaultError> {
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
    pub(in crate::vault) fn load_audit_keys(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(), VaultError> {
        // The bundle first: it is what the caller expects to open, and its pins are checked.
        let bundle = self.open_sealed_unchecked(env, &env.dir().join(BUNDLE_FILE), ctx)?;
        self.load_audit_keys_beside(env, ctx, bundle)
    }

    /// Whether `e`, from opening an environment's bundle, means only that the caller cannot
    /// open it (another environment's identity, none, no passphrase): the one failure a
    /// reader may answer by reading the chain on structure alone. Anything else (a damaged or
    /// replaced file, a locked identity) is refused.
    pub(in crate::vault) fn cannot_open(e: &VaultError) -> bool {
        matches!(
            e,
            VaultError::NoIdentity { .. }
                | VaultError::Age(
                    AgeError::NoMatchingIdentity { .. }
                        | AgeError::EmptyPassphrase
                        | AgeError::WrongPassphrase { .. }
                )
        )
    }

    /// [`Vault::load_audit_keys`] once the bundle is open (its plaintext and the SHA-256 of
    /// its sealed bytes). On any failure no key of `env` stays in use.
    pub(in crate::vault) fn load_audit_keys_beside(
        &self,
        env: &Env,
        ctx: &Context,
        bundle: (SecretBytes, OpenedBy, String),
    ) -> Result<(), VaultError> {
        let result = self.check_and_use_audit_keys(env, ctx, bundle);
        if result.is_err() {
            self.audit_keys.borrow_mut().remove(env.as_str());
            self.chains.borrow_mut().remove(env.as_str());
        }
        result
    }

    pub(in crate::vault) fn check_and_use_audit_keys(
        &self,
        env: &Env,
        ctx: &Context,
        (plain, _, bundle_sha256): (SecretBytes, OpenedBy, String),
    ) -> Result<(), VaultError> {
        // Neither the bundle nor a key file is checked against the chain until the keys that
        // authenticate the chain are in use (else the whole chain would be derived twice);
        // a key file rolled back to an older epoch is caught by the epochs the events name.
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
        // The backup lane's keys too, to authenticate the events backup-only identities
        // wrote; like audit.age, a lane file that does not belong to the bundle, or is not
        // what the chain recorded, is refused (its keys could be anyone's).
        let lane = self.open_lane_keys_unchecked(env, ctx)?;
        if let Some((l, lane_sha256)) = &lane
            && l.bundle_sha256 != keys.bundle_sha256
        {
            self.agrees(env, LANE_KEYS_FILE, lane_sha256)?;
            return Err(VaultError::AuditKeys {
                file: env.dir().join(LANE_KEYS_FILE).display().to_string(),
                message: "it does not belong to this environment's bundle (anyone can seal a \
                          file to the public recipients)"
                    .into(),
            });
        }
        if let Some((l, _)) = &lane {
            self.use_keys(env, Some(&keys), Some(l))?;
        }
        self.no_newer_epochs(env, &keys, lane.as_ref().map(|(l, _)| l))?;
        self.agrees(env, BUNDLE_FILE, &bundle_sha256)?;
        self.pinned_bundle(env, &plain)?;
        self.agrees(env, AUDIT_KEYS_FILE, &keys_sha256)?;
        if let Some((_, lane_sha256)) = &lane {
            self.agrees(env, LANE_KEYS_FILE, lane_sha256)?;
        }
        Ok(())
    }

    /// Refuses key files older than the events: an event sealed under an epoch newer than the
    /// newest a key file holds means the file was rolled back (to before a recipient's
    /// removal, say, whose events the old keys would silently set aside) or replaced. A
    /// planted event with a made-up epoch refuses too, until it is removed (`audit verify`
    /// names it).
    pub(in crate::vault) fn no_newer_epochs(
        &self,
        env: &Env,
        main: &AuditKeys,
        lane: Option<&AuditKeys>,
    ) -> Result<(), VaultError> {
        let newest = |k: &AuditKeys| k.keys.iter().map(|e| e.epoch).max().unwrap_or(0);
        let (in_events, in_lane_events) = self.chain(env)?.newest_epochs;
        let mut checks = vec![(AUDIT_KEYS_FILE, newest(main), in_events)];
        if let Some(lane) = lane {
            checks.push((LANE_KEYS_FILE, newest(lane), in_lane_events));
        }
        for (file, held, named) in checks {
            if named > held {
                return Err(VaultError::AuditKeys {
                    file: env.dir().join(file).display().to_string(),
                    message: format!(
                        "it holds key epochs up to {held}, but events are sealed under epoch \
                         {named}: the file was rolled back or replaced"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Opens the backup lane's key file, without the check against the chain (`None`: there
    /// is none, or the environment is sealed with a passphrase, which has no lane); the
    /// SHA-256 of the sealed file for the caller to check.
    pub(in crate::vault) fn open_lane_keys_unchecked(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<Option<(AuditKeys, String)>, VaultError> {
        if env.meta.sealing != Sealing::Recipients {
            return Ok(None);
        }
        let rel = env.dir().join(LANE_KEYS_FILE);
        // Looked for first: a new environment has none, and needs no identity to say so.
        match self.read(&rel, crate::vault::SEALED_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => return Ok(None),
            other => other?,
        };
        let (plain, _, sealed_sha256) = self.open_sealed_unchecked(env, &rel, ctx)?;
        AuditKeys::from_json(plain.expose())
            .map(|keys| Some((keys, sealed_sha256)))
            .map_err(|message| VaultError::AuditKeys {
                file: rel.display().to_string(),
                message,
            })
    }

    /// Opens the backup lane's key file, checked against the chain (`None`: there is none, or
    /// the environment is sealed with a passphrase, which has no lane).
    pub(in crate::vault) fn open_lane_keys(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<Option<AuditKeys>, VaultError> {
        let Some((keys, sealed_sha256)) = self.open_lane_keys_unchecked(env, ctx)? else {
            return Ok(None);
        };
        self.agrees(env, LANE_KEYS_FILE, &sealed_sha256)?;
        Ok(Some(keys))
    }
}
