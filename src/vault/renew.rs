//! `renew`: re-issues every due standing grant in one go, as a typestate. `prepare_renewal`
//! loads the environment, its policy, holders, records and signer once, and decides per holder:
//! renewed (no live certificate for the grant, or the newest expires within the window),
//! not due, or skipped and reported (a grant the policy no longer allows is never widened or
//! clamped; a CSR-only holder without a fresh CSR; a certificate that would outlive the
//! issuer). `PreparedRenewal::renew` opens the signing key once, signs, seals each talosconfig
//! to its holder, and records every certificate with its own audit event (chained, so the
//! trail stays linear) in one transaction: one lock, one key opening, one commit.

use serde::Serialize;

use super::delivery::{DeliveryKind, recipients_of, seal_talosconfig, sealed_file_name};
use super::records::{Issuer, signing_issuer};
use super::signer::cert_record;
use super::{Context, Env, Vault, VaultError, rfc3339};
use crate::holder::{HolderName, HolderRecord, KeySource, Renewal, renewal};
use crate::inventory;
use crate::model::Api;
use crate::pki::issue::{IssueTime, SubjectKey, verify_csr};
use crate::pki::policy::{Grant, Request};
use crate::pki::ttl::Ttl;
use crate::secret::SecretBytes;
use crate::store::age::Recipient;
use crate::store::txn::Transaction;
use crate::talosconfig;

/// Whose standing grants `renew` looks at.
#[derive(Debug, Clone)]
pub enum RenewWho {
    /// Every holder with a standing grant.
    All,
    /// One holder.
    One(HolderName),
}

/// What `renew` is asked for.
pub struct RenewRequest {
    /// The environment.
    pub env: String,
    /// Whose grants.
    pub who: RenewWho,
    /// Renew certificates that expire within this window (default: a third of each one's
    /// lifetime).
    pub expiring: Option<Ttl>,
    /// A fresh CSR, for one CSR-only holder.
    pub csr: Option<SecretBytes>,
    /// Armor the sealed files.
    pub armor: bool,
}

/// A certificate `renew` will issue (or, with `--dry-run`, would).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRenewal {
    /// The holder.
    pub holder: String,
    /// The roles.
    pub roles: Vec<String>,
    /// The TTL.
    pub ttl: String,
    /// Why now.
    pub why: String,
    /// The sealed file's name in the outbox.
    pub file: String,
}

/// A holder `renew` did not renew although due, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedHolder {
    /// The holder.
    pub holder: String,
    /// Why.
    pub reason: String,
}

/// A holder whose certificate is not due yet.
#[derive(Debug, Clone, Serialize)]
pub struct NotDue {
    /// The holder.
    pub holder: String,
    /// Their newest certificate for the grant.
    pub serial: String,
    /// Its notAfter.
    pub not_after: String,
    /// When it will be due.
    pub due: String,
}

/// One renewed certificate and its sealed talosconfig.
#[derive(Debug, Clone)]
pub struct RenewedCert {
    /// The holder.
    pub holder: String,
    /// Serial, hex.
    pub serial: String,
    /// notAfter.
    pub not_after: String,
    /// The file name in the outbox.
    pub file: String,
    /// The talosconfig sealed to the holder.
    pub sealed: Vec<u8>,
}

/// What `renew` did.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The certificates, in holder order.
    pub issued: Vec<RenewedCert>,
    /// `os` or the issuer id that signed them (`None` when nothing was issued).
    pub signed_by: Option<String>,
}

struct Item {
    name: HolderName,
    grant: Grant,
    recipients: Vec<Recipient>,
    subject_key: SubjectKey,
}

/// A renewal decided, before anything is opened or signed.
pub struct PreparedRenewal<'v> {
    vault: &'v Vault,
    env: Env,
    issuer: Option<Issuer>,
    armor: bool,
    items: Vec<Item>,
    planned: Vec<PlannedRenewal>,
    skipped: Vec<SkippedHolder>,
    not_due: Vec<NotDue>,
    problems: Vec<String>,
}

impl PreparedRenewal<'_> {
    /// What will be issued.
    pub fn planned(&self) -> &[PlannedRenewal] {
        &self.planned
    }

    /// Due holders that will not be renewed, and why.
    pub fn skipped(&self) -> &[SkippedHolder] {
        &self.skipped
    }

    /// Holders not due yet.
    pub fn not_due(&self) -> &[NotDue] {
        &self.not_due
    }

    /// Holder records left out because the audit trail does not account for them.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Opens the signing key once, signs and seals every planned certificate, and records each
    /// with its own audit event in one commit. Nothing is opened when nothing is due.
    pub fn renew(self, ctx: &Context) -> Result<Renewed, VaultError> {
        let PreparedRenewal {
            vault,
            env,
            issuer,
            armor,
            items,
            ..
        } = self;
        if items.is_empty() {
            return Ok(vault.finish(Renewed {
                issued: Vec::new(),
                signed_by: None,
            }));
        }
        let signer = vault.leaf_signer(&env, issuer.as_ref(), ctx)?;
        let rng = ring::rand::SystemRandom::new();
        let time = IssueTime::new(ctx.now);
        let mut t = Transaction::new(&vault.root);
        let mut parents = None;
        let mut issued = Vec::with_capacity(items.len());
        for item in items {
            let csr = matches!(item.subject_key, SubjectKey::FromCsr(_));
            let leaf = signer.sign(&item.grant, item.subject_key, time, &rng)?;
            let record = cert_record(&leaf, &item.grant, &signer, csr, ctx);
            let context = talosconfig::Context::issued(
                env.meta.certificates.os.as_bytes(),
                &leaf.cert_pem,
                leaf.key_pem.as_ref(),
                env.meta.endpoints.clone(),
                env.meta.nodes.clone(),
            );
            let name = talosconfig::context_name(item.grant.roles(), &env.meta.cluster_name);
            let sealed = seal_talosconfig(&name, context, &item.recipients, armor)?;
            let id = vault.stage_certificate(
                &mut t,
                &env,
                ctx,
                &signer.opened_by,
                record,
                parents.take(),
            )?;
            parents = Some(vec![id]);
            issued.push(RenewedCert {
                holder: item.name.to_string(),
                serial: leaf.serial_hex.clone(),
                not_after: rfc3339(leaf.not_after),
                file: sealed_file_name(item.name.as_str(), env.as_str(), DeliveryKind::Talosconfig),
                sealed: sealed.bytes,
            });
        }
        vault.commit(t)?;
        Ok(Renewed {
            issued,
            signed_by: Some(signer.signed_by.ca.clone()),
        })
    }
}

impl Vault {
    /// Decides a renewal: which holders are due, which are not, and which are skipped and why.
    /// Refuses up front what would stop every renewal (no endpoints, no signer the policy
    /// allows, an expired issuer, an unknown holder, a bad CSR).
    pub fn prepare_renewal(
        &self,
        req: RenewRequest,
        ctx: &Context,
    ) -> Result<PreparedRenewal<'_>, VaultError> {
        let env = self.env_for(&req.env, ctx)?;
        if env.meta.endpoints.is_empty() {
            return Err(VaultError::NoEndpoints {
                env: env.as_str().into(),
            });
        }
        let policy = self.read_policy(&env)?;
        let issuers = self.load_issuers(&env)?;
        let issuer = signing_issuer(&issuers, Api::Talos).cloned();
        if issuer.is_none() && !policy.allows_direct(false) {
            return Err(VaultError::DirectForbidden {
                env: env.as_str().into(),
                beside_issuer: false,
            });
        }
        if let Some(i) = &issuer
            && i.facts.not_after <= ctx.now
        {
            return Err(VaultError::IssuerExpired {
                id: i.meta.id.clone(),
                not_after: rfc3339(i.facts.not_after),
            });
        }
        let mut problems = Vec::new();
        let holders: Vec<(HolderName, HolderRecord)> = match &req.who {
            RenewWho::All => {
                let all = self.holders(&env)?;
                problems = all.problems;
                all.records
            }
            RenewWho::One(name) => vec![(name.clone(), self.holder(&env, name)?)],
        };
        let mut csr = match &req.csr {
            Some(bytes) => Some(verify_csr(bytes.expose())?),
            None => None,
        };
        let trusted = self.trusted(&env)?;
        // Revoked certificates and those of a retired issuer give no access: not live.
        let cut = self.cut_off(&env, &trusted.certs, &trusted.revoked)?;
        let revoked = cut.iter().map(String::as_str).collect();
        let now = ctx.now.unix_timestamp();
        let window = req.expiring.map(|t| t.as_duration().whole_seconds());
        let mut prepared = PreparedRenewal {
            vault: self,
            env,
            issuer,
            armor: req.armor,
            items: Vec::new(),
            planned: Vec::new(),
            skipped: Vec::new(),
            not_due: Vec::new(),
            problems,
        };
        for (name, record) in holders {
            let skip = |reason: String| SkippedHolder {
                holder: name.to_string(),
                reason,
            };
            let Some(standing) = &record.grant else {
                if matches!(req.who, RenewWho::One(_)) {
                    prepared
                        .skipped
                        .push(skip("no standing grant (`holder add … --role`)".into()));
                }
                continue;
            };
            let why = match renewal(
                name.as_str(),
                &standing.roles,
                &trusted.certs,
                &revoked,
                now,
                window,
            ) {
                Renewal::NotDue {
                    serial,
                    not_after,
                    due,
                } => {
                    prepared.not_due.push(NotDue {
                        holder: name.to_string(),
                        serial,
                        not_after: inventory::rfc3339(not_after),
                        due: inventory::rfc3339(due),
                    });
                    continue;
                }
                Renewal::NoLiveCertificate => "no live certificate".to_owned(),
                Renewal::Expiring { serial, not_after } => format!(
                    "certificate {serial} expires at {}",
                    inventory::rfc3339(not_after)
                ),
            };
            // The policy of today, applied to the grant of then: refused, never adjusted.
            let grant = match policy.standing_grant(&Request {
                roles: standing.roles.clone(),
                ttl: Some(standing.ttl),
                holder: Some(name.holder().clone()),
                break_glass: None,
            }) {
                Ok(g) => g,
                Err(e) => {
                    prepared.skipped.push(skip(format!(
                        "the policy no longer allows the standing grant: {e}"
                    )));
                    continue;
                }
            };
            if let Some(i) = &prepared.issuer
                && ctx.now + grant.ttl().as_duration() > i.facts.not_after
            {
                prepared.skipped.push(skip(format!(
                    "a {} certificate would outlive issuer {} ({}); rotate the issuer",
                    grant.ttl(),
                    i.meta.id,
                    rfc3339(i.facts.not_after)
                )));
                continue;
            }
            let subject_key = match (record.key, csr.take()) {
                (_, Some(verified)) => SubjectKey::FromCsr(verified),
                (KeySource::Generated, None) => SubjectKey::Generate,
                (KeySource::Csr, None) => {
                    prepared.skipped.push(skip(format!(
                        "CSR-only: needs a fresh CSR (`talvault renew {} --holder {name} --csr FILE`)",
                        prepared.env.as_str()
                    )));
                    continue;
                }
            };
            let file = format!(
                "envs/{}/holders/{}",
                prepared.env.as_str(),
                name.file_name()
            );
            let recipients = match recipients_of(&record, &file) {
                Ok(r) => r,
                Err(e) => {
                    prepared.skipped.push(skip(e.to_string()));
                    continue;
                }
            };
            prepared.planned.push(PlannedRenewal {
                holder: name.to_string(),
                roles: grant
                    .roles()
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                ttl: grant.ttl().to_string(),
                why,
                file: sealed_file_name(
                    name.as_str(),
                    prepared.env.as_str(),
                    DeliveryKind::Talosconfig,
                ),
            });
            prepared.items.push(Item {
                name,
                grant,
                recipients,
                subject_key,
            });
        }
        Ok(prepared)
    }
}
