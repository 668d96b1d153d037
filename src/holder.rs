//! PURE: holders, the people and robots an environment hands talosconfigs to
//! (`envs/ENV/holders/<name>.yaml`, one file per holder so that concurrent edits merge): the
//! holder name (a `Holder` that is also a safe file name), the record (recipients to seal to,
//! the standing grant `renew` re-issues, and whether the holder's key is generated or comes from
//! a CSR), and the renewal rule: which holders' certificates are due. It reads no file and no
//! clock (times come in as arguments) and signs nothing.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::inventory::CertEntry;
use crate::model::{Api, MetaError};
use crate::pki::policy::{Holder, HolderError};
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;

/// The holder record format this build reads and writes.
pub const HOLDER_VERSION: u32 = 1;

/// The directory of holder records in an environment directory.
pub const HOLDERS_DIR: &str = "holders";

/// A name that cannot name a holder.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HolderNameError {
    /// Empty, too long for a certificate's CN, or with a control character.
    #[error(transparent)]
    Holder(#[from] HolderError),
    /// Outside the file-name alphabet (a path separator, `..`, upper case, a space, …).
    #[error(
        "holder name {holder:?} names a file: use 1 to 64 characters from a-z, 0-9, '.', '_', '@', '+' and '-', starting with a letter or digit"
    )]
    NotAFileName {
        /// The name as given.
        holder: String,
    },
}

/// A registered holder's name: a [`Holder`] (it goes into the certificates' CN) that is also a
/// file name on every platform: lower-case ASCII letters and digits, `.`, `_`, `@`, `+` and
/// `-`, starting with a letter or digit (so no separator, no `..`, no hidden file, nothing a
/// case-insensitive file system would fold together).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HolderName(Holder);

impl HolderName {
    /// Checks `text` ([`Holder::parse`] first, then the file-name rule).
    pub fn parse(text: &str) -> Result<HolderName, HolderNameError> {
        let holder = Holder::parse(text)?;
        let bytes = holder.as_str().as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|&b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-')
        });
        if !first_ok || !rest_ok {
            return Err(HolderNameError::NotAFileName {
                holder: holder.as_str().to_owned(),
            });
        }
        Ok(HolderName(holder))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// As the `Holder` certificates are issued to.
    pub fn holder(&self) -> &Holder {
        &self.0
    }

    /// The record's file name: `<name>.yaml`.
    pub fn file_name(&self) -> String {
        format!("{}.yaml", self.as_str())
    }
}

impl fmt::Display for HolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a holder's key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// talvault generates it and seals it, inside the talosconfig, to the holder.
    Generated,
    /// The holder keeps it and sends a CSR for every certificate; it never passes through the
    /// vault.
    Csr,
}

impl KeySource {
    /// `generated` or `csr`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Generated => "generated",
            KeySource::Csr => "csr",
        }
    }
}

/// What `renew` re-issues without anyone asking: roles and a TTL, within the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandingGrant {
    /// The roles, sorted.
    pub roles: Vec<Role>,
    /// Each certificate's TTL.
    pub ttl: Ttl,
}

/// `envs/ENV/holders/<name>.yaml`. Public: recipients are public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderRecord {
    /// Format version; 1.
    pub version: u32,
    /// The holder's name (the file's stem).
    pub name: String,
    /// The age recipients deliveries are sealed to (X25519, ssh-ed25519, ssh-rsa, plugin).
    pub recipients: Vec<String>,
    /// The standing grant; absent: deliveries only for what an operator issues by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<StandingGrant>,
    /// Where the holder's key comes from.
    pub key: KeySource,
    /// When the holder was added (RFC 3339).
    pub added: String,
    /// Who added them.
    pub added_by: String,
}

impl HolderRecord {
    /// Reads a holder record; `file` names it in errors. The name inside must be the file's.
    pub fn from_yaml(file: &str, bytes: &[u8], expected: &HolderName) -> Result<Self, MetaError> {
        let record: HolderRecord = crate::model::parse(file, bytes)?;
        let bad = |message: String| MetaError::Malformed {
            file: file.to_owned(),
            message,
        };
        if record.version != HOLDER_VERSION {
            return Err(bad(format!(
                "unsupported holder record version {} (this talvault reads {HOLDER_VERSION})",
                record.version
            )));
        }
        if record.name != expected.as_str() {
            return Err(bad(format!(
                "names holder {:?}, but its file is {:?}",
                record.name,
                expected.file_name()
            )));
        }
        if record.recipients.is_empty() {
            return Err(bad("no recipients".into()));
        }
        Ok(record)
    }

    /// Renders it.
    pub fn to_yaml(&self) -> Result<String, MetaError> {
        crate::model::to_yaml("holder record", self)
    }
}

/// Where a holder's standing grant stands, at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// No live certificate for the grant (none issued, or the newest expired or was revoked):
    /// due now.
    NoLiveCertificate,
    /// The newest live certificate expires within the window: due now.
    Expiring {
        /// Its serial.
        serial: String,
        /// Its notAfter (Unix seconds).
        not_after: i64,
    },
    /// Not yet.
    NotDue {
        /// The newest live certificate's serial.
        serial: String,
        /// Its notAfter (Unix seconds).
        not_after: i64,
        /// When it will be due (Unix seconds): notAfter − the window.
        due: i64,
    },
}

impl Renewal {
    /// Whether a certificate is to be issued now.
    pub fn is_due(&self) -> bool {
        !matches!(self, Renewal::NotDue { .. })
    }
}

/// Whether `holder`'s standing grant of `roles` is due at `now`. The certificates that count are
/// the holder's talosconfig certificates (not kubeconfigs), with exactly those roles, not
/// break-glass, not revoked and live at `now`; of
/// those, the newest (latest notBefore) decides. It is due when it expires within `window`
/// seconds, by default a third of its own lifetime (a 30-day certificate is renewed 10 days
/// before it ends), so a renewal job that runs weekly never lets a certificate of a week or more
/// lapse.
pub fn renewal(
    holder: &str,
    roles: &[Role],
    certs: &[CertEntry],
    revoked: &HashSet<&str>,
    now: i64,
    window: Option<i64>,
) -> Renewal {
    let mut wanted: Vec<&str> = roles.iter().map(Role::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let newest = certs
        .iter()
        .filter(|c| {
            c.holder.as_deref() == Some(holder)
                && c.api == Api::Talos
                && !c.break_glass
                && c.live_at(now)
                && !revoked.contains(c.serial.as_str())
                && {
                    let mut have: Vec<&str> = c.roles.iter().map(String::as_str).collect();
                    have.sort_unstable();
                    have.dedup();
                    have == wanted
                }
        })
        .max_by(|a, b| {
            (a.not_before, a.not_after, &a.serial).cmp(&(b.not_before, b.not_after, &b.serial))
        });
    let Some(c) = newest else {
        return Renewal::NoLiveCertificate;
    };
    let window = window.unwrap_or((c.not_after - c.not_before).max(0) / 3);
    let due = c.not_after.saturating_sub(window);
    if now >= due {
        Renewal::Expiring {
            serial: c.serial.clone(),
            not_after: c.not_after,
        }
    } else {
        Renewal::NotDue {
            serial: c.serial.clone(),
            not_after: c.not_after,
            due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_are_safe_file_names() {
        for ok in [
            "alice",
            "bob.smith",
            "ci-robot_2",
            "alice@example.com",
            "a+b",
            "0",
        ] {
            assert_eq!(HolderName::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            HolderName::parse(" alice ").unwrap().file_name(),
            "alice.yaml"
        );
        for bad in [
            "a/b", "..", ".hidden", "a\\b", "Alice", "a b", "ä", "-x", "_x",
        ] {
            assert!(
                matches!(
                    HolderName::parse(bad),
                    Err(HolderNameError::NotAFileName { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            HolderName::parse("a\nb"),
            Err(HolderNameError::Holder(
                HolderError::ControlCharacter { .. }
            ))
        ));
        assert!(matches!(
            HolderName::parse(&"a".repeat(65)),
            Err(HolderNameError::Holder(HolderError::TooLong { .. }))
        ));
        assert!(matches!(
            HolderName::parse(""),
            Err(HolderNameError::Holder(HolderError::Empty))
        ));
    }

    #[test]
    fn records_round_trip_and_name_their_file() {
        let name = HolderName::parse("alice").unwrap();
        let record = HolderRecord {
            version: HOLDER_VERSION,
            name: "alice".into(),
            recipients: vec!["age1xyz".into()],
            grant: Some(StandingGrant {
                roles: vec![Role::parse("os:reader").unwrap()],
                ttl: Ttl::parse("720h").unwrap(),
            }),
            key: KeySource::Generated,
            added: "2026-01-01T00:00:00Z".into(),
            added_by: "ops".into(),
        };
        let yaml = record.to_yaml().unwrap();
        assert_eq!(
            HolderRecord::from_yaml("h", yaml.as_bytes(), &name).unwrap(),
            record
        );
        let other = HolderName::parse("bob").unwrap();
        let err = HolderRecord::from_yaml("h", yaml.as_bytes(), &other).unwrap_err();
        assert!(err.to_string().contains("names holder \"alice\""), "{err}");
        let extra = format!("{yaml}colour: blue\n");
        assert!(HolderRecord::from_yaml("h", extra.as_bytes(), &name).is_err());
    }

    fn cert(serial: &str, holder: &str, roles: &[&str], nb: i64, na: i64) -> CertEntry {
        CertEntry {
            serial: serial.into(),
            ca: "os".into(),
            holder: Some(holder.into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            not_before: nb,
            not_after: na,
            break_glass: false,
            api: Api::Talos,
            file_sha256: String::new(),
        }
    }

    #[test]
    fn kubeconfig_certificates_never_satisfy_a_standing_grant() {
        let reader = [Role::parse("os:reader").unwrap()];
        let mut kube = cert("01", "alice", &["os:reader"], 0, 3000);
        kube.api = Api::Kubernetes;
        let none = HashSet::new();
        assert_eq!(
            renewal("alice", &reader, &[kube], &none, 100, None),
            Renewal::NoLiveCertificate
        );
    }

    #[test]
    fn renewal_is_due_in_the_last_third_or_without_a_live_certificate() {
        let reader = [Role::parse("os:reader").unwrap()];
        let none = HashSet::new();
        let day = 86_400;
        // A 30-day certificate from day 0: due from day 20.
        let certs = vec![cert("01", "alice", &["os:reader"], 0, 30 * day)];
        assert_eq!(
            renewal("alice", &reader, &certs, &none, 19 * day, None),
            Renewal::NotDue {
                serial: "01".into(),
                not_after: 30 * day,
                due: 20 * day
            }
        );
        assert!(renewal("alice", &reader, &certs, &none, 20 * day, None).is_due());
        // An explicit window.
        assert!(!renewal("alice", &reader, &certs, &none, 20 * day, Some(7 * day)).is_due());
        assert!(renewal("alice", &reader, &certs, &none, 23 * day, Some(7 * day)).is_due());
        // Expired, revoked, another holder's, other roles, break-glass: none counts.
        assert_eq!(
            renewal("alice", &reader, &certs, &none, 31 * day, None),
            Renewal::NoLiveCertificate
        );
        let revoked: HashSet<&str> = ["01"].into_iter().collect();
        assert!(renewal("alice", &reader, &certs, &revoked, day, None).is_due());
        assert!(renewal("bob", &reader, &certs, &none, day, None).is_due());
        let admin = [Role::parse("os:admin").unwrap()];
        assert!(renewal("alice", &admin, &certs, &none, day, None).is_due());
        let mut bg = cert("02", "alice", &["os:reader"], 0, 30 * day);
        bg.break_glass = true;
        assert!(renewal("alice", &reader, &[bg], &none, day, None).is_due());
        // The newest decides: a renewal issued on day 20 is not due again on day 21.
        let mut both = certs.clone();
        both.push(cert("03", "alice", &["os:reader"], 20 * day, 50 * day));
        assert!(!renewal("alice", &reader, &both, &none, 21 * day, None).is_due());
    }
}
