//! `verify`: gathers the evidence about a talosconfig's or a kubeconfig's client certificate
//! (its facts, who signed it, whether it was revoked and recorded, the policy) and hands it to
//! the pure judgement in `pki::judge`.

use serde::Serialize;

use super::records::Issuer;
use super::{Context, Vault, VaultError, rfc3339};
use crate::model::{Api, IssuerState, K8S_CA, OS_CA};
use crate::pki::judge::{
    self, Check, Evidence, KubeEvidence, Outcome, RecordFacts, Signer, TrailTrust,
};
use crate::pki::serial::Serial;
use crate::pki::verify::LeafFacts;
use crate::pki::verify::{self, certificate_der, leaf_facts, signed_by};

/// `Some((revoked at, reason))` when the environment revoked the certificate.
type Revoked = Option<(String, String)>;

/// Revocation, record, untrusted record files and how the chain was checked.
type Evidence4 = (Revoked, Option<RecordFacts>, Vec<String>, TrailTrust);

/// `verify`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The environment.
    pub env: String,
    /// The talosconfig context checked.
    pub context: String,
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate.
    pub fingerprint: String,
    /// Roles (subject O).
    pub roles: Vec<String>,
    /// Holder (CN).
    pub holder: Option<String>,
    /// `os`, an issuer id, or none.
    pub signed_by: Option<String>,
    /// notAfter.
    pub not_after: String,
    /// Whether every check passed (warnings allowed).
    pub good: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// `talos` (a talosconfig: `roles`, `holder`) or `kubernetes` (a kubeconfig: `roles` are
    /// the groups, `holder` the user).
    pub api: Api,
}

impl Vault {
    /// `verify`: judges a talosconfig context's client certificate against the environment:
    /// server CA, chain, EKU, roles, validity, revocation, whether its CA is still accepted,
    /// and whether the policy would still issue it. `Err` only when it cannot be read.
    pub fn verify(
        &self,
        env: &str,
        context: &str,
        server_ca: &[u8],
        crt: &[u8],
        ctx: &Context,
    ) -> Result<Verification, VaultError> {
        let env = self.env_for(env, ctx)?;
        let unreadable = |reason: String| VaultError::Unreadable {
            part: "crt",
            reason,
        };
        let der = certificate_der(crt).map_err(unreadable)?;
        let facts = leaf_facts(&der).map_err(unreadable)?;
        let server = match Self::check_server_ca(&env, server_ca) {
            Ok(()) => Ok(env.meta.cluster_name.as_str()),
            Err(e) => Err(e.to_string()),
        };

        // The chain: the OS CA, or one of the environment's issuers.
        let issuers = self.load_issuers(&env)?;
        let os_der =
            certificate_der(env.meta.certificates.os.as_bytes()).map_err(VaultError::Sign)?;
        let signer = if signed_by(&der, &os_der) {
            Some(Signer::OsCa {
                not_after: verify::not_after(env.meta.certificates.os.as_bytes()).ok(),
            })
        } else {
            issuer_that_signed(&der, &issuers, Api::Talos)?
        };

        let (revoked, record, record_problems, trail) = self.revocation_and_record(&env, &facts)?;
        let policy = self.read_policy(&env)?;
        let signed_by_name = signer.as_ref().map(|s| match s {
            Signer::OsCa { .. } => OS_CA.to_owned(),
            Signer::KubernetesCa { .. } => K8S_CA.to_owned(),
            Signer::Issuer { id, .. } => id.clone(),
        });
        let checks = judge::judge(&Evidence {
            facts: &facts,
            server_ca: server,
            signer,
            revoked,
            record,
            policy: &policy,
            issuer_active: issuers
                .iter()
                .any(|i| i.meta.state == IssuerState::Active && i.meta.api == Api::Talos),
            now: ctx.now,
            record_problems,
            trail,
        });
        let good = checks.iter().all(|c| c.result != Outcome::Fail);
        Ok(Verification {
            env: env.as_str().into(),
            context: context.into(),
            serial: facts.serial_hex,
            fingerprint: facts.fingerprint,
            roles: facts.organizations,
            holder: facts.common_name,
            signed_by: signed_by_name,
            not_after: rfc3339(facts.not_after),
            good,
            checks,
            api: Api::Talos,
        })
    }

    /// `verify` of a kubeconfig context: judges its client certificate against the
    /// environment's Kubernetes CA and issuers, the revocation records, and the Kubernetes
    /// policy. `Err` only when it cannot be read.
    pub fn verify_kubeconfig(
        &self,
        env: &str,
        context: &str,
        server_ca: &[u8],
        crt: &[u8],
        ctx: &Context,
    ) -> Result<Verification, VaultError> {
        let env = self.env_for(env, ctx)?;
        let unreadable = |reason: String| VaultError::Unreadable {
            part: "client-certificate-data",
            reason,
        };
        let der = certificate_der(crt).map_err(unreadable)?;
        let facts = leaf_facts(&der).map_err(unreadable)?;
        let server = match Self::check_kubernetes_ca(&env, server_ca) {
            Ok(()) => Ok(env.meta.cluster_name.as_str()),
            Err(e) => Err(e.to_string()),
        };
        let issuers = self.load_issuers(&env)?;
        let k8s_der =
            certificate_der(env.meta.certificates.k8s.as_bytes()).map_err(VaultError::Sign)?;
        let signer = if signed_by(&der, &k8s_der) {
            Some(Signer::KubernetesCa {
                not_after: verify::not_after(env.meta.certificates.k8s.as_bytes()).ok(),
            })
        } else {
            issuer_that_signed(&der, &issuers, Api::Kubernetes)?
        };
        let (revoked, record, record_problems, trail) = self.revocation_and_record(&env, &facts)?;
        let policy = self.read_policy(&env)?.kubernetes;
        let signed_by_name = signer.as_ref().map(|s| match s {
            Signer::KubernetesCa { .. } => K8S_CA.to_owned(),
            Signer::Issuer { id, .. } => id.clone(),
            Signer::OsCa { .. } => OS_CA.to_owned(),
        });
        let checks = judge::judge_kubernetes(&KubeEvidence {
            facts: &facts,
            server_ca: server,
            signer,
            revoked,
            record,
            policy: &policy,
            issuer_active: issuers
                .iter()
                .any(|i| i.meta.state == IssuerState::Active && i.meta.api == Api::Kubernetes),
            now: ctx.now,
            record_problems,
            trail,
        });
        let good = checks.iter().all(|c| c.result != Outcome::Fail);
        Ok(Verification {
            env: env.as_str().into(),
            context: context.into(),
            serial: facts.serial_hex,
            fingerprint: facts.fingerprint,
            roles: facts.organizations,
            holder: facts.common_name,
            signed_by: signed_by_name,
            not_after: rfc3339(facts.not_after),
            good,
            checks,
            api: Api::Kubernetes,
        })
    }

    /// Revocation and the record, for this very certificate only (same fingerprint), with the
    /// record files that cannot be trusted and how the chain was checked. The trail decides: a
    /// revocation it records counts even when the record's file is gone, and a record that
    /// disagrees with it is not trusted. A serial no record can have (zero, say) was never
    /// issued or revoked here.
    fn revocation_and_record(
        &self,
        env: &super::Env,
        facts: &LeafFacts,
    ) -> Result<Evidence4, VaultError> {
        let chain = self.chain(env)?;
        let trail = if !chain.sealed {
            TrailTrust::Format1
        } else if chain.authenticated {
            TrailTrust::Authenticated {
                ignored: chain.rejected,
            }
        } else {
            TrailTrust::StructureOnly
        };
        let mut record_problems = Vec::new();
        let Ok(serial) = Serial::parse(&facts.serial_hex) else {
            return Ok((None, None, record_problems, trail));
        };
        let from_record = match self.revocation_record(env, &serial) {
            Ok(r) => r.filter(|r| r.fingerprint == facts.fingerprint),
            Err(e @ VaultError::Disagrees { .. }) => {
                record_problems.push(format!("{e}; not trusted"));
                None
            }
            Err(e) => return Err(e),
        };
        if from_record.is_none() && chain.revoked.contains_key(serial.as_str()) {
            let path = Self::revocation_path(env, &serial);
            if !record_problems.iter().any(|p| p.contains("revocations/")) {
                record_problems.push(format!("{} is missing", path.display()));
            }
            record_problems.push("the audit trail records the revocation, which counts".into());
        }
        let revoked = from_record.map(|r| (r.revoked, r.reason)).or_else(|| {
            chain.revoked.get(serial.as_str()).map(|r| {
                (
                    crate::inventory::rfc3339(r.time),
                    r.reason.clone().unwrap_or_default(),
                )
            })
        });
        let record = match self.cert_record(env, &serial) {
            Ok(r) if r.fingerprint == facts.fingerprint => Some(RecordFacts {
                actor: r.actor,
                issued: r.issued,
                break_glass: r
                    .break_glass
                    .then(|| r.reason.unwrap_or_else(|| "break-glass".into())),
            }),
            Err(e @ VaultError::Disagrees { .. }) => {
                record_problems.push(format!("{e}; not trusted"));
                None
            }
            Ok(_) | Err(VaultError::UnknownSerial { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((revoked, record, record_problems, trail))
    }
}

/// The issuer of `api` among `issuers` that signed the certificate `der`, if any.
fn issuer_that_signed(
    der: &[u8],
    issuers: &[Issuer],
    api: Api,
) -> Result<Option<Signer>, VaultError> {
    for i in issuers.iter().filter(|i| i.meta.api == api) {
        let ca = certificate_der(i.meta.certificate.as_bytes()).map_err(VaultError::Sign)?;
        if signed_by(der, &ca) {
            return Ok(Some(Signer::Issuer {
                id: i.meta.id.clone(),
                retired: i.meta.state == IssuerState::Retired,
                state: i.meta.state.as_str(),
                not_after: i.facts.not_after,
            }));
        }
    }
    Ok(None)
}
