//! `recipients list|add|remove --backup-only`: the backup-only recipients of an environment.

use super::*;

impl Vault {
    /// The backup-only recipients of an environment.
    pub fn backup_recipients_list(&self, env: &str) -> Result<Vec<String>, VaultError> {
        let env = self.env(env)?;
        Ok(self
            .backup_only_recipients(&env)?
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect())
    }

    /// `recipients add|remove --backup-only`: edits `backup-recipients.txt`. Nothing is
    /// re-sealed (no bundle or key is sealed to these); existing backups keep their
    /// recipients until `backup reseal`. Returns the new set.
    pub fn backup_recipients_change(
        &self,
        env: &str,
        change: RecipientChange,
        given: &[Recipient],
        ctx: &Context,
    ) -> Result<Vec<String>, VaultError> {
        let env = self.env_for(env, ctx)?;
        let current = self.backup_only_recipients(&env)?;
        let main = match env.meta.sealing {
            Sealing::Recipients => self.recipients(&env)?,
            Sealing::Passphrase => Vec::new(),
        };
        let mut next = current.clone();
        match change {
            RecipientChange::Add => {
                for r in given {
                    if main.contains(r) {
                        return Err(VaultError::AlreadyARecipient {
                            env: env.as_str().into(),
                            recipient: r.as_str().into(),
                        });
                    }
                    if !next.contains(r) {
                        next.push(r.clone());
                    }
                }
            }
            RecipientChange::Remove => {
                for r in given {
                    if !current.contains(r) {
                        return Err(VaultError::NotABackupRecipient {
                            env: env.as_str().into(),
                            recipient: r.as_str().into(),
                        });
                    }
                }
                next.retain(|c| !given.contains(c));
            }
        }
        let mut t = Transaction::new(&self.root);
        t.write(
            env.dir().join(BACKUP_RECIPIENTS_FILE),
            backup_recipients_txt(&next).as_bytes(),
            Mode::Public,
        );
        // A new backup lane epoch, sealed to the new set: a removed backup-only recipient can
        // no longer record backups (format 2; its old lane keys are retired by this event).
        if self.sealed() {
            let (keys, _) = self.open_audit_keys(&env, ctx)?;
            self.stage_lane_keys(&mut t, &env, ctx, &keys.bundle_sha256, &main, &next)?;
        }
        let names = |rs: &[Recipient]| -> Vec<String> {
            rs.iter().map(|r| r.as_str().to_owned()).collect()
        };
        let (add, remove): (&[Recipient], &[Recipient]) = match change {
            RecipientChange::Add => (given, &[]),
            RecipientChange::Remove => (&[], given),
        };
        let (added, removed, recipients) = (names(add), names(remove), names(&next));
        let action = match change {
            RecipientChange::Add => Action::BackupRecipientsAdd {
                added,
                removed,
                recipients,
            },
            RecipientChange::Remove => Action::BackupRecipientsRemove {
                added,
                removed,
                recipients,
            },
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(names(&next))
    }
}
