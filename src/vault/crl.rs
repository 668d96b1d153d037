//! CRLs: `crl` signs a fresh CRL with an issuer (default: the signing one) over the revocations
//! the audit trail vouches for, audits the use of its key, and hands the CRL to the caller (the
//! vault stores none: they are derived, so clones never conflict over one); `crl --format json`
//! lists every revocation of the environment, direct ones included, opening and signing nothing.

use serde::Serialize;

use super::records::{find_issuer, signing_issuer};
use super::{Context, CrlOutput, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::inventory;
use crate::model::{Api, K8S_CA, OS_CA};
use crate::store::txn::Transaction;

/// One revoked certificate in the JSON denylist.
#[derive(Debug, Clone, Serialize)]
pub struct DenylistEntry {
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// `os` or the issuer id.
    pub issuer: String,
    /// `direct` or `issuer`.
    pub mode: &'static str,
    /// `talos` or `kubernetes`.
    pub api: Api,
    /// RFC 5280 reason.
    pub reason: String,
    /// When revoked.
    pub revoked: String,
    /// The certificate's notAfter.
    pub not_after: String,
}

/// `crl --format json`: every revoked certificate of the environment, direct ones included.
#[derive(Debug, Clone, Serialize)]
pub struct Denylist {
    /// The environment.
    pub env: String,
    /// When it was made.
    pub generated: String,
    /// The entries, by serial.
    pub revoked: Vec<DenylistEntry>,
}

impl Vault {
    /// `crl`: signs a fresh CRL with the issuer (default: the signing Talos issuer, else the
    /// signing Kubernetes issuer) over the revocations the chain vouches for, audits the use of
    /// its key and returns the CRL (derived, never stored).
    pub fn crl(
        &self,
        env: &str,
        issuer_id: Option<&str>,
        ctx: &Context,
    ) -> Result<CrlOutput, VaultError> {
        let env = self.env_for(env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let issuer = match issuer_id {
            Some(id) => find_issuer(&env, &issuers, id)?,
            // The Talos issuer that signs now, else the Kubernetes one.
            None => signing_issuer(&issuers, Api::Talos)
                .or_else(|| signing_issuer(&issuers, Api::Kubernetes))
                .ok_or_else(|| VaultError::NoCrlIssuer {
                    env: env.as_str().into(),
                })?,
        };
        if !issuer.meta.state.accepted() {
            return Err(VaultError::IssuerState {
                id: issuer.meta.id.clone(),
                state: issuer.meta.state.as_str(),
                operation: "a CRL",
                needed: "pending or active",
            });
        }
        if issuer.facts.not_after <= ctx.now {
            return Err(VaultError::IssuerExpired {
                id: issuer.meta.id.clone(),
                not_after: issuer.meta.not_after.clone(),
            });
        }
        let entries = self.trusted(&env)?.revoked;
        let (out, opened_by) = self.build_crl(&env, issuer, &entries, ctx)?;
        // The event records the number; the CRL itself goes to the caller, not into the vault.
        let mut t = Transaction::new(&self.root);
        let action = Action::Crl {
            issuer: out.issuer.clone(),
            crl_number: out.number,
            entries: out.entries,
        };
        self.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        self.commit(t)?;
        Ok(out)
    }

    /// `crl --format json`: every revocation of the environment (direct ones too); opens
    /// nothing and signs nothing.
    pub fn denylist(&self, env: &str, ctx: &Context) -> Result<Denylist, VaultError> {
        let env = self.env_for(env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let mut entries = self.trusted(&env)?.revoked;
        entries.sort_by(|a, b| a.serial.cmp(&b.serial));
        let revoked = entries
            .into_iter()
            .map(|e| DenylistEntry {
                mode: if e.ca == OS_CA || e.ca == K8S_CA {
                    "direct"
                } else {
                    "issuer"
                },
                api: if e.ca == K8S_CA {
                    Api::Kubernetes
                } else {
                    issuers
                        .iter()
                        .find(|i| i.meta.id == e.ca)
                        .map_or(Api::Talos, |i| i.meta.api)
                },
                serial: e.serial,
                fingerprint: e.fingerprint,
                issuer: e.ca,
                reason: e.reason,
                revoked: inventory::rfc3339(e.revoked),
                not_after: inventory::rfc3339(e.not_after),
            })
            .collect();
        Ok(self.finish(Denylist {
            env: env.as_str().into(),
            generated: rfc3339(ctx.now),
            revoked,
        }))
    }
}
