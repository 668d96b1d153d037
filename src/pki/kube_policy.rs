//! PURE: the Kubernetes section of `policy.yaml` (which groups `kubeconfig` may put into a
//! client certificate, for how long, to whom) and the [`KubeGrant`] it yields. It must not sign,
//! read files or clocks; `pki::kubernetes` mints what a grant allows and checks the template
//! against it again.
//!
//! The kube-apiserver's x509 authenticator makes the subject CN the user name and every O value
//! a group (reference/kubernetes.md §4, k8s.io/apiserver: pkg/authentication/request/x509/x509.go
//! `CommonNameUserConversion`), and it checks no revocation. So the policy is an allowlist of
//! groups, each with a default and maximum TTL that refuses rather than clamps;
//! `system:masters`, which bypasses every authorizer (kubernetes/kubernetes:
//! pkg/kubeapiserver/authorizer/reload.go), and any group the policy marks privileged are
//! break-glass only; and names that look like Kubernetes' own identities (reference §5: the
//! `system:` prefix, node and service-account users, the names Talos uses) are refused unless the
//! policy names them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::name;
use super::ttl::Ttl;

/// The group whose members bypass authorization: only ever issued by break-glass.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// X.520 ub-common-name and ub-organization-name (RFC 5280 Appendix A): 64 characters.
const MAX_NAME_CHARS: usize = 64;

const fn hours(h: u64) -> Ttl {
    match Ttl::from_hours(h) {
        Some(ttl) => ttl,
        None => panic!("policy constants must be valid TTLs"),
    }
}

/// The default groups (kubeconfigs are bound to ClusterRoles by RBAC bindings the team makes,
/// docs/kubernetes.md): (group, default TTL, maximum TTL). Hours for the powerful group, days for
/// the read-only one, in the spirit of the talosconfig defaults.
const DEFAULT_GROUPS: [(&str, Ttl, Ttl); 3] = [
    ("talvault:cluster-admins", hours(4), hours(24)),
    ("talvault:editors", hours(24), hours(168)),
    ("talvault:viewers", hours(72), hours(720)),
];
/// Kubernetes break-glass: default 1 h, maximum 4 h (as the Talos break-glass).
const DEFAULT_BREAK_GLASS: (Ttl, Ttl) = (hours(1), hours(4));

/// User names Talos itself puts into Kubernetes client certificates (reference/kubernetes.md §5:
/// siderolabs/talos pkg/machinery/constants/constants.go, the admin kubeconfig and the
/// control-plane's own clients; `front-proxy-client` is the aggregator's allowed name).
const TALOS_IDENTITIES: [&str; 4] = [
    "admin",
    "talos:admin",
    "apiserver-kubelet-client",
    "front-proxy-client",
];

/// A user or group name that cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KubeNameError {
    /// Empty or only whitespace (the apiserver does not authenticate an empty CN).
    #[error("empty {what} name")]
    Empty {
        /// `user` or `group`.
        what: &'static str,
    },
    /// Longer than a CN or O value may be.
    #[error("{what} name {name:?} is longer than 64 characters")]
    TooLong {
        /// `user` or `group`.
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// Contains a control character.
    #[error("{what} name {name:?} contains a control character")]
    ControlCharacter {
        /// `user` or `group`.
        what: &'static str,
        /// The name as given.
        name: String,
    },
    /// A group name with a comma (records list groups comma-separated).
    #[error("group name {name:?} contains a comma")]
    Comma {
        /// The name as given.
        name: String,
    },
}

fn parse_name(what: &'static str, text: &str) -> Result<String, KubeNameError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(KubeNameError::Empty { what });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(KubeNameError::ControlCharacter {
            what,
            name: trimmed.to_owned(),
        });
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(KubeNameError::TooLong {
            what,
            name: trimmed.to_owned(),
        });
    }
    Ok(trimmed.to_owned())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Trims whitespace; refuses empty names, control characters and names longer than
            /// 64 characters.
            pub fn parse(text: &str) -> Result<Self, KubeNameError> {
                let name = parse_name($what, text)?;
                let check: fn(&str) -> Result<(), KubeNameError> = $extra;
                check(&name)?;
                Ok(Self(name))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A Kubernetes user name: the client certificate's CN.
    KubeUser,
    "user",
    |_| Ok(())
);
name_type!(
    /// A Kubernetes group: one O value of the client certificate.
    KubeGroup,
    "group",
    |name| {
        if name.contains(',') {
            Err(KubeNameError::Comma {
                name: name.to_owned(),
            })
        } else {
            Ok(())
        }
    }
);

/// Why a user name looks like one of Kubernetes' or Talos's own identities, if it does
/// (reference/kubernetes.md §5).
pub fn reserved_user(name: &str) -> Option<&'static str> {
    if name.starts_with("system:node:") {
        Some("a node's identity (system:node:*)")
    } else if name.starts_with("system:serviceaccount:") {
        Some("a service account's identity (system:serviceaccount:*)")
    } else if name.starts_with("system:kube-") {
        Some("a control-plane component's identity (system:kube-*)")
    } else if name.starts_with("system:") {
        Some("a Kubernetes system identity (the system: prefix is reserved)")
    } else if TALOS_IDENTITIES.contains(&name) {
        Some("an identity Talos itself uses")
    } else {
        None
    }
}

/// Why a group name looks like one of Kubernetes' own groups, if it does.
pub fn reserved_group(name: &str) -> Option<&'static str> {
    if name.starts_with("system:serviceaccounts") {
        Some("the service accounts' group (system:serviceaccounts*)")
    } else if name.starts_with("system:") {
        Some("a Kubernetes system group (the system: prefix is reserved)")
    } else {
        None
    }
}

/// Bounds and users for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    /// TTL when the request names none.
    pub default_ttl: Ttl,
    /// The longest TTL that may be issued; a longer request is refused.
    pub max_ttl: Ttl,
    /// When set, only these users may receive the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<KubeUser>>,
}

/// Kubernetes break-glass: a privileged group (`system:masters` by default) with a mandatory
/// reason and its own, short, bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeBreakGlassPolicy {
    /// TTL when the request names none (default 1h).
    #[serde(default = "default_break_glass_ttl")]
    pub default_ttl: Ttl,
    /// The longest TTL (default 4h).
    #[serde(default = "max_break_glass_ttl")]
    pub max_ttl: Ttl,
    /// The privileged groups: issued only through break-glass, never by `kubeconfig`.
    /// `system:masters` is privileged whether listed or not; listed, break-glass may issue it.
    #[serde(default = "default_privileged")]
    pub groups: Vec<KubeGroup>,
    /// When set, only these users may break the glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<KubeUser>>,
}

fn default_break_glass_ttl() -> Ttl {
    DEFAULT_BREAK_GLASS.0
}

fn max_break_glass_ttl() -> Ttl {
    DEFAULT_BREAK_GLASS.1
}

fn default_privileged() -> Vec<KubeGroup> {
    vec![KubeGroup(SYSTEM_MASTERS.to_owned())]
}

impl Default for KubeBreakGlassPolicy {
    fn default() -> Self {
        Self {
            default_ttl: default_break_glass_ttl(),
            max_ttl: max_break_glass_ttl(),
            groups: default_privileged(),
            users: None,
        }
    }
}

fn default_groups() -> BTreeMap<KubeGroup, GroupPolicy> {
    DEFAULT_GROUPS
        .iter()
        .map(|&(name, default_ttl, max_ttl)| {
            (
                KubeGroup(name.to_owned()),
                GroupPolicy {
                    default_ttl,
                    max_ttl,
                    users: None,
                },
            )
        })
        .collect()
}

fn default_true() -> bool {
    true
}

/// The `kubernetes:` section of `policy.yaml`. Absent, the defaults apply: groups
/// `talvault:cluster-admins` 4h/24h, `talvault:editors` 24h/168h, `talvault:viewers`
/// 72h/720h; break-glass `system:masters` 1h/4h; direct signing by the Kubernetes CA allowed
/// while no Kubernetes issuer is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesPolicy {
    /// The groups `kubeconfig` may issue, with their bounds; when present, the complete list.
    #[serde(default = "default_groups")]
    pub groups: BTreeMap<KubeGroup, GroupPolicy>,
    /// Break-glass bounds and the privileged groups.
    #[serde(default)]
    pub break_glass: KubeBreakGlassPolicy,
    /// User names that look like Kubernetes or Talos identities and may be issued anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_users: Vec<KubeUser>,
    /// Whether the bundle's Kubernetes CA may sign kubeconfigs (the only way before a
    /// Kubernetes issuer is active).
    #[serde(default = "default_true")]
    pub allow_direct: bool,
    /// Whether direct signing stays allowed once a Kubernetes issuer is active.
    #[serde(default)]
    pub direct_beside_issuers: bool,
}

impl Default for KubernetesPolicy {
    fn default() -> Self {
        Self {
            groups: default_groups(),
            break_glass: KubeBreakGlassPolicy::default(),
            system_users: Vec::new(),
            allow_direct: true,
            direct_beside_issuers: false,
        }
    }
}

/// An inconsistency in the Kubernetes section, for `PolicyFileError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubePolicyProblem {
    /// A default TTL above the maximum (`what`, default, max).
    DefaultAboveMax(String, Ttl, Ttl),
    /// An empty user list (`what`).
    EmptyUsers(String),
    /// Something else, said in words.
    Other(String),
}

/// What `kubeconfig` or Kubernetes break-glass is asked for, before policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubeRequest {
    /// The user (CN).
    pub user: Option<KubeUser>,
    /// The groups (O); for break-glass, none means `system:masters`.
    pub groups: Vec<KubeGroup>,
    /// The TTL asked for; `None` takes the policy default.
    pub ttl: Option<Ttl>,
    /// `Some(reason)` for break-glass.
    pub break_glass: Option<String>,
}

/// Why the policy refuses a Kubernetes request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KubePolicyError {
    /// No user: the apiserver authenticates no certificate with an empty CN.
    #[error("no user named: the Kubernetes API authenticates no certificate without a CN")]
    NoUser,
    /// No group asked for.
    #[error("no group requested")]
    NoGroups,
    /// A privileged group outside break-glass.
    #[error(
        "group {group} is privileged{}: it is issued only by Kubernetes break-glass, with a reason",
        if group.as_str() == SYSTEM_MASTERS { " (it bypasses every authorizer, RBAC included)" } else { "" }
    )]
    PrivilegedGroup {
        /// The group.
        group: KubeGroup,
    },
    /// A group the policy does not list.
    #[error("group {group} is not allowed by this environment's policy")]
    GroupNotInPolicy {
        /// The group.
        group: KubeGroup,
    },
    /// A group that looks like a Kubernetes system group, not listed.
    #[error(
        "group {group} looks like {why}; list it under kubernetes.groups in policy.yaml to issue it"
    )]
    ReservedGroup {
        /// The group.
        group: KubeGroup,
        /// What it looks like.
        why: &'static str,
    },
    /// A user that looks like a Kubernetes or Talos identity, not listed.
    #[error(
        "user {user} looks like {why}; list it under kubernetes.system_users in policy.yaml to issue it"
    )]
    ReservedUser {
        /// The user.
        user: KubeUser,
        /// What it looks like.
        why: &'static str,
    },
    /// The user is not on a group's (or break-glass's) list.
    #[error("user {user} may not receive {what}")]
    UserNotAllowed {
        /// The user.
        user: KubeUser,
        /// `group G` or `Kubernetes break-glass`.
        what: String,
    },
    /// Above the maximum; never clamped.
    #[error("requested TTL {requested} for {what} is above the policy maximum of {max}")]
    TtlAbovePolicy {
        /// `group G` (the smallest maximum among several) or `Kubernetes break-glass`.
        what: String,
        /// The TTL asked for.
        requested: Ttl,
        /// The maximum.
        max: Ttl,
    },
    /// Break-glass without a reason.
    #[error("break-glass requires a reason")]
    BreakGlassReasonRequired,
    /// A reason with control characters.
    #[error("break-glass reason contains a control character")]
    BreakGlassReasonInvalid,
    /// Break-glass for a group that is not privileged in this policy.
    #[error(
        "Kubernetes break-glass issues the policy's privileged groups only ({}), not {group}",
        allowed.join(", ")
    )]
    BreakGlassGroup {
        /// The group asked for.
        group: KubeGroup,
        /// The privileged groups the policy lists.
        allowed: Vec<String>,
    },
}

/// A request the policy allowed: exactly what may be signed. Only
/// [`KubernetesPolicy::grant`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeGrant {
    user: KubeUser,
    groups: Vec<KubeGroup>,
    ttl: Ttl,
    break_glass_reason: Option<String>,
}

impl KubeGrant {
    /// The user (CN).
    pub fn user(&self) -> &KubeUser {
        &self.user
    }

    /// The groups, sorted, without duplicates.
    pub fn groups(&self) -> &[KubeGroup] {
        &self.groups
    }

    /// The granted lifetime.
    pub fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// The break-glass reason (trimmed), for a break-glass grant.
    pub fn break_glass_reason(&self) -> Option<&str> {
        self.break_glass_reason.as_deref()
    }

    /// The subject this grant allows, as Go's `pkix.Name{Organization: groups, CommonName: user}`
    /// encodes it (all O values in one multi-valued RDN, then CN; `pki::name`). Talos mints its
    /// admin kubeconfig the same way (siderolabs/talos pkg/kubeconfig/generate.go
    /// `x509.CommonName`, `x509.Organization`).
    pub fn subject_der(&self) -> Result<Vec<u8>, crate::der::DerError> {
        let orgs: Vec<&str> = self.groups.iter().map(KubeGroup::as_str).collect();
        name::encode(&orgs, Some(self.user.as_str()))
    }
}

impl KubernetesPolicy {
    /// Whether `group` may only come from break-glass.
    pub fn is_privileged(&self, group: &KubeGroup) -> bool {
        group.as_str() == SYSTEM_MASTERS || self.break_glass.groups.contains(group)
    }

    /// Whether the Kubernetes CA may sign directly, given whether a Kubernetes issuer is active.
    pub fn allows_direct(&self, issuer_active: bool) -> bool {
        self.allow_direct && (!issuer_active || self.direct_beside_issuers)
    }

    /// The consistency rules `policy.yaml` must keep.
    pub fn problems(&self) -> Vec<KubePolicyProblem> {
        let mut out = Vec::new();
        for (group, p) in &self.groups {
            let what = format!("kubernetes group {group}");
            if p.default_ttl > p.max_ttl {
                out.push(KubePolicyProblem::DefaultAboveMax(
                    what.clone(),
                    p.default_ttl,
                    p.max_ttl,
                ));
            }
            if p.users.as_ref().is_some_and(Vec::is_empty) {
                out.push(KubePolicyProblem::EmptyUsers(what.clone()));
            }
            if self.is_privileged(group) {
                out.push(KubePolicyProblem::Other(format!(
                    "{what} is privileged (break-glass only); remove it from kubernetes.groups"
                )));
            }
        }
        let b = &self.break_glass;
        if b.default_ttl > b.max_ttl {
            out.push(KubePolicyProblem::DefaultAboveMax(
                "kubernetes break-glass".into(),
                b.default_ttl,
                b.max_ttl,
            ));
        }
        if b.users.as_ref().is_some_and(Vec::is_empty) {
            out.push(KubePolicyProblem::EmptyUsers(
                "kubernetes break-glass".into(),
            ));
        }
        out
    }

    /// Applies the policy to a request. Refuses rather than adjusts.
    pub fn grant(&self, request: &KubeRequest) -> Result<KubeGrant, KubePolicyError> {
        let user = request.user.clone().ok_or(KubePolicyError::NoUser)?;
        if let Some(why) = reserved_user(user.as_str())
            && !self.system_users.contains(&user)
        {
            return Err(KubePolicyError::ReservedUser { user, why });
        }
        let mut groups = request.groups.clone();
        if let Some(reason) = &request.break_glass {
            return self.grant_break_glass(user, groups, request.ttl, reason);
        }
        groups.sort();
        groups.dedup();
        if groups.is_empty() {
            return Err(KubePolicyError::NoGroups);
        }
        let mut bound: Option<(&KubeGroup, Ttl)> = None;
        let mut default_ttl: Option<Ttl> = None;
        for group in &groups {
            if self.is_privileged(group) {
                return Err(KubePolicyError::PrivilegedGroup {
                    group: group.clone(),
                });
            }
            let Some(rule) = self.groups.get(group) else {
                return Err(match reserved_group(group.as_str()) {
                    Some(why) => KubePolicyError::ReservedGroup {
                        group: group.clone(),
                        why,
                    },
                    None => KubePolicyError::GroupNotInPolicy {
                        group: group.clone(),
                    },
                });
            };
            if let Some(users) = &rule.users
                && !users.contains(&user)
            {
                return Err(KubePolicyError::UserNotAllowed {
                    user,
                    what: format!("group {group}"),
                });
            }
            if bound.is_none_or(|(_, max)| rule.max_ttl < max) {
                bound = Some((group, rule.max_ttl));
            }
            default_ttl = Some(default_ttl.map_or(rule.default_ttl, |d| d.min(rule.default_ttl)));
        }
        let (Some((bound_group, max)), Some(default_ttl)) = (bound, default_ttl) else {
            return Err(KubePolicyError::NoGroups);
        };
        let ttl = request.ttl.unwrap_or(default_ttl);
        if ttl > max {
            return Err(KubePolicyError::TtlAbovePolicy {
                what: format!("group {bound_group}"),
                requested: ttl,
                max,
            });
        }
        Ok(KubeGrant {
            user,
            groups,
            ttl,
            break_glass_reason: None,
        })
    }

    fn grant_break_glass(
        &self,
        user: KubeUser,
        mut groups: Vec<KubeGroup>,
        ttl: Option<Ttl>,
        reason: &str,
    ) -> Result<KubeGrant, KubePolicyError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(KubePolicyError::BreakGlassReasonRequired);
        }
        if reason.chars().any(char::is_control) {
            return Err(KubePolicyError::BreakGlassReasonInvalid);
        }
        if groups.is_empty() {
            groups.push(KubeGroup(SYSTEM_MASTERS.to_owned()));
        }
        groups.sort();
        groups.dedup();
        let rules = &self.break_glass;
        for group in &groups {
            if !rules.groups.contains(group) {
                return Err(KubePolicyError::BreakGlassGroup {
                    group: group.clone(),
                    allowed: rules.groups.iter().map(|g| g.0.clone()).collect(),
                });
            }
        }
        if let Some(users) = &rules.users
            && !users.contains(&user)
        {
            return Err(KubePolicyError::UserNotAllowed {
                user,
                what: "Kubernetes break-glass".into(),
            });
        }
        let ttl = ttl.unwrap_or(rules.default_ttl);
        if ttl > rules.max_ttl {
            return Err(KubePolicyError::TtlAbovePolicy {
                what: "Kubernetes break-glass".into(),
                requested: ttl,
                max: rules.max_ttl,
            });
        }
        Ok(KubeGrant {
            user,
            groups,
            ttl,
            break_glass_reason: Some(reason.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Option<KubeUser> {
        Some(KubeUser::parse(s).unwrap())
    }

    fn groups(names: &[&str]) -> Vec<KubeGroup> {
        names.iter().map(|g| KubeGroup::parse(g).unwrap()).collect()
    }

    fn ttl(s: &str) -> Ttl {
        Ttl::parse(s).unwrap()
    }

    fn req(u: &str, g: &[&str], t: Option<&str>) -> KubeRequest {
        KubeRequest {
            user: user(u),
            groups: groups(g),
            ttl: t.map(ttl),
            break_glass: None,
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(KubeUser::parse(" alice ").unwrap().as_str(), "alice");
        assert_eq!(
            KubeUser::parse(" "),
            Err(KubeNameError::Empty { what: "user" })
        );
        assert!(matches!(
            KubeUser::parse("alice\nO=system:masters"),
            Err(KubeNameError::ControlCharacter { .. })
        ));
        assert!(matches!(
            KubeUser::parse(&"a".repeat(65)),
            Err(KubeNameError::TooLong { .. })
        ));
        KubeUser::parse(&"a".repeat(64)).unwrap();
        assert!(matches!(
            KubeGroup::parse("a,b"),
            Err(KubeNameError::Comma { .. })
        ));
        assert!(matches!(
            KubeGroup::parse("ops\u{1b}[31m"),
            Err(KubeNameError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn reserved_names() {
        for u in [
            "system:node:n1",
            "system:serviceaccount:kube-system:default",
            "system:kube-scheduler",
            "system:anonymous",
            "admin",
            "talos:admin",
        ] {
            assert!(reserved_user(u).is_some(), "{u}");
        }
        assert!(reserved_user("alice").is_none());
        assert!(reserved_user("administrator").is_none());
        assert!(reserved_group("system:nodes").is_some());
        assert!(reserved_group("talvault:viewers").is_none());
    }

    #[test]
    fn defaults_grant_and_refuse() {
        let p = KubernetesPolicy::default();
        assert!(p.problems().is_empty());
        let g = p
            .grant(&req(
                "alice",
                &["talvault:viewers", "talvault:editors"],
                None,
            ))
            .unwrap();
        // The smallest default of the two.
        assert_eq!(g.ttl(), ttl("24h"));
        assert_eq!(g.user().as_str(), "alice");
        let names: Vec<&str> = g.groups().iter().map(KubeGroup::as_str).collect();
        assert_eq!(names, ["talvault:editors", "talvault:viewers"]);
        assert_eq!(
            p.grant(&req("alice", &["talvault:cluster-admins"], None))
                .unwrap()
                .ttl(),
            ttl("4h")
        );
        let cases: Vec<(KubeRequest, &str)> = vec![
            (req("alice", &[], None), "no group requested"),
            (
                req("alice", &["system:masters"], None),
                "group system:masters is privileged (it bypasses every authorizer",
            ),
            (
                req("alice", &["system:nodes"], None),
                "group system:nodes looks like a Kubernetes system group",
            ),
            (
                req("alice", &["ops"], None),
                "group ops is not allowed by this environment's policy",
            ),
            (
                req("system:node:n1", &["talvault:viewers"], None),
                "user system:node:n1 looks like a node's identity",
            ),
            (
                req("system:serviceaccount:a:b", &["talvault:viewers"], None),
                "a service account's identity",
            ),
            (
                req("system:kube-proxy", &["talvault:viewers"], None),
                "a control-plane component's identity",
            ),
            (
                req(
                    "alice",
                    &["talvault:viewers", "talvault:cluster-admins"],
                    Some("25h"),
                ),
                "requested TTL 25h for group talvault:cluster-admins is above the policy maximum of 24h",
            ),
        ];
        for (r, msg) in cases {
            let err = p.grant(&r).unwrap_err().to_string();
            assert!(err.contains(msg), "{r:?}: {err}");
        }
        assert_eq!(
            p.grant(&KubeRequest {
                user: None,
                ..req("x", &["talvault:viewers"], None)
            }),
            Err(KubePolicyError::NoUser)
        );
    }

    #[test]
    fn break_glass() {
        let p = KubernetesPolicy::default();
        let bg = |g: &[&str], t: Option<&str>, reason: &str| {
            p.grant(&KubeRequest {
                break_glass: Some(reason.into()),
                ..req("alice", g, t)
            })
        };
        let g = bg(&[], None, " INC-1 ").unwrap();
        assert_eq!(g.ttl(), ttl("1h"));
        assert_eq!(g.break_glass_reason(), Some("INC-1"));
        assert_eq!(g.groups()[0].as_str(), SYSTEM_MASTERS);
        assert!(matches!(
            bg(&["talvault:viewers"], None, "INC-1"),
            Err(KubePolicyError::BreakGlassGroup { .. })
        ));
        assert!(matches!(
            bg(&[], Some("5h"), "INC-1"),
            Err(KubePolicyError::TtlAbovePolicy { .. })
        ));
        assert_eq!(
            bg(&[], None, "  "),
            Err(KubePolicyError::BreakGlassReasonRequired)
        );
        assert_eq!(
            bg(&[], None, "a\nb"),
            Err(KubePolicyError::BreakGlassReasonInvalid)
        );
    }

    #[test]
    fn listed_names_and_user_lists() {
        let p: KubernetesPolicy = serde_yaml::from_str(
            "groups:
  system:nodes: {default_ttl: 1h, max_ttl: 2h}
  ops: {default_ttl: 1h, max_ttl: 8h, users: [alice]}
system_users: [system:node:n1]
break_glass:
  groups: [system:masters, talvault:root]
  users: [bob]
",
        )
        .unwrap();
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        p.grant(&req("system:node:n1", &["system:nodes"], None))
            .unwrap();
        assert!(matches!(
            p.grant(&req("bob", &["ops"], None)),
            Err(KubePolicyError::UserNotAllowed { .. })
        ));
        p.grant(&req("alice", &["ops"], Some("8h"))).unwrap();
        assert!(matches!(
            p.grant(&req("alice", &["talvault:root"], None)),
            Err(KubePolicyError::PrivilegedGroup { .. })
        ));
        let bg = KubeRequest {
            break_glass: Some("INC".into()),
            ..req("bob", &["talvault:root"], None)
        };
        p.grant(&bg).unwrap();
        assert!(matches!(
            p.grant(&KubeRequest {
                user: user("alice"),
                ..bg
            }),
            Err(KubePolicyError::UserNotAllowed { .. })
        ));
    }

    #[test]
    fn inconsistent_sections_are_named() {
        let p: KubernetesPolicy = serde_yaml::from_str(
            "groups:
  system:masters: {default_ttl: 1h, max_ttl: 2h}
  ops: {default_ttl: 9h, max_ttl: 8h, users: []}
",
        )
        .unwrap();
        let problems = p.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(serde_yaml::from_str::<KubernetesPolicy>("colour: blue\n").is_err());
        assert!(
            serde_yaml::from_str::<KubernetesPolicy>(
                "groups: {\"a\\nb\": {default_ttl: 1h, max_ttl: 1h}}\n"
            )
            .is_err()
        );
    }

    #[test]
    fn subject_is_go_shaped() {
        let g = KubernetesPolicy::default()
            .grant(&req(
                "alice",
                &["talvault:viewers", "talvault:editors"],
                None,
            ))
            .unwrap();
        assert_eq!(
            g.subject_der().unwrap(),
            name::encode(&["talvault:editors", "talvault:viewers"], Some("alice")).unwrap()
        );
    }
}
