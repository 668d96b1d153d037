//! Sealed backups of an environment (etcd snapshots, or any file). `backup seal` streams a
//! file through age to the environment's recipients plus its backup-only ones
//! (`backup-recipients.txt`) and records it in `backups/<id>.yaml`; `backup open` and `backup
//! verify` decrypt one as a stream and check it against its record (and an etcd snapshot
//! against its own SHA-256); `backup reseal` re-encrypts one to the current recipients; `backup
//! list` and `backup prune` read and retire records; `recipients … --backup-only` edits the
//! backup-only set. Every stream goes through fixed 64 KiB buffers, and seal, verify and reseal
//! write no plaintext anywhere. The sealed files live wherever the operator keeps them; the
//! vault holds only their records, and never reaches into that storage.
//!
//! Format 2: records and `backup-recipients.txt` are checked against the chain before use, and
//! the commands that record load the environment with `env_for_backup`, so that a backup-only
//! identity records its `backup.*` events through the backup lane (`backup-audit.age`); what
//! `status` calls verified comes from the trusted chain.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use super::trail::BACKUP_RECIPIENTS_FILE;
use super::{Context, Env, META_MAX, RecipientChange, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::backup::background::Background;
use crate::backup::{
    self, BackupRecord, CHUNK, Health, HealthProblem, RECORD_VERSION, Sealed, SealedDigest,
    VerifyMark, etcd,
};
use crate::digest::Fingerprint;
use crate::hex;
use crate::model::Sealing;
use crate::pki::policy::Policy;
use crate::store::age::stream::{self as agestream, OpenStream};
use crate::store::age::{OpenedBy, Recipient};
use crate::store::txn::Transaction;
use crate::store::{self, Mode, StoreError};

/// The directory of backup records in an environment directory.
const BACKUPS_DIR: &str = "backups";

mod recipients;
mod types;
pub use types::*;

fn text(what: &'static str, value: Option<&str>) -> Result<Option<String>, VaultError> {
    let check = match what {
        "label" => backup::label,
        "reason" => backup::reason,
        _ => backup::location,
    };
    value
        .map(|v| check(v).map_err(|problem| VaultError::BackupText { what, problem }))
        .transpose()
}

fn fingerprints(recipients: &[Recipient]) -> Vec<Fingerprint> {
    recipients
        .iter()
        .map(|r| backup::recipient_fingerprint(r.as_str()))
        .collect()
}

/// `backup-recipients.txt`.
fn backup_recipients_txt(recipients: &[Recipient]) -> String {
    let mut s = String::from(
        "# Backup-only age recipients: they open this environment's backups, never its bundle\n\
         # (one per line; `age -R` format).\n",
    );
    for r in recipients {
        s.push_str(r.as_str());
        s.push('\n');
    }
    s
}

/// Reads `input` to its end in 64 KiB pieces into `scan` and `out`.
fn pump(
    input: &mut dyn Read,
    scan: &mut Background<etcd::Scan>,
    out: &mut dyn Write,
    input_name: &str,
) -> Result<(), VaultError> {
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(VaultError::BackupIo {
                    what: format!("reading {input_name}"),
                    source,
                });
            }
        };
        scan.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|source| VaultError::BackupIo {
                what: "writing the sealed file".into(),
                source,
            })?;
    }
}

impl Vault {
    fn backups_dir(env: &Env) -> PathBuf {
        env.dir().join(BACKUPS_DIR)
    }

    /// What a backup of `env` is sealed to now: its recipients (none for a passphrase
    /// environment, whose backups go to backup-only recipients) and its backup-only ones.
    fn backup_recipient_sets(
        &self,
        env: &Env,
    ) -> Result<(Vec<Recipient>, Vec<Recipient>), VaultError> {
        let main = match env.meta.sealing {
            Sealing::Recipients => self.recipients(env)?,
            Sealing::Passphrase => Vec::new(),
        };
        let mut only = self.backup_only_recipients(env)?;
        only.retain(|r| !main.contains(r));
        if main.is_empty() && only.is_empty() {
            return Err(VaultError::NoBackupRecipients {
                env: env.as_str().into(),
            });
        }
        Ok((main, only))
    }

    /// Every backup record of `env`, each checked against the audit chain (format 2): a
    /// record no trusted event wrote, or one changed since, is refused like any other file
    /// the chain disagrees with (after parsing, so a damaged record gets the parser's message).
    fn backup_records(&self, env: &Env) -> Result<Vec<BackupRecord>, VaultError> {
        let dir = Self::backups_dir(env);
        let entries = match store::fs::list_dir(&self.root, &dir) {
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        let mut out = Vec::new();
        for e in entries {
            let Some(stem) = e.name.strip_suffix(".yaml") else {
                continue;
            };
            if e.name.starts_with(store::fs::TEMP_PREFIX) {
                continue;
            }
            let rel = dir.join(&e.name);
            let bytes = self.read(&rel, META_MAX)?;
            let record = BackupRecord::from_yaml(&rel.display().to_string(), stem, &bytes)?;
            self.agrees(
                env,
                &format!("{BACKUPS_DIR}/{}", e.name),
                &crate::digest::sha256_hex(&bytes),
            )?;
            out.push(record);
        }
        Ok(out)
    }

    /// The `backup.verify` marks of `env`'s trusted audit chain (a verification event the
    /// chain does not trust, such as one a forger dropped in, makes no backup fresh).
    fn verify_marks(&self, env: &Env) -> Result<Vec<VerifyMark>, VaultError> {
        Ok(self
            .chain(env)?
            .backups_verified
            .iter()
            .map(|v| VerifyMark {
                id: v.id.clone(),
                sha256: v.sealed_sha256.clone(),
                time: v.time,
            })
            .collect())
    }

    /// Finds the record of the sealed file `file` by its head, and refuses a file whose length
    /// differs from the record's before anything is decrypted.
    fn find_backup(
        &self,
        env: &Env,
        shown: &Path,
        file: &File,
    ) -> Result<BackupRecord, VaultError> {
        let io_err = |source| VaultError::BackupIo {
            what: format!("reading {}", shown.display()),
            source,
        };
        let len = file.metadata().map_err(io_err)?.len();
        // Every record checked against the chain: an edited or planted record would vouch for
        // other bytes.
        let records = self.backup_records(env)?;
        let longest = records.iter().map(|r| r.sealed.head_len).max().unwrap_or(0);
        let prefix = agestream::read_prefix(file, longest).map_err(io_err)?;
        let record = backup::find_by_head(&records, &prefix)
            .cloned()
            .ok_or_else(|| VaultError::UnknownBackup {
                env: env.as_str().into(),
                file: shown.display().to_string(),
            })?;
        if len != record.sealed.size {
            return Err(VaultError::BackupMismatch {
                file: shown.display().to_string(),
                id: record.id.clone(),
                problem: Box::new(backup::Mismatch::Size {
                    what: "the sealed file",
                    recorded: record.sealed.size,
                    found: len,
                }),
            });
        }
        Ok(record)
    }

    /// Finds the backup and opens it with the context's identities.
    fn open_backup<'a>(
        &self,
        env: &Env,
        shown: &Path,
        file: &'a File,
        ctx: &Context,
    ) -> Result<(BackupStream<'a>, OpenedBy), VaultError> {
        let record = self.find_backup(env, shown, file)?;
        if ctx.identities.is_empty() {
            return Err(VaultError::NoIdentity {
                env: env.as_str().into(),
                file: Some(shown.display().to_string()),
            });
        }
        let (inner, opened_by) = agestream::open(shown, file, &ctx.identities)?;
        Ok((
            BackupStream {
                inner,
                scan: Background::spawn(),
                read: 0,
                record,
                file: shown.display().to_string(),
            },
            opened_by,
        ))
    }

    /// `backup seal`: streams `input` through age into `out`, to the environment's recipients
    /// and backup-only ones, reading the plaintext's size, SHA-256 and (for an etcd snapshot)
    /// its header and trailer on the way. Refuses a damaged snapshot once its end shows it.
    /// Nothing is recorded yet: publish `out`, then [`Vault::backup_record`].
    pub fn backup_seal<W: Write>(
        &self,
        env: &str,
        input: &mut dyn Read,
        out: W,
        req: SealRequest,
        ctx: &Context,
    ) -> Result<(W, PendingSeal), VaultError> {
        let env = self.env_for_backup(env, ctx)?;
        let label = text("label", req.label.as_deref())?;
        let location = text("location", req.location.as_deref())?;
        let (main, only) = self.backup_recipient_sets(&env)?;
        let all: Vec<Recipient> = main.iter().chain(&only).cloned().collect();
        let mut scan = Background::<etcd::Scan>::spawn();
        let mut sealer = agestream::seal(out, &all, age::NoCallbacks)?;
        pump(input, &mut scan, &mut sealer, &req.input)?;
        let (out, sealed) = sealer.finish().map_err(|source| VaultError::BackupIo {
            what: "writing the sealed file".into(),
            source,
        })?;
        let contents =
            backup::classify(&scan.finish().finish(), req.db_copy).map_err(|problem| {
                VaultError::BackupContents {
                    input: req.input.clone(),
                    problem: Box::new(problem),
                }
            })?;
        let sha256 = hex::encode(&sealed.sha256);
        let record = BackupRecord {
            version: RECORD_VERSION,
            id: sha256[..backup::ID_LEN].to_owned(),
            label,
            created: rfc3339(ctx.now),
            actor: ctx.actor.clone(),
            location,
            contents,
            sealed: sealed_facts(&sealed, &main, &only, None),
        };
        Ok((
            out,
            PendingSeal {
                env: env.as_str().into(),
                record,
            },
        ))
    }

    /// Writes the record of a sealed backup, with its audit event.
    pub fn backup_record(
        &self,
        pending: PendingSeal,
        ctx: &Context,
    ) -> Result<BackupRecord, VaultError> {
        let env = self.env_for_backup(&pending.env, ctx)?;
        let r = pending.record;
        let mut t = Transaction::new(&self.root);
        t.create(
            Self::backups_dir(&env).join(format!("{}.yaml", r.id)),
            r.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let action = Action::BackupSeal {
            id: r.id.clone(),
            label: r.label.clone(),
            format: r.contents.format.as_str().into(),
            size: r.contents.size,
            sha256: r.contents.sha256.clone(),
            etcd_sha256: etcd_sha256(&r),
            sealed_sha256: r.sealed.sha256.clone(),
            location: r.location.clone(),
            recipients: r.sealed.recipients.clone(),
            backup_only: r.sealed.backup_only.clone(),
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(r)
    }

    /// `backup open`, first half: checks the policy's reason rule, finds the record, opens the
    /// sealed file with the context's identities. Nothing is decrypted or audited yet: record
    /// the use with [`Vault::backup_opened`] before plaintext reaches anyone (a program, stdout)
    /// or once it checked out and before it is published (a file).
    pub fn backup_open<'a>(
        &self,
        env: &str,
        shown: &Path,
        file: &'a File,
        reason: Option<&str>,
        ctx: &Context,
    ) -> Result<(BackupStream<'a>, PendingOpen), VaultError> {
        let env = self.env_for_backup(env, ctx)?;
        let reason = text("reason", reason)?;
        if reason.is_none() && self.read_policy(&env)?.backup_rules().open_requires_reason {
            return Err(VaultError::ReasonRequired {
                env: env.as_str().into(),
            });
        }
        let (stream, opened_by) = self.open_backup(&env, shown, file, ctx)?;
        let pending = PendingOpen {
            env: env.as_str().into(),
            id: stream.record.id.clone(),
            sealed_sha256: stream.record.sealed.sha256.clone(),
            opened_by,
            reason,
        };
        Ok((stream, pending))
    }

    /// `backup open`, second half: the audit event.
    pub fn backup_opened(
        &self,
        pending: PendingOpen,
        to: OpenTo,
        ctx: &Context,
    ) -> Result<(), VaultError> {
        let env = self.env_for_backup(&pending.env, ctx)?;
        let (destination, program) = match to {
            OpenTo::File => ("file", None),
            OpenTo::Stdout => ("stdout", None),
            OpenTo::Exec { program } => ("exec", Some(program)),
        };
        let action = Action::BackupOpen {
            id: pending.id,
            sealed_sha256: pending.sealed_sha256,
            destination: destination.into(),
            program,
            reason: pending.reason,
        };
        let mut t = Transaction::new(&self.root);
        self.stage_event(&mut t, &env, ctx, Some(&pending.opened_by), &action)?;
        self.commit(t)
    }

    /// `backup verify`: decrypts the whole backup in memory, piece by piece, checks it against
    /// its record and an etcd snapshot against its own SHA-256, and records the success. No
    /// plaintext is written anywhere; a failure records nothing.
    pub fn backup_verify(
        &self,
        env: &str,
        shown: &Path,
        file: &File,
        ctx: &Context,
    ) -> Result<BackupRecord, VaultError> {
        let env = self.env_for_backup(env, ctx)?;
        let (mut stream, opened_by) = self.open_backup(&env, shown, file, ctx)?;
        stream.copy_to(&mut io::sink())?;
        let r = stream.finish()?;
        let action = Action::BackupVerify {
            id: r.id.clone(),
            sealed_sha256: r.sealed.sha256.clone(),
            size: r.contents.size,
            sha256: r.contents.sha256.clone(),
            format: r.contents.format.as_str().into(),
            etcd_sha256: etcd_sha256(&r),
        };
        let mut t = Transaction::new(&self.root);
        self.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        self.commit(t)?;
        Ok(r)
    }

    /// `backup reseal`: decrypts the backup and encrypts it again, as one stream, to the
    /// current recipients and backup-only recipients with a fresh file key, checking the old
    /// one against its record on the way. Publish `out`, then [`Vault::backup_resealed`].
    pub fn backup_reseal<W: Write>(
        &self,
        env: &str,
        shown: &Path,
        file: &File,
        out: W,
        ctx: &Context,
    ) -> Result<(W, PendingReseal), VaultError> {
        let env = self.env_for_backup(env, ctx)?;
        let (main, only) = self.backup_recipient_sets(&env)?;
        let all: Vec<Recipient> = main.iter().chain(&only).cloned().collect();
        let (mut stream, opened_by) = self.open_backup(&env, shown, file, ctx)?;
        let mut sealer = agestream::seal(out, &all, age::NoCallbacks)?;
        let copied = stream.copy_to(&mut sealer)?;
        if let Some(source) = copied.write_error {
            return Err(VaultError::BackupIo {
                what: "writing the re-sealed file".into(),
                source,
            });
        }
        let (out, sealed) = sealer.finish().map_err(|source| VaultError::BackupIo {
            what: "writing the re-sealed file".into(),
            source,
        })?;
        let mut record = stream.finish()?;
        let previous_sha256 = record.sealed.sha256.clone();
        record.sealed = sealed_facts(&sealed, &main, &only, Some(rfc3339(ctx.now)));
        Ok((
            out,
            PendingReseal {
                env: env.as_str().into(),
                previous_sha256,
                record,
                opened_by,
            },
        ))
    }

    /// Replaces the record of a re-sealed backup, with its audit event.
    pub fn backup_resealed(
        &self,
        pending: PendingReseal,
        ctx: &Context,
    ) -> Result<BackupRecord, VaultError> {
        let env = self.env_for_backup(&pending.env, ctx)?;
        let r = pending.record;
        let mut t = Transaction::new(&self.root);
        t.write(
            Self::backups_dir(&env).join(format!("{}.yaml", r.id)),
            r.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let action = Action::BackupReseal {
            id: r.id.clone(),
            previous_sha256: pending.previous_sha256,
            sealed_sha256: r.sealed.sha256.clone(),
            recipients: r.sealed.recipients.clone(),
            backup_only: r.sealed.backup_only.clone(),
        };
        self.stage_event(&mut t, &env, ctx, Some(&pending.opened_by), &action)?;
        self.commit(t)?;
        Ok(r)
    }

    /// `backup list`: every record, newest first, with when its current sealed file was last
    /// verified and whether it is sealed to the current recipients. Opens nothing.
    pub fn backup_list(&self, env: &str) -> Result<Vec<BackupView>, VaultError> {
        let env = self.env(env)?;
        let mut records = self.backup_records(&env)?;
        newest_first(&mut records);
        let verified = backup::last_verified(&records, &self.verify_marks(&env)?);
        let current = self.current_fingerprints(&env)?;
        let stale = backup::staleness(&records, &current);
        let out = records
            .into_iter()
            .map(|r| {
                let s = stale.iter().find(|s| s.id == r.id);
                BackupView {
                    verified: verified.get(&r.id).map(|t| crate::inventory::rfc3339(*t)),
                    sealed_to_removed: s.map_or(0, |s| s.removed),
                    missing_current: s.map_or(0, |s| s.missing),
                    etcd_sha256: etcd_sha256(&r),
                    format: r.contents.format.as_str(),
                    size: r.contents.size,
                    sha256: r.contents.sha256,
                    sealed_size: r.sealed.size,
                    sealed_sha256: r.sealed.sha256,
                    resealed: r.sealed.resealed,
                    id: r.id,
                    label: r.label,
                    created: r.created,
                    actor: r.actor,
                    location: r.location,
                }
            })
            .collect();
        Ok(self.finish(out))
    }

    /// Fingerprints of every recipient a backup of `env` would be sealed to now. A passphrase
    /// environment without backup-only recipients has none.
    fn current_fingerprints(&self, env: &Env) -> Result<BTreeSet<Fingerprint>, VaultError> {
        Ok(match self.backup_recipient_sets(env) {
            Ok((main, only)) => fingerprints(&main)
                .into_iter()
                .chain(fingerprints(&only))
                .collect(),
            Err(VaultError::NoBackupRecipients { .. }) => BTreeSet::new(),
            Err(e) => return Err(e),
        })
    }

    /// The backups sealed to another set than the current recipients (after `recipients add`
    /// or `remove`, say): those `backup reseal` should visit. Opens nothing.
    pub fn backups_stale(&self, env: &str) -> Result<Vec<StaleBackup>, VaultError> {
        let env = self.env(env)?;
        let mut records = self.backup_records(&env)?;
        newest_first(&mut records);
        let current = self.current_fingerprints(&env)?;
        let stale = backup::staleness(&records, &current);
        let out = records
            .into_iter()
            .filter_map(|r| {
                let s = stale.iter().find(|s| s.id == r.id)?;
                Some(StaleBackup {
                    sealed_to_removed: s.removed,
                    missing_current: s.missing,
                    id: r.id,
                    label: r.label,
                    created: r.created,
                    location: r.location,
                })
            })
            .collect();
        Ok(self.finish(out))
    }

    /// `backup prune --keep N`: removes every record but the `keep` newest, with one audit
    /// event; returns the removed records, whose files the operator deletes where backups live
    /// (talvault never reaches there). Nothing to remove writes nothing.
    pub fn backup_prune(
        &self,
        env: &str,
        keep: usize,
        ctx: &Context,
    ) -> Result<Vec<BackupRecord>, VaultError> {
        if keep == 0 {
            return Err(VaultError::KeepNothing);
        }
        let env = self.env_for_backup(env, ctx)?;
        let mut records = self.backup_records(&env)?;
        newest_first(&mut records);
        let removed: Vec<BackupRecord> = records.into_iter().skip(keep).collect();
        if removed.is_empty() {
            return Ok(self.finish(removed));
        }
        let mut t = Transaction::new(&self.root);
        for r in &removed {
            t.remove(Self::backups_dir(&env).join(format!("{}.yaml", r.id)));
        }
        let action = Action::BackupPrune {
            keep,
            removed: removed.iter().map(|r| r.id.clone()).collect(),
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(removed)
    }

    /// For `status`: how fresh `env`'s verified backups are under its policy.
    pub(super) fn backup_health(
        &self,
        env: &Env,
        policy: &Policy,
        now: i64,
    ) -> Result<(Health, Option<HealthProblem>), VaultError> {
        let records = self.backup_records(env)?;
        let max_age = policy.backup_rules().max_age.as_duration().whole_seconds();
        if records.is_empty() {
            return Ok(backup::health(
                &[],
                &Default::default(),
                max_age,
                policy.backup.is_some(),
                now,
            ));
        }
        let verified = backup::last_verified(&records, &self.verify_marks(env)?);
        let dated: Vec<(i64, &BackupRecord)> = records
            .iter()
            .filter_map(|r| Some((r.created_unix()?, r)))
            .collect();
        Ok(backup::health(
            &dated,
            &verified,
            max_age,
            policy.backup.is_some(),
            now,
        ))
    }
}

/// Newest first (by seal time, then id, so the order is total).
fn newest_first(records: &mut [BackupRecord]) {
    records.sort_by(|a, b| {
        b.created_unix()
            .cmp(&a.created_unix())
            .then_with(|| a.id.cmp(&b.id))
    });
}

fn etcd_sha256(r: &BackupRecord) -> Option<String> {
    r.contents.etcd.as_ref().and_then(|e| e.sha256.clone())
}

fn sealed_facts(
    d: &SealedDigest,
    main: &[Recipient],
    only: &[Recipient],
    resealed: Option<String>,
) -> Sealed {
    Sealed {
        size: d.size,
        sha256: hex::encode(&d.sha256),
        head_len: d.head_len,
        head_sha256: hex::encode(&d.head_sha256),
        recipients: fingerprints(main),
        backup_only: fingerprints(only),
        resealed,
    }
}
