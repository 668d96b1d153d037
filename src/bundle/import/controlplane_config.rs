//! PURE: building a bundle from a control-plane machine config, as `talosctl gen secrets
//! --from-controlplane-config` (siderolabs/talos: bundle.go `NewBundleFromConfig`): the v1alpha1
//! single-document form and the Talos 1.14 multi-document form.
//!
//! Must not touch files, the environment or the clock, and generates nothing. Must never put a
//! secret value into an error: errors name YAML fields and document kinds only, and YAML errors
//! are reduced to a value-free description and a position (`yaml::sanitize`).

use serde::Deserialize;
use zeroize::Zeroizing;

use super::ImportError;
use crate::bundle::yaml::{BundleReadError, decode_go_base64, sanitize};
use crate::bundle::{
    CertAndKey, Certs, Cluster, KeyOnly, REDACTED, Secrets, SecretsBundle, TrustdInfo,
};
use crate::secret::{SecretBytes, SecretText};

fn syntax(err: &serde_yaml::Error) -> ImportError {
    sanitize(err).into()
}

type Text = Option<Zeroizing<String>>;

/// What a document is, from its `version` / `apiVersion` + `kind` keys only.
#[derive(Deserialize)]
#[serde(expecting = "a YAML mapping (a machine config document)")]
struct Header {
    version: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

/// The documents this import reads; every other one is skipped unread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Doc {
    Ignored,
    V1Alpha1,
    DiscoveryIdentity,
    ApiServerCa,
    AggregatorCa,
    ServiceAccount,
    EtcdEncryption,
}

impl Doc {
    fn classify(header: Option<Header>) -> Doc {
        let Some(h) = header else { return Doc::Ignored };
        match h.kind.as_deref() {
            // The config decoder looks a kind up per apiVersion; only v1alpha1 ones exist.
            Some(kind) if h.api_version.as_deref() == Some("v1alpha1") => match kind {
                "DiscoveryIdentityConfig" => Doc::DiscoveryIdentity,
                "KubeAPIServerCAConfig" => Doc::ApiServerCa,
                "KubeAggregatorCAConfig" => Doc::AggregatorCa,
                "KubeServiceAccountConfig" => Doc::ServiceAccount,
                "KubeEtcdEncryptionConfig" => Doc::EtcdEncryption,
                _ => Doc::Ignored,
            },
            Some(_) => Doc::Ignored,
            None if h.version.as_deref() == Some("v1alpha1") => Doc::V1Alpha1,
            None => Doc::Ignored,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Doc::Ignored => "ignored",
            Doc::V1Alpha1 => "v1alpha1",
            Doc::DiscoveryIdentity => "DiscoveryIdentityConfig",
            Doc::ApiServerCa => "KubeAPIServerCAConfig",
            Doc::AggregatorCa => "KubeAggregatorCAConfig",
            Doc::ServiceAccount => "KubeServiceAccountConfig",
            Doc::EtcdEncryption => "KubeEtcdEncryptionConfig",
        }
    }
}

// v1alpha1 (siderolabs/talos: pkg/machinery/config/types/v1alpha1/v1alpha1_types.go). Only the
// fields the bundle needs; everything else is skipped.

#[derive(Deserialize, Default)]
struct RawV1Alpha1 {
    machine: Option<RawMachine>,
    cluster: Option<RawCluster>,
}

#[derive(Deserialize, Default)]
struct RawMachine {
    /// `MachineToken`
    token: Text,
    /// `MachineCA`
    ca: Option<RawB64CertAndKey>,
}

#[derive(Deserialize, Default)]
struct RawCluster {
    /// `ClusterID`
    id: Option<String>,
    /// `ClusterSecret`
    secret: Text,
    /// `BootstrapToken`
    token: Text,
    /// `ClusterAESCBCEncryptionSecret`
    #[serde(rename = "aescbcEncryptionSecret")]
    aescbc_encryption_secret: Text,
    /// `ClusterSecretboxEncryptionSecret`
    #[serde(rename = "secretboxEncryptionSecret")]
    secretbox_encryption_secret: Text,
    /// `ClusterCA`
    ca: Option<RawB64CertAndKey>,
    /// `ClusterAggregatorCA`
    #[serde(rename = "aggregatorCA")]
    aggregator_ca: Option<RawB64CertAndKey>,
    /// `ClusterServiceAccount`
    #[serde(rename = "serviceAccount")]
    service_account: Option<RawB64Key>,
    /// `EtcdConfig`
    etcd: Option<RawEtcd>,
}

#[derive(Deserialize)]
struct RawEtcd {
    /// `RootCA`
    ca: Option<RawB64CertAndKey>,
}

/// `x509.PEMEncodedCertificateAndKey` in YAML: base64 of the PEM (siderolabs/crypto).
#[derive(Deserialize)]
struct RawB64CertAndKey {
    crt: Option<String>,
    key: Text,
}

/// `x509.PEMEncodedKey` in YAML.
#[derive(Deserialize)]
struct RawB64Key {
    key: Text,
}

// Multi-document form (Talos ≥ 1.14). These hold plain PEM, not base64.

/// siderolabs/talos: pkg/machinery/config/types/cluster/discovery_identity.go
#[derive(Deserialize)]
struct RawDiscoveryIdentity {
    #[serde(rename = "clusterID")]
    cluster_id: Option<String>,
    #[serde(rename = "clusterSecret")]
    cluster_secret: Text,
}

/// pkg/machinery/config/types/k8s/apiserver_ca.go, aggregator_ca.go (`issuingCA`).
#[derive(Deserialize)]
struct RawCaDocument {
    #[serde(rename = "issuingCA")]
    issuing_ca: Option<RawPemCertAndKey>,
}

/// `meta.CertificateAndKey`: `cert` and `key`, plain PEM.
#[derive(Deserialize)]
struct RawPemCertAndKey {
    cert: Option<String>,
    key: Text,
}

/// pkg/machinery/config/types/k8s/service_account.go (`issuer.privateKey`).
#[derive(Deserialize)]
struct RawServiceAccountDocument {
    issuer: Option<RawIssuer>,
}

#[derive(Deserialize)]
struct RawIssuer {
    #[serde(rename = "privateKey")]
    private_key: Text,
}

/// pkg/machinery/config/types/k8s/etcd_encryption.go (`config`: a kube-apiserver
/// EncryptionConfiguration without apiVersion/kind), read through the same reduced shape as
/// bundle.go `etcdEncryptionConfigReduced`.
#[derive(Deserialize)]
struct RawEtcdEncryptionDocument {
    config: Option<RawEncryptionConfig>,
}

#[derive(Deserialize)]
struct RawEncryptionConfig {
    resources: Option<Vec<RawEncryptionResource>>,
}

#[derive(Deserialize)]
struct RawEncryptionResource {
    resources: Option<Vec<String>>,
    providers: Option<Vec<RawEncryptionProvider>>,
}

#[derive(Deserialize)]
struct RawEncryptionProvider {
    secretbox: Option<RawSecretbox>,
}

#[derive(Deserialize)]
struct RawSecretbox {
    keys: Option<Vec<RawSecretboxKey>>,
}

#[derive(Deserialize)]
struct RawSecretboxKey {
    secret: Text,
}

/// Everything read from the documents, before it is mapped onto the bundle.
#[derive(Default)]
struct Parsed {
    v1alpha1: Option<RawV1Alpha1>,
    identity: Option<RawDiscoveryIdentity>,
    api_server_ca: Option<RawCaDocument>,
    aggregator_ca: Option<RawCaDocument>,
    service_account: Option<RawServiceAccountDocument>,
    etcd_encryption: Option<RawEtcdEncryptionDocument>,
}

/// Builds a bundle from a control-plane machine config, as `talosctl gen secrets
/// --from-controlplane-config`.
///
/// siderolabs/talos: pkg/machinery/config/generate/secrets/bundle.go `NewBundleFromConfig`. Reads
/// both the v1alpha1 single-document form and the Talos 1.14 multi-document form; unknown fields
/// and documents are ignored. Nothing is generated (upstream does not call `populate`). Stricter
/// than upstream: a worker config (no `machine.ca` key), a redacted config, duplicate documents
/// and v1alpha1 fields set together with their replacement documents are refused.
pub fn from_controlplane_config(yaml: &[u8]) -> Result<SecretsBundle, ImportError> {
    let parsed = parse_documents(yaml)?;
    let v1 = parsed.v1alpha1.ok_or(ImportError::NoV1Alpha1)?;
    let machine = v1.machine.unwrap_or_default();
    let cluster = v1.cluster.unwrap_or_default();

    // Not upstream: it would copy a worker's key-less `machine.ca` (and, from 1.14, panic on the
    // missing KubeAPIServerCAConfig). Refuse clearly instead.
    let has_machine_ca_key = machine
        .ca
        .as_ref()
        .is_some_and(|ca| ca.key.as_ref().is_some_and(|k| !k.is_empty()));
    if !has_machine_ca_key {
        return Err(ImportError::NotControlPlane);
    }

    // Conflicts that Talos's V1Alpha1ConflictValidate refuses (apiserver_ca.go, aggregator_ca.go,
    // service_account.go, discovery_identity.go, etcd_encryption.go).
    let conflicts = [
        (
            cluster.ca.is_some() && parsed.api_server_ca.is_some(),
            "cluster.ca",
            Doc::ApiServerCa,
        ),
        (
            cluster.aggregator_ca.is_some() && parsed.aggregator_ca.is_some(),
            "cluster.aggregatorCA",
            Doc::AggregatorCa,
        ),
        (
            cluster.service_account.is_some() && parsed.service_account.is_some(),
            "cluster.serviceAccount",
            Doc::ServiceAccount,
        ),
        (
            (non_empty(&cluster.id) || non_empty_text(&cluster.secret))
                && parsed.identity.is_some(),
            "cluster.id/cluster.secret",
            Doc::DiscoveryIdentity,
        ),
        (
            (non_empty_text(&cluster.secretbox_encryption_secret)
                || non_empty_text(&cluster.aescbc_encryption_secret))
                && parsed.etcd_encryption.is_some(),
            "cluster.secretboxEncryptionSecret/aescbcEncryptionSecret",
            Doc::EtcdEncryption,
        ),
    ];
    if let Some((_, field, doc)) = conflicts.into_iter().find(|(hit, _, _)| *hit) {
        return Err(ImportError::Conflict {
            field,
            kind: doc.name(),
        });
    }

    // certs.os: `c.Machine().Security().IssuingCA()`.
    let os = machine
        .ca
        .map(|ca| b64_cert_and_key("machine.ca.crt", "machine.ca.key", ca))
        .transpose()?;

    // certs.k8s: `c.K8sAPIServerCAConfig().IssuingCA()`. The document wins (container.go); the
    // v1alpha1 shim returns nil when cluster.ca has no key (v1alpha1_k8s_bridge.go).
    let k8s = match parsed.api_server_ca {
        Some(doc) => doc.issuing_ca.map(pem_cert_and_key),
        None => match cluster.ca {
            Some(ca) if ca.key.as_ref().is_some_and(|k| !k.is_empty()) => {
                Some(b64_cert_and_key("cluster.ca.crt", "cluster.ca.key", ca)?)
            }
            _ => None,
        },
    };

    // certs.k8saggregator: `c.K8sAggregatorCAConfig().IssuingCA()`; the shim copies as is.
    let k8s_aggregator = match parsed.aggregator_ca {
        Some(doc) => doc.issuing_ca.map(pem_cert_and_key),
        None => cluster
            .aggregator_ca
            .map(|ca| b64_cert_and_key("cluster.aggregatorCA.crt", "cluster.aggregatorCA.key", ca))
            .transpose()?,
    };

    // certs.k8sserviceaccount: `c.K8sServiceAccountConfig().IssuingKey()`; the document always
    // yields a key (possibly empty), the shim copies cluster.serviceAccount as is.
    let k8s_service_account = match parsed.service_account {
        Some(doc) => Some(KeyOnly {
            key: text_bytes(doc.issuer.and_then(|i| i.private_key)),
        }),
        None => cluster
            .service_account
            .map(|sa| {
                Ok::<_, ImportError>(KeyOnly {
                    key: b64_key("cluster.serviceAccount.key", sa.key)?,
                })
            })
            .transpose()?,
    };

    // certs.etcd: `c.Cluster().Etcd().CA()` (v1alpha1 only).
    let etcd = cluster
        .etcd
        .and_then(|e| e.ca)
        .map(|ca| b64_cert_and_key("cluster.etcd.ca.crt", "cluster.etcd.ca.key", ca))
        .transpose()?;

    // cluster: `c.DiscoveryIdentityConfig()`; v1alpha1 id/secret first (container.go), else the
    // document, else empty. The section itself is always present.
    let legacy_identity = non_empty(&cluster.id) || non_empty_text(&cluster.secret);
    let identity = if legacy_identity {
        Cluster {
            id: cluster.id.unwrap_or_default(),
            secret: text(cluster.secret),
        }
    } else if let Some(doc) = parsed.identity {
        Cluster {
            id: doc.cluster_id.unwrap_or_default(),
            secret: text(doc.cluster_secret),
        }
    } else {
        Cluster::default()
    };

    // secrets: the bootstrap token is rebuilt as `Token().ID() + "." + Token().Secret()`.
    // A KubeEtcdEncryptionConfig secret replaces it when one is found (bundle.go).
    let secretbox = match parsed.etcd_encryption.and_then(first_secretbox_secret) {
        Some(secret) => secret,
        None => text(cluster.secretbox_encryption_secret),
    };
    let secrets = Secrets {
        bootstrap_token: rebuilt_bootstrap_token(cluster.token),
        aescbc_encryption_secret: text(cluster.aescbc_encryption_secret),
        secretbox_encryption_secret: secretbox,
    };

    let bundle = SecretsBundle {
        cluster: Some(identity),
        secrets: Some(secrets),
        trustd_info: Some(TrustdInfo {
            token: text(machine.token),
        }),
        certs: Some(Certs {
            etcd,
            k8s,
            k8s_aggregator,
            k8s_service_account,
            os,
        }),
    };
    refuse_redacted(&bundle)?;
    Ok(bundle)
}

/// Splits the stream into documents, classifies each by its header, then reads the ones the
/// bundle needs into their own minimal structs. Two passes, so nothing is buffered as an
/// untyped (unwipeable) value tree.
fn parse_documents(yaml: &[u8]) -> Result<Parsed, ImportError> {
    crate::nesting::check(yaml, 4 << 20).map_err(|e| {
        ImportError::from(BundleReadError::Syntax {
            what: e.to_string(),
            location: None,
        })
    })?;
    let mut kinds = Vec::new();
    // The multi-document iterator keeps yielding the same error after a parse failure, so the
    // first error ends the loop.
    for doc in serde_yaml::Deserializer::from_slice(yaml) {
        let header: Option<Header> = Option::deserialize(doc).map_err(|e| syntax(&e))?;
        kinds.push(Doc::classify(header));
    }
    let mut seen: Vec<Doc> = Vec::new();
    for &kind in &kinds {
        if kind != Doc::Ignored {
            if seen.contains(&kind) {
                // container.go: "duplicate v1alpha1.Config" / "duplicate document: <kind>/".
                return Err(ImportError::DuplicateDocument(kind.name()));
            }
            seen.push(kind);
        }
    }

    let mut parsed = Parsed::default();
    for (doc, kind) in serde_yaml::Deserializer::from_slice(yaml).zip(kinds) {
        let e = |e: serde_yaml::Error| syntax(&e);
        match kind {
            Doc::Ignored => {}
            Doc::V1Alpha1 => parsed.v1alpha1 = Some(RawV1Alpha1::deserialize(doc).map_err(e)?),
            Doc::DiscoveryIdentity => {
                parsed.identity = Some(RawDiscoveryIdentity::deserialize(doc).map_err(e)?)
            }
            Doc::ApiServerCa => {
                parsed.api_server_ca = Some(RawCaDocument::deserialize(doc).map_err(e)?)
            }
            Doc::AggregatorCa => {
                parsed.aggregator_ca = Some(RawCaDocument::deserialize(doc).map_err(e)?)
            }
            Doc::ServiceAccount => {
                parsed.service_account =
                    Some(RawServiceAccountDocument::deserialize(doc).map_err(e)?)
            }
            Doc::EtcdEncryption => {
                parsed.etcd_encryption =
                    Some(RawEtcdEncryptionDocument::deserialize(doc).map_err(e)?)
            }
        }
    }
    Ok(parsed)
}

/// bundle.go `NewBundleFromConfig`: the first resource block that lists `secrets`; in it only
/// the first provider counts, and if that is secretbox its first key's secret is taken.
/// Otherwise the search goes on with the next block that lists `secrets`.
fn first_secretbox_secret(doc: RawEtcdEncryptionDocument) -> Option<SecretText> {
    let resources = doc.config?.resources?;
    for block in resources {
        let encrypts_secrets = block
            .resources
            .as_ref()
            .is_some_and(|r| r.iter().any(|s| s == "secrets"));
        if !encrypts_secrets {
            continue;
        }
        let first_key = block
            .providers
            .and_then(|p| p.into_iter().next())
            .and_then(|provider| provider.secretbox)
            .and_then(|secretbox| secretbox.keys)
            .and_then(|keys| keys.into_iter().next());
        if let Some(key) = first_key {
            return Some(text(key.secret));
        }
    }
    None
}

/// v1alpha1 `clusterToken.ID()`/`Secret()` split on `.` and give "" unless there are exactly two
/// parts, so anything but `<a>.<b>` (including a missing token) becomes `"."`.
fn rebuilt_bootstrap_token(token: Text) -> SecretText {
    match token {
        Some(mut t) if t.split('.').count() == 2 => SecretText::new(std::mem::take(&mut *t)),
        _ => SecretText::from("."),
    }
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

fn non_empty_text(s: &Text) -> bool {
    s.as_ref().is_some_and(|s| !s.is_empty())
}

fn text(t: Text) -> SecretText {
    match t {
        Some(mut z) => SecretText::new(std::mem::take(&mut *z)),
        None => SecretText::default(),
    }
}

fn text_bytes(t: Text) -> SecretBytes {
    match t {
        Some(mut z) => SecretBytes::new(std::mem::take(&mut *z).into_bytes()),
        None => SecretBytes::default(),
    }
}

/// `meta.CertificateAndKey.ToX509`: the PEM text as is.
fn pem_cert_and_key(raw: RawPemCertAndKey) -> CertAndKey {
    CertAndKey {
        crt: raw.cert.unwrap_or_default().into_bytes(),
        key: text_bytes(raw.key),
    }
}

/// siderolabs/crypto x509 `PEMEncodedCertificateAndKey.UnmarshalYAML`.
fn b64_cert_and_key(
    crt_field: &'static str,
    key_field: &'static str,
    raw: RawB64CertAndKey,
) -> Result<CertAndKey, ImportError> {
    Ok(CertAndKey {
        crt: b64_decode(crt_field, raw.crt.as_deref().unwrap_or(""))?.to_vec(),
        key: b64_key(key_field, raw.key)?,
    })
}

/// siderolabs/crypto x509 `UnmarshalYAML`: std base64 of the PEM, except the `******` marker.
fn b64_key(field: &'static str, value: Text) -> Result<SecretBytes, ImportError> {
    let value = value.unwrap_or_default();
    if value.as_str() == REDACTED {
        return Ok(SecretBytes::copy_from(REDACTED.as_bytes()));
    }
    let mut decoded = b64_decode(field, &value)?;
    Ok(SecretBytes::new(std::mem::take(&mut *decoded)))
}

fn b64_decode(field: &'static str, value: &str) -> Result<Zeroizing<Vec<u8>>, ImportError> {
    decode_go_base64(value).map_err(|offset| ImportError::Base64 { field, offset })
}

/// Refuses keys that are the `******` placeholder of a redacted config.
fn refuse_redacted(bundle: &SecretsBundle) -> Result<(), ImportError> {
    let Some(certs) = &bundle.certs else {
        return Ok(());
    };
    let redacted = |key: &SecretBytes| key.expose() == REDACTED.as_bytes();
    let entries = [
        ("machine.ca.key", certs.os.as_ref().map(|c| &c.key)),
        ("cluster.etcd.ca.key", certs.etcd.as_ref().map(|c| &c.key)),
        (
            "cluster.ca.key (or KubeAPIServerCAConfig issuingCA.key)",
            certs.k8s.as_ref().map(|c| &c.key),
        ),
        (
            "cluster.aggregatorCA.key (or KubeAggregatorCAConfig issuingCA.key)",
            certs.k8s_aggregator.as_ref().map(|c| &c.key),
        ),
        (
            "cluster.serviceAccount.key (or KubeServiceAccountConfig issuer.privateKey)",
            certs.k8s_service_account.as_ref().map(|k| &k.key),
        ),
    ];
    for (field, key) in entries {
        if key.is_some_and(redacted) {
            return Err(ImportError::Redacted { field });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn encryption_doc(yaml: &str) -> RawEtcdEncryptionDocument {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn token_rebuilt_like_talos() {
        let z = |s: &str| Some(Zeroizing::new(s.to_owned()));
        assert_eq!(rebuilt_bootstrap_token(z("abc.def")).expose(), "abc.def");
        assert_eq!(rebuilt_bootstrap_token(z("abc.")).expose(), "abc.");
        assert_eq!(rebuilt_bootstrap_token(z("abc")).expose(), ".");
        assert_eq!(rebuilt_bootstrap_token(z("a.b.c")).expose(), ".");
        assert_eq!(rebuilt_bootstrap_token(z("")).expose(), ".");
        assert_eq!(rebuilt_bootstrap_token(None).expose(), ".");
    }

    #[test]
    fn secretbox_extraction_follows_upstream_loop() {
        let pick =
            |y: &str| first_secretbox_secret(encryption_doc(y)).map(|s| s.expose().to_owned());
        // The first block encrypting secrets, its first provider, its first key.
        assert_eq!(
            pick(
                "config:\n  resources:\n    - resources: [configmaps]\n      providers: [{secretbox: {keys: [{name: a, secret: A}]}}]\n    - resources: [secrets]\n      providers:\n        - secretbox: {keys: [{name: b, secret: B}, {name: c, secret: C}]}\n"
            ),
            Some("B".to_owned())
        );
        // A first provider that is not secretbox skips the block, not the search.
        assert_eq!(
            pick(
                "config:\n  resources:\n    - resources: [secrets]\n      providers: [{identity: {}}, {secretbox: {keys: [{secret: X}]}}]\n    - resources: [secrets]\n      providers: [{secretbox: {keys: [{secret: Y}]}}]\n"
            ),
            Some("Y".to_owned())
        );
        // Secretbox without keys: nothing from that block.
        assert_eq!(
            pick(
                "config:\n  resources:\n    - resources: [secrets]\n      providers: [{secretbox: {}}]\n"
            ),
            None
        );
        assert_eq!(pick("config: {}\n"), None);
        assert_eq!(pick("{}\n"), None);
    }

    #[test]
    fn header_classification() {
        let c = |y: &str| Doc::classify(serde_yaml::from_str(y).unwrap());
        assert!(c("version: v1alpha1\nmachine: {}\n") == Doc::V1Alpha1);
        assert!(c("apiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\n") == Doc::ApiServerCa);
        assert!(c("apiVersion: v1alpha2\nkind: KubeAPIServerCAConfig\n") == Doc::Ignored);
        assert!(c("apiVersion: v1alpha1\nkind: HostnameConfig\n") == Doc::Ignored);
        assert!(c("version: v2\n") == Doc::Ignored);
        assert!(c("") == Doc::Ignored);
    }
}
