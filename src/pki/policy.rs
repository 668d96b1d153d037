//! PURE: the per-environment issuance policy (`envs/ENV/policy.yaml`) and the `Grant` it yields.
//!
//! A request (roles, TTL, holder, break-glass reason) becomes a [`Grant`] only through
//! [`Policy::grant`] (or [`Policy::standing_grant`], for what `renew` re-issues); a grant is what
//! may be signed, and [`Grant::check_template`] checks the final certificate template against it
//! once more just before signing ("check policy twice"). A TTL above the maximum is refused with
//! the maximum in the message, never clamped. This module does no I/O, reads no clock and signs
//! nothing. The grant itself and the holder name live in `pki::grant`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use super::grant::{
    Grant, GrantViolation, Holder, HolderError, MAX_BACKDATE, check_client_template,
};
use super::kube_policy::{KubePolicyProblem, KubernetesPolicy};
use super::role::Role;
use super::ttl::Ttl;

/// The only policy format version this build reads.
pub const POLICY_VERSION: u32 = 1;

/// A TTL of `h` hours, for the constant tables below (evaluated at compile time, so an invalid
/// constant fails the build rather than a run).
const fn hours(h: u64) -> Ttl {
    match Ttl::from_hours(h) {
        Some(ttl) => ttl,
        None => panic!("policy constants must be valid TTLs"),
    }
}

/// The default role table (design.md "Policy per environment"; Talos hardening guide):
/// (role, default TTL, maximum TTL).
const DEFAULT_ROLES: [(&str, Ttl, Ttl); 4] = [
    (Role::ADMIN, hours(8), hours(168)),
    (Role::OPERATOR, hours(24), hours(720)),
    (Role::READER, hours(720), hours(2160)),
    (Role::ETCD_BACKUP, hours(720), hours(2160)),
];
/// Break-glass bounds: default 1 h, maximum 4 h.
const DEFAULT_BREAK_GLASS: (Ttl, Ttl) = (hours(1), hours(4));

/// TTL bounds and holders for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// TTL when the request names none.
    pub default_ttl: Ttl,
    /// The longest TTL that may be issued; a longer request is refused.
    pub max_ttl: Ttl,
    /// When set, only these holders may receive the role (exact names, no wildcards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders: Option<Vec<Holder>>,
}

/// Break-glass: an `os:admin` certificate with a mandatory reason and its own, short, bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassPolicy {
    /// TTL when the request names none (default 1h).
    #[serde(default = "default_break_glass_ttl")]
    pub default_ttl: Ttl,
    /// The longest break-glass TTL (default 4h).
    #[serde(default = "max_break_glass_ttl")]
    pub max_ttl: Ttl,
    /// When set, only these holders may break the glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders: Option<Vec<Holder>>,
}

fn default_break_glass_ttl() -> Ttl {
    DEFAULT_BREAK_GLASS.0
}

fn max_break_glass_ttl() -> Ttl {
    DEFAULT_BREAK_GLASS.1
}

impl Default for BreakGlassPolicy {
    fn default() -> Self {
        BreakGlassPolicy {
            default_ttl: default_break_glass_ttl(),
            max_ttl: max_break_glass_ttl(),
            holders: None,
        }
    }
}

fn default_roles() -> BTreeMap<Role, RolePolicy> {
    DEFAULT_ROLES
        .iter()
        .filter_map(|&(name, default_ttl, max_ttl)| {
            Some((
                Role::known(name)?,
                RolePolicy {
                    default_ttl,
                    max_ttl,
                    holders: None,
                },
            ))
        })
        .collect()
}

/// `envs/ENV/policy.yaml`. When `roles` is present it is the complete list of issuable roles;
/// when absent, the four default roles apply. `os:impersonator`, `os:image:verifier`,
/// `os:meta:writer` and roles unknown to Talos are issuable only when listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; must be 1.
    pub version: u32,
    /// Issuable roles and their bounds, by exact role name.
    #[serde(default = "default_roles")]
    pub roles: BTreeMap<Role, RolePolicy>,
    /// Break-glass bounds.
    #[serde(default)]
    pub break_glass: BreakGlassPolicy,
    /// Whether leaves may be signed directly by the Talos OS CA rather than by an issuer (on by
    /// default: it is the only mode before an environment has an issuer). Not checked by
    /// [`Policy::grant`]; the caller that picks the signing CA checks it.
    #[serde(default = "default_true")]
    pub allow_direct: bool,
    /// Whether direct signing stays allowed once an issuer is active (off by default: a leaf
    /// signed by the OS CA survives retiring every issuer, so beside issuers it is an explicit
    /// opt-in).
    #[serde(default)]
    pub direct_beside_issuers: bool,
    /// How long an issuer's CRL stays current: nextUpdate − thisUpdate (default 7 days).
    #[serde(default = "default_crl_validity")]
    pub crl_validity: Ttl,
    /// Whether a holder may have a standing grant of `os:admin` (or `os:impersonator`, which can
    /// claim it), renewed by `talvault renew` without anyone asking (off by default: admin access
    /// is asked for each time, the hardening guide's least privilege).
    #[serde(default)]
    pub standing_admin: bool,
    /// Kubeconfigs: groups, bounds, privileged groups (`pki::kube_policy`); defaults when absent.
    #[serde(default)]
    pub kubernetes: KubernetesPolicy,
    /// Sealed etcd backups (`backup:`): how fresh the newest verified one must be, and whether
    /// opening one needs a reason. When absent, [`Policy::backup_rules`] gives the defaults and
    /// an environment without backups is not graded for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPolicy>,
}

/// The Talos hardening guide's daily backups: the newest verified one at most a day old.
const DEFAULT_BACKUP_MAX_AGE: Ttl = hours(24);

/// `backup:` in policy.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// `status` grades an environment whose newest verified backup was sealed longer ago than
    /// this (default 24h).
    #[serde(default = "default_backup_max_age")]
    pub max_age: Ttl,
    /// `backup open` refuses to run without a reason, which goes into the audit trail (default
    /// false).
    #[serde(default)]
    pub open_requires_reason: bool,
}

fn default_backup_max_age() -> Ttl {
    DEFAULT_BACKUP_MAX_AGE
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            max_age: DEFAULT_BACKUP_MAX_AGE,
            open_requires_reason: false,
        }
    }
}

/// RFC 5280 §5.1.2.5 nextUpdate: a week, a common CA default.
fn default_crl_validity() -> Ttl {
    hours(168)
}

impl Default for Policy {
    /// The safe defaults: os:admin 8h/168h, os:operator 24h/720h, os:reader 720h/2160h,
    /// os:etcd:backup 720h/2160h, break-glass 1h/4h, no holder restrictions, direct signing
    /// allowed while no issuer is active, CRLs current for 7 days.
    fn default() -> Self {
        Policy {
            version: POLICY_VERSION,
            roles: default_roles(),
            break_glass: BreakGlassPolicy::default(),
            allow_direct: true,
            direct_beside_issuers: false,
            crl_validity: default_crl_validity(),
            standing_admin: false,
            kubernetes: KubernetesPolicy::default(),
            backup: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `policy.yaml` could not be read or is inconsistent.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PolicyFileError {
    /// Not YAML of the policy's shape (unknown fields are refused).
    #[error("invalid policy: {message}")]
    Syntax {
        /// The parser's description (a policy holds no secrets).
        message: String,
    },
    /// A format version this build does not read.
    #[error("unsupported policy version {version} (this talvault reads version {POLICY_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        version: u32,
    },
    /// A default TTL above the maximum.
    #[error("policy for {what}: default TTL {default} is above the maximum {max}")]
    DefaultAboveMax {
        /// The role, or `break-glass`.
        what: String,
        /// The default TTL.
        default: Ttl,
        /// The maximum TTL.
        max: Ttl,
    },
    /// An empty holder list; remove the role instead of listing nobody.
    #[error("policy for {what}: `holders` is empty; remove the role (or the list) instead")]
    EmptyHolders {
        /// The role, or `break-glass`.
        what: String,
    },
    /// An empty user list in the Kubernetes section.
    #[error("policy for {what}: `users` is empty; remove the group (or the list) instead")]
    EmptyUsers {
        /// The group, or `kubernetes break-glass`.
        what: String,
    },
    /// Another inconsistency in the Kubernetes section.
    #[error("policy: {message}")]
    Kubernetes {
        /// What is wrong.
        message: String,
    },
}

impl Policy {
    /// Reads and checks `policy.yaml`.
    pub fn from_yaml(input: &[u8]) -> Result<Policy, PolicyFileError> {
        crate::nesting::check(input, 1 << 20).map_err(|e| PolicyFileError::Syntax {
            message: e.to_string(),
        })?;
        let policy: Policy =
            serde_yaml::from_slice(input).map_err(|e| PolicyFileError::Syntax {
                message: e.to_string(),
            })?;
        policy.validate()?;
        Ok(policy)
    }

    /// The backup rules: the `backup:` section, or its defaults when there is none.
    pub fn backup_rules(&self) -> BackupPolicy {
        self.backup.clone().unwrap_or_default()
    }

    /// Writes the policy as YAML (talvault's own file; serde's 2-space layout).
    pub fn to_yaml(&self) -> String {
        // A Policy is strings, integers and maps only; serialising it cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Whether a leaf may be signed directly by the Talos OS CA, given whether the environment
    /// has an active issuer.
    pub fn allows_direct(&self, issuer_active: bool) -> bool {
        self.allow_direct && (!issuer_active || self.direct_beside_issuers)
    }

    /// Checks the consistency rules `from_yaml` enforces.
    pub fn validate(&self) -> Result<(), PolicyFileError> {
        if self.version != POLICY_VERSION {
            return Err(PolicyFileError::UnsupportedVersion {
                version: self.version,
            });
        }
        let bounds = self
            .roles
            .iter()
            .map(|(role, p)| (role.to_string(), p.default_ttl, p.max_ttl, &p.holders))
            .chain(std::iter::once((
                "break-glass".to_owned(),
                self.break_glass.default_ttl,
                self.break_glass.max_ttl,
                &self.break_glass.holders,
            )));
        for (what, default, max, holders) in bounds {
            if default > max {
                return Err(PolicyFileError::DefaultAboveMax { what, default, max });
            }
            if holders.as_ref().is_some_and(Vec::is_empty) {
                return Err(PolicyFileError::EmptyHolders { what });
            }
        }
        if let Some(problem) = self.kubernetes.problems().into_iter().next() {
            return Err(match problem {
                KubePolicyProblem::DefaultAboveMax(what, default, max) => {
                    PolicyFileError::DefaultAboveMax { what, default, max }
                }
                KubePolicyProblem::EmptyUsers(what) => PolicyFileError::EmptyUsers { what },
                KubePolicyProblem::Other(message) => PolicyFileError::Kubernetes { message },
            });
        }
        Ok(())
    }

    /// Applies the policy to a request. Refuses rather than adjusts: a TTL above the maximum,
    /// a role the policy does not list, a holder not on a role's list, break-glass without a
    /// reason or for anything but `os:admin`.
    pub fn grant(&self, request: &Request) -> Result<Grant, PolicyError> {
        let mut roles = request.roles.clone();
        roles.sort();
        roles.dedup();
        if roles.is_empty() {
            return Err(PolicyError::NoRoles);
        }
        if let Some(reason) = &request.break_glass {
            return self.grant_break_glass(roles, request, reason);
        }

        // Effective bounds with several roles: the smallest maximum and the smallest default.
        let mut bound: Option<(&Role, Ttl)> = None;
        let mut default_ttl: Option<Ttl> = None;
        for role in &roles {
            let Some(rule) = self.roles.get(role) else {
                return Err(if role.is_impersonator() {
                    PolicyError::ImpersonatorNotAllowed
                } else if role.is_known() {
                    PolicyError::RoleNotInPolicy { role: role.clone() }
                } else {
                    PolicyError::UnknownRole { role: role.clone() }
                });
            };
            check_holder(
                rule.holders.as_deref(),
                request.holder.as_ref(),
                role.as_str(),
            )?;
            if bound.is_none_or(|(_, max)| rule.max_ttl < max) {
                bound = Some((role, rule.max_ttl));
            }
            default_ttl = Some(default_ttl.map_or(rule.default_ttl, |d| d.min(rule.default_ttl)));
        }
        let (Some((bound_role, max_ttl)), Some(default_ttl)) = (bound, default_ttl) else {
            return Err(PolicyError::NoRoles);
        };
        let ttl = request.ttl.unwrap_or(default_ttl);
        if ttl > max_ttl {
            return Err(PolicyError::TtlAbovePolicy {
                role: bound_role.to_string(),
                requested: ttl,
                max: max_ttl,
            });
        }
        Ok(Grant::new(roles, ttl, request.holder.clone(), None))
    }

    /// Applies the policy to a holder's standing grant (what `talvault renew` re-issues without
    /// anyone asking): as [`Policy::grant`], and `os:admin` or `os:impersonator` only when
    /// `standing_admin` is set. A break-glass grant is never standing.
    pub fn standing_grant(&self, request: &Request) -> Result<Grant, PolicyError> {
        if request.break_glass.is_some() {
            return Err(PolicyError::StandingBreakGlass);
        }
        let grant = self.grant(request)?;
        if !self.standing_admin
            && let Some(role) = grant
                .roles()
                .iter()
                .find(|r| r.as_str() == Role::ADMIN || r.is_impersonator())
        {
            return Err(PolicyError::StandingAdmin { role: role.clone() });
        }
        Ok(grant)
    }

    fn grant_break_glass(
        &self,
        roles: Vec<Role>,
        request: &Request,
        reason: &str,
    ) -> Result<Grant, PolicyError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(PolicyError::BreakGlassReasonRequired);
        }
        if reason.chars().any(char::is_control) {
            return Err(PolicyError::BreakGlassReasonInvalid);
        }
        if roles.len() != 1 || roles[0].as_str() != Role::ADMIN {
            return Err(PolicyError::BreakGlassRoles {
                roles: roles.iter().map(Role::to_string).collect(),
            });
        }
        let rules = &self.break_glass;
        check_holder(
            rules.holders.as_deref(),
            request.holder.as_ref(),
            "break-glass",
        )?;
        let ttl = request.ttl.unwrap_or(rules.default_ttl);
        if ttl > rules.max_ttl {
            return Err(PolicyError::TtlAbovePolicy {
                role: "break-glass".to_owned(),
                requested: ttl,
                max: rules.max_ttl,
            });
        }
        Ok(Grant::new(
            roles,
            ttl,
            request.holder.clone(),
            Some(reason.to_owned()),
        ))
    }
}

fn check_holder(
    allowed: Option<&[Holder]>,
    holder: Option<&Holder>,
    what: &str,
) -> Result<(), PolicyError> {
    let Some(allowed) = allowed else {
        return Ok(());
    };
    match holder {
        None => Err(PolicyError::HolderRequired {
            what: what.to_owned(),
        }),
        Some(h) if allowed.contains(h) => Ok(()),
        Some(h) => Err(PolicyError::HolderNotAllowed {
            holder: h.clone(),
            what: what.to_owned(),
        }),
    }
}

/// What someone asks for, after argument parsing and before policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The roles (duplicates are ignored).
    pub roles: Vec<Role>,
    /// The TTL asked for; `None` takes the policy default.
    pub ttl: Option<Ttl>,
    /// Who the certificate is for.
    pub holder: Option<Holder>,
    /// `Some(reason)` for break-glass.
    pub break_glass: Option<String>,
}

/// Why the policy refuses a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// No role asked for; a certificate without roles is useless (every RPC fails).
    #[error("no role requested")]
    NoRoles,
    /// `os:impersonator` asked for but not listed.
    #[error(
        "role os:impersonator is refused: it lets the holder claim any role; list it in policy.yaml to allow it"
    )]
    ImpersonatorNotAllowed,
    /// A Talos role the policy does not list.
    #[error("role {role} is not allowed by this environment's policy")]
    RoleNotInPolicy {
        /// The role.
        role: Role,
    },
    /// A role Talos does not know, not listed by the policy (a typo, or a role of a newer Talos).
    #[error("unknown role {:?} (known: {}); list it in policy.yaml to issue it anyway", role.as_str(), Role::KNOWN.join(", "))]
    UnknownRole {
        /// The role.
        role: Role,
    },
    /// Above the maximum; never clamped.
    #[error("requested TTL {requested} for {role} is above the policy maximum of {max}")]
    TtlAbovePolicy {
        /// The role whose maximum applies (the smallest among several), or `break-glass`.
        role: String,
        /// The TTL asked for.
        requested: Ttl,
        /// The maximum.
        max: Ttl,
    },
    /// The role (or break-glass) has a holder list and no holder was named.
    #[error("{what} may only be issued to listed holders")]
    HolderRequired {
        /// The role, or `break-glass`.
        what: String,
    },
    /// The holder is not on the role's list.
    #[error("holder {holder} may not receive {what}")]
    HolderNotAllowed {
        /// The holder.
        holder: Holder,
        /// The role, or `break-glass`.
        what: String,
    },
    /// Break-glass without a reason.
    #[error("break-glass requires a reason")]
    BreakGlassReasonRequired,
    /// A reason with control characters (it is recorded in the audit trail on one line).
    #[error("break-glass reason contains a control character")]
    BreakGlassReasonInvalid,
    /// A standing grant of `os:admin` or `os:impersonator` while `standing_admin` is off.
    #[error(
        "{role} is never a standing grant under this policy (set standing_admin: true in policy.yaml to allow it)"
    )]
    StandingAdmin {
        /// The role.
        role: Role,
    },
    /// Break-glass asked for as a standing grant.
    #[error("break-glass is never a standing grant")]
    StandingBreakGlass,
    /// Break-glass for anything but exactly `os:admin`.
    #[error("break-glass issues os:admin only, not {}", roles.join(", "))]
    BreakGlassRoles {
        /// The roles asked for.
        roles: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::{CertificateTemplate, ExtendedKeyUsage, KeyUsage};
    use crate::pki::name;
    use time::macros::datetime;

    fn ttl(s: &str) -> Ttl {
        Ttl::parse(s).unwrap()
    }

    fn roles(names: &[&str]) -> Vec<Role> {
        names.iter().map(|n| Role::parse(n).unwrap()).collect()
    }

    fn request(names: &[&str], t: Option<&str>, holder: Option<&str>) -> Request {
        Request {
            roles: roles(names),
            ttl: t.map(ttl),
            holder: holder.map(|h| Holder::parse(h).unwrap()),
            break_glass: None,
        }
    }

    #[test]
    fn standing_admin_only_when_the_policy_says_so() {
        let p = Policy::default();
        assert!(
            p.standing_grant(&request(&["os:reader"], None, Some("a")))
                .is_ok()
        );
        for roles in [&["os:admin"][..], &["os:admin", "os:reader"]] {
            assert_eq!(
                p.standing_grant(&request(roles, None, Some("a"))),
                Err(PolicyError::StandingAdmin {
                    role: Role::parse("os:admin").unwrap()
                })
            );
        }
        // Above the maximum: refused as for any request, never clamped.
        assert!(matches!(
            p.standing_grant(&request(&["os:reader"], Some("2161h"), Some("a"))),
            Err(PolicyError::TtlAbovePolicy { .. })
        ));
        let mut bg = request(&["os:admin"], None, Some("a"));
        bg.break_glass = Some("INC".into());
        assert_eq!(p.standing_grant(&bg), Err(PolicyError::StandingBreakGlass));
        let allowed = Policy {
            standing_admin: true,
            ..Policy::default()
        };
        assert!(
            allowed
                .standing_grant(&request(&["os:admin"], None, Some("a")))
                .is_ok()
        );
        let from_file = Policy::from_yaml(b"version: 1\nstanding_admin: true\n").unwrap();
        assert!(from_file.standing_admin);
        assert!(!Policy::from_yaml(b"version: 1\n").unwrap().standing_admin);
    }

    fn with_holders() -> Policy {
        Policy::from_yaml(
            b"version: 1
roles:
  os:admin:
    default_ttl: 8h
    max_ttl: 168h
    holders: [alice]
  os:reader:
    default_ttl: 720h
    max_ttl: 2160h
  os:impersonator:
    default_ttl: 1h
    max_ttl: 2h
    holders: [proxy-robot]
  os:future:
    default_ttl: 1h
    max_ttl: 24h
break_glass:
  holders: [alice, bob]
",
        )
        .unwrap()
    }

    #[test]
    fn grant_table() {
        let default = Policy::default();
        let custom = with_holders();
        // (policy, roles, ttl, holder, Ok(ttl granted) | Err(message fragment))
        type Case<'a> = (
            &'a Policy,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (&default, &["os:admin"], None, None, Ok("8h")),
            (&default, &["os:admin"], Some("168h"), None, Ok("168h")),
            (&default, &["os:admin"], Some("1w"), None, Ok("168h")),
            (
                &default,
                &["os:admin"],
                Some("169h"),
                None,
                Err("requested TTL 169h for os:admin is above the policy maximum of 168h"),
            ),
            (&default, &["os:operator"], None, None, Ok("24h")),
            (&default, &["os:operator"], Some("720h"), None, Ok("720h")),
            (
                &default,
                &["os:operator"],
                Some("721h"),
                None,
                Err("maximum of 720h"),
            ),
            (&default, &["os:reader"], None, None, Ok("720h")),
            (
                &default,
                &["os:reader"],
                Some("2161h"),
                None,
                Err("maximum of 2160h"),
            ),
            (&default, &["os:etcd:backup"], None, None, Ok("720h")),
            // Several roles: the smallest default and the smallest maximum.
            (
                &default,
                &["os:reader", "os:etcd:backup"],
                None,
                None,
                Ok("720h"),
            ),
            (
                &default,
                &["os:reader", "os:operator"],
                None,
                None,
                Ok("24h"),
            ),
            (
                &default,
                &["os:reader", "os:admin"],
                Some("200h"),
                None,
                Err("requested TTL 200h for os:admin is above the policy maximum of 168h"),
            ),
            (
                &default,
                &["os:reader", "os:reader"],
                None,
                None,
                Ok("720h"),
            ),
            (&default, &[], None, None, Err("no role requested")),
            (
                &default,
                &["os:impersonator"],
                None,
                None,
                Err("os:impersonator is refused"),
            ),
            (
                &default,
                &["os:reader", "os:impersonator"],
                None,
                None,
                Err("os:impersonator is refused"),
            ),
            (
                &default,
                &["os:future"],
                None,
                None,
                Err("unknown role \"os:future\""),
            ),
            (&default, &["OS:ADMIN"], None, None, Err("unknown role")),
            (
                &default,
                &["os:meta:writer"],
                None,
                None,
                Err("role os:meta:writer is not allowed by this environment's policy"),
            ),
            // Listed explicitly: allowed, with holder lists.
            (&custom, &["os:future"], None, None, Ok("1h")),
            (
                &custom,
                &["os:impersonator"],
                None,
                Some("proxy-robot"),
                Ok("1h"),
            ),
            (
                &custom,
                &["os:impersonator"],
                None,
                Some("alice"),
                Err("holder alice may not receive os:impersonator"),
            ),
            (&custom, &["os:admin"], None, Some("alice"), Ok("8h")),
            (
                &custom,
                &["os:admin"],
                None,
                Some("bob"),
                Err("holder bob may not receive os:admin"),
            ),
            (
                &custom,
                &["os:admin"],
                None,
                None,
                Err("os:admin may only be issued to listed holders"),
            ),
            (&custom, &["os:reader"], None, None, Ok("720h")),
            (
                &custom,
                &["os:reader", "os:admin"],
                None,
                Some("bob"),
                Err("holder bob may not receive os:admin"),
            ),
            (
                &custom,
                &["os:operator"],
                None,
                None,
                Err("os:operator is not allowed"),
            ),
        ];
        for (policy, names, t, holder, want) in cases {
            let got = policy.grant(&request(names, t, holder));
            match (got, want) {
                (Ok(grant), Ok(expected)) => {
                    assert_eq!(grant.ttl().to_string(), expected, "{names:?} {t:?}");
                    assert!(grant.break_glass_reason().is_none());
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{names:?} {t:?}: {e}")
                }
                (got, want) => panic!("{names:?} {t:?} {holder:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn above_max_is_typed_and_never_clamped() {
        let err = Policy::default()
            .grant(&request(&["os:admin"], Some("720h"), None))
            .unwrap_err();
        assert_eq!(
            err,
            PolicyError::TtlAbovePolicy {
                role: "os:admin".into(),
                requested: ttl("720h"),
                max: ttl("168h"),
            }
        );
    }

    #[test]
    fn break_glass_table() {
        let default = Policy::default();
        let custom = with_holders();
        let bg = |names: &[&str], t: Option<&str>, holder: Option<&str>, reason: &str| Request {
            break_glass: Some(reason.to_owned()),
            ..request(names, t, holder)
        };
        let cases: Vec<(&Policy, Request, Result<&str, &str>)> = vec![
            (&default, bg(&["os:admin"], None, None, "INC-123"), Ok("1h")),
            (
                &default,
                bg(&["os:admin"], Some("4h"), None, " INC-123 "),
                Ok("4h"),
            ),
            (
                &default,
                bg(&["os:admin"], Some("5h"), None, "INC-123"),
                Err("requested TTL 5h for break-glass is above the policy maximum of 4h"),
            ),
            (
                &default,
                bg(&["os:admin"], None, None, ""),
                Err("break-glass requires a reason"),
            ),
            (
                &default,
                bg(&["os:admin"], None, None, "  \t "),
                Err("break-glass requires a reason"),
            ),
            (
                &default,
                bg(&["os:admin"], None, None, "a\nb"),
                Err("control character"),
            ),
            (
                &default,
                bg(&["os:reader"], None, None, "x"),
                Err("break-glass issues os:admin only, not os:reader"),
            ),
            (
                &default,
                bg(&["os:admin", "os:reader"], None, None, "x"),
                Err("os:admin only"),
            ),
            (&custom, bg(&["os:admin"], None, Some("bob"), "x"), Ok("1h")),
            (
                &custom,
                bg(&["os:admin"], None, Some("eve"), "x"),
                Err("holder eve may not receive break-glass"),
            ),
            (
                &custom,
                bg(&["os:admin"], None, None, "x"),
                Err("break-glass may only be issued to listed holders"),
            ),
        ];
        for (policy, req, want) in cases {
            match (policy.grant(&req), want) {
                (Ok(grant), Ok(expected)) => {
                    assert_eq!(grant.ttl().to_string(), expected);
                    assert_eq!(
                        grant.break_glass_reason(),
                        Some(req.break_glass.as_deref().unwrap().trim())
                    );
                    assert_eq!(grant.roles(), &roles(&["os:admin"])[..]);
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{req:?}: {e}")
                }
                (got, want) => panic!("{req:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn policy_file_rules() {
        assert_eq!(
            Policy::from_yaml(b"version: 1\n").unwrap(),
            Policy::default()
        );
        let round = Policy::from_yaml(Policy::default().to_yaml().as_bytes()).unwrap();
        assert_eq!(round, Policy::default());
        for (doc, fragment) in [
            ("version: 2\n", "unsupported policy version 2"),
            ("{}\n", "missing field `version`"),
            ("version: 1\nextra: true\n", "unknown field `extra`"),
            (
                "version: 1\nroles:\n  os:admin:\n    default_ttl: 8h\n    max_ttl: 168h\n    maxttl: 1h\n",
                "unknown field `maxttl`",
            ),
            (
                "version: 1\nroles:\n  os:admin:\n    default_ttl: 9h\n    max_ttl: 8h\n",
                "policy for os:admin: default TTL 9h is above the maximum 8h",
            ),
            (
                "version: 1\nbreak_glass:\n  default_ttl: 5h\n",
                "policy for break-glass: default TTL 5h is above the maximum 4h",
            ),
            (
                "version: 1\nroles:\n  os:admin:\n    default_ttl: 0s\n    max_ttl: 8h\n",
                "not positive",
            ),
            (
                "version: 1\nroles:\n  os:admin:\n    default_ttl: 1h\n    max_ttl: 8h\n    holders: []\n",
                "`holders` is empty",
            ),
            (
                "version: 1\nroles:\n  ' ':\n    default_ttl: 1h\n    max_ttl: 8h\n",
                "empty role",
            ),
        ] {
            let err = Policy::from_yaml(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(fragment), "{doc:?}: {err}");
        }
        // A roles list replaces the defaults entirely.
        let only_reader = Policy::from_yaml(
            b"version: 1\nroles:\n  os:reader:\n    default_ttl: 1h\n    max_ttl: 2h\n",
        )
        .unwrap();
        assert!(matches!(
            only_reader.grant(&request(&["os:admin"], None, None)),
            Err(PolicyError::RoleNotInPolicy { .. })
        ));
        assert!(Policy::default().allow_direct);
    }

    #[test]
    fn backup_section_is_optional_strict_and_filled_in() {
        let none = Policy::from_yaml(b"version: 1\n").unwrap();
        assert_eq!(none.backup, None);
        assert_eq!(none.backup_rules(), BackupPolicy::default());
        assert_eq!(none.backup_rules().max_age, ttl("24h"));
        assert!(!none.to_yaml().contains("\nbackup:"));
        let empty = Policy::from_yaml(b"version: 1\nbackup: {}\n").unwrap();
        assert_eq!(empty.backup, Some(BackupPolicy::default()));
        let set = Policy::from_yaml(
            b"version: 1\nbackup:\n  max_age: 36h\n  open_requires_reason: true\n",
        )
        .unwrap();
        let rules = set.backup_rules();
        assert_eq!(
            (rules.max_age, rules.open_requires_reason),
            (ttl("36h"), true)
        );
        assert_eq!(Policy::from_yaml(set.to_yaml().as_bytes()).unwrap(), set);
        for (doc, fragment) in [
            ("version: 1\nbackup:\n  keep: 7\n", "unknown field `keep`"),
            ("version: 1\nbackup:\n  max_age: soon\n", "invalid duration"),
            ("version: 1\nbackup:\n  max_age: 0s\n", "not positive"),
            (
                "version: 1\nbackup:\n  open_requires_reason: maybe\n",
                "invalid",
            ),
        ] {
            let err = Policy::from_yaml(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(fragment), "{doc:?}: {err}");
        }
    }

    fn template_for(grant: &Grant) -> CertificateTemplate {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        CertificateTemplate {
            serial: vec![0x80; 16],
            issuer: name::encode(&["talos"], None).unwrap(),
            subject: grant.subject_der().unwrap(),
            not_before: now - time::Duration::seconds(10),
            not_after: now + grant.ttl().as_duration(),
            subject_public_key_info: vec![],
            key_usage: KeyUsage {
                digital_signature: true,
                ..KeyUsage::default()
            },
            extended_key_usage: vec![ExtendedKeyUsage::ClientAuth],
            ca: None,
            subject_key_id: None,
            authority_key_id: Some(vec![1; 20]),
        }
    }

    #[test]
    fn check_template_catches_drift() {
        let grant = Policy::default()
            .grant(&request(
                &["os:reader", "os:operator"],
                Some("2h"),
                Some("alice"),
            ))
            .unwrap();
        let good = template_for(&grant);
        assert_eq!(grant.check_template(&good), Ok(()));

        let mut t = good.clone();
        t.subject = name::encode(&["os:admin"], Some("alice")).unwrap();
        assert_eq!(
            grant.check_template(&t),
            Err(GrantViolation::SubjectMismatch)
        );
        let mut t = good.clone();
        t.subject = name::encode(&["os:reader", "os:operator"], None).unwrap();
        assert_eq!(
            grant.check_template(&t),
            Err(GrantViolation::SubjectMismatch)
        );
        let mut t = good.clone();
        t.not_after += time::Duration::seconds(51);
        assert!(matches!(
            grant.check_template(&t),
            Err(GrantViolation::LifetimeAboveGrant { .. })
        ));
        let mut t = good.clone();
        t.not_after = t.not_before;
        assert_eq!(grant.check_template(&t), Err(GrantViolation::EmptyValidity));
        let mut t = good.clone();
        t.extended_key_usage = vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth];
        assert_eq!(
            grant.check_template(&t),
            Err(GrantViolation::ExtendedKeyUsage)
        );
        let mut t = good.clone();
        t.extended_key_usage = vec![];
        assert_eq!(
            grant.check_template(&t),
            Err(GrantViolation::ExtendedKeyUsage)
        );
        let mut t = good.clone();
        t.ca = Some(super::super::cert::CaConstraints { path_len: Some(0) });
        assert_eq!(grant.check_template(&t), Err(GrantViolation::CaOrKeyUsage));
        let mut t = good.clone();
        t.key_usage.key_cert_sign = true;
        assert_eq!(grant.check_template(&t), Err(GrantViolation::CaOrKeyUsage));
        let mut t = good.clone();
        t.serial = vec![0; 16];
        assert_eq!(grant.check_template(&t), Err(GrantViolation::Serial));
        let mut t = good;
        t.serial = vec![1; 17];
        assert_eq!(grant.check_template(&t), Err(GrantViolation::Serial));
    }

    #[test]
    fn holders_are_checked() {
        assert_eq!(Holder::parse("  alice ").unwrap().as_str(), "alice");
        assert_eq!(Holder::parse(""), Err(HolderError::Empty));
        assert!(matches!(
            Holder::parse(&"x".repeat(65)),
            Err(HolderError::TooLong { .. })
        ));
        assert!(Holder::parse(&"x".repeat(64)).is_ok());
        assert!(matches!(
            Holder::parse("a\u{7}"),
            Err(HolderError::ControlCharacter { .. })
        ));
    }
}
