//! PURE: Talos API roles (`Role`), parsed as Talos's `role.Parse` parses them.
//!
//! A role is the text of one `O=` value in a client certificate's subject. Parsing trims
//! whitespace and matches exactly and case-sensitively; unknown roles are kept (Talos keeps them
//! for forward compatibility) but reported by [`Role::is_known`], so that issuance can refuse them
//! unless the policy lists them. This module does not decide what may be issued: `policy` does.

use std::fmt;

use thiserror::Error;

/// The prefix of every built-in role (siderolabs/talos: pkg/machinery/role/role.go `Prefix`).
pub const PREFIX: &str = "os:";

/// A role string that cannot be a role.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RoleError {
    /// Empty, or only whitespace. Talos skips such values; asking for one is a mistake.
    #[error("empty role")]
    Empty,
    /// Contains a control character, which has no place in a certificate subject.
    #[error("role {role:?} contains a control character")]
    ControlCharacter {
        /// The role as given.
        role: String,
    },
}

/// One Talos role, e.g. `os:reader`. Ordered as Go's `sort.Strings` orders role strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(String);

impl Role {
    /// `os:admin`: everything, including secrets.
    pub const ADMIN: &'static str = "os:admin";
    /// `os:operator`: reader plus reboot, service control, etcd snapshot and similar.
    pub const OPERATOR: &'static str = "os:operator";
    /// `os:reader`: read-only, no secrets.
    pub const READER: &'static str = "os:reader";
    /// `os:etcd:backup`: etcd snapshots.
    pub const ETCD_BACKUP: &'static str = "os:etcd:backup";
    /// `os:image:verifier`: ImageService.Verify (Talos ≥ 1.14).
    pub const IMAGE_VERIFIER: &'static str = "os:image:verifier";
    /// `os:meta:writer`: MetaWrite/MetaDelete (Talos ≥ 1.14).
    pub const META_WRITER: &'static str = "os:meta:writer";
    /// `os:impersonator`: lets the holder claim any role through gRPC metadata. Amounts to
    /// granting every role.
    pub const IMPERSONATOR: &'static str = "os:impersonator";

    /// Every role current Talos knows (siderolabs/talos: pkg/machinery/role/role.go `All`).
    pub const KNOWN: [&'static str; 7] = [
        Role::ADMIN,
        Role::OPERATOR,
        Role::READER,
        Role::ETCD_BACKUP,
        Role::IMAGE_VERIFIER,
        Role::META_WRITER,
        Role::IMPERSONATOR,
    ];

    /// Parses one role like `role.Parse`: surrounding whitespace is trimmed, the rest is taken
    /// exactly (case-sensitive). Unknown roles are accepted here; see [`Role::is_known`].
    pub fn parse(text: &str) -> Result<Role, RoleError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(RoleError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(RoleError::ControlCharacter {
                role: trimmed.to_owned(),
            });
        }
        Ok(Role(trimmed.to_owned()))
    }

    /// Parses several roles into a sorted set without duplicates (Talos's `Set.Strings()`).
    pub fn parse_set<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Vec<Role>, RoleError> {
        let mut roles = texts
            .into_iter()
            .map(Role::parse)
            .collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    /// A built-in role by constant; for callers that name one of [`Role::KNOWN`].
    pub fn known(name: &'static str) -> Option<Role> {
        Role::KNOWN.contains(&name).then(|| Role(name.to_owned()))
    }

    /// The role text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether current Talos knows this role.
    pub fn is_known(&self) -> bool {
        Role::KNOWN.contains(&self.0.as_str())
    }

    /// Whether this is `os:impersonator`.
    pub fn is_impersonator(&self) -> bool {
        self.0 == Role::IMPERSONATOR
    }

    /// The role without the `os:` prefix, as `talosctl config new` names contexts
    /// (siderolabs/talos: v1alpha1_server.go `strings.TrimPrefix(r[0], role.Prefix)`).
    pub fn short_name(&self) -> &str {
        self.0.strip_prefix(PREFIX).unwrap_or(&self.0)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s)
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Role::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_is_exact() {
        assert_eq!(Role::parse(" os:reader\t").unwrap().as_str(), "os:reader");
        assert!(Role::parse("os:reader").unwrap().is_known());
        assert!(!Role::parse("OS:READER").unwrap().is_known());
        assert!(!Role::parse("os:future").unwrap().is_known());
        assert_eq!(Role::parse("  "), Err(RoleError::Empty));
        assert!(matches!(
            Role::parse("os:a\ndmin"),
            Err(RoleError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn known_set_is_talos_all() {
        for name in Role::KNOWN {
            assert!(Role::known(name).unwrap().is_known());
        }
        assert_eq!(Role::known("os:future"), None);
        assert!(Role::parse("os:impersonator").unwrap().is_impersonator());
    }

    #[test]
    fn sets_are_sorted_like_go() {
        let set =
            Role::parse_set(["os:reader", "os:admin", " os:reader", "os:etcd:backup"]).unwrap();
        let names: Vec<&str> = set.iter().map(Role::as_str).collect();
        assert_eq!(names, ["os:admin", "os:etcd:backup", "os:reader"]);
    }

    #[test]
    fn short_name_for_context_names() {
        assert_eq!(
            Role::parse("os:etcd:backup").unwrap().short_name(),
            "etcd:backup"
        );
        assert_eq!(Role::parse("custom").unwrap().short_name(), "custom");
    }
}
