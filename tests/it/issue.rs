//! Talosconfig issuance checked by independent verifiers: `openssl verify -purpose sslclient`,
//! a real TLS 1.3 handshake with client authentication checked the way apid checks it (Go
//! standard library, tests/go/apid-check), x509-parser for the exact extensions, and the
//! upstream talosconfig vectors for reading, rendering and merging.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use talvault::bundle::{CaName, VersionContract, generate};
use talvault::keys::{self, PrivateKey};
use talvault::pki::cert::{CertificateTemplate, ExtendedKeyUsage, KeyUsage};
use talvault::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, issue_leaf, verify_csr};
use talvault::pki::name;
use talvault::pki::policy::{Grant, GrantViolation, Holder, Policy, Request};
use talvault::pki::role::Role;
use talvault::talosconfig::{self, Config, Context};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::support::{have, vector};

/// Like `support::have`, for Go (`go --version` is not a Go command): under `CI=true` a missing
/// Go fails the test instead of skipping it.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why, as support::have does"
)]
pub(crate) fn have_go() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "go is required under CI=true (install golang-go; .ci/run does)"
        );
        eprintln!("skipping: go not installed");
    }
    ok
}

/// A CA: its certificate PEM and its key.
struct Ca {
    pem: Vec<u8>,
    key: PrivateKey,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The Talos OS CA (Ed25519) of a bundle made by `bundle::generate`. Contract v1.6 keeps the
/// service-account key ECDSA, so no RSA key is generated; the OS CA is the same for every
/// contract.
fn os_ca() -> Ca {
    let contract = VersionContract::parse("v1.6").unwrap();
    let bundle = generate::generate(contract, now(), &SystemRandom::new()).unwrap();
    let os = bundle.certs.unwrap().os.unwrap();
    Ca {
        key: PrivateKey::from_talos_pem(os.key.expose()).unwrap(),
        pem: os.crt,
    }
}

/// An ECDSA P-256 CA: the etcd CA profile stands in for an ECDSA (FIPS-era) OS CA.
fn ecdsa_ca() -> Ca {
    let ca = generate::new_ca(CaName::Etcd, now(), &SystemRandom::new()).unwrap();
    Ca {
        key: PrivateKey::from_talos_pem(ca.key.expose()).unwrap(),
        pem: ca.crt,
    }
}

/// A policy that lists every known role, so each can be issued.
fn every_role_policy() -> Policy {
    let mut yaml = String::from("version: 1\nroles:\n");
    for role in Role::KNOWN {
        yaml.push_str(&format!(
            "  {role}:\n    default_ttl: 1h\n    max_ttl: 24h\n"
        ));
    }
    Policy::from_yaml(yaml.as_bytes()).unwrap()
}

fn grant(roles: &[&str]) -> Grant {
    every_role_policy()
        .grant(&Request {
            roles: Role::parse_set(roles.iter().copied()).unwrap(),
            ttl: None,
            holder: Some(Holder::parse("alice").unwrap()),
            break_glass: None,
        })
        .unwrap()
}

fn issue(ca: &Ca, roles: &[&str], key: SubjectKey) -> IssuedLeaf {
    issue_leaf(
        &ca.pem,
        &ca.key.key_pair().unwrap(),
        &grant(roles),
        key,
        IssueTime::new(now()),
        &SystemRandom::new(),
    )
    .unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn openssl_verify(dir: &Path, ca_pem: &[u8], leaf_pem: &[u8]) -> (bool, String) {
    let ca = write(dir, "ca.pem", ca_pem);
    let leaf = write(dir, "leaf.pem", leaf_pem);
    run(Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&leaf))
}

/// The extensions and names of a leaf, decoded by x509-parser: KU (critical, digitalSignature),
/// EKU exactly clientAuth, AKI = CA SKI, and nothing else; issuer = CA subject bytes.
fn pin_extensions(ca_pem: &[u8], leaf: &IssuedLeaf, roles: &[&str]) {
    let ca_der = keys::pem_decode_first(ca_pem).unwrap().der;
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    let oids: Vec<String> = cert
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    assert_eq!(oids, ["2.5.29.15", "2.5.29.37", "2.5.29.35"]);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && ku.value.flags == 1);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
    let ski = ca
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
    assert_eq!(aki, ski);
    let mut orgs: Vec<&str> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    orgs.sort_unstable();
    let mut want = roles.to_vec();
    want.sort_unstable();
    want.dedup();
    assert_eq!(orgs, want);
    // One multi-valued RDN, exactly as Go encodes the names.
    let role_refs: Vec<&str> = want.clone();
    assert_eq!(
        cert.subject().as_raw(),
        &name::encode(&role_refs, Some("alice")).unwrap()[..]
    );
    let serial = cert.tbs_certificate.serial.to_bytes_be();
    assert!(!serial.is_empty() && serial.len() <= 16);
}

fn role_sets() -> Vec<Vec<&'static str>> {
    let mut sets: Vec<Vec<&str>> = Role::KNOWN.iter().map(|r| vec![*r]).collect();
    sets.push(vec![Role::READER, Role::ETCD_BACKUP]);
    sets.push(vec![Role::OPERATOR, Role::ADMIN]);
    sets
}

#[test]
fn openssl_verifies_every_role_under_ed25519_and_ecdsa_cas() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (ca_name, ca) in [("ed25519", os_ca()), ("ecdsa", ecdsa_ca())] {
        for roles in role_sets() {
            let leaf = issue(&ca, &roles, SubjectKey::Generate);
            pin_extensions(&ca.pem, &leaf, &roles);
            let (ok, out) = openssl_verify(dir.path(), &ca.pem, &leaf.cert_pem);
            assert!(
                ok && out.contains("leaf.pem: OK"),
                "{ca_name} {roles:?}: {out}"
            );
        }
    }
}

/// Makes a key with openssl and a CSR for it (asking for roles and a SAN, which are ignored).
fn openssl_csr(dir: &Path, key_args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join("csr-key.pem");
    let csr = dir.join("req.pem");
    let (ok, out) = run(Command::new("openssl")
        .arg("genpkey")
        .args(key_args)
        .arg("-out")
        .arg(&key));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-subj",
            "/O=os:admin/O=os:impersonator/CN=mallory",
        ])
        .args(["-addext", "subjectAltName=DNS:evil.example.com"])
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    assert!(ok, "{out}");
    (std::fs::read(&key).unwrap(), std::fs::read(&csr).unwrap())
}

const ED25519_KEY: &[&str] = &["-algorithm", "ed25519"];
const P256_KEY: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

#[test]
fn csr_issued_leaves_verify_and_ignore_requested_names() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for ca in [os_ca(), ecdsa_ca()] {
        for key_args in [ED25519_KEY, P256_KEY] {
            let (_, csr) = openssl_csr(dir.path(), key_args);
            let verified = verify_csr(&csr).unwrap();
            assert!(verified.has_requested_extensions());
            assert!(verified.requested_subject().contains("mallory"));
            let spki = verified.spki_der().to_vec();
            let leaf = issue(&ca, &[Role::READER], SubjectKey::FromCsr(verified));
            assert!(leaf.key_pem.is_none());
            pin_extensions(&ca.pem, &leaf, &[Role::READER]);
            let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
            assert_eq!(cert.public_key().raw, &spki[..]);
            assert!(cert.subject_alternative_name().unwrap().is_none());
            let (ok, out) = openssl_verify(dir.path(), &ca.pem, &leaf.cert_pem);
            assert!(ok && out.contains("leaf.pem: OK"), "{key_args:?}: {out}");
        }
    }
}

#[test]
fn csr_key_types_talvault_refuses_are_named() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (key_args, name) in [
        (
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            "RSA",
        ),
        (
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            "ECDSA P-384",
        ),
    ] {
        let (_, csr) = openssl_csr(dir.path(), key_args);
        let err = verify_csr(&csr).unwrap_err().to_string();
        assert!(err.contains(&format!("has a {name} key")), "{err}");
        assert!(err.contains("Ed25519 and ECDSA P-256"), "{err}");
    }
}

// ------------------------------------------------------------------------------------------
// The apid-style handshake.

fn apid_check_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/apid-check/main.go");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apid-check");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
        let (ok, text) = run(Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", &cache));
        assert!(ok, "go build apid-check: {text}");
        out
    })
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct Verdict {
    pub accepted: bool,
    pub roles: Vec<String>,
    #[serde(default)]
    error: String,
    #[serde(default)]
    keypair_error: String,
}

pub(crate) fn apid_check(dir: &Path, client_cas: &[&[u8]], crt: &[u8], key: &[u8]) -> Verdict {
    // The node's clock is the test's: under libfaketime that is the faked date, which Go (it
    // reads the clock without libc) would not see by itself.
    apid_check_at(dir, client_cas, crt, key, time::OffsetDateTime::now_utc())
}

/// [`apid_check`] with the node's clock at `now` (for certificates issued days ahead).
pub(crate) fn apid_check_at(
    dir: &Path,
    client_cas: &[&[u8]],
    crt: &[u8],
    key: &[u8],
    now: time::OffsetDateTime,
) -> Verdict {
    let mut cmd = Command::new(apid_check_binary());
    for (i, ca) in client_cas.iter().enumerate() {
        cmd.arg("-ca")
            .arg(write(dir, &format!("client-ca-{i}.pem"), ca));
    }
    let now = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    cmd.arg("-client-cert")
        .arg(write(dir, "client.crt", crt))
        .arg("-client-key")
        .arg(write(dir, "client.key", key))
        .arg("-now")
        .arg(now);
    let (ok, out) = run(&mut cmd);
    assert!(ok, "apid-check: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// crt, key and ca of a talosconfig's current context, read with a plain YAML parser (not ours).
pub(crate) fn from_talosconfig(yaml: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let current = v["context"].as_str().unwrap();
    let ctx = &v["contexts"][current];
    let field = |f: &str| STANDARD.decode(ctx[f].as_str().unwrap()).unwrap();
    (field("crt"), field("key"), field("ca"))
}

fn talosconfig_for(ca: &Ca, leaf: &IssuedLeaf, key_pem: &[u8], roles: &[&str]) -> String {
    let role_set = Role::parse_set(roles.iter().copied()).unwrap();
    let name = talosconfig::context_name(&role_set, "prod");
    let key = talvault::secret::SecretBytes::copy_from(key_pem);
    let ctx = Context::issued(
        &ca.pem,
        &leaf.cert_pem,
        Some(&key),
        vec!["10.5.0.2".into()],
        vec![],
    );
    Config::single(&name, ctx).to_yaml().expose().to_owned()
}

fn expected_roles(roles: &[&str]) -> Vec<String> {
    let mut r: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
    r.sort();
    r.dedup();
    r
}

#[test]
fn apid_accepts_talosconfigs_with_the_right_roles() {
    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (ca_name, ca) in [("ed25519", os_ca()), ("ecdsa", ecdsa_ca())] {
        for roles in role_sets() {
            let leaf = issue(&ca, &roles, SubjectKey::Generate);
            let key = leaf.key_pem.as_ref().unwrap().expose().to_vec();
            let yaml = talosconfig_for(&ca, &leaf, &key, &roles);
            let (crt, key, talosconfig_ca) = from_talosconfig(&yaml);
            assert_eq!(talosconfig_ca, ca.pem);
            let verdict = apid_check(dir.path(), &[&ca.pem], &crt, &key);
            assert!(verdict.keypair_error.is_empty(), "{ca_name}: {verdict:?}");
            assert!(verdict.accepted, "{ca_name} {roles:?}: {verdict:?}");
            assert_eq!(verdict.roles, expected_roles(&roles), "{ca_name}");
        }
    }
}

#[test]
fn apid_accepts_csr_issued_certificates() {
    if !have_go() || !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for ca in [os_ca(), ecdsa_ca()] {
        for key_args in [ED25519_KEY, P256_KEY] {
            let (key_pem, csr) = openssl_csr(dir.path(), key_args);
            let leaf = issue(
                &ca,
                &[Role::OPERATOR],
                SubjectKey::FromCsr(verify_csr(&csr).unwrap()),
            );
            // The talosconfig for a CSR-issued certificate has no key.
            let ctx = Context::issued(&ca.pem, &leaf.cert_pem, None, vec![], vec![]);
            let yaml = Config::single("operator@prod", ctx).to_yaml();
            assert!(!yaml.expose().contains("key:"), "{}", yaml.expose());
            let verdict = apid_check(dir.path(), &[&ca.pem], &leaf.cert_pem, &key_pem);
            assert!(verdict.accepted, "{key_args:?}: {verdict:?}");
            assert_eq!(verdict.roles, [Role::OPERATOR]);
        }
    }
}

#[test]
fn apid_refuses_other_cas_and_serverauth_eku() {
    if !have_go() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trusted = os_ca();
    let other = os_ca();
    let leaf = issue(&other, &[Role::ADMIN], SubjectKey::Generate);
    let key = leaf.key_pem.as_ref().unwrap().expose().to_vec();
    let verdict = apid_check(dir.path(), &[&trusted.pem], &leaf.cert_pem, &key);
    assert!(!verdict.accepted, "{verdict:?}");
    assert!(verdict.error.contains("unknown authority"), "{verdict:?}");
    // Trusting both (as acceptedCAs does) accepts it.
    let verdict = apid_check(
        dir.path(),
        &[&trusted.pem, &other.pem],
        &leaf.cert_pem,
        &key,
    );
    assert!(verdict.accepted, "{verdict:?}");

    // A leaf like pre-1.3 talosctl made (EKU serverAuth+clientAuth) chains fine but fails apid's
    // EKU check. Built with CertificateTemplate directly: talvault's issuance refuses to.
    let rng = SystemRandom::new();
    let leaf_key = PrivateKey::generate_ed25519(&rng).unwrap();
    let ca_der = keys::pem_decode_first(&trusted.pem).unwrap().der;
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    let ski = ca_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let template = CertificateTemplate {
        serial: vec![0x42; 16],
        issuer: ca_cert.subject().as_raw().to_vec(),
        subject: name::encode(&[Role::ADMIN], Some("alice")).unwrap(),
        not_before: now() - time::Duration::seconds(10),
        not_after: now() + time::Duration::hours(1),
        subject_public_key_info: leaf_key.public_key_info().unwrap(),
        key_usage: KeyUsage {
            digital_signature: true,
            ..KeyUsage::default()
        },
        extended_key_usage: vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
        ca: None,
        subject_key_id: None,
        authority_key_id: Some(ski),
    };
    // The grant for the same roles refuses this template before any signature.
    assert_eq!(
        grant(&[Role::ADMIN]).check_template(&template),
        Err(GrantViolation::ExtendedKeyUsage)
    );
    let der = template.sign(&trusted.key.key_pair().unwrap()).unwrap();
    let crt = keys::pem_encode(keys::LABEL_CERTIFICATE, &der);
    let verdict = apid_check(
        dir.path(),
        &[&trusted.pem],
        &crt,
        leaf_key.to_talos_pem().unwrap().expose(),
    );
    assert!(!verdict.accepted, "{verdict:?}");
    assert!(
        verdict
            .error
            .contains("is missing the client auth extended key usage"),
        "{verdict:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Upstream talosconfig vectors.

const VECTORS: [&str; 4] = [
    "talosconfig-2021-admin.yaml",
    "talosconfig-2021-noroles.yaml",
    "talosconfig-2021-futurerole.yaml",
    "talosconfig-proxy-url.yaml",
];

#[test]
fn upstream_talosconfigs_parse_and_rerender_with_their_data() {
    for file in VECTORS {
        let input = vector(file);
        let config = Config::from_yaml(&input).unwrap();
        let out = config.to_yaml();
        let before: serde_yaml::Value = serde_yaml::from_slice(&input).unwrap();
        let after: serde_yaml::Value = serde_yaml::from_str(out.expose()).unwrap();
        // talosctl always writes `endpoints`; the hand-written futurerole literal omits it.
        let mut before = before;
        for (_, ctx) in before["contexts"].as_mapping_mut().unwrap().iter_mut() {
            let ctx = ctx.as_mapping_mut().unwrap();
            if !ctx.contains_key("endpoints") {
                ctx.insert("endpoints".into(), serde_yaml::Value::Sequence(vec![]));
            }
        }
        assert_eq!(before, after, "{file}");
        // Re-reading our output is a fixed point.
        let again = Config::from_yaml(out.expose().as_bytes())
            .unwrap()
            .to_yaml();
        assert_eq!(again.expose(), out.expose(), "{file}");
    }
}

#[test]
fn talosctl_written_vectors_rerender_byte_for_byte() {
    // These two are talosctl output (4-space go-yaml); the literals start with one empty line.
    for file in [
        "talosconfig-2021-admin.yaml",
        "talosconfig-2021-noroles.yaml",
    ] {
        let input = String::from_utf8(vector(file)).unwrap();
        let config = Config::from_yaml(input.as_bytes()).unwrap();
        assert_eq!(
            config.to_yaml().expose(),
            input.trim_start_matches('\n'),
            "{file}"
        );
    }
    // The 2-space proxy-url vector, in talosctl's layout.
    let config = Config::from_yaml(&vector("talosconfig-proxy-url.yaml")).unwrap();
    assert_eq!(config.contexts["test"].proxy_url, "socks5://localhost:1080");
    assert_eq!(
        config.to_yaml().expose(),
        "context: test\ncontexts:\n    test:\n        endpoints:\n            - 192.168.1.1:50000\n        proxy-url: socks5://localhost:1080\n"
    );
}

#[test]
fn merging_into_an_upstream_talosconfig_keeps_it_and_never_renames() {
    let input = String::from_utf8(vector("talosconfig-2021-admin.yaml")).unwrap();
    let existing = Config::from_yaml(input.as_bytes()).unwrap();
    let fresh = || Context::issued(b"ca", b"crt", None, vec!["10.0.0.1".into()], vec![]);

    let err = talosconfig::merge(existing, "no-roles", fresh(), false).unwrap_err();
    assert!(
        err.to_string().contains("\"no-roles\" already exists"),
        "{err}"
    );

    let existing = Config::from_yaml(input.as_bytes()).unwrap();
    let merged = talosconfig::merge(existing, "reader@prod", fresh(), false).unwrap();
    assert_eq!(merged.context, "reader@prod");
    let out = merged.to_yaml();
    // The upstream context is untouched, byte for byte.
    let upstream_context = input
        .trim_start_matches('\n')
        .split_once("contexts:\n")
        .unwrap()
        .1;
    assert!(out.expose().contains(upstream_context), "{}", out.expose());
    assert!(!out.expose().contains("no-roles-1"));
    assert!(
        out.expose()
            .starts_with("context: reader@prod\ncontexts:\n    no-roles:\n")
    );
}

#[test]
fn talosconfig_keys_load_in_talvault_as_written() {
    // The key PEM in a rendered talosconfig is Talos's label, readable by siderolabs/crypto's
    // label-strict GetKey rules (mirrored by PrivateKey::from_talos_pem).
    for ca in [os_ca(), ecdsa_ca()] {
        let leaf = issue(&ca, &[Role::READER], SubjectKey::Generate);
        let yaml = talosconfig_for(
            &ca,
            &leaf,
            leaf.key_pem.as_ref().unwrap().expose(),
            &[Role::READER],
        );
        assert!(yaml.starts_with("context: reader@prod\n"), "{yaml}");
        let (_, key, _) = from_talosconfig(&yaml);
        let parsed = PrivateKey::from_talos_pem(&key).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            &parsed.public_key_info().unwrap()[..]
        );
    }
}

/// Dates from 2050 on are written as GeneralizedTime (RFC 5280 §4.1.2.5: UTCTime through 2049,
/// GeneralizedTime from 2050), and a validity that straddles the change mixes the two. A bundle
/// generated and a leaf issued half an hour before 2050 (by the injected clock, no faking) carry
/// both forms, openssl verifies the leaf at a moment on each side of the change, and x509-parser
/// reads the instants back exactly.
#[test]
fn dates_from_2050_are_generalized_time() {
    if !have("openssl") {
        return;
    }
    let at = time::macros::datetime!(2049-12-31 23:30:00 UTC);
    let rng = SystemRandom::new();
    let contract = VersionContract::parse("v1.6").unwrap();
    let os = generate::generate(contract, at, &rng)
        .unwrap()
        .certs
        .unwrap()
        .os
        .unwrap();
    let ca = Ca {
        key: PrivateKey::from_talos_pem(os.key.expose()).unwrap(),
        pem: os.crt,
    };
    let ca_der = keys::pem_decode_first(&ca.pem).unwrap().der;
    let leaf = issue_leaf(
        &ca.pem,
        &ca.key.key_pair().unwrap(),
        &grant(&[Role::READER]),
        SubjectKey::Generate,
        IssueTime::new(at),
        &rng,
    )
    .unwrap();
    let contains = |der: &[u8], tlv: &[u8]| der.windows(tlv.len()).any(|w| w == tlv);
    let tlv = |tag: u8, text: &str| [&[tag, text.len() as u8][..], text.as_bytes()].concat();
    // The CA: notBefore UTCTime in 2049, notAfter GeneralizedTime ten years on.
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(contains(&ca_der, &tlv(0x17, "491231233000Z")));
    let ca_end = ca_cert.validity().not_after.to_datetime();
    assert_eq!(ca_end.year(), 2059);
    let end_text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        ca_end.year(),
        u8::from(ca_end.month()),
        ca_end.day(),
        ca_end.hour(),
        ca_end.minute(),
        ca_end.second()
    );
    assert!(contains(&ca_der, &tlv(0x18, &end_text)), "{end_text}");
    // The leaf (1 h default, backdated 10 s): UTCTime start, GeneralizedTime end.
    assert!(contains(&leaf.cert_der, &tlv(0x17, "491231232950Z")));
    assert!(contains(&leaf.cert_der, &tlv(0x18, "20500101003000Z")));
    let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        time::macros::datetime!(2050-01-01 00:30:00 UTC)
    );
    let dir = tempfile::tempdir().unwrap();
    for (moment, ok) in [
        (at, true),
        (time::macros::datetime!(2050-01-01 00:15:00 UTC), true),
        (time::macros::datetime!(2050-01-01 00:31:00 UTC), false),
    ] {
        let ca_file = write(dir.path(), "ca.pem", &ca.pem);
        let leaf_file = write(dir.path(), "leaf.pem", &leaf.cert_pem);
        let (verified, out) = run(Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslclient", "-attime"])
            .arg(moment.unix_timestamp().to_string())
            .arg("-CAfile")
            .arg(&ca_file)
            .arg(&leaf_file));
        assert_eq!(verified, ok, "at {moment}: {out}");
    }
}
