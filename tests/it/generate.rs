//! Every generated bundle, for contracts v1.2, v1.3, v1.6, v1.7 and current, checked by
//! independent verifiers: openssl on each PEM, the key/certificate match, and the exact
//! extensions decoded both by x509-parser and from openssl's text output.

use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use talvault::bundle::validate::{deep_findings, talos_errors};
use talvault::bundle::{CaName, SecretsBundle, VersionContract, generate};
use x509_parser::prelude::*;

use crate::support::have;

fn openssl(args: &[&str], input: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// openssl cannot read the non-standard `ED25519 PRIVATE KEY` label: relabel to PKCS#8.
fn openssl_key(pem: &[u8]) -> Vec<u8> {
    String::from_utf8(pem.to_vec())
        .unwrap()
        .replace("ED25519 PRIVATE KEY", "PRIVATE KEY")
        .into_bytes()
}

fn field(yaml: &str, path: &[&str]) -> Vec<u8> {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let mut cur = &v;
    for p in path {
        cur = &cur[*p];
    }
    STANDARD.decode(cur.as_str().unwrap()).unwrap()
}

fn check_contract(contract: &str) {
    let c = VersionContract::parse(contract).unwrap();
    let now = ::time::OffsetDateTime::now_utc();
    let bundle = generate::generate(c, now, &ring::rand::SystemRandom::new()).unwrap();
    assert!(talos_errors(&bundle).is_empty(), "{contract}");
    assert!(deep_findings(&bundle, c, now).is_empty(), "{contract}");
    let yaml = bundle.to_yaml();
    let yaml = yaml.expose();
    // The layout is talosctl's: 4-space indentation, keys in struct order.
    let keys: Vec<&str> = yaml.lines().map(|l| l.split(':').next().unwrap()).collect();
    let secret_key = if c.uses_secretbox() {
        "    secretboxencryptionsecret"
    } else {
        "    aescbcencryptionsecret"
    };
    assert_eq!(
        keys,
        [
            "cluster",
            "    id",
            "    secret",
            "secrets",
            "    bootstraptoken",
            secret_key,
            "trustdinfo",
            "    token",
            "certs",
            "    etcd",
            "        crt",
            "        key",
            "    k8s",
            "        crt",
            "        key",
            "    k8saggregator",
            "        crt",
            "        key",
            "    k8sserviceaccount",
            "        key",
            "    os",
            "        crt",
            "        key",
        ],
        "{contract}"
    );
    // Round trip through our own reader is lossless.
    let again = SecretsBundle::from_yaml(yaml.as_bytes()).unwrap();
    assert_eq!(again.to_yaml().expose(), yaml);

    let openssl_ok = have("openssl");
    for ca in CaName::ALL {
        let crt = field(yaml, &["certs", ca.key(), "crt"]);
        let key = field(yaml, &["certs", ca.key(), "key"]);
        let key_label = String::from_utf8_lossy(&key)
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let (want_label, want_alg) = match ca {
            CaName::Os => ("-----BEGIN ED25519 PRIVATE KEY-----", "ED25519"),
            _ => ("-----BEGIN EC PRIVATE KEY-----", "ecdsa-with-SHA256"),
        };
        assert_eq!(key_label, want_label);

        // x509-parser: the exact profile.
        let (_, pem) = parse_x509_pem(&crt).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert_eq!(cert.version(), X509Version::V3);
        let want_subject = match ca {
            CaName::Etcd => "O=etcd",
            CaName::K8s => "O=kubernetes",
            CaName::K8sAggregator => "",
            CaName::Os => "O=talos",
        };
        assert_eq!(cert.subject().to_string(), want_subject);
        assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(life, 87_600 * 3600);
        assert!(cert.serial.bits() <= 128);
        let exts: Vec<String> = cert
            .extensions()
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.oid.to_id_string(),
                    if e.critical { "!" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            exts,
            ["2.5.29.15!", "2.5.29.37", "2.5.29.19!", "2.5.29.14"],
            "{ca:?}"
        );
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_cert_sign() && !ku.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && eku.other.is_empty());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca && bc.path_len_constraint.is_none());
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.len()),
                _ => None,
            });
        assert_eq!(ski, Some(20));
        cert.verify_signature(None).unwrap();

        if !openssl_ok {
            continue;
        }
        // openssl: parses both, the text shows the same profile, the key matches the cert.
        let text = openssl(&["x509", "-noout", "-text"], &crt);
        assert!(
            text.contains(&format!("Signature Algorithm: {want_alg}")),
            "{text}"
        );
        assert!(
            text.contains(
                "X509v3 Key Usage: critical\n                Digital Signature, Certificate Sign\n"
            ),
            "{text}"
        );
        assert!(text.contains("X509v3 Extended Key Usage: \n                TLS Web Server Authentication, TLS Web Client Authentication\n"), "{text}");
        assert!(
            text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE\n"),
            "{text}"
        );
        assert!(!text.contains("Authority Key Identifier"), "{text}");
        let cert_pub = openssl(&["x509", "-noout", "-pubkey"], &crt);
        let key_pub = openssl(&["pkey", "-pubout"], &openssl_key(&key));
        assert_eq!(cert_pub, key_pub, "{ca:?}: key does not match certificate");
        // A self-signed CA verifies against itself.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &crt).unwrap();
        let out = openssl(
            &[
                "verify",
                "-CAfile",
                path.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            b"",
        );
        assert!(out.trim_end().ends_with(": OK"), "{out}");
    }
    let sa = field(yaml, &["certs", "k8sserviceaccount", "key"]);
    let sa_text = String::from_utf8_lossy(&sa).into_owned();
    if c.uses_rsa_service_account_key() {
        assert!(sa_text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        if openssl_ok {
            let out = openssl(&["rsa", "-check", "-noout", "-text"], &sa);
            assert!(out.contains("Private-Key: (4096 bit, 2 primes)"), "{out}");
            assert!(out.contains("publicExponent: 65537"), "{out}");
            assert!(out.contains("RSA key ok"), "{out}");
        }
    } else {
        assert!(sa_text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        if openssl_ok {
            let out = openssl(&["ec", "-check", "-noout", "-text"], &sa);
            assert!(out.contains("ASN1 OID: prime256v1"), "{out}");
        }
    }
}

#[test]
fn contract_v1_2() {
    check_contract("v1.2");
}

#[test]
fn contract_v1_3() {
    check_contract("v1.3");
}

#[test]
fn contract_v1_6() {
    check_contract("v1.6");
}

#[test]
fn contract_v1_7() {
    check_contract("v1.7");
}

#[test]
fn contract_current() {
    check_contract("v0.0");
}
