//! PURE: the verdicts talvault reaches from facts it was handed: whether a client certificate
//! is good (`verify`'s checks, in order), how close something is to expiring (`status`), and
//! the TTL a certificate's lifetime amounts to. It reads no file and no clock: the service
//! gathers the evidence and passes the time.

use serde::Serialize;
use time::OffsetDateTime;

use super::issue::DEFAULT_BACKDATE;
use super::kube_policy::{KubeGroup, KubeRequest, KubeUser, KubernetesPolicy, SYSTEM_MASTERS};
use super::policy::{Holder, Policy, Request};
use super::role::Role;
use super::ttl::Ttl;
use super::verify::LeafFacts;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Pass,
    /// Works, but worth a look.
    Warn,
    /// The certificate is not good.
    Fail,
}

impl Outcome {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Warn => "warn",
            Outcome::Fail => "fail",
        }
    }
}

/// One check of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// Its outcome.
    pub result: Outcome,
    /// Details.
    pub detail: String,
}

/// Who signed the certificate, as the chain step found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The Talos OS CA (direct mode), with its notAfter.
    OsCa {
        /// The CA's notAfter, if readable.
        not_after: Option<OffsetDateTime>,
    },
    /// The bundle's Kubernetes CA (direct mode for kubeconfigs), with its notAfter.
    KubernetesCa {
        /// The CA's notAfter, if readable.
        not_after: Option<OffsetDateTime>,
    },
    /// One of the environment's issuers.
    Issuer {
        /// Its id.
        id: String,
        /// Whether it is retired (dropped from acceptedCAs).
        retired: bool,
        /// Its state's name.
        state: &'static str,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
}

/// What the vault knows of the certificate from its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFacts {
    /// Who issued it.
    pub actor: String,
    /// When.
    pub issued: String,
    /// `Some(reason)` for a break-glass certificate.
    pub break_glass: Option<String>,
}

/// How far the audit chain behind the revocation and record checks was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailTrust {
    /// Every event's MAC was checked; `ignored` events failed and were left out.
    Authenticated {
        /// Events left out.
        ignored: usize,
    },
    /// No identity opened the audit keys: structure only.
    StructureOnly,
    /// A format-1 vault: nothing to authenticate with.
    Format1,
}

/// Everything `verify` weighs.
#[derive(Debug)]
pub struct Evidence<'a> {
    /// The certificate's facts.
    pub facts: &'a LeafFacts,
    /// `Ok(cluster name)` when the talosconfig's CA is this environment's OS CA, else why not.
    pub server_ca: Result<&'a str, String>,
    /// Who signed it, if anyone of this environment.
    pub signer: Option<Signer>,
    /// `Some((revoked at, reason))` when the environment revoked this very certificate.
    pub revoked: Option<(String, String)>,
    /// The certificate record, when this vault issued it.
    pub record: Option<RecordFacts>,
    /// The environment's policy now.
    pub policy: &'a Policy,
    /// Whether the environment has an active issuer now.
    pub issuer_active: bool,
    /// The time to judge at.
    pub now: OffsetDateTime,
    /// How the audit chain was checked.
    pub trail: TrailTrust,
    /// Record files that are missing or disagree with the audit chain (not trusted).
    pub record_problems: Vec<String>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The TTL a certificate was issued with: its lifetime less the backdate leaves get for clock
/// skew (at most the whole lifetime).
pub fn issued_ttl(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Option<Ttl> {
    let lifetime = not_after - not_before;
    let backdate = DEFAULT_BACKDATE.min(lifetime);
    Ttl::from_seconds(u64::try_from((lifetime - backdate).whole_seconds()).unwrap_or(0))
}

/// Whether the certificate is valid at `now`, and how long it has left.
fn validity(f: &LeafFacts, now: OffsetDateTime) -> (Outcome, String) {
    if now < f.not_before {
        (
            Outcome::Fail,
            format!("not valid before {}", rfc3339(f.not_before)),
        )
    } else if now > f.not_after {
        (
            Outcome::Fail,
            format!("expired at {}", rfc3339(f.not_after)),
        )
    } else {
        let left = f.not_after - now;
        (
            Outcome::Pass,
            format!(
                "until {} ({}h{}m left)",
                rfc3339(f.not_after),
                left.whole_hours(),
                left.whole_minutes() % 60
            ),
        )
    }
}

/// `verify`'s checks, in order: server CA, chain, CA validity, EKU, roles, validity,
/// revocation, acceptance, record, policy.
pub fn judge(e: &Evidence<'_>) -> Vec<Check> {
    use Outcome::{Fail, Pass, Warn};
    let f = e.facts;
    let now = e.now;
    let mut checks = Vec::new();
    let mut check = |check: &'static str, result: Outcome, detail: String| {
        checks.push(Check {
            check,
            result,
            detail,
        });
    };

    // 1. The server CA: the talosconfig must trust this cluster's apid.
    match &e.server_ca {
        Ok(cluster) => check(
            "server-ca",
            Pass,
            format!("the Talos OS CA of cluster {cluster:?}"),
        ),
        Err(why) => check("server-ca", Fail, why.clone()),
    }

    // 2. The chain: signed by the OS CA or by one of the environment's issuers.
    let signer_end = match &e.signer {
        Some(Signer::OsCa { not_after }) => {
            check("chain", Pass, "signed by the Talos OS CA (direct)".into());
            *not_after
        }
        Some(Signer::KubernetesCa { .. }) => {
            check(
                "chain",
                Fail,
                "signed by the Kubernetes CA, which apid does not trust".into(),
            );
            None
        }
        Some(Signer::Issuer { id, not_after, .. }) => {
            check("chain", Pass, format!("signed by issuer {id}"));
            Some(*not_after)
        }
        None => {
            check(
                "chain",
                Fail,
                "not signed by the Talos OS CA or any issuer of this environment".into(),
            );
            None
        }
    };
    if let Some(end) = signer_end
        && end < now
    {
        check(
            "ca-validity",
            Fail,
            format!("the signing CA expired at {}", rfc3339(end)),
        );
    }

    // 3. EKU exactly [clientAuth] (apid, Talos ≥ 1.12 unconditionally).
    if f.is_ca {
        check(
            "eku",
            Fail,
            "a CA certificate, not a client certificate".into(),
        );
    } else if f.eku_is_client_auth_only() {
        check("eku", Pass, "exactly clientAuth".into());
    } else {
        check(
            "eku",
            Fail,
            format!(
                "extended key usage {:?}; apid requires exactly clientAuth",
                f.extended_key_usage
            ),
        );
    }

    // 4. Roles.
    let roles = Role::parse_set(f.organizations.iter().map(String::as_str));
    match &roles {
        Ok(r) if r.iter().all(Role::is_known) && !r.is_empty() => {
            check("roles", Pass, f.organizations.join(", "))
        }
        Ok(r) if r.is_empty() => check("roles", Fail, "no roles: apid grants nothing".into()),
        _ => check(
            "roles",
            Warn,
            format!("{:?} includes a role Talos does not know", f.organizations),
        ),
    }

    // 5. Validity now.
    let (result, detail) = validity(f, now);
    check("validity", result, detail);

    // 6. Revocation.
    match &e.revoked {
        Some((at, reason)) => check("revocation", Fail, format!("revoked at {at} ({reason})")),
        None => check("revocation", Pass, "not revoked".into()),
    }

    // 7. Is its CA still accepted by the nodes?
    match &e.signer {
        Some(Signer::OsCa { .. }) => check(
            "accepted",
            Pass,
            "the OS CA is always accepted (only expiry or an OS CA rotation cuts it)".into(),
        ),
        Some(Signer::KubernetesCa { .. }) => {}
        Some(Signer::Issuer {
            id, retired: true, ..
        }) => check(
            "accepted",
            Fail,
            format!("issuer {id} is retired (dropped from acceptedCAs)"),
        ),
        Some(Signer::Issuer { id, state, .. }) => {
            check("accepted", Pass, format!("issuer {id} is {state}"))
        }
        None => {}
    }

    // 8. The trail the revocation and record checks rest on, the record and the policy.
    trail_checks(e.trail, &e.record_problems, &mut check);
    match &e.record {
        Some(r) => check(
            "recorded",
            Pass,
            format!("issued by {} at {}", r.actor, r.issued),
        ),
        None => check(
            "recorded",
            Warn,
            "not issued by talvault from this vault (no certificate record)".into(),
        ),
    }
    if let Ok(roles) = roles {
        let request = Request {
            roles,
            ttl: issued_ttl(f.not_before, f.not_after),
            holder: f.common_name.as_deref().and_then(|h| Holder::parse(h).ok()),
            break_glass: e.record.as_ref().and_then(|r| r.break_glass.clone()),
        };
        let direct_ok = !matches!(e.signer, Some(Signer::OsCa { .. }))
            || e.policy.allows_direct(e.issuer_active);
        match (e.policy.grant(&request), direct_ok) {
            (Ok(_), true) => check("policy", Pass, "the current policy would issue it".into()),
            (Ok(_), false) => check(
                "policy",
                Fail,
                "the policy no longer allows direct signing by the OS CA".into(),
            ),
            (Err(err), _) => check(
                "policy",
                Fail,
                format!("the current policy would refuse it: {err}"),
            ),
        }
    }
    checks
}

/// The checks of the trail the revocation and record checks rest on, and of record files that
/// are missing or disagree with it (the same for talosconfigs and kubeconfigs).
fn trail_checks(
    trail: TrailTrust,
    record_problems: &[String],
    check: &mut impl FnMut(&'static str, Outcome, String),
) {
    use Outcome::{Pass, Warn};
    match trail {
        TrailTrust::Authenticated { ignored: 0 } => {
            check("audit trail", Pass, "every event authenticated".into())
        }
        TrailTrust::Authenticated { ignored } => check(
            "audit trail",
            Warn,
            format!(
                "{ignored} event(s) fail authentication and were ignored; run `talvault audit verify`"
            ),
        ),
        TrailTrust::StructureOnly => check(
            "audit trail",
            Warn,
            "structure only: no identity given that opens the audit keys (pass -i to authenticate)"
                .into(),
        ),
        TrailTrust::Format1 => check(
            "audit trail",
            Warn,
            "format 1, not authenticated (run `talvault upgrade`)".into(),
        ),
    }
    if !record_problems.is_empty() {
        check("record files", Warn, record_problems.join("; "));
    }
}

/// Everything `verify` weighs for a kubeconfig's client certificate.
#[derive(Debug)]
pub struct KubeEvidence<'a> {
    /// The certificate's facts.
    pub facts: &'a LeafFacts,
    /// `Ok(cluster name)` when the kubeconfig's `certificate-authority-data` is this
    /// environment's Kubernetes CA, else why not.
    pub server_ca: Result<&'a str, String>,
    /// Who signed it: [`Signer::KubernetesCa`] or an issuer, if anyone of this environment.
    pub signer: Option<Signer>,
    /// `Some((revoked at, reason))` when the environment revoked this very certificate.
    pub revoked: Option<(String, String)>,
    /// The certificate record, when this vault issued it.
    pub record: Option<RecordFacts>,
    /// The environment's Kubernetes policy now.
    pub policy: &'a KubernetesPolicy,
    /// Whether the environment has an active Kubernetes issuer now.
    pub issuer_active: bool,
    /// The time to judge at.
    pub now: OffsetDateTime,
    /// How the audit chain was checked.
    pub trail: TrailTrust,
    /// Record files that are missing or disagree with the audit chain (not trusted).
    pub record_problems: Vec<String>,
}

/// `verify`'s checks of a kubeconfig's client certificate, in order: server CA, chain, CA
/// validity, EKU, identity, validity, revocation, acceptance, record, policy. The identity is
/// what the kube-apiserver's x509 authenticator reads (k8s.io/apiserver
/// pkg/authentication/request/x509/x509.go: user = CN, refused when empty; groups = O).
pub fn judge_kubernetes(e: &KubeEvidence<'_>) -> Vec<Check> {
    use Outcome::{Fail, Pass, Warn};
    let f = e.facts;
    let now = e.now;
    let mut checks = Vec::new();
    let mut check = |check: &'static str, result: Outcome, detail: String| {
        checks.push(Check {
            check,
            result,
            detail,
        });
    };
    match &e.server_ca {
        Ok(cluster) => check(
            "server-ca",
            Pass,
            format!("the Kubernetes CA of cluster {cluster:?}"),
        ),
        Err(why) => check("server-ca", Fail, why.clone()),
    }
    let signer_end = match &e.signer {
        Some(Signer::KubernetesCa { not_after }) => {
            check("chain", Pass, "signed by the Kubernetes CA (direct)".into());
            *not_after
        }
        Some(Signer::Issuer { id, not_after, .. }) => {
            check("chain", Pass, format!("signed by Kubernetes issuer {id}"));
            Some(*not_after)
        }
        Some(Signer::OsCa { .. }) | None => {
            check(
                "chain",
                Fail,
                "not signed by the Kubernetes CA or any Kubernetes issuer of this environment"
                    .into(),
            );
            None
        }
    };
    if let Some(end) = signer_end
        && end < now
    {
        check(
            "ca-validity",
            Fail,
            format!("the signing CA expired at {}", rfc3339(end)),
        );
    }
    // crypto/x509 verify.go checkChainForKeyUsage with KeyUsages [ClientAuth]: the leaf needs
    // clientAuth, any, or no EKU at all; talvault issues exactly clientAuth.
    let eku = &f.extended_key_usage;
    if f.is_ca {
        check(
            "eku",
            Fail,
            "a CA certificate, not a client certificate".into(),
        );
    } else if f.eku_is_client_auth_only() {
        check("eku", Pass, "exactly clientAuth".into());
    } else if eku.is_empty()
        || eku
            .iter()
            .any(|o| o == super::verify::CLIENT_AUTH_OID || o == "2.5.29.37.0")
    {
        check(
            "eku",
            Warn,
            format!("extended key usage {eku:?}: accepted for clients, but more than clientAuth"),
        );
    } else {
        check(
            "eku",
            Fail,
            format!("extended key usage {eku:?}; the kube-apiserver requires clientAuth"),
        );
    }
    let user = f.common_name.as_deref().unwrap_or("");
    if user.is_empty() {
        check(
            "identity",
            Fail,
            "no CN: the kube-apiserver authenticates no certificate without one".into(),
        );
    } else if f.organizations.iter().any(|g| g == SYSTEM_MASTERS) {
        check(
            "identity",
            Warn,
            format!(
                "user {user:?}, groups {}: system:masters bypasses every authorizer",
                f.organizations.join(",")
            ),
        );
    } else {
        check(
            "identity",
            Pass,
            format!("user {user:?}, groups {}", f.organizations.join(",")),
        );
    }
    let (result, detail) = validity(f, now);
    check("validity", result, detail);
    match &e.revoked {
        Some((at, reason)) => check(
            "revocation",
            Fail,
            format!("revoked at {at} ({reason}); the kube-apiserver checks no CRL"),
        ),
        None => check("revocation", Pass, "not revoked".into()),
    }
    match &e.signer {
        Some(Signer::KubernetesCa { .. }) => check(
            "accepted",
            Pass,
            "the Kubernetes CA is always accepted (only expiry or a Kubernetes CA rotation cuts it)"
                .into(),
        ),
        Some(Signer::Issuer {
            id, retired: true, ..
        }) => check(
            "accepted",
            Fail,
            format!("Kubernetes issuer {id} is retired (dropped from the accepted CAs)"),
        ),
        Some(Signer::Issuer { id, state, .. }) => check(
            "accepted",
            Pass,
            format!("Kubernetes issuer {id} is {state}"),
        ),
        _ => {}
    }
    trail_checks(e.trail, &e.record_problems, &mut check);
    match &e.record {
        Some(r) => check(
            "recorded",
            Pass,
            format!("issued by {} at {}", r.actor, r.issued),
        ),
        None => check(
            "recorded",
            Warn,
            "not issued by talvault from this vault (no certificate record)".into(),
        ),
    }
    let request = KubeRequest {
        user: KubeUser::parse(user).ok(),
        groups: f
            .organizations
            .iter()
            .filter_map(|g| KubeGroup::parse(g).ok())
            .collect(),
        ttl: issued_ttl(f.not_before, f.not_after),
        break_glass: e.record.as_ref().and_then(|r| r.break_glass.clone()),
    };
    let direct_ok = !matches!(e.signer, Some(Signer::KubernetesCa { .. }))
        || e.policy.allows_direct(e.issuer_active);
    match (e.policy.grant(&request), direct_ok) {
        (Ok(_), true) => check("policy", Pass, "the current policy would issue it".into()),
        (Ok(_), false) => check(
            "policy",
            Fail,
            "the policy no longer allows direct signing by the Kubernetes CA".into(),
        ),
        (Err(err), _) => check(
            "policy",
            Fail,
            format!("the current policy would refuse it: {err}"),
        ),
    }
    checks
}

/// How close something is to its end, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expiry {
    /// Ends after the window.
    Fine,
    /// Ends within the window (grade 1).
    Expiring,
    /// Already ended (grade 2).
    Expired,
}

/// Grades an end (Unix seconds) against `now` and a `window` of seconds.
pub fn grade_expiry(end: i64, now: i64, window: i64) -> Expiry {
    if end < now {
        Expiry::Expired
    } else if end <= now.saturating_add(window) {
        Expiry::Expiring
    } else {
        Expiry::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn facts() -> LeafFacts {
        LeafFacts {
            serial_hex: "0a".into(),
            fingerprint: "sha256:00".into(),
            organizations: vec!["os:reader".into()],
            common_name: Some("alice".into()),
            not_before: datetime!(2030-01-01 00:00:00 UTC),
            not_after: datetime!(2030-01-01 08:00:10 UTC),
            extended_key_usage: vec![super::super::verify::CLIENT_AUTH_OID.into()],
            is_ca: false,
        }
    }

    fn outcomes(checks: &[Check]) -> Vec<(&'static str, Outcome)> {
        checks.iter().map(|c| (c.check, c.result)).collect()
    }

    #[test]
    fn a_good_certificate_passes_and_each_fault_fails_its_own_check() {
        let policy = Policy::default();
        let f = facts();
        let good = Evidence {
            facts: &f,
            server_ca: Ok("prod"),
            signer: Some(Signer::Issuer {
                id: "e1-aaaa".into(),
                retired: false,
                state: "active",
                not_after: datetime!(2031-01-01 00:00:00 UTC),
            }),
            revoked: None,
            record: Some(RecordFacts {
                actor: "a".into(),
                issued: "2030-01-01T00:00:10Z".into(),
                break_glass: None,
            }),
            policy: &policy,
            issuer_active: true,
            now: datetime!(2030-01-01 01:00:00 UTC),
            trail: TrailTrust::Authenticated { ignored: 0 },
            record_problems: Vec::new(),
        };
        let checks = judge(&good);
        assert!(
            checks.iter().all(|c| c.result == Outcome::Pass),
            "{checks:?}"
        );
        assert_eq!(
            checks.iter().map(|c| c.check).collect::<Vec<_>>(),
            [
                "server-ca",
                "chain",
                "eku",
                "roles",
                "validity",
                "revocation",
                "accepted",
                "audit trail",
                "recorded",
                "policy"
            ]
        );
        let later = Evidence {
            now: datetime!(2030-01-02 00:00:00 UTC),
            ..good
        };
        assert!(outcomes(&judge(&later)).contains(&("validity", Outcome::Fail)));
        let revoked = Evidence {
            revoked: Some(("t".into(), "keyCompromise".into())),
            now: good.now,
            ..later
        };
        assert!(outcomes(&judge(&revoked)).contains(&("revocation", Outcome::Fail)));
        let retired = Evidence {
            signer: Some(Signer::Issuer {
                id: "e1-aaaa".into(),
                retired: true,
                state: "retired",
                not_after: datetime!(2029-01-01 00:00:00 UTC),
            }),
            revoked: None,
            ..revoked
        };
        let o = outcomes(&judge(&retired));
        assert!(
            o.contains(&("accepted", Outcome::Fail)) && o.contains(&("ca-validity", Outcome::Fail))
        );
        let foreign = Evidence {
            server_ca: Err("another cluster".into()),
            signer: None,
            record: None,
            ..retired
        };
        let o = outcomes(&judge(&foreign));
        assert!(o.contains(&("server-ca", Outcome::Fail)));
        assert!(o.contains(&("chain", Outcome::Fail)));
        assert!(o.contains(&("recorded", Outcome::Warn)));
        for (trail, result) in [
            (TrailTrust::Authenticated { ignored: 1 }, Outcome::Warn),
            (TrailTrust::StructureOnly, Outcome::Warn),
            (TrailTrust::Format1, Outcome::Warn),
        ] {
            let e = Evidence {
                trail,
                server_ca: Ok("prod"),
                signer: None,
                revoked: None,
                record: None,
                record_problems: vec!["certs/01.yaml is missing".into()],
                ..foreign
            };
            let o = outcomes(&judge(&e));
            assert!(o.contains(&("audit trail", result)));
            assert!(o.contains(&("record files", Outcome::Warn)));
        }
    }

    #[test]
    fn expiry_grades_and_issued_ttl() {
        assert_eq!(grade_expiry(99, 100, 10), Expiry::Expired);
        assert_eq!(grade_expiry(100, 100, 10), Expiry::Expiring);
        assert_eq!(grade_expiry(110, 100, 10), Expiry::Expiring);
        assert_eq!(grade_expiry(111, 100, 10), Expiry::Fine);
        assert_eq!(grade_expiry(i64::MAX, 100, i64::MAX), Expiry::Expiring);
        let nb = datetime!(2030-01-01 00:00:00 UTC);
        assert_eq!(
            issued_ttl(nb, nb + time::Duration::seconds(8 * 3600 + 10)),
            Ttl::from_hours(8)
        );
    }

    #[test]
    fn kubeconfig_checks_each_fail_their_own_check() {
        let policy = KubernetesPolicy::default();
        let mut f = facts();
        f.organizations = vec!["talvault:viewers".into()];
        f.not_after = datetime!(2030-01-04 00:00:10 UTC);
        let direct = || Some(Signer::KubernetesCa { not_after: None });
        let judge = |facts: &LeafFacts, signer: Option<Signer>, issuer_active: bool| {
            judge_kubernetes(&KubeEvidence {
                facts,
                server_ca: Ok("prod"),
                signer,
                revoked: None,
                record: None,
                policy: &policy,
                issuer_active,
                now: datetime!(2030-01-01 01:00:00 UTC),
                trail: TrailTrust::Authenticated { ignored: 0 },
                record_problems: Vec::new(),
            })
        };
        let checks = judge(&f, direct(), false);
        assert_eq!(
            checks.iter().map(|c| c.check).collect::<Vec<_>>(),
            [
                "server-ca",
                "chain",
                "eku",
                "identity",
                "validity",
                "revocation",
                "accepted",
                "audit trail",
                "recorded",
                "policy"
            ]
        );
        assert!(
            checks.iter().all(|c| c.result != Outcome::Fail),
            "{checks:?}"
        );
        // No CN: not authenticated.
        let mut no_cn = f.clone();
        no_cn.common_name = None;
        assert!(outcomes(&judge(&no_cn, direct(), false)).contains(&("identity", Outcome::Fail)));
        // system:masters outside break-glass: a warning and a policy failure.
        let mut masters = f.clone();
        masters.organizations = vec!["system:masters".into()];
        let o = outcomes(&judge(&masters, direct(), false));
        assert!(o.contains(&("identity", Outcome::Warn)) && o.contains(&("policy", Outcome::Fail)));
        // serverAuth only: refused by the authenticator's KeyUsages.
        let mut server = f.clone();
        server.extended_key_usage = vec!["1.3.6.1.5.5.7.3.1".into()];
        assert!(outcomes(&judge(&server, direct(), false)).contains(&("eku", Outcome::Fail)));
        // A talosconfig's OS CA is no Kubernetes signer; a retired issuer is not accepted.
        let o = outcomes(&judge(&f, Some(Signer::OsCa { not_after: None }), false));
        assert!(o.contains(&("chain", Outcome::Fail)));
        let retired = Signer::Issuer {
            id: "k1-aaaa".into(),
            retired: true,
            state: "retired",
            not_after: datetime!(2031-01-01 00:00:00 UTC),
        };
        assert!(outcomes(&judge(&f, Some(retired), true)).contains(&("accepted", Outcome::Fail)));
        // Direct signing beside an active Kubernetes issuer is no longer in policy.
        assert!(outcomes(&judge(&f, direct(), true)).contains(&("policy", Outcome::Fail)));
    }
}
