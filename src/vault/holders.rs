//! Holders: add one (recipients to seal deliveries to, and a standing grant checked against the
//! policy), list them with where their renewal stands, remove one. One record file per holder
//! (`holders/<name>.yaml`), each written and removed under an audit event, so two operators
//! adding two teammates in two clones merge without conflict. The read side (`holder`,
//! `holders`, in `records`) trusts only records the audit chain registered and agrees with.

use serde::Serialize;

use super::records::{LiveCert, holder_path, live_of_holder};
use super::{Context, META_MAX, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::holder::{
    HOLDER_VERSION, HolderName, HolderRecord, KeySource, Renewal, StandingGrant, renewal,
};
use crate::inventory::{self, CertEntry};
use crate::pki::policy::Request;
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::store::age::Recipient;
use crate::store::txn::Transaction;
use crate::store::{Mode, StoreError};

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
}

fn grant_roles(record: &HolderRecord) -> Vec<String> {
    record
        .grant
        .as_ref()
        .map(|g| g.roles.iter().map(|r| r.as_str().to_owned()).collect())
        .unwrap_or_default()
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
