//! PURE: two secrets bundles compared field by field through SHA-256, for `env check` (does a
//! control-plane machine config belong to this environment's bundle?). Only digests are
//! compared and only certificate fingerprints (public) are ever returned; no value, and no
//! digest of a secret, leaves this module.

use super::{CaName, CertAndKey, SecretsBundle};
use crate::digest::{Fingerprint, sha256};
use crate::keys::pem_decode_first;

/// How one field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldState {
    /// The same on both sides.
    Match,
    /// Set on both sides, different.
    Differs,
    /// Only the bundle has it.
    MissingInOther,
    /// Only the other side has it.
    MissingInBundle,
}

impl FieldState {
    /// For people and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldState::Match => "match",
            FieldState::Differs => "differs",
            FieldState::MissingInOther => "missing in the machine config",
            FieldState::MissingInBundle => "missing in the bundle",
        }
    }
}

/// One compared field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name in secrets.yaml (`certs.os.key`, `secrets.bootstraptoken`, …).
    pub name: &'static str,
    /// The comparison.
    pub state: FieldState,
    /// For certificates only (public): the fingerprint on each side, (bundle, other).
    pub fingerprints: Option<(Option<Fingerprint>, Option<Fingerprint>)>,
}

/// What a value is compared by: certificates by DER, keys by their PEM body (so line endings
/// and headers do not matter), secret strings by their trimmed text. Empty means absent.
fn digest_of(kind: Kind, value: &[u8]) -> Option<[u8; 32]> {
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    Some(match kind {
        Kind::Text => sha256(trimmed),
        Kind::Pem => match pem_decode_first(trimmed) {
            Some(block) => sha256(&block.der),
            None => sha256(trimmed),
        },
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Pem,
}

fn field(
    name: &'static str,
    kind: Kind,
    ours: Option<&[u8]>,
    theirs: Option<&[u8]>,
    public: bool,
) -> Option<Field> {
    let a = ours.and_then(|v| digest_of(kind, v));
    let b = theirs.and_then(|v| digest_of(kind, v));
    let state = match (&a, &b) {
        (None, None) => return None,
        (Some(x), Some(y)) if x == y => FieldState::Match,
        (Some(_), Some(_)) => FieldState::Differs,
        (Some(_), None) => FieldState::MissingInOther,
        (None, Some(_)) => FieldState::MissingInBundle,
    };
    let show =
        |d: Option<[u8; 32]>| d.map(|d| Fingerprint(format!("sha256:{}", crate::hex::encode(&d))));
    Some(Field {
        name,
        state,
        fingerprints: public.then(|| (show(a), show(b))),
    })
}

fn ca_fields(
    name: CaName,
    ours: Option<&CertAndKey>,
    theirs: Option<&CertAndKey>,
) -> [Option<Field>; 2] {
    let (crt, key) = match name {
        CaName::Etcd => ("certs.etcd.crt", "certs.etcd.key"),
        CaName::K8s => ("certs.k8s.crt", "certs.k8s.key"),
        CaName::K8sAggregator => ("certs.k8saggregator.crt", "certs.k8saggregator.key"),
        CaName::Os => ("certs.os.crt", "certs.os.key"),
    };
    [
        field(
            crt,
            Kind::Pem,
            ours.map(|c| c.crt.as_slice()),
            theirs.map(|c| c.crt.as_slice()),
            true,
        ),
        field(
            key,
            Kind::Pem,
            ours.map(|c| c.key.expose()),
            theirs.map(|c| c.key.expose()),
            false,
        ),
    ]
}

/// Every field that is set on at least one side, in secrets.yaml order. A field empty on both
/// sides (the aescbc secret of a newer cluster, say) is not compared.
pub fn compare(bundle: &SecretsBundle, other: &SecretsBundle) -> Vec<Field> {
    let mut out = Vec::new();
    let (c1, c2) = (bundle.cluster.as_ref(), other.cluster.as_ref());
    out.push(field(
        "cluster.id",
        Kind::Text,
        c1.map(|c| c.id.as_bytes()),
        c2.map(|c| c.id.as_bytes()),
        false,
    ));
    out.push(field(
        "cluster.secret",
        Kind::Text,
        c1.map(|c| c.secret.expose().as_bytes()),
        c2.map(|c| c.secret.expose().as_bytes()),
        false,
    ));
    let (s1, s2) = (bundle.secrets.as_ref(), other.secrets.as_ref());
    for (name, get) in [
        (
            "secrets.bootstraptoken",
            (|s: &super::Secrets| s.bootstrap_token.expose().as_bytes())
                as fn(&super::Secrets) -> &[u8],
        ),
        ("secrets.secretboxencryptionsecret", |s| {
            s.secretbox_encryption_secret.expose().as_bytes()
        }),
        ("secrets.aescbcencryptionsecret", |s| {
            s.aescbc_encryption_secret.expose().as_bytes()
        }),
    ] {
        out.push(field(name, Kind::Text, s1.map(get), s2.map(get), false));
    }
    out.push(field(
        "trustdinfo.token",
        Kind::Text,
        bundle
            .trustd_info
            .as_ref()
            .map(|t| t.token.expose().as_bytes()),
        other
            .trustd_info
            .as_ref()
            .map(|t| t.token.expose().as_bytes()),
        false,
    ));
    let (k1, k2) = (bundle.certs.as_ref(), other.certs.as_ref());
    for name in CaName::ALL {
        out.extend(ca_fields(
            name,
            k1.and_then(|c| c.ca(name)),
            k2.and_then(|c| c.ca(name)),
        ));
    }
    out.push(field(
        "certs.k8sserviceaccount.key",
        Kind::Pem,
        k1.and_then(|c| c.k8s_service_account.as_ref())
            .map(|k| k.key.expose()),
        k2.and_then(|c| c.k8s_service_account.as_ref())
            .map(|k| k.key.expose()),
        false,
    ));
    out.into_iter().flatten().collect()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::bundle::{VersionContract, generate};
    use crate::secret::{SecretBytes, SecretText};

    fn fresh() -> SecretsBundle {
        // Contract v1.6: an ECDSA service-account key, quick to make (RSA-4096 is not).
        generate::generate(
            VersionContract::parse("v1.6").unwrap(),
            time::macros::datetime!(2026-01-01 00:00:00 UTC),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap()
    }

    /// The upstream stability configs (v1alpha1 for contract 1.13, multi-document for 1.14)
    /// were generated from one bundle: every field compares equal, both ways.
    #[test]
    fn upstream_configs_of_one_bundle_match() {
        let v113 = include_bytes!("../../tests/data/talos/stability-v1.13-base-controlplane.yaml");
        let v114 = include_bytes!("../../tests/data/talos/stability-v1.14-base-controlplane.yaml");
        let a = crate::bundle::import::from_controlplane_config(v113).unwrap();
        let b = crate::bundle::import::from_controlplane_config(v114).unwrap();
        let fields = compare(&a, &b);
        assert_eq!(fields.len(), 14, "{fields:?}");
        assert!(
            fields.iter().all(|f| f.state == FieldState::Match),
            "{fields:?}"
        );
        let other = fresh();
        assert!(
            compare(&other, &b)
                .iter()
                .all(|f| f.state == FieldState::Differs)
        );
    }

    #[test]
    fn a_bundle_matches_itself_and_differences_are_named() {
        let a = fresh();
        let same = SecretsBundle::from_yaml(a.to_yaml().expose().as_bytes()).unwrap();
        let fields = compare(&a, &same);
        assert!(fields.len() >= 13, "{fields:?}");
        assert!(
            fields.iter().all(|f| f.state == FieldState::Match),
            "{fields:?}"
        );
        // Certificates show their fingerprints; secrets never do.
        let os = fields.iter().find(|f| f.name == "certs.os.crt").unwrap();
        assert!(os.fingerprints.as_ref().unwrap().0.is_some());
        assert!(
            fields
                .iter()
                .filter(|f| !f.name.ends_with(".crt"))
                .all(|f| f.fingerprints.is_none())
        );

        let mut b = SecretsBundle::from_yaml(a.to_yaml().expose().as_bytes()).unwrap();
        b.trustd_info.as_mut().unwrap().token = SecretText::new("aaaaaa.bbbbbbbbbbbbbbbb".into());
        let certs = b.certs.as_mut().unwrap();
        certs.os.as_mut().unwrap().key = SecretBytes::copy_from(b"");
        let other = fresh();
        b.certs.as_mut().unwrap().etcd = other.certs.unwrap().etcd;
        let state = |name: &str| {
            compare(&a, &b)
                .into_iter()
                .find(|f| f.name == name)
                .map(|f| f.state)
        };
        assert_eq!(state("trustdinfo.token"), Some(FieldState::Differs));
        assert_eq!(state("certs.os.key"), Some(FieldState::MissingInOther));
        assert_eq!(state("certs.etcd.crt"), Some(FieldState::Differs));
        assert_eq!(state("certs.etcd.key"), Some(FieldState::Differs));
        assert_eq!(state("certs.k8s.crt"), Some(FieldState::Match));
        // Line endings do not make a key differ.
        let mut crlf = SecretsBundle::from_yaml(a.to_yaml().expose().as_bytes()).unwrap();
        let k = crlf.certs.as_mut().unwrap().k8s.as_mut().unwrap();
        let text = String::from_utf8(k.key.expose().to_vec())
            .unwrap()
            .replace('\n', "\r\n");
        k.key = SecretBytes::copy_from(text.as_bytes());
        assert_eq!(
            compare(&a, &crlf)
                .into_iter()
                .find(|f| f.name == "certs.k8s.key")
                .map(|f| f.state),
            Some(FieldState::Match)
        );
    }
}
