//! Holders: add one (recipients to seal deliveries to, and a standing grant checked against the
//! policy), list them with where their renewal stands, remove one. One record file per holder
//! (`holders/<name>.yaml`), each written and removed under an audit event, so two operators
//! adding two teammates in two clones merge without conflict. The read side the other rooms
//! use (`holder`, `holders`) trusts only records the audit chain registered and agrees with.

use serde::Serialize;

use super::records::LiveCert;
use super::{Context, Env, META_MAX, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::holder::{
    HOLDER_VERSION, HOLDERS_DIR, HolderName, HolderRecord, KeySource, Renewal, StandingGrant,
    renewal,
};
use crate::inventory::{self, CertEntry};
use crate::pki::policy::Request;
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::store::age::Recipient;
use crate::store::txn::Transaction;
use crate::store::{self, Mode, StoreError};

/// `holder add`: who, sealed to what, granted what.
pub struct NewHolder {
    /// The environment.
    pub env: String,
    /// The holder.
    pub name: HolderName,
    /// Recipients deliveries are sealed to.
    pub recipients: Vec<Recipient>,
    /// The standing grant's roles (none: no standing grant).
    pub roles: Vec<Role>,
    /// The standing grant's TTL (default: the policy's default for the roles).
    pub ttl: Option<Ttl>,
    /// Where the holder's key comes from.
    pub key: KeySource,
}

/// A holder as `holder list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HolderView {
    /// The name.
    pub name: String,
    /// The recipients deliveries are sealed to.
    pub recipients: Vec<String>,
    /// The standing grant's roles (empty: none).
    pub roles: Vec<String>,
    /// The standing grant's TTL.
    pub ttl: Option<String>,
    /// `generated` or `csr`.
    pub key: &'static str,
    /// When the holder was added.
    pub added: String,
    /// Who added them.
    pub added_by: String,
    /// Their live certificates (not revoked, issuer not retired), soonest expiry first.
    pub live: Vec<LiveCert>,
    /// Where the standing grant's renewal stands: `due` (now), the time it will be due, or
    /// `none` (no standing grant).
    pub renewal: String,
}

/// The holders an environment can rely on, and the records left out (with why).
pub(super) struct Holders {
    /// Registered by the chain, their records agreeing with it.
    pub records: Vec<(HolderName, HolderRecord)>,
    /// What was left out, one line each.
    pub problems: Vec<String>,
}

fn holder_path(env: &Env, name: &HolderName) -> std::path::PathBuf {
    env.dir().join(HOLDERS_DIR).join(name.file_name())
}

impl Vault {
    /// `holder add`: checks the standing grant against the policy (a TTL above the maximum and
    /// a standing `os:admin` are refused, never adjusted), writes the record and audits it.
    pub fn holder_add(&self, new: NewHolder, ctx: &Context) -> Result<HolderView, VaultError> {
        let env = self.env_for(&new.env, ctx)?;
        let name = new.name;
        if new.recipients.is_empty() {
            return Err(VaultError::NoHolderRecipients {
                holder: name.to_string(),
            });
        }
        let rel = holder_path(&env, &name);
        let exists = match self.read(&rel, META_MAX) {
            Ok(_) => true,
            Err(VaultError::Store(StoreError::NotFound { .. })) => false,
            Err(e) => return Err(e),
        };
        if exists || self.chain(&env)?.holders.contains(name.as_str()) {
            return Err(VaultError::HolderExists {
                env: env.as_str().into(),
                holder: name.to_string(),
            });
        }
        let grant = if new.roles.is_empty() {
            None
        } else {
            let granted = self.read_policy(&env)?.standing_grant(&Request {
                roles: new.roles,
                ttl: new.ttl,
                holder: Some(name.holder().clone()),
                break_glass: None,
            })?;
            Some(StandingGrant {
                roles: granted.roles().to_vec(),
                ttl: granted.ttl(),
            })
        };
        let record = HolderRecord {
            version: HOLDER_VERSION,
            name: name.to_string(),
            recipients: new
                .recipients
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            grant,
            key: new.key,
            added: rfc3339(ctx.now),
            added_by: ctx.actor.clone(),
        };
        let mut t = Transaction::new(&self.root);
        t.create(&rel, record.to_yaml()?.as_bytes(), Mode::Public);
        let action = Action::HolderAdd {
            holder: record.name.clone(),
            recipients: record.recipients.clone(),
            roles: grant_roles(&record),
            ttl: record.grant.as_ref().map(|g| g.ttl.to_string()),
            key: record.key.as_str().to_owned(),
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        let trusted = self.trusted(&env)?;
        let cut = self.cut_off(&env, &trusted.certs, &trusted.revoked)?;
        Ok(self.finish(view(
            &record,
            &trusted.certs,
            &cut.iter().map(String::as_str).collect(),
            ctx.now.unix_timestamp(),
        )))
    }

    /// `holder list`: every holder the environment can rely on, by name, with their live
    /// certificates and where their renewal stands (by the default window); records the chain
    /// does not account for are left out and reported in `problems`.
    pub fn holder_list(
        &self,
        env: &str,
        ctx: &Context,
    ) -> Result<(Vec<HolderView>, Vec<String>), VaultError> {
        let env = self.env_for(env, ctx)?;
        let holders = self.holders(&env)?;
        let trusted = self.trusted(&env)?;
        let cut = self.cut_off(&env, &trusted.certs, &trusted.revoked)?;
        let revoked = cut.iter().map(String::as_str).collect();
        let now = ctx.now.unix_timestamp();
        let views = holders
            .records
            .iter()
            .map(|(_, r)| view(r, &trusted.certs, &revoked, now))
            .collect();
        Ok(self.finish((views, holders.problems)))
    }

    /// `holder remove`: removes the record and audits it. The holder's certificates stay valid
    /// until they expire or are revoked; their serials are returned (and recorded in the event)
    /// so the caller can say so.
    pub fn holder_remove(
        &self,
        env: &str,
        name: &HolderName,
        ctx: &Context,
    ) -> Result<Vec<LiveCert>, VaultError> {
        let env = self.env_for(env, ctx)?;
        if !self.chain(&env)?.holders.contains(name.as_str()) {
            return Err(VaultError::UnknownHolder {
                env: env.as_str().into(),
                holder: name.to_string(),
            });
        }
        let trusted = self.trusted(&env)?;
        let cut = self.cut_off(&env, &trusted.certs, &trusted.revoked)?;
        let revoked = cut.iter().map(String::as_str).collect();
        let now = ctx.now.unix_timestamp();
        let live = live_of_holder(&trusted.certs, &revoked, name.as_str(), now);
        let mut t = Transaction::new(&self.root);
        t.remove(holder_path(&env, name));
        let action = Action::HolderRemove {
            holder: name.to_string(),
            live: live.iter().map(|c| c.serial.clone()).collect(),
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(live)
    }

    /// The serials that no longer give access, as renewal and holder reports count them:
    /// revoked, or signed by a retired issuer (nodes refuse those once the patch is rolled out).
    pub(super) fn cut_off(
        &self,
        env: &Env,
        certs: &[CertEntry],
        revoked: &[inventory::RevokedEntry],
    ) -> Result<std::collections::HashSet<String>, VaultError> {
        let retired: std::collections::HashSet<String> = self
            .load_issuers(env)?
            .into_iter()
            .filter(|i| i.meta.state == crate::model::IssuerState::Retired)
            .map(|i| i.meta.id)
            .collect();
        Ok(revoked
            .iter()
            .map(|r| r.serial.clone())
            .chain(
                certs
                    .iter()
                    .filter(|c| retired.contains(&c.ca))
                    .map(|c| c.serial.clone()),
            )
            .collect())
    }

    /// The record of holder `name`: registered by the chain, agreeing with it.
    pub(super) fn holder(&self, env: &Env, name: &HolderName) -> Result<HolderRecord, VaultError> {
        let unknown = || VaultError::UnknownHolder {
            env: env.as_str().into(),
            holder: name.to_string(),
        };
        if !self.chain(env)?.holders.contains(name.as_str()) {
            return Err(unknown());
        }
        let rel = holder_path(env, name);
        let bytes = match self.read(&rel, META_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => {
                return Err(VaultError::Disagrees {
                    file: rel.display().to_string(),
                    message: "it is missing, but the audit trail registered the holder".into(),
                });
            }
            other => other?,
        };
        self.agrees(
            env,
            &format!("{HOLDERS_DIR}/{}", name.file_name()),
            &crate::digest::sha256_hex(&bytes),
        )?;
        Ok(HolderRecord::from_yaml(
            &rel.display().to_string(),
            &bytes,
            name,
        )?)
    }

    /// Every holder the environment can rely on, by name; what is left out says why.
    pub(super) fn holders(&self, env: &Env) -> Result<Holders, VaultError> {
        let chain = self.chain(env)?;
        let dir = env.dir().join(HOLDERS_DIR);
        let entries = match store::fs::list_dir(&self.root, &dir) {
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        let mut out = Holders {
            records: Vec::new(),
            problems: Vec::new(),
        };
        let shown = |name: &str| format!("{}/{name}", dir.display());
        let mut seen = std::collections::BTreeSet::new();
        for e in entries {
            if e.name.starts_with('.') {
                continue;
            }
            let parsed = e
                .name
                .strip_suffix(".yaml")
                .and_then(|stem| HolderName::parse(stem).ok())
                .filter(|n| n.file_name() == e.name);
            let Some(name) = parsed else {
                out.problems.push(format!(
                    "{} is not a holder record; not counted",
                    shown(&e.name)
                ));
                continue;
            };
            seen.insert(name.to_string());
            if !chain.holders.contains(name.as_str()) {
                out.problems.push(format!(
                    "{}: no audit event registered this holder; not counted",
                    shown(&e.name)
                ));
                continue;
            }
            match self.holder(env, &name) {
                Ok(record) => out.records.push((name, record)),
                Err(
                    e @ (VaultError::Disagrees { .. } | VaultError::Meta(_) | VaultError::Store(_)),
                ) => out.problems.push(format!("{e}; not counted")),
                Err(e) => return Err(e),
            }
        }
        for name in chain.holders.iter().filter(|n| !seen.contains(*n)) {
            out.problems.push(format!(
                "{}: missing, but the audit trail registered holder {name:?}; not counted",
                shown(&format!("{name}.yaml"))
            ));
        }
        Ok(out)
    }
}

fn grant_roles(record: &HolderRecord) -> Vec<String> {
    record
        .grant
        .as_ref()
        .map(|g| g.roles.iter().map(|r| r.as_str().to_owned()).collect())
        .unwrap_or_default()
}

/// The holder's live certificates (not in `revoked`: revoked or cut off), soonest expiry first.
pub(super) fn live_of_holder(
    certs: &[CertEntry],
    revoked: &std::collections::HashSet<&str>,
    holder: &str,
    now: i64,
) -> Vec<LiveCert> {
    let mut out: Vec<&CertEntry> = certs
        .iter()
        .filter(|c| {
            c.holder.as_deref() == Some(holder)
                && c.live_at(now)
                && !revoked.contains(c.serial.as_str())
        })
        .collect();
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
    out.into_iter().map(LiveCert::of).collect()
}

fn view(
    record: &HolderRecord,
    certs: &[CertEntry],
    revoked: &std::collections::HashSet<&str>,
    now: i64,
) -> HolderView {
    let renewal = match &record.grant {
        None => "none".to_owned(),
        Some(g) => match renewal(&record.name, &g.roles, certs, revoked, now, None) {
            Renewal::NotDue { due, .. } => inventory::rfc3339(due),
            _ => "due".to_owned(),
        },
    };
    HolderView {
        name: record.name.clone(),
        recipients: record.recipients.clone(),
        roles: grant_roles(record),
        ttl: record.grant.as_ref().map(|g| g.ttl.to_string()),
        key: record.key.as_str(),
        added: record.added.clone(),
        added_by: record.added_by.clone(),
        live: live_of_holder(certs, revoked, &record.name, now),
        renewal,
    }
}
