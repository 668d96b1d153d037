//! PURE: what an audit event says happened, as one typed enum serialised by serde into the
//! event's `action` and `data` (the same JSON as the hand-built maps of earlier releases, so
//! existing trails verify unchanged). It must not hold anything secret: every field's type
//! implements [`Public`], which no secret type does, and the `actions!` macro checks that at
//! compile time.

use serde::Serialize;
use serde_json::{Map, Value};

use super::AuditError;
use crate::digest::Fingerprint;
use crate::model::{Pins, Sealing};

/// Types an audit event may carry: public by construction. Secret newtypes (`SecretBytes`,
/// `SecretText`, keys, `Zeroizing<…>`) never implement it, so a secret in an event is a
/// compile error, not a review finding.
pub trait Public: Serialize {}

impl Public for String {}
impl Public for bool {}
impl Public for u32 {}
impl Public for u64 {}
impl Public for usize {}
impl<T: Public> Public for Option<T> {}
impl<T: Public> Public for Vec<T> {}
impl Public for Fingerprint {}
impl Public for Pins {}
impl Public for Sealing {}

/// Declares [`Action`]: each variant with its on-disk action name and its `data` fields, plus a
/// compile-time check that every field type is [`Public`].
macro_rules! actions {
    ($(
        $(#[$doc:meta])*
        $name:literal => $variant:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ),* $(,)?) => {
        /// What happened, with its public details (the event's `action` and `data`).
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(tag = "action", content = "data")]
        #[non_exhaustive]
        pub enum Action {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant {
                    $( $(#[$field_meta])* $field: $ty ),*
                },
            )*
        }

        impl Action {
            /// The action name written in the event (`issue`, `bundle.export`, …).
            pub fn name(&self) -> &'static str {
                match self {
                    $( Action::$variant { .. } => $name, )*
                }
            }
        }

        // Every field type must be `Public`: this does not compile otherwise.
        const _: fn() = || {
            fn public<T: Public>() {}
            $( $( public::<$ty>(); )* )*
        };
    };
}

actions! {
    /// A new environment with a generated bundle.
    "env.create" => EnvCreate {
        /// Where the bundle came from (`generated`).
        source: String,
        /// The version contract.
        talos_version: String,
        /// How it is sealed.
        sealing: Sealing,
        /// The recipients it is sealed to (empty for a passphrase).
        recipients: Vec<String>,
        /// The CA pins.
        pins: Pins,
    },
    /// A new environment from existing material.
    "env.import" => EnvImport {
        /// `secrets`, `kubernetes-pki` or `controlplane-config`.
        source: String,
        /// The version contract.
        talos_version: String,
        /// How it is sealed.
        sealing: Sealing,
        /// The recipients it is sealed to (empty for a passphrase).
        recipients: Vec<String>,
        /// The CA pins.
        pins: Pins,
    },
    /// The break-glass mark was cleared.
    "env.untaint" => EnvUntaint {
        /// Why.
        reason: String,
        /// When the environment was tainted.
        tainted_since: String,
        /// The break-glass certificate that tainted it.
        break_glass_serial: Option<String>,
    },
    /// The plaintext bundle left the vault.
    "bundle.export" => BundleExport {
        /// `stdout` or `file`.
        destination: String,
    },
    /// The plaintext bundle was piped into a program.
    "bundle.exec" => BundleExec {
        /// The program's file name only (its arguments could hold anything).
        program: String,
    },
    /// Recipients were added; every secret was re-sealed.
    "recipients.add" => RecipientsAdd {
        /// Added recipients.
        added: Vec<String>,
        /// Removed recipients (none).
        removed: Vec<String>,
        /// The new set.
        recipients: Vec<String>,
        /// The files re-sealed.
        resealed: Vec<String>,
    },
    /// Recipients were removed; every secret was re-sealed with a fresh file key.
    "recipients.remove" => RecipientsRemove {
        /// Added recipients (none).
        added: Vec<String>,
        /// Removed recipients.
        removed: Vec<String>,
        /// The new set.
        recipients: Vec<String>,
        /// The files re-sealed.
        resealed: Vec<String>,
    },
    /// A certificate was issued.
    "issue" => Issue {
        /// Serial, hex.
        serial: String,
        /// `sha256:…` of the certificate.
        fingerprint: String,
        /// Roles.
        roles: Vec<String>,
        /// Holder.
        holder: Option<String>,
        /// TTL as granted.
        ttl: String,
        /// notAfter.
        not_after: String,
        /// `direct` or `issuer`.
        mode: String,
        /// `os` or the issuer id.
        signed_by: String,
        /// `generated` or `csr`.
        key: String,
        /// Only for break-glass.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An emergency os:admin certificate was issued.
    "break-glass" => BreakGlass {
        /// Serial, hex.
        serial: String,
        /// `sha256:…` of the certificate.
        fingerprint: String,
        /// Roles.
        roles: Vec<String>,
        /// Holder.
        holder: Option<String>,
        /// TTL as granted.
        ttl: String,
        /// notAfter.
        not_after: String,
        /// `direct` or `issuer`.
        mode: String,
        /// `os` or the issuer id.
        signed_by: String,
        /// `generated` or `csr`.
        key: String,
        /// Why.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A kubeconfig's client certificate was issued.
    "kubeconfig" => Kubeconfig {
        /// Serial, hex.
        serial: String,
        /// `sha256:…` of the certificate: the kube-apiserver's audit log shows it as
        /// `authentication.kubernetes.io/credential-id: X509SHA256=<hex>` (Kubernetes ≥ 1.32).
        fingerprint: String,
        /// The Kubernetes user (CN).
        user: String,
        /// The Kubernetes groups (O).
        groups: Vec<String>,
        /// TTL as granted.
        ttl: String,
        /// notAfter.
        not_after: String,
        /// `direct` (the bundle's Kubernetes CA) or `issuer`.
        mode: String,
        /// `k8s` or the issuer id.
        signed_by: String,
        /// `generated` or `csr`.
        key: String,
    },
    /// An emergency Kubernetes certificate in a privileged group (`system:masters`) was issued.
    "break-glass.kubernetes" => KubernetesBreakGlass {
        /// Serial, hex.
        serial: String,
        /// `sha256:…` of the certificate.
        fingerprint: String,
        /// The Kubernetes user (CN).
        user: String,
        /// The Kubernetes groups (O).
        groups: Vec<String>,
        /// TTL as granted.
        ttl: String,
        /// notAfter.
        not_after: String,
        /// `direct` or `issuer`.
        mode: String,
        /// `k8s` or the issuer id.
        signed_by: String,
        /// `generated` or `csr`.
        key: String,
        /// Why.
        reason: String,
    },
    /// A new issuer, pending.
    "issuer.create" => IssuerCreate {
        /// Its id.
        issuer: String,
        /// Its epoch.
        epoch: u32,
        /// `ed25519` or `ecdsa-p256`.
        algorithm: String,
        /// `sha256:…` of its certificate.
        fingerprint: String,
        /// notAfter.
        not_after: String,
        /// `age` or `pkcs11`.
        key_store: String,
        /// The token URI (PKCS#11 keys only; never a PIN).
        #[serde(skip_serializing_if = "Option::is_none")]
        pkcs11_uri: Option<String>,
        /// Set (true) only when an extractable token key was accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        danger_allow_extractable: Option<bool>,
        /// `kubernetes` for a Kubernetes issuer (absent: the Talos API, as before).
        #[serde(skip_serializing_if = "Option::is_none")]
        api: Option<String>,
    },
    /// An issuer started signing.
    "issuer.activate" => IssuerActivate {
        /// Its id.
        issuer: String,
        /// The issuer that signed before.
        previously_signing: Option<String>,
    },
    /// An issuer was retired.
    "issuer.retire" => IssuerRetire {
        /// Its id.
        issuer: String,
        /// Retired although it was the only active issuer with live certificates.
        forced: bool,
        /// Live certificates cut off.
        cut_off: usize,
        /// Whether the break-glass taint was cleared with it.
        untainted: bool,
    },
    /// A certificate was revoked.
    "revoke" => Revoke {
        /// Serial, hex.
        serial: String,
        /// `sha256:…` of the certificate.
        fingerprint: String,
        /// RFC 5280 reason.
        reason: String,
        /// `os` or the issuer id. (Releases that stored CRLs in the vault also wrote `crl`
        /// and `crl_number` here; the chain still reads such a number.)
        signed_by: String,
    },
    /// The vault moved to format 2: authenticated events that account for every file. This
    /// event names every file the environment held then.
    "upgrade" => Upgrade {
        /// The format before.
        from: u32,
        /// The format after.
        to: u32,
    },
    /// A reviewed change of policy.yaml was accepted.
    "policy.accept" => PolicyAccept {
        /// Why (the review).
        reason: String,
    },
    /// A holder was registered: recipients to seal deliveries to, and a standing grant.
    "holder.add" => HolderAdd {
        /// The holder's name.
        holder: String,
        /// The recipients (public keys).
        recipients: Vec<String>,
        /// The standing grant's roles (none: no standing grant).
        roles: Vec<String>,
        /// The standing grant's TTL.
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<String>,
        /// `generated` or `csr`.
        key: String,
    },
    /// A holder was removed (their certificates stay valid until revoked or expired).
    "holder.remove" => HolderRemove {
        /// The holder's name.
        holder: String,
        /// Their live certificates at removal (serials).
        live: Vec<String>,
    },
    /// A CRL was signed.
    "crl" => Crl {
        /// The issuer.
        issuer: String,
        /// Its CRL number.
        crl_number: u64,
        /// Entries.
        entries: usize,
    },
    /// A backup was sealed and its record written.
    "backup.seal" => BackupSeal {
        /// The backup id.
        id: String,
        /// The operator's label.
        label: Option<String>,
        /// `file`, `etcd-snapshot` or `etcd-db-copy`.
        format: String,
        /// Plaintext bytes.
        size: u64,
        /// SHA-256 of the plaintext.
        sha256: String,
        /// The etcd snapshot's own SHA-256 (its trailer), when it has one.
        etcd_sha256: Option<String>,
        /// SHA-256 of the sealed file.
        sealed_sha256: String,
        /// Where the sealed file went.
        location: Option<String>,
        /// Fingerprints of the environment's recipients it is sealed to.
        recipients: Vec<Fingerprint>,
        /// Fingerprints of the backup-only recipients it is sealed to.
        backup_only: Vec<Fingerprint>,
    },
    /// A backup was decrypted for a file, stdout or a program.
    "backup.open" => BackupOpen {
        /// The backup id.
        id: String,
        /// SHA-256 of the sealed file.
        sealed_sha256: String,
        /// `file`, `stdout` or `exec`.
        destination: String,
        /// For `exec`: the program's file name only.
        #[serde(skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        /// Why (required when the policy says so).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A backup was decrypted in memory and matched its record (the restoration test).
    "backup.verify" => BackupVerify {
        /// The backup id.
        id: String,
        /// SHA-256 of the sealed file that was verified.
        sealed_sha256: String,
        /// Plaintext bytes.
        size: u64,
        /// SHA-256 of the plaintext.
        sha256: String,
        /// `file`, `etcd-snapshot` or `etcd-db-copy`.
        format: String,
        /// The etcd snapshot's own SHA-256, checked again.
        etcd_sha256: Option<String>,
    },
    /// A backup was re-encrypted to the current recipients.
    "backup.reseal" => BackupReseal {
        /// The backup id.
        id: String,
        /// SHA-256 of the sealed file before.
        previous_sha256: String,
        /// SHA-256 of the sealed file now.
        sealed_sha256: String,
        /// Fingerprints of the environment's recipients it is now sealed to.
        recipients: Vec<Fingerprint>,
        /// Fingerprints of the backup-only recipients it is now sealed to.
        backup_only: Vec<Fingerprint>,
    },
    /// Backup records were removed (the files themselves live elsewhere).
    "backup.prune" => BackupPrune {
        /// How many newest records were kept.
        keep: usize,
        /// The ids removed.
        removed: Vec<String>,
    },
    /// Backup-only recipients were added.
    "backup-recipients.add" => BackupRecipientsAdd {
        /// Added recipients.
        added: Vec<String>,
        /// Removed recipients (none).
        removed: Vec<String>,
        /// The new set of backup-only recipients.
        recipients: Vec<String>,
    },
    /// Backup-only recipients were removed.
    "backup-recipients.remove" => BackupRecipientsRemove {
        /// Added recipients (none).
        added: Vec<String>,
        /// Removed recipients.
        removed: Vec<String>,
        /// The new set of backup-only recipients.
        recipients: Vec<String>,
    },
    /// A machine config was compared with the bundle (the recovery drill).
    "env.check" => EnvCheck {
        /// Whether every field matched.
        matches: bool,
        /// The fields compared.
        checked: Vec<String>,
        /// The fields that differ or are missing on one side.
        mismatched: Vec<String>,
    },
}

impl Action {
    /// The event's `data` object.
    pub fn data(&self) -> Result<Map<String, Value>, AuditError> {
        let value = serde_json::to_value(self).map_err(|e| AuditError::Malformed(e.to_string()))?;
        match value {
            Value::Object(mut m) => match m.remove("data") {
                Some(Value::Object(data)) => Ok(data),
                _ => Err(AuditError::Malformed("action without data".into())),
            },
            _ => Err(AuditError::Malformed("action is not an object".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of typed actions is what the hand-built maps of earlier releases wrote: `null`
    /// for an absent holder, and optional fields left out when absent.
    #[test]
    fn data_matches_the_earlier_hand_built_maps() {
        let issue = Action::Issue {
            serial: "0a".into(),
            fingerprint: "sha256:00".into(),
            roles: vec!["os:reader".into()],
            holder: None,
            ttl: "8h".into(),
            not_after: "2026-01-01T08:00:00Z".into(),
            mode: "direct".into(),
            signed_by: "os".into(),
            key: "generated".into(),
            reason: None,
        };
        assert_eq!(issue.name(), "issue");
        assert_eq!(
            Value::Object(issue.data().unwrap()).to_string(),
            r#"{"fingerprint":"sha256:00","holder":null,"key":"generated","mode":"direct","not_after":"2026-01-01T08:00:00Z","roles":["os:reader"],"serial":"0a","signed_by":"os","ttl":"8h"}"#
        );
        let create = Action::IssuerCreate {
            issuer: "e1-abcd".into(),
            epoch: 1,
            algorithm: "ed25519".into(),
            fingerprint: "sha256:11".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            key_store: "age".into(),
            pkcs11_uri: None,
            danger_allow_extractable: None,
            api: None,
        };
        assert_eq!(
            Value::Object(create.data().unwrap()).to_string(),
            r#"{"algorithm":"ed25519","epoch":1,"fingerprint":"sha256:11","issuer":"e1-abcd","key_store":"age","not_after":"2027-01-01T00:00:00Z"}"#
        );
        let revoke = Action::Revoke {
            serial: "0a".into(),
            fingerprint: "sha256:00".into(),
            reason: "keyCompromise".into(),
            signed_by: "os".into(),
        };
        assert_eq!(revoke.name(), "revoke");
        assert_eq!(
            Value::Object(revoke.data().unwrap()).to_string(),
            r#"{"fingerprint":"sha256:00","reason":"keyCompromise","serial":"0a","signed_by":"os"}"#
        );
    }
}
