//! `upgrade`: brings a format-1 vault (hash-linked events only) to format 2 in one audited
//! transaction: a vault id in `talvault.yaml`, an audit key file per environment (sealed like
//! its bundle and bound to it), and per environment an `upgrade` event that names every file the
//! environment holds, so that from then on each file is accounted for by the chain. Older
//! events stay as they are and verify as before.

use super::trail::AUDIT_KEYS_FILE;
use super::trail::new_audit_keys;
use super::{Context, Vault, VaultError};
use crate::audit::Action;
use crate::model::{VAULT_FORMAT, VaultConfig};
use crate::store::txn::Transaction;
use crate::store::{Mode, audit_dir};

impl Vault {
    /// `upgrade`: returns the environments brought to format 2. Opens every bundle, so it needs
    /// an identity (or the passphrase) for each environment.
    pub fn upgrade(mut self, ctx: &Context) -> Result<Vec<String>, VaultError> {
        if self.sealed() {
            return Err(VaultError::AlreadyUpgraded {
                format: self.config.format_version,
            });
        }
        let rng = ring::rand::SystemRandom::new();
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut id)
            .map_err(|_| VaultError::Generate("no randomness".into()))?;
        let config = VaultConfig {
            format_version: VAULT_FORMAT,
            vault_id: Some(crate::hex::encode(&id)),
            clock_skew: self.config.clock_skew,
        };
        let config_yaml = config.to_yaml();
        let envs = self.env_list_loaded()?;
        // Open every bundle while the vault is still format 1 (nothing is accounted for yet).
        let mut prepared = Vec::new();
        for env in &envs {
            let (plain, _, opened_by) = self.open_bundle(env, ctx)?;
            let keys = new_audit_keys(&rng, plain.expose())?;
            let sealed = self.seal_for(env, &keys.to_json(), ctx)?;
            // Who the backup lane is sealed to (a passphrase environment has no lane).
            let lane_to = match env.meta.sealing {
                crate::model::Sealing::Recipients => {
                    (self.recipients(env)?, self.backup_only_recipients(env)?)
                }
                crate::model::Sealing::Passphrase => (Vec::new(), Vec::new()),
            };
            prepared.push((keys, sealed, opened_by, lane_to));
        }
        // From here on events are sealed with the new id.
        self.config = config;
        let mut t = Transaction::new(&self.root);
        t.write(super::VAULT_FILE, config_yaml.as_bytes(), Mode::Public);
        let mut done = Vec::new();
        for (env, (keys, sealed, opened_by, (main, only))) in envs.iter().zip(prepared) {
            t.write(env.dir().join(AUDIT_KEYS_FILE), &sealed, Mode::Secret);
            self.use_audit_keys(env, &keys)?;
            self.stage_lane_keys(&mut t, env, ctx, &keys.bundle_sha256, &main, &only)?;
            // The baseline: every file as it is now, and the two this transaction writes.
            let mut files: std::collections::BTreeMap<String, Option<String>> =
                audit_dir::file_hashes(&self.root, &env.dir())?
                    .into_iter()
                    .map(|(path, hash)| (path, Some(hash)))
                    .collect();
            files.extend(t.file_hashes(&env.dir()));
            let action = Action::Upgrade { from: 1, to: 2 };
            self.stage_event_naming(&mut t, env, ctx, Some(&opened_by), &action, files)?;
            done.push(env.as_str().to_owned());
        }
        self.commit(t)?;
        Ok(done)
    }
}
