//! Bundle import (Kubernetes PKI directory, control-plane machine config) against the upstream
//! vectors and openssl-made PKI; writes only inside temporary directories, never prints secrets.

use std::path::Path;
use std::process::Command;

use ring::rand::SystemRandom;
use talvault::bundle::import::{
    self, ImportError, KUBERNETES_PKI_FILES, KubernetesPki, from_controlplane_config,
    from_kubernetes_pki,
};
use talvault::bundle::validate::talos_errors;
use talvault::bundle::{SecretsBundle, VersionContract};
use talvault::keys::{KeyAlgorithm, PrivateKey};
use talvault::secret::{SecretBytes, SecretText};
use time::macros::datetime;

use crate::support::{have, vector};

const NOW: time::OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// `stability-secrets.yaml` without its leading comment line: what talosctl would write.
fn stability_bundle_text() -> String {
    String::from_utf8(vector("stability-secrets.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn text(name: &str) -> String {
    String::from_utf8(vector(name)).unwrap()
}

// --- control-plane config --------------------------------------------------------------------

#[test]
fn v1_13_and_v1_14_controlplane_configs_give_back_the_stability_bundle() {
    // Upstream's TestNewBundleFromConfig asserts NewBundleFromConfig(generated config) equals
    // the generating bundle; the stability configs were generated from stability-secrets.yaml
    // (contracts v1.13 single-document and v1.14 multi-document), so every field must round-trip.
    let expected = stability_bundle_text();
    for name in [
        "stability-v1.13-base-controlplane.yaml",
        "stability-v1.14-base-controlplane.yaml",
    ] {
        let bundle = from_controlplane_config(&vector(name)).unwrap();
        assert_eq!(bundle.to_yaml().expose(), expected, "{name}");
        assert_eq!(talos_errors(&bundle), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn worker_configs_are_refused() {
    for name in [
        "stability-v1.13-base-worker.yaml",
        "stability-v1.14-base-worker.yaml",
    ] {
        let err = from_controlplane_config(&vector(name)).unwrap_err();
        assert!(matches!(err, ImportError::NotControlPlane), "{name}: {err}");
        assert!(
            err.to_string()
                .starts_with("not a control-plane config: machine.ca has no key ("),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}

#[test]
fn a_config_without_machine_ca_is_refused() {
    let cfg = "version: v1alpha1\nmachine:\n    type: controlplane\n    token: d8cwfa.eyvpi0xwxyarbfid\ncluster: {}\n";
    let err = from_controlplane_config(cfg.as_bytes()).unwrap_err();
    assert!(matches!(err, ImportError::NotControlPlane), "{err}");
}

#[test]
fn non_yaml_and_wrong_shapes_are_refused_without_echoing_values() {
    let secret = "zz9zz9.topsecretvalue123";
    for input in [
        format!("machine: [unclosed\n    token: {secret}\n").into_bytes(),
        format!("{secret}\n").into_bytes(),
        format!("version: v1alpha1\nmachine: {secret}\n").into_bytes(),
        format!("version: v1alpha1\nmachine:\n    ca: [{secret}]\n").into_bytes(),
        b"\xff\xfe\x00{{{".to_vec(),
        format!("version: v1alpha1\n---\n{{ {secret}: ").into_bytes(),
    ] {
        let err = from_controlplane_config(&input).unwrap_err();
        assert!(matches!(err, ImportError::Syntax { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("not a valid machine config: "), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
    }
}

#[test]
fn a_config_without_v1alpha1_document_is_refused() {
    for input in [
        "",
        "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n",
    ] {
        let err = from_controlplane_config(input.as_bytes()).unwrap_err();
        assert!(matches!(err, ImportError::NoV1Alpha1), "{err}");
    }
}

#[test]
fn bootstrap_token_is_rebuilt_from_its_two_parts() {
    let cp = text("stability-v1.13-base-controlplane.yaml");
    let line = "    token: inn7ol.u4ehnti8qyls9ymo\n";
    assert!(cp.contains(line));
    for (replacement, expected) in [
        ("", "."),
        ("    token: inn7olu4ehnti8qyls9ymo\n", "."),
        ("    token: a.b.c\n", "."),
        ("    token: \"\"\n", "."),
    ] {
        let b = from_controlplane_config(cp.replace(line, replacement).as_bytes()).unwrap();
        assert_eq!(
            b.secrets.unwrap().bootstrap_token.expose(),
            expected,
            "{replacement:?}"
        );
    }
}

#[test]
fn unknown_fields_and_documents_are_ignored() {
    let cp = text("stability-v1.14-base-controlplane.yaml").replace(
        "cluster:\n    token:",
        "cluster:\n    someFutureField: {a: [1, 2]}\n    token:",
    ) + "---\napiVersion: v1alpha1\nkind: SomeFutureConfig\nissuingCA: 5\n---\napiVersion: v9\nkind: KubeAPIServerCAConfig\n";
    let b = from_controlplane_config(cp.as_bytes()).unwrap();
    assert_eq!(b.to_yaml().expose(), stability_bundle_text());
}

#[test]
fn redacted_configs_are_refused() {
    let cp = text("stability-v1.13-base-controlplane.yaml");
    // The first 8-space `key:` is machine.ca.key.
    let mut lines: Vec<String> = cp.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("        key: "))
        .unwrap();
    lines[i] = "        key: '******'".to_owned();
    let err = from_controlplane_config(lines.join("\n").as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Redacted {
                field: "machine.ca.key"
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_base64_names_the_field() {
    let cp = text("stability-v1.13-base-controlplane.yaml");
    let mut lines: Vec<String> = cp.lines().map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("        crt: "))
        .unwrap();
    lines[i] = "        crt: not*base64".to_owned();
    let err = from_controlplane_config(lines.join("\n").as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "machine.ca.crt: illegal base64 data at input byte 3"
    );
}

#[test]
fn duplicate_and_conflicting_documents_are_refused() {
    let cp = text("stability-v1.14-base-controlplane.yaml");
    let dup = format!(
        "{cp}---\napiVersion: v1alpha1\nkind: DiscoveryIdentityConfig\nclusterID: x\nclusterSecret: y\n"
    );
    let err = from_controlplane_config(dup.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::DuplicateDocument("DiscoveryIdentityConfig")
        ),
        "{err}"
    );

    let both = cp.replace("cluster:\n    token:", "cluster:\n    id: abc\n    token:");
    let err = from_controlplane_config(both.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Conflict {
                kind: "DiscoveryIdentityConfig",
                ..
            }
        ),
        "{err}"
    );
}

// --- Kubernetes PKI ----------------------------------------------------------------------------

/// A PKI made of the stability bundle's CAs (EC keys, no openssl needed).
fn stability_pki() -> KubernetesPki {
    let b = SecretsBundle::from_yaml(&vector("stability-secrets.yaml")).unwrap();
    let certs = b.certs.unwrap();
    let k8s = certs.k8s.unwrap();
    let etcd = certs.etcd.unwrap();
    let agg = certs.k8s_aggregator.unwrap();
    KubernetesPki {
        ca_crt: k8s.crt,
        ca_key: k8s.key,
        etcd_ca_crt: etcd.crt,
        etcd_ca_key: etcd.key,
        front_proxy_ca_crt: agg.crt,
        front_proxy_ca_key: agg.key,
        sa_key: certs.k8s_service_account.unwrap().key,
    }
}

#[test]
fn pki_import_keeps_the_cas_and_generates_the_rest() {
    let v1_2 = VersionContract::parse("v1.2").unwrap();
    let b = from_kubernetes_pki(stability_pki(), None, v1_2, NOW, &SystemRandom::new()).unwrap();
    assert_eq!(talos_errors(&b), Vec::<String>::new());
    let reference = SecretsBundle::from_yaml(&vector("stability-secrets.yaml")).unwrap();
    let (want, got) = (reference.certs.unwrap(), b.certs.as_ref().unwrap());
    assert_eq!(got.k8s.as_ref().unwrap().crt, want.k8s.unwrap().crt);
    assert_eq!(got.etcd.as_ref().unwrap().key, want.etcd.unwrap().key);
    assert_eq!(
        got.k8s_aggregator.as_ref().unwrap().crt,
        want.k8s_aggregator.unwrap().crt
    );
    // The OS CA is new; contract v1.2 means AES-CBC; the missing token is generated.
    assert_ne!(got.os.as_ref().unwrap().crt, want.os.unwrap().crt);
    let s = b.secrets.as_ref().unwrap();
    assert!(!s.aescbc_encryption_secret.is_empty() && s.secretbox_encryption_secret.is_empty());
    assert_eq!(s.bootstrap_token.expose().len(), 23);
}

#[test]
fn pki_content_mismatches_name_the_file() {
    let rng = SystemRandom::new();
    let c = VersionContract::Current;

    let mut pki = stability_pki();
    pki.etcd_ca_key = SecretBytes::copy_from(&pki.ca_crt);
    let err = from_kubernetes_pki(pki, None, c, NOW, &rng).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcd/ca.key: unsupported key type: \"CERTIFICATE\""
    );

    let mut pki = stability_pki();
    pki.front_proxy_ca_crt = pki.front_proxy_ca_key.expose().to_vec();
    let err = from_kubernetes_pki(pki, None, c, NOW, &rng).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("front-proxy-ca.crt: failed to parse certificate"),
        "{err}"
    );

    let mut pki = stability_pki();
    pki.sa_key = SecretBytes::default();
    let err = from_kubernetes_pki(pki, None, c, NOW, &rng).unwrap_err();
    assert_eq!(err.to_string(), "sa.key: failed to parse PEM block");

    let mut pki = stability_pki();
    pki.ca_key = SecretBytes::copy_from(
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    let err = from_kubernetes_pki(pki, None, c, NOW, &rng).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ca.key: unsupported key type: \"OPENSSH PRIVATE KEY\""
    );
}

#[test]
fn a_malformed_bootstrap_token_is_refused_without_echo() {
    for token in [
        "zz9zz9.topsecretvalue1",
        "ZZ9ZZ9.topsecretvalue12",
        "zz9zz9:topsecretvalue12",
    ] {
        let err = from_kubernetes_pki(
            stability_pki(),
            Some(SecretText::from(token)),
            VersionContract::Current,
            NOW,
            &SystemRandom::new(),
        )
        .unwrap_err();
        assert!(matches!(err, ImportError::BadBootstrapToken), "{err}");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `RSA PRIVATE KEY` (PKCS#1) as kubeadm writes it; OpenSSL 3 needs `-traditional` for that,
/// OpenSSL 1.1 does not know the flag and writes PKCS#1 anyway.
fn genrsa_pkcs1(dir: &Path, out: &str) {
    assert!(
        openssl(dir, &["genrsa", "-traditional", "-out", out, "2048"])
            || openssl(dir, &["genrsa", "-out", out, "2048"]),
        "openssl genrsa {out}"
    );
}

fn self_signed(dir: &Path, key: &str, cn: &str, out: &str) {
    let subj = format!("/CN={cn}");
    assert!(
        openssl(
            dir,
            &[
                "req", "-x509", "-new", "-key", key, "-subj", &subj, "-days", "3650", "-out", out,
            ],
        ),
        "openssl req {out}"
    );
}

#[test]
fn openssl_made_kubeadm_pki_imports() {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("etcd")).unwrap();
    // Kubernetes CA: RSA, PKCS#1.
    genrsa_pkcs1(dir, "ca.key");
    self_signed(dir, "ca.key", "kubernetes", "ca.crt");
    // etcd CA: EC, SEC1 `EC PRIVATE KEY`.
    assert!(openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "etcd/ca.key"
        ]
    ));
    self_signed(dir, "etcd/ca.key", "etcd-ca", "etcd/ca.crt");
    // Front proxy CA: EC in PKCS#8 `PRIVATE KEY` (what OpenSSL 3 writes by default).
    assert!(openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "front-proxy-ca.key"
        ]
    ));
    self_signed(
        dir,
        "front-proxy-ca.key",
        "front-proxy-ca",
        "front-proxy-ca.crt",
    );
    // Service-account key: RSA, PKCS#1.
    genrsa_pkcs1(dir, "sa.key");

    // Read the files the way the CLI does: by the list the library publishes.
    let mut files: Vec<Vec<u8>> = KUBERNETES_PKI_FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let mut take = |name: &str| {
        let i = KUBERNETES_PKI_FILES
            .iter()
            .position(|f| *f == name)
            .unwrap();
        std::mem::take(&mut files[i])
    };
    let pki = KubernetesPki {
        ca_crt: take(import::CA_CRT),
        ca_key: SecretBytes::new(take(import::CA_KEY)),
        etcd_ca_crt: take(import::ETCD_CA_CRT),
        etcd_ca_key: SecretBytes::new(take(import::ETCD_CA_KEY)),
        front_proxy_ca_crt: take(import::FRONT_PROXY_CA_CRT),
        front_proxy_ca_key: SecretBytes::new(take(import::FRONT_PROXY_CA_KEY)),
        sa_key: SecretBytes::new(take(import::SA_KEY)),
    };
    assert!(
        pki.ca_key
            .expose()
            .starts_with(b"-----BEGIN RSA PRIVATE KEY-----\n")
    );
    assert!(
        pki.sa_key
            .expose()
            .starts_with(b"-----BEGIN RSA PRIVATE KEY-----\n")
    );
    assert!(
        pki.etcd_ca_key
            .expose()
            .starts_with(b"-----BEGIN EC PRIVATE KEY-----\n")
    );
    assert!(
        pki.front_proxy_ca_key
            .expose()
            .starts_with(b"-----BEGIN PRIVATE KEY-----\n")
    );
    let ca_key = pki.ca_key.duplicate();
    let sa_key = pki.sa_key.duplicate();
    let ca_crt = pki.ca_crt.clone();

    // The service-account key is present, so the current contract never generates RSA here.
    let token = "abcdef.0123456789abcdef";
    let b = from_kubernetes_pki(
        pki,
        Some(SecretText::from(token)),
        VersionContract::Current,
        NOW,
        &SystemRandom::new(),
    )
    .unwrap();
    assert_eq!(talos_errors(&b), Vec::<String>::new());

    let s = b.secrets.as_ref().unwrap();
    assert_eq!(s.bootstrap_token.expose(), token);
    assert!(!s.secretbox_encryption_secret.is_empty() && s.aescbc_encryption_secret.is_empty());
    let certs = b.certs.as_ref().unwrap();
    assert_eq!(certs.k8s.as_ref().unwrap().crt, ca_crt);
    assert_eq!(certs.k8s.as_ref().unwrap().key, ca_key);
    assert_eq!(certs.k8s_service_account.as_ref().unwrap().key, sa_key);
    let os = certs.os.as_ref().unwrap();
    assert_eq!(
        PrivateKey::from_talos_pem(os.key.expose())
            .unwrap()
            .algorithm(),
        KeyAlgorithm::Ed25519
    );
    assert!(!b.cluster.as_ref().unwrap().id.is_empty());
    assert_eq!(b.trustd_info.as_ref().unwrap().token.expose().len(), 23);
}
