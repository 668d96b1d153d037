//! `status`: per environment, live certificates, counts, issuers, CA expiry, taint, recipients
//! and holders (who has no live certificate, whose renewal is due when, which live
//! certificates belong to no registered holder), graded against an expiry window (the grading
//! is `pki::judge`'s). Opens nothing but the audit keys, when the caller's identity opens them.

use serde::Serialize;

use super::records::{IssuerView, LiveCert, issuer_views, live_of_holder, serials};
use super::{Context, Vault, VaultError, rfc3339};
use crate::backup::Health;
use crate::holder::{Renewal, renewal};
use crate::inventory::{self, CertEntry};
use crate::model::{Api, MetaError, Sealing, Taint};
use crate::pki::judge::{Expiry, grade_expiry};
use crate::pki::verify;

/// A CA certificate's expiry in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct CaExpiry {
    /// `etcd`, `k8s`, `k8saggregator` or `os`.
    pub ca: &'static str,
    /// notAfter.
    pub not_after: String,
}

/// Counts in `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Every recorded certificate.
    pub issued: usize,
    /// Valid now and not revoked.
    pub live: usize,
    /// Past notAfter.
    pub expired: usize,
    /// Revoked (any time).
    pub revoked: usize,
    /// Revoked but not yet expired: still usable where only expiry or a retired issuer cuts.
    pub revoked_unexpired: usize,
}

/// The counts of one API's certificates.
#[derive(Debug, Clone, Serialize)]
pub struct ApiCounts {
    /// `talos` or `kubernetes`.
    pub api: Api,
    /// Its counts.
    pub counts: Counts,
}

/// Something `status` grades.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `expiring`, `direct`, `backup`, `unrenewed` or `orphaned` (grade 1); `expired`, `tainted`,
    /// `disagrees`, `conflict` or `forged` (grade 2).
    pub kind: &'static str,
    /// What.
    pub what: String,
}

/// A holder's standing grant in `status`: when its renewal is due.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalDue {
    /// The holder.
    pub holder: String,
    /// When the renewal is due (now, when it already is).
    pub due: String,
    /// Whether it is due now.
    pub due_now: bool,
    /// notAfter of the newest live certificate for the grant, if any.
    pub not_after: Option<String>,
}

/// Holders in `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HolderStatus {
    /// Registered holders.
    pub registered: usize,
    /// Registered holders without a live certificate.
    pub without_certificate: Vec<String>,
    /// Standing grants, soonest renewal first.
    pub renewals: Vec<RenewalDue>,
    /// Live certificates whose holder is not registered (none named, or removed); listed only
    /// once the environment has holders.
    pub unknown_holder: Vec<LiveCert>,
}

/// `status` of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    /// The environment.
    pub env: String,
    /// Its cluster.
    pub cluster_name: String,
    /// Recipients.
    pub recipients: Vec<String>,
    /// The break-glass mark.
    pub tainted: Option<Taint>,
    /// Bundle CA expiry.
    pub cas: Vec<CaExpiry>,
    /// Issuers.
    pub issuers: Vec<IssuerView>,
    /// Counts.
    pub counts: Counts,
    /// The same counts per API (talosconfigs, kubeconfigs).
    pub by_api: Vec<ApiCounts>,
    /// Live certificates, soonest expiry first.
    pub live: Vec<LiveCert>,
    /// Holders.
    pub holders: HolderStatus,
    /// Sealed backups: how many, and the newest verified one's age against the policy.
    pub backups: Health,
    /// How the audit chain this report rests on was checked: `authenticated`, structure only
    /// (no identity opened the audit keys), or format 1.
    pub audit: &'static str,
    /// What raised the grade.
    pub findings: Vec<Finding>,
    /// 0 fine, 1 something expires within the window or backups are stale, 2 something expired
    /// or tainted.
    pub grade: u8,
}

fn graded(findings: &mut Vec<Finding>, what: &str, end: i64, now: i64, window: i64) {
    match grade_expiry(end, now, window) {
        Expiry::Expired => findings.push(Finding {
            kind: "expired",
            what: format!("{what} expired at {}", inventory::rfc3339(end)),
        }),
        Expiry::Expiring => findings.push(Finding {
            kind: "expiring",
            what: format!("{what} expires at {}", inventory::rfc3339(end)),
        }),
        Expiry::Fine => {}
    }
}

impl Vault {
    /// `status`: per environment, live certificates, counts, issuers, CA expiry, taint and
    /// recipients, graded against the `expiring` window. Opens nothing.
    pub fn status(
        &self,
        env: Option<&str>,
        expiring: time::Duration,
        ctx: &Context,
    ) -> Result<Vec<EnvStatus>, VaultError> {
        let now = ctx.now.unix_timestamp();
        let window = expiring.whole_seconds();
        let mut out = Vec::new();
        for env in self.envs(env)? {
            self.authenticate(&env, ctx)?;
            let chain = self.chain(&env)?;
            let audit = if !chain.sealed {
                "format 1 (not authenticated; run `talvault upgrade`)"
            } else if chain.authenticated {
                "authenticated"
            } else {
                "structure only (no identity given that opens audit.age)"
            };
            let recipients = match env.meta.sealing {
                Sealing::Recipients => self
                    .recipients(&env)?
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                Sealing::Passphrase => vec!["(passphrase)".to_owned()],
            };
            let issuers = self.load_issuers(&env)?;
            // Only records that agree with the audit trail count; revocations it records count
            // even when their file is gone.
            let trusted = self.trusted(&env)?;
            let mut findings: Vec<Finding> = trusted
                .problems
                .iter()
                .map(|p| Finding {
                    kind: "disagrees",
                    what: p.clone(),
                })
                .collect();
            if chain.rejected > 0 {
                findings.push(Finding {
                    kind: "forged",
                    what: format!(
                        "{} audit event(s) fail authentication or follow no sealed event, and are ignored; see `talvault audit verify {}`",
                        chain.rejected,
                        env.as_str()
                    ),
                });
            }
            let certs = trusted.certs;
            let revoked_entries = trusted.revoked;
            let revoked = serials(&revoked_entries);
            let mut counts = Counts {
                issued: certs.len(),
                revoked: revoked_entries.len(),
                ..Counts::default()
            };
            let issuer_views = issuer_views(&issuers, &certs, &revoked, now);
            let holders = self.holder_status(&env, &certs, &revoked_entries, now, &mut findings)?;
            let mut by_api: Vec<ApiCounts> = [Api::Talos, Api::Kubernetes]
                .into_iter()
                .map(|api| ApiCounts {
                    api,
                    counts: Counts::default(),
                })
                .collect();
            let slot = |api: Api| usize::from(api == Api::Kubernetes);
            let mut live_entries: Vec<CertEntry> = Vec::new();
            // Consumes the summaries: the live ones move into the report without copies.
            for c in certs {
                let per = &mut by_api[slot(c.api)].counts;
                per.issued += 1;
                if revoked.contains(c.serial.as_str()) {
                    per.revoked += 1;
                }
                if c.not_after < now {
                    counts.expired += 1;
                    per.expired += 1;
                } else if revoked.contains(c.serial.as_str()) {
                    counts.revoked_unexpired += 1;
                    per.revoked_unexpired += 1;
                } else if c.live_at(now) {
                    per.live += 1;
                    live_entries.push(c);
                }
            }
            counts.live = live_entries.len();
            live_entries.sort_unstable_by(|a, b| {
                a.not_after
                    .cmp(&b.not_after)
                    .then_with(|| a.serial.cmp(&b.serial))
            });
            let active: Vec<&crate::vault::Issuer> = issuers
                .iter()
                .filter(|i| i.meta.state == crate::model::IssuerState::Active)
                .collect();
            // Leaves the OS CA (or the Kubernetes CA) signed survive retiring every issuer of
            // their API: worth a finding once an issuer of that API is active.
            for (api, ca, what) in [
                (Api::Talos, crate::model::OS_CA, "the Talos OS CA"),
                (Api::Kubernetes, crate::model::K8S_CA, "the Kubernetes CA"),
            ] {
                let direct: Vec<&CertEntry> = live_entries.iter().filter(|c| c.ca == ca).collect();
                if active.iter().any(|i| i.meta.api == api)
                    && let Some(first) = direct.first()
                {
                    findings.push(Finding {
                        kind: "direct",
                        what: format!(
                            "{} live certificate(s) signed directly by {what} survive retiring issuers (the first ends {}); re-issue them under the active issuer and revoke them",
                            direct.len(),
                            inventory::rfc3339(first.not_after)
                        ),
                    });
                }
            }
            // Two active issuers of one epoch (epochs count per API): concurrent rotations
            // merged in git.
            for (n, a) in active.iter().enumerate() {
                for b in &active[n + 1..] {
                    if a.meta.epoch == b.meta.epoch && a.meta.api == b.meta.api {
                        findings.push(Finding {
                            kind: "conflict",
                            what: format!(
                                "issuers {} and {} are both active in epoch {} (concurrent rotations merged); keep one: talvault issuer retire {} {}",
                                a.meta.id,
                                b.meta.id,
                                a.meta.epoch,
                                env.as_str(),
                                b.meta.id
                            ),
                        });
                    }
                }
            }
            let mut cas = Vec::new();
            for (ca, pem) in env.meta.certificates.named() {
                let end = verify::not_after(pem.as_bytes()).map_err(|e| MetaError::Malformed {
                    file: format!("envs/{}/env.yaml", env.as_str()),
                    message: format!("certificates.{ca}: {e}"),
                })?;
                graded(
                    &mut findings,
                    &format!("CA {ca}"),
                    end.unix_timestamp(),
                    now,
                    window,
                );
                cas.push(CaExpiry {
                    ca,
                    not_after: rfc3339(end),
                });
            }
            for i in issuers.iter().filter(|i| i.meta.state.accepted()) {
                graded(
                    &mut findings,
                    &format!("issuer {} ({})", i.meta.id, i.meta.state.as_str()),
                    i.facts.not_after.unix_timestamp(),
                    now,
                    window,
                );
            }
            let policy = self.read_policy(&env)?;
            let (backups, problem) = self.backup_health(&env, &policy, now)?;
            if let Some(p) = problem {
                findings.push(Finding {
                    kind: "backup",
                    what: p.to_string(),
                });
            }
            let tainted = self.taint(&env)?;
            if let Some(t) = &tainted {
                findings.push(Finding {
                    kind: "tainted",
                    what: format!("break-glass since {}: {}", t.since, t.reason),
                });
            }
            let grade = findings
                .iter()
                .map(|f| match f.kind {
                    "expiring" | "direct" | "backup" | "unrenewed" | "orphaned" => 1,
                    _ => 2,
                })
                .max()
                .unwrap_or(0);
            out.push(EnvStatus {
                env: env.as_str().into(),
                cluster_name: env.meta.cluster_name.clone(),
                recipients,
                tainted,
                cas,
                issuers: issuer_views,
                counts,
                by_api,
                live: live_entries.into_iter().map(LiveCert::from).collect(),
                holders,
                backups,
                audit,
                findings,
                grade,
            });
        }
        Ok(self.finish(out))
    }
}

impl Vault {
    /// The holders part of `status`, and its findings: a standing grant without a live
    /// certificate (`unrenewed`), live certificates of no registered holder (`orphaned`),
    /// holder records the audit trail does not account for (`disagrees`).
    fn holder_status(
        &self,
        env: &super::Env,
        certs: &[CertEntry],
        revoked: &[inventory::RevokedEntry],
        now: i64,
        findings: &mut Vec<Finding>,
    ) -> Result<HolderStatus, VaultError> {
        let holders = self.holders(env)?;
        findings.extend(holders.problems.iter().map(|p| Finding {
            kind: "disagrees",
            what: p.clone(),
        }));
        let mut out = HolderStatus {
            registered: holders.records.len(),
            ..HolderStatus::default()
        };
        if holders.records.is_empty() {
            return Ok(out);
        }
        // Revoked, or signed by a retired issuer: no access, so not live for a holder.
        let cut = self.cut_off(env, certs, revoked)?;
        let revoked: std::collections::HashSet<&str> = cut.iter().map(String::as_str).collect();
        let revoked = &revoked;
        for (name, record) in &holders.records {
            if live_of_holder(certs, revoked, name.as_str(), now).is_empty() {
                out.without_certificate.push(name.to_string());
            }
            let Some(grant) = &record.grant else { continue };
            let (due, not_after) = match renewal(
                name.as_str(),
                &grant.roles,
                certs,
                revoked,
                now,
                None,
            ) {
                Renewal::NoLiveCertificate => {
                    findings.push(Finding {
                            kind: "unrenewed",
                            what: format!(
                                "holder {name} has a standing grant but no live certificate; run `talvault renew {} --all -o OUTBOX`",
                                env.as_str()
                            ),
                        });
                    (now, None)
                }
                Renewal::Expiring { not_after, .. } => (now, Some(not_after)),
                Renewal::NotDue { not_after, due, .. } => (due, Some(not_after)),
            };
            out.renewals.push(RenewalDue {
                holder: name.to_string(),
                due: inventory::rfc3339(due),
                due_now: due <= now,
                not_after: not_after.map(inventory::rfc3339),
            });
        }
        out.renewals
            .sort_by(|a, b| (a.due.as_str(), &a.holder).cmp(&(b.due.as_str(), &b.holder)));
        let known: std::collections::HashSet<&str> =
            holders.records.iter().map(|(n, _)| n.as_str()).collect();
        let mut orphans: Vec<&CertEntry> = certs
            .iter()
            .filter(|c| {
                // Holders receive talosconfigs; kubeconfigs are not theirs to account for.
                c.api == Api::Talos
                    && c.live_at(now)
                    && !revoked.contains(c.serial.as_str())
                    && !c.holder.as_deref().is_some_and(|h| known.contains(h))
            })
            .collect();
        orphans.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
        if let Some(first) = orphans.first() {
            findings.push(Finding {
                kind: "orphaned",
                what: format!(
                    "{} live certificate(s) belong to no registered holder (a removed holder keeps access until expiry or revocation; the first ends {})",
                    orphans.len(),
                    inventory::rfc3339(first.not_after)
                ),
            });
        }
        out.unknown_holder = orphans.into_iter().map(LiveCert::of).collect();
        Ok(out)
    }
}
