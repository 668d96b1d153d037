//! PURE: what may be signed. A [`Grant`] is a request the policy allowed (only `pki::policy`
//! makes one); [`Grant::check_template`] checks the final certificate template against it just
//! before signing. [`Holder`] is who a certificate is for. No I/O, no clock, nothing signed here.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::cert::{CertificateTemplate, ExtendedKeyUsage, KeyUsage};
use super::name;
use super::role::Role;
use super::ttl::Ttl;

/// The most a leaf's NotBefore may lie before the issuing moment (clock-skew allowance), so the
/// most a certificate's lifetime may exceed its granted TTL.
pub const MAX_BACKDATE: time::Duration = time::Duration::seconds(60);

/// X.520 ub-common-name: the longest CN RFC 5280 allows.
const MAX_HOLDER_CHARS: usize = 64;

/// A holder name that cannot be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HolderError {
    /// Empty or only whitespace.
    #[error("empty holder name")]
    Empty,
    /// Longer than a certificate common name may be (64 characters, RFC 5280 ub-common-name).
    #[error("holder name {holder:?} is longer than 64 characters")]
    TooLong {
        /// The name as given.
        holder: String,
    },
    /// Contains a control character.
    #[error("holder name {holder:?} contains a control character")]
    ControlCharacter {
        /// The name as given.
        holder: String,
    },
}

/// Who a certificate is for (a person or a robot); written into the leaf's CN, which apid ignores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder(String);

impl Holder {
    /// Trims whitespace; refuses empty names, control characters and names longer than 64.
    pub fn parse(text: &str) -> Result<Holder, HolderError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(HolderError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(HolderError::ControlCharacter {
                holder: trimmed.to_owned(),
            });
        }
        if trimmed.chars().count() > MAX_HOLDER_CHARS {
            return Err(HolderError::TooLong {
                holder: trimmed.to_owned(),
            });
        }
        Ok(Holder(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Holder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Holder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Holder::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A request the policy allowed: exactly what may be signed. Only
/// [`Policy::grant`](super::policy::Policy::grant) makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    roles: Vec<Role>,
    ttl: Ttl,
    holder: Option<Holder>,
    break_glass_reason: Option<String>,
}

/// A final template that does not match its grant; signing must not proceed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GrantViolation {
    /// The subject is not O=roles (one RDN) plus the holder's CN.
    #[error("certificate subject does not match the granted roles and holder")]
    SubjectMismatch,
    /// NotAfter is not after NotBefore.
    #[error("certificate validity is empty or inverted")]
    EmptyValidity,
    /// The lifetime exceeds the grant (plus at most the backdating allowance).
    #[error("certificate lifetime {lifetime_seconds}s exceeds the granted TTL {granted}")]
    LifetimeAboveGrant {
        /// NotAfter − NotBefore, in seconds.
        lifetime_seconds: i64,
        /// The granted TTL.
        granted: Ttl,
    },
    /// EKU other than exactly `[clientAuth]` (apid refuses anything else).
    #[error("certificate extended key usage must be exactly clientAuth")]
    ExtendedKeyUsage,
    /// A CA certificate, or a key usage beyond digitalSignature.
    #[error("certificate must not be a CA and must have key usage digitalSignature only")]
    CaOrKeyUsage,
    /// A serial that is zero or longer than 16 bytes.
    #[error("certificate serial must be positive and at most 16 bytes")]
    Serial,
}

impl Grant {
    /// The roles, sorted and without duplicates.
    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The granted lifetime.
    pub fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// The holder, if named.
    pub fn holder(&self) -> Option<&Holder> {
        self.holder.as_ref()
    }

    /// The break-glass reason (trimmed) when this is a break-glass grant.
    pub fn break_glass_reason(&self) -> Option<&str> {
        self.break_glass_reason.as_deref()
    }

    /// The subject Name DER this grant allows: one multi-valued RDN of O=each role, then the
    /// holder as CN (siderolabs/talos: secrets/ca.go `NewAdminCertificateAndKey` puts roles in O;
    /// apid reads only `Subject.Organization`, pkg/grpc/middleware/authz/injector.go).
    pub fn subject_der(&self) -> Result<Vec<u8>, crate::der::DerError> {
        let orgs: Vec<&str> = self.roles.iter().map(Role::as_str).collect();
        name::encode(&orgs, self.holder.as_ref().map(Holder::as_str))
    }

    /// Checks the final template just before signing: subject = granted roles and holder,
    /// lifetime ≤ TTL + [`MAX_BACKDATE`], EKU exactly `[clientAuth]`, no CA, KU digitalSignature
    /// only, serial positive and ≤ 16 bytes.
    pub fn check_template(&self, template: &CertificateTemplate) -> Result<(), GrantViolation> {
        check_client_template(template, self.subject_der().ok().as_deref(), self.ttl)
    }
}

impl Grant {
    /// A grant of exactly these (sorted, deduplicated) roles; for `pki::policy` only.
    pub(super) fn new(
        roles: Vec<Role>,
        ttl: Ttl,
        holder: Option<Holder>,
        break_glass_reason: Option<String>,
    ) -> Grant {
        Grant {
            roles,
            ttl,
            holder,
            break_glass_reason,
        }
    }
}

/// The checks every client leaf's final template must pass, Talos and Kubernetes alike: subject
/// = `subject` (`None`: it could not be encoded, which matches no template), lifetime ≤ `ttl` +
/// [`MAX_BACKDATE`], EKU exactly `[clientAuth]`, no CA, KU digitalSignature only, serial positive
/// and ≤ 16 bytes.
pub fn check_client_template(
    template: &CertificateTemplate,
    subject: Option<&[u8]>,
    ttl: Ttl,
) -> Result<(), GrantViolation> {
    if subject != Some(template.subject.as_slice()) {
        return Err(GrantViolation::SubjectMismatch);
    }
    let lifetime = template.not_after - template.not_before;
    if lifetime <= time::Duration::ZERO {
        return Err(GrantViolation::EmptyValidity);
    }
    if lifetime > ttl.as_duration() + MAX_BACKDATE {
        return Err(GrantViolation::LifetimeAboveGrant {
            lifetime_seconds: lifetime.whole_seconds(),
            granted: ttl,
        });
    }
    // siderolabs/talos: internal/app/apid/service.go verifyExtKeyUsage (slices.Equal).
    if template.extended_key_usage != [ExtendedKeyUsage::ClientAuth] {
        return Err(GrantViolation::ExtendedKeyUsage);
    }
    let leaf_usage = KeyUsage {
        digital_signature: true,
        ..KeyUsage::default()
    };
    if template.ca.is_some() || template.key_usage != leaf_usage {
        return Err(GrantViolation::CaOrKeyUsage);
    }
    let significant = template
        .serial
        .iter()
        .skip_while(|&&b| b == 0)
        .collect::<Vec<_>>();
    if significant.is_empty() || significant.len() > 16 {
        return Err(GrantViolation::Serial);
    }
    Ok(())
}
