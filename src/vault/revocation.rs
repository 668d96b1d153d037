//! Revocation: record that a certificate is revoked, regenerate its issuer's CRL (while the
//! issuer is still accepted), audit it, and say what will actually cut access (neither Talos nor
//! the kube-apiserver checks a CRL: expiry, retiring the issuer, or a CA rotation).

use serde::Serialize;

use super::records::{IssuerView, LiveCert, live_of, serials};
use super::{Context, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::digest::Fingerprint;
use crate::inventory::{CertEntry, RevokedEntry};
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
    /// The CRL file written, if any.
    pub crl: Option<String>,
    /// `talos` or `kubernetes`: which API the certificate opens.
    pub api: Api,
}

impl Vault {
    /// `revoke`: records the revocation and an audit event, regenerates the issuer's CRL (for
    /// an issuer that is still accepted), and reports what actually cuts access. Revoking
    /// twice changes nothing and is not an error.
    pub fn revoke(
        &self,
        env: &str,
        target: &RevokeTarget,
        reason: RevocationReason,
        ctx: &Context,
    ) -> Result<RevokeOutcome, VaultError> {
        let env = self.env(env)?;
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
        let already_revoked = existing.is_some();
        let revocation = existing.unwrap_or_else(|| RevocationRecord {
            serial: serial.to_string(),
            fingerprint: record.fingerprint.clone(),
            signed_by: record.signed_by.clone(),
            reason: reason.as_str().to_owned(),
            revoked: rfc3339(ctx.now),
            actor: ctx.actor.clone(),
            holder: record.holder.clone(),
            roles: record.roles.clone(),
            not_after: record.not_after.clone(),
        });
        let mut crl = None;
        let mut crl_number = None;
        if !already_revoked {
            let mut t = Transaction::new(&self.root);
            t.create(&rel, revocation.to_yaml()?.as_bytes(), Mode::Public);
            let mut opened_by = None;
            // An expired issuer signs no CRL (and everything it signed has expired too).
            if let Some(issuer) =
                issuer.filter(|i| i.meta.state.accepted() && i.facts.not_after > ctx.now)
            {
                let mut entries = self.revoked_entries(&env)?;
                entries.push(RevokedEntry::from_record(&revocation).map_err(|e| {
                    MetaError::Malformed {
                        file: rel.display().to_string(),
                        message: e.to_string(),
                    }
                })?);
                let (out, by) = self.build_crl(&env, issuer, &entries, ctx)?;
                t.write(&out.stored, &out.der_pem(), Mode::Public);
                crl = Some(out.stored.clone());
                crl_number = Some(out.number);
                opened_by = Some(by);
            }
            let action = Action::Revoke {
                serial: serial.to_string(),
                fingerprint: record.fingerprint.clone(),
                reason: reason.as_str().into(),
                signed_by: record.signed_by.ca.clone(),
                crl: crl.clone(),
                crl_number,
            };
            self.stage_event(&mut t, &env, ctx, opened_by.as_ref(), &action)?;
            self.commit(t)?;
        }
        let (issuer_view, reissue) = match issuer {
            Some(i) => {
                let certs = self.cert_entries(&env)?;
                let revoked = self.revoked_entries(&env)?;
                let others = live_of(
                    &certs,
                    &serials(&revoked),
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
            crl,
            api: record.api,
        }))
    }
}
