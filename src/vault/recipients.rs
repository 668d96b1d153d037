//! Who can open an environment: list its recipients, and add or remove some, re-sealing every
//! secret of the environment (the bundle and each sealed issuer key) to the new set with a
//! fresh file key.

use super::records::ISSUER_KEY_FILE;
use super::trail::AUDIT_KEYS_FILE;
use super::{BUNDLE_FILE, Context, Vault, VaultError, recipients_txt};
use crate::audit::Action;
use crate::audit::EpochKey;
use crate::model::{IssuerKey, Sealing};
use crate::store::Mode;
use crate::store::age::{self as agestore, Recipient};
use crate::store::txn::Transaction;

/// Which way the set changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientChange {
    /// Add recipients.
    Add,
    /// Remove recipients.
    Remove,
}

impl Vault {
    /// The recipients of an environment (none for a passphrase environment).
    pub fn recipients_list(&self, env: &str) -> Result<Vec<String>, VaultError> {
        let env = self.env(env)?;
        if env.meta.sealing == Sealing::Passphrase {
            return Ok(Vec::new());
        }
        Ok(self
            .recipients(&env)?
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect())
    }

    /// `recipients add` / `recipients remove`: opens the bundle, re-seals every secret of the
    /// environment to the new set with a fresh file key, and records the change. Returns the
    /// new set.
    pub fn recipients_change(
        &self,
        env: &str,
        change: RecipientChange,
        given: &[Recipient],
        ctx: &Context,
    ) -> Result<Vec<String>, VaultError> {
        let env = self.env(env)?;
        if env.meta.sealing == Sealing::Passphrase {
            return Err(VaultError::WrongSealing {
                env: env.as_str().into(),
                sealing: "a passphrase",
                operation: "changing recipients",
            });
        }
        self.authenticate(&env, ctx)?;
        let current = self.recipients(&env)?;
        let (add, remove): (&[Recipient], &[Recipient]) = match change {
            RecipientChange::Add => (given, &[]),
            RecipientChange::Remove => (&[], given),
        };
        for r in remove {
            if !current.iter().any(|c| c.as_str() == r.as_str()) {
                return Err(VaultError::NotARecipient {
                    env: env.as_str().into(),
                    recipient: r.as_str().to_owned(),
                });
            }
        }
        let mut next: Vec<Recipient> = current
            .iter()
            .filter(|c| !remove.iter().any(|r| r.as_str() == c.as_str()))
            .cloned()
            .collect();
        for r in add {
            if !next.iter().any(|c| c.as_str() == r.as_str()) {
                next.push(r.clone());
            }
        }
        if next.is_empty() {
            return Err(VaultError::NoRecipientsLeft {
                env: env.as_str().into(),
                removed: remove.len(),
            });
        }
        let (plain, _, opened_by) = self.open_bundle(&env, ctx)?;
        // age draws a fresh file key for every encryption, so the new ciphertext shares nothing
        // with the old one (which stays readable in git history by whoever could read it).
        let dir = env.dir();
        let mut t = Transaction::new(&self.root);
        t.write(
            dir.join(BUNDLE_FILE),
            &agestore::seal(plain.expose(), &next)?,
            Mode::Secret,
        );
        // Every other secret of the environment too: the issuers' sealed keys.
        let mut resealed = vec![BUNDLE_FILE.to_owned()];
        for issuer in self.load_issuers(&env)? {
            if let IssuerKey::Age { .. } = issuer.meta.key {
                let rel = Self::issuers_dir(&env)
                    .join(&issuer.meta.id)
                    .join(ISSUER_KEY_FILE);
                let (key, _) = self.open_sealed(&env, &rel, ctx)?;
                t.write(&rel, &agestore::seal(key.expose(), &next)?, Mode::Secret);
                resealed.push(format!("issuers/{}/{ISSUER_KEY_FILE}", issuer.meta.id));
            }
        }
        // A new audit key epoch, sealed to the new set only: a removed recipient can no longer
        // MAC events (older epochs stay, to verify older events).
        if self.sealed() {
            let (mut keys, _) = self.open_audit_keys(&env, ctx)?;
            let epoch = keys.current().map_or(0, |k| k.epoch) + 1;
            let mut root = zeroize::Zeroizing::new([0u8; 32]);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut root[..])
                .map_err(|_| VaultError::Generate("no randomness".into()))?;
            keys.keys.push(EpochKey::new(epoch, &root));
            t.write(
                dir.join(AUDIT_KEYS_FILE),
                &agestore::seal(&keys.to_json(), &next)?,
                Mode::Secret,
            );
            resealed.push(AUDIT_KEYS_FILE.to_owned());
            self.use_audit_keys(&env, &keys)?;
            // And a new backup lane epoch, sealed to the new set and the backup-only
            // recipients.
            let only = self.backup_only_recipients(&env)?;
            self.stage_lane_keys(&mut t, &env, ctx, &keys.bundle_sha256, &next, &only)?;
        }
        t.write(
            dir.join("recipients.txt"),
            recipients_txt(&next).as_bytes(),
            Mode::Public,
        );
        let names = |rs: &[Recipient]| rs.iter().map(|r| r.as_str().to_owned()).collect();
        let (added, removed, recipients) = (names(add), names(remove), names(&next));
        let action = match change {
            RecipientChange::Add => Action::RecipientsAdd {
                added,
                removed,
                recipients,
                resealed,
            },
            RecipientChange::Remove => Action::RecipientsRemove {
                added,
                removed,
                recipients,
                resealed,
            },
        };
        self.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        self.commit(t)?;
        Ok(next.iter().map(|r| r.as_str().to_owned()).collect())
    }
}
