//! Revocation: record that a certificate is revoked (the issuer's CRL is derived from the
//! revocations by `crl`), audit it, and say what will actually cut access (neither Talos nor
//! the kube-apiserver checks a CRL: expiry, retiring the issuer, or a CA rotation).

use serde::Serialize;

use super::records::{IssuerView, LiveCert, live_of};
use super::{Context, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::digest::Fingerprint;
use crate::inventory::CertEntry;
use crate::model::{Api, MetaError, RevocationRecord};
use crate::pki::crl::RevocationReason;
use crate::pki::serial::Serial;
use crate::pki::verify::{certificate_der, leaf_facts};
use crate::store::Mode;
use crate::store::txn::Transaction;

/// What to revoke.
pub enum RevokeTarget {
    /// A serial.
    Serial(Serial),
    /// The client certificate of a talosconfig context (PEM).
    Certificate {
        /// The talosconfig's `ca` (PEM), which must be this environment's OS CA.
        server_ca: Vec<u8>,
        /// The client certificate PEM.
        crt: Vec<u8>,
    },
    /// The client certificate of a kubeconfig context (PEM).
    KubernetesCertificate {
        /// The cluster's `certificate-authority-data` (PEM), which must be this environment's
        /// Kubernetes CA.
        server_ca: Vec<u8>,
        /// The user's `client-certificate-data` (PEM).
        crt: Vec<u8>,
    },
}

/// What `revoke` did and what will actually cut access.
#[derive(Debug, Clone, Serialize)]
pub struct RevokeOutcome {
    /// The revoked certificate.
    pub certificate: LiveCert,
    /// Whether it was already revoked (nothing was written).
    pub already_revoked: bool,
    /// When it was revoked.
    pub revoked: String,
    /// The reason.
    pub reason: String,
    /// Seconds of validity left (0 if expired).
    pub remaining_seconds: i64,
    /// `direct` or `issuer`.
    pub mode: String,
    /// For an issuer-signed certificate: the issuer to retire, and its state.
    pub issuer: Option<IssuerView>,
    /// Other live, unrevoked certificates of that issuer, to re-issue before retiring it.
    pub reissue: Vec<LiveCert>,
    /// `talos` or `kubernetes`: which API the certificate opens.
    pub api: Api,
}

impl Vault {
    /// `revoke`: records the revocation and its audit event (the issuer's next CRL, which `crl`
    /// derives, lists it), and reports what actually cuts access. Revoking
    /// twice changes nothing and is not an error.
    pub fn revoke(
        &self,
        env: &str,
        target: &RevokeTarget,
        reason: RevocationReason,
        ctx: &Context,
    ) -> Result<RevokeOutcome, VaultError> {
        let env = self.env_for(env, ctx)?;
        let unreadable = |reason: String| VaultError::Unreadable {
            part: "crt",
            reason,
        };
        let (serial, given_der) = match target {
            RevokeTarget::Serial(s) => (s.clone(), None),
            RevokeTarget::Certificate { server_ca, crt }
            | RevokeTarget::KubernetesCertificate { server_ca, crt } => {
                if matches!(target, RevokeTarget::Certificate { .. }) {
                    Self::check_server_ca(&env, server_ca)?;
                } else {
                    Self::check_kubernetes_ca(&env, server_ca)?;
                }
                let der = certificate_der(crt).map_err(unreadable)?;
                let facts = leaf_facts(&der).map_err(unreadable)?;
                let serial =
                    Serial::parse(&facts.serial_hex).map_err(|e| unreadable(e.to_string()))?;
                (serial, Some(der))
            }
        };
        let record = self.cert_record(&env, &serial)?;
        if let Some(der) = given_der
            && Fingerprint::of(&der).0 != record.fingerprint
        {
            let what = format!(
                "the {}'s certificate has serial {serial} but is not the certificate environment {:?} issued with it",
                if matches!(target, RevokeTarget::KubernetesCertificate { .. }) {
                    "kubeconfig"
                } else {
                    "talosconfig"
                },
                env.as_str()
            );
            return Err(
                if matches!(target, RevokeTarget::KubernetesCertificate { .. }) {
                    VaultError::ForeignKubeconfig { what }
                } else {
                    VaultError::ForeignTalosconfig { what }
                },
            );
        }
        let entry = CertEntry::from_record(&record).map_err(|e| MetaError::Malformed {
            file: format!("certs/{serial}.yaml"),
            message: e.to_string(),
        })?;
        let issuers = self.load_issuers(&env)?;
        let issuer = issuers.iter().find(|i| i.meta.id == record.signed_by.ca);
        let now = ctx.now.unix_timestamp();
        let rel = Self::revocation_path(&env, &serial);
        let existing = self.revocation_record(&env, &serial)?;
        // Revoked already if the trail says so, even when the record's file is gone.
        let chain = self.chain(&env)?;
        let known = chain.revoked.get(serial.as_str());
        let already_revoked = existing.is_some() || known.is_some();
        let revocation = existing.unwrap_or_else(|| RevocationRecord {
            serial: serial.to_string(),
            fingerprint: record.fingerprint.clone(),
            signed_by: record.signed_by.clone(),
            reason: known
                .and_then(|k| k.reason.clone())
                .unwrap_or_else(|| reason.as_str().to_owned()),
            revoked: known.map_or_else(|| rfc3339(ctx.now), |k| crate::inventory::rfc3339(k.time)),
            actor: ctx.actor.clone(),
            holder: record.holder.clone(),
            roles: record.roles.clone(),
            not_after: record.not_after.clone(),
        });
        if !already_revoked {
            // The revocation record and its event. CRLs are derived, never stored (two clones
            // that both revoke must merge without a conflict): `crl` signs a fresh one.
            let mut t = Transaction::new(&self.root);
            t.create(&rel, revocation.to_yaml()?.as_bytes(), Mode::Public);
            let action = Action::Revoke {
                serial: serial.to_string(),
                fingerprint: record.fingerprint.clone(),
                reason: reason.as_str().into(),
                signed_by: record.signed_by.ca.clone(),
            };
            self.stage_event(&mut t, &env, ctx, None, &action)?;
            self.commit(t)?;
        }
        let (issuer_view, reissue) = match issuer {
            Some(i) => {
                let trusted = self.trusted(&env)?;
                let others = live_of(
                    &trusted.certs,
                    &trusted.revoked_serials(),
                    &i.meta.id,
                    Some(serial.as_str()),
                    now,
                );
                (Some(self.issuer_view(&env, &i.meta.id, ctx.now)?), others)
            }
            None => (None, Vec::new()),
        };
        Ok(self.finish(RevokeOutcome {
            certificate: LiveCert::of(&entry),
            already_revoked,
            revoked: revocation.revoked,
            reason: revocation.reason,
            remaining_seconds: (entry.not_after - now).max(0),
            mode: record.mode,
            issuer: issuer_view,
            reissue,
            api: record.api,
        }))
    }
}
