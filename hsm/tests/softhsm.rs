//! Integration tests against a real PKCS#11 module (SoftHSM2), checked with independent tools:
//! ring verifies signatures, openssl verifies certificates, pkcs11-tool and pkcs11-spy (OpenSC)
//! show what the token holds and which PKCS#11 calls were made.
//!
//! SoftHSM reads SOFTHSM2_CONF once, in C_Initialize, and C_Initialize runs once per process.
//! So each test runs its body in a child process (this test binary, filtered to that one test)
//! with its own SOFTHSM2_CONF, token directory and freshly initialised token; the parent sets them
//! up, runs the child and requires that exactly that one test passed in it.
//!
//! Without SoftHSM2 the tests are reported as ignored; `hsm/build.rs` turns them on when the
//! module is installed or `CI=true` (where a missing SoftHSM or tool fails them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "test helpers panic on setup failures, print tool output, run tools and write fixtures"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey,
};
use secrecy::SecretString;
mod common;

use talvault_hsm::{EdwardsParams, HsmError, HsmKey, KeyAlgorithm, OpenOptions, Pkcs11Uri, check};

const LABEL: &str = "talvault-test";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";
/// Set in the child: the test's directory (SoftHSM conf, tokens, PIN file).
const CHILD: &str = "TALVAULT_HSM_TEST_DIR";

/// The SoftHSM2 module; its absence fails the test (the test only runs with cfg(softhsm)).
fn softhsm_module() -> PathBuf {
    common::softhsm_module().unwrap_or_else(|| {
        panic!(
            "SoftHSM2 not found at {:?} (apt-get install softhsm2 opensc; .ci/run does)",
            common::SOFTHSM_MODULES
        )
    })
}

/// Whether `tool` runs. Under `CI=true` a missing tool fails the test instead of skipping a check.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--help"
        })
        .output()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true (install it; .ci/run does)"
        );
        eprintln!("skipping the {tool} checks: {tool} not installed");
    }
    ok
}

/// The test's token, as the child sees it.
struct Token {
    dir: PathBuf,
    module: PathBuf,
}

impl Token {
    fn from_env(dir: &str) -> Token {
        Token {
            dir: PathBuf::from(dir),
            module: softhsm_module(),
        }
    }

    /// `pkcs11:token=talvault-test;PATH?module-path=…&pin-source=…` (PATH may be empty).
    fn uri_text(&self, path: &str) -> String {
        let sep = if path.is_empty() { "" } else { ";" };
        format!(
            "pkcs11:token={LABEL}{sep}{path}?module-path={}&pin-source={}",
            self.module.display(),
            self.dir.join("pin").display()
        )
    }

    fn uri(&self, path: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(&self.uri_text(path)).unwrap()
    }

    /// The same, without a pin-source (the PIN comes from elsewhere).
    fn uri_without_pin_source(&self, path: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(&format!(
            "pkcs11:token={LABEL};{path}?module-path={}",
            self.module.display()
        ))
        .unwrap()
    }

    /// A URI for `object` through pkcs11-spy, with the PIN read from `pin_file` in the test
    /// directory. For tests run with [`SPY`].
    fn spy_uri(&self, pin_file: &str, object: &str) -> Pkcs11Uri {
        let spy = common::first_existing(common::SPY_MODULES, "pkcs11-spy (OpenSC)");
        let path = if object.is_empty() {
            String::new()
        } else {
            format!(";object={object}")
        };
        Pkcs11Uri::parse(&format!(
            "pkcs11:token={LABEL}{path}?module-path={}&pin-source={}",
            spy.display(),
            self.dir.join(pin_file).display()
        ))
        .unwrap()
    }

    fn spy_log(&self) -> PathBuf {
        self.dir.join("spy.log")
    }

    /// Runs pkcs11-tool on this token, logged in.
    /// A signing key pair made by pkcs11-tool (not by talvault), as an operator would.
    fn keypair_by_pkcs11_tool(&self, key_type: &str, label: &str, id: &str) {
        let out = self.pkcs11_tool(&[
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            label,
            "--id",
            id,
            "--usage-sign",
        ]);
        assert!(out.status.success());
    }

    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", LABEL, "--login", "--pin", PIN])
            .args(args)
            .output()
            .expect("pkcs11-tool runs");
        eprintln!(
            "$ pkcs11-tool … {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Extra settings for one test's child.
#[derive(Default)]
struct Setup<'a> {
    /// Lines appended to softhsm2.conf.
    conf: &'a str,
    /// Environment for the child; `{dir}` is replaced by the test directory.
    env: &'a [(&'a str, &'a str)],
}

/// A child whose module is pkcs11-spy (OpenSC) in front of SoftHSM, logging every PKCS#11 call
/// to `spy.log` in the test directory; pair with [`Token::spy_uri`].
const SPY: Setup<'static> = Setup {
    conf: "",
    env: &[
        ("PKCS11SPY", "{softhsm}"),
        ("PKCS11SPY_OUTPUT", "{dir}/spy.log"),
    ],
};

/// Runs `body` in a child process with a private SoftHSM configuration and token.
fn softhsm(name: &str, setup: Setup<'_>, body: impl FnOnce(&Token)) {
    if let Ok(dir) = std::env::var(CHILD) {
        body(&Token::from_env(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = common::init_token(dir.path(), LABEL, PIN, SO_PIN, setup.conf);
    std::fs::write(dir.path().join("pin"), format!("{PIN}\n")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD, dir.path())
        .env_remove(talvault_hsm::PIN_ENV);
    for (key, value) in setup.env {
        let value = value
            .replace("{dir}", &dir.path().to_string_lossy())
            .replace("{softhsm}", &softhsm_module().to_string_lossy());
        child.env(key, value);
    }
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child for {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    eprintln!("{stderr}");
}

fn opts() -> OpenOptions<'static> {
    OpenOptions::default()
}

fn verify_with_ring(key: &HsmKey, message: &[u8], signature: &[u8]) {
    let algorithm: &dyn ring::signature::VerificationAlgorithm = match key.algorithm() {
        KeyAlgorithm::Ed25519 => &ring::signature::ED25519,
        KeyAlgorithm::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
    };
    ring::signature::UnparsedPublicKey::new(algorithm, key.public_key_der())
        .verify(message, signature)
        .unwrap_or_else(|_| panic!("{} signature does not verify", key.algorithm()));
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn ed25519_key_generated_in_the_token_signs_and_ring_verifies() {
    softhsm(
        "ed25519_key_generated_in_the_token_signs_and_ring_verifies",
        Setup::default(),
        |t| {
            let key =
                HsmKey::generate(&t.uri("object=ed-ca"), KeyAlgorithm::Ed25519, &opts()).unwrap();
            assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
            assert_eq!(key.public_key_der().len(), 32);
            assert_eq!(PublicKeyData::algorithm(&key), &rcgen::PKCS_ED25519);
            for message in [&b""[..], b"x", &[0xa5; 4096]] {
                let signature = key.sign(message).unwrap();
                assert_eq!(signature.len(), 64);
                verify_with_ring(&key, message, &signature);
            }
            // Another message's signature must not verify (the check above can fail).
            let signature = key.sign(b"one").unwrap();
            assert!(
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ED25519,
                    key.public_key_der()
                )
                .verify(b"two", &signature)
                .is_err()
            );
            // The stored URI names the key exactly and holds no PIN source.
            let stored = key.uri_without_pin().to_string();
            assert!(
                stored.starts_with(&format!(
                    "pkcs11:token={LABEL};object=ed-ca;type=private;id=%"
                )),
                "{stored}"
            );
            assert_eq!(key.uri_without_pin().id().unwrap().len(), 16);
            assert!(!stored.contains("pin"), "{stored}");
            // The module is the operator's: a stored URI never names one.
            assert!(!stored.contains("module-"), "{stored}");
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn p256_key_generated_in_the_token_signs_and_ring_verifies() {
    softhsm(
        "p256_key_generated_in_the_token_signs_and_ring_verifies",
        Setup::default(),
        |t| {
            let key = HsmKey::generate(
                &t.uri("object=p256-ca;id=%CA%FE"),
                KeyAlgorithm::EcdsaP256,
                &opts(),
            )
            .unwrap();
            assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
            assert_eq!(key.public_key_der().len(), 65);
            assert_eq!(key.public_key_der()[0], 0x04);
            assert_eq!(key.uri_without_pin().id(), Some(&[0xca, 0xfe][..]));
            // Many signatures, so halves with leading zeros and high bits go through the DER path.
            for i in 0u32..200 {
                let message = i.to_be_bytes();
                let signature = key.sign(&message).unwrap();
                assert_eq!(signature[0], 0x30);
                verify_with_ring(&key, &message, &signature);
            }
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn ed25519_params_in_both_encodings_give_usable_keys() {
    softhsm(
        "ed25519_params_in_both_encodings_give_usable_keys",
        Setup::default(),
        |t| {
            for (label, params) in [
                ("ed-oid", EdwardsParams::Oid),
                ("ed-name", EdwardsParams::CurveName),
            ] {
                let options = OpenOptions {
                    ed25519_params: params,
                    ..opts()
                };
                let made = HsmKey::generate(
                    &t.uri(&format!("object={label}")),
                    KeyAlgorithm::Ed25519,
                    &options,
                )
                .unwrap();
                // Opening reads CKA_EC_PARAMS back and must recognise either form as Ed25519.
                let opened = HsmKey::open(&t.uri(&format!("object={label}")), &opts()).unwrap();
                assert_eq!(opened.algorithm(), KeyAlgorithm::Ed25519);
                assert_eq!(opened.public_key_der(), made.public_key_der());
                verify_with_ring(&opened, b"m", &opened.sign(b"m").unwrap());
            }
            if have("pkcs11-tool") {
                let out = t.pkcs11_tool(&["--list-objects", "--type", "pubkey"]);
                let listing = String::from_utf8_lossy(&out.stdout);
                assert_eq!(listing.matches("EC_EDWARDS").count(), 2, "{listing}");
            }
        },
    );
}

/// A private key whose public key object (same CKA_ID and label) belongs to another key: the
/// attributes all look right, so open succeeds, but no signature leaves `sign` and `hsm check`
/// calls the key unusable. The pair is made with pkcs11-tool, as an operator might by mistake.
#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_mismatched_pair_never_signs() {
    softhsm("a_mismatched_pair_never_signs", Setup::default(), |t| {
        if !have("pkcs11-tool") {
            return;
        }
        t.keypair_by_pkcs11_tool("EC:prime256v1", "mine", "01");
        t.keypair_by_pkcs11_tool("EC:prime256v1", "other", "02");
        let other_public = t.dir.join("other.der");
        let other = other_public.to_str().unwrap();
        for args in [
            &[
                "--read-object",
                "--type",
                "pubkey",
                "--id",
                "02",
                "-o",
                other,
            ][..],
            &["--delete-object", "--type", "pubkey", "--id", "01"],
            &[
                "--write-object",
                other,
                "--type",
                "pubkey",
                "--id",
                "01",
                "--label",
                "mine",
            ],
        ] {
            assert!(t.pkcs11_tool(args).status.success());
        }
        let key = HsmKey::open(&t.uri("object=mine"), &opts()).unwrap();
        let e = key.sign(b"tbs").unwrap_err();
        assert!(matches!(e, rcgen::Error::RemoteKeyError));
        let e = key.last_error().unwrap();
        assert_eq!(
            e.to_string(),
            "a signature by private key object=\"mine\", id=%01 on token \"talvault-test\" \
             does not verify under its public key object (C_Sign)"
        );
        assert!(e.hint().unwrap().contains("pkcs11-tool -O"));
        // rcgen cannot make a certificate with it either.
        assert!(
            CertificateParams::new(Vec::<String>::new())
                .unwrap()
                .self_signed(&key)
                .is_err()
        );
        let report = check(&t.uri("object=mine"), &opts()).unwrap();
        let k = report.key.unwrap();
        assert!(!k.usable);
        assert!(
            k.verdict.starts_with("unusable: a test signature failed"),
            "{}",
            k.verdict
        );
        // The good key next to it still checks out.
        let report = check(&t.uri("object=other"), &opts()).unwrap();
        assert!(report.key.unwrap().usable);
    });
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn keys_made_by_pkcs11_tool_open_by_uri() {
    softhsm(
        "keys_made_by_pkcs11_tool_open_by_uri",
        Setup::default(),
        |t| {
            if !have("pkcs11-tool") {
                return;
            }
            for (key_type, label, id) in [
                ("EC:prime256v1", "ext-p256", "0a0b"),
                ("EC:edwards25519", "ext-ed", "0c0d"),
            ] {
                t.keypair_by_pkcs11_tool(key_type, label, id);
            }
            // By label, by id, by both: the same key.
            let by_label = HsmKey::open(&t.uri("object=ext-p256"), &opts()).unwrap();
            let by_id = HsmKey::open(&t.uri("id=%0A%0B"), &opts()).unwrap();
            let by_both =
                HsmKey::open(&t.uri("object=ext-p256;id=%0a%0b;type=private"), &opts()).unwrap();
            assert_eq!(by_label.algorithm(), KeyAlgorithm::EcdsaP256);
            assert_eq!(by_label.public_key_der(), by_id.public_key_der());
            assert_eq!(by_label.public_key_der(), by_both.public_key_der());
            // The stored URI gains the id and finds the same key again.
            let stored = by_label.uri_without_pin().clone();
            assert_eq!(stored.id(), Some(&[0x0a, 0x0b][..]));
            let again = HsmKey::open(
                &Pkcs11Uri::parse(&format!(
                    "{stored}?module-path={}&pin-source={}",
                    softhsm_module().display(),
                    t.dir.join("pin").display()
                ))
                .unwrap(),
                &opts(),
            )
            .unwrap();
            assert_eq!(again.public_key_der(), by_label.public_key_der());

            let ed = HsmKey::open(&t.uri("object=ext-ed"), &opts()).unwrap();
            assert_eq!(ed.algorithm(), KeyAlgorithm::Ed25519);
            for key in [&by_label, &ed] {
                verify_with_ring(key, b"hello", &key.sign(b"hello").unwrap());
            }
        },
    );
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "talvault");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params.serial_number = Some(SerialNumber::from_slice(&[0x01, 0x02, 0x03, 0x04]));
    params
}

fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "os:reader");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2026, 12, 31);
    params.serial_number = Some(SerialNumber::from_slice(&[0x7f, 0x10]));
    params
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn self_signed_ca_and_leaf_verify_with_openssl() {
    softhsm(
        "self_signed_ca_and_leaf_verify_with_openssl",
        Setup::default(),
        |t| {
            for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
                let key = HsmKey::generate(
                    &t.uri(&format!("object=ca-{algorithm}")),
                    algorithm,
                    &opts(),
                )
                .unwrap();
                let params = ca_params(&format!("issuer {algorithm}"));
                let ca = params.self_signed(&key).unwrap();
                let issuer = Issuer::new(params, &key);
                let leaf_key = KeyPair::generate_for(algorithm.signature_algorithm()).unwrap();
                let leaf = leaf_params().signed_by(&leaf_key, &issuer).unwrap();

                // Our own parser first: both signatures check out under the token's public key.
                let (_, ca_x509) = x509_parser::parse_x509_certificate(ca.der()).unwrap();
                ca_x509.verify_signature(None).unwrap();
                let (_, leaf_x509) = x509_parser::parse_x509_certificate(leaf.der()).unwrap();
                leaf_x509
                    .verify_signature(Some(ca_x509.public_key()))
                    .unwrap();

                if have("openssl") {
                    let ca_pem = t.dir.join(format!("ca-{algorithm}.pem"));
                    let leaf_pem = t.dir.join(format!("leaf-{algorithm}.pem"));
                    std::fs::write(&ca_pem, ca.pem()).unwrap();
                    std::fs::write(&leaf_pem, leaf.pem()).unwrap();
                    // The CA on its own (any purpose), then the leaf as a TLS client certificate.
                    for (cert, purpose) in [(&ca_pem, "any"), (&leaf_pem, "sslclient")] {
                        let out = Command::new("openssl")
                            .args([
                                "verify",
                                "-purpose",
                                purpose,
                                "-attime",
                                "1780000000",
                                "-CAfile",
                            ])
                            .arg(&ca_pem)
                            .arg(cert)
                            .output()
                            .unwrap();
                        let text = String::from_utf8_lossy(&out.stdout).into_owned()
                            + &String::from_utf8_lossy(&out.stderr);
                        eprintln!("openssl verify ({algorithm}): {text}");
                        assert!(out.status.success() && text.contains(": OK"), "{text}");
                    }
                    // A leaf under a different CA must fail, so the check above means something.
                    let other = KeyPair::generate_for(algorithm.signature_algorithm()).unwrap();
                    let other_ca = ca_params("other").self_signed(&other).unwrap();
                    let other_pem = t.dir.join("other.pem");
                    std::fs::write(&other_pem, other_ca.pem()).unwrap();
                    let out = Command::new("openssl")
                        .args(["verify", "-attime", "1780000000", "-CAfile"])
                        .arg(&other_pem)
                        .arg(&leaf_pem)
                        .output()
                        .unwrap();
                    assert!(!out.status.success());
                }
            }
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn private_key_cannot_be_read_out() {
    softhsm("private_key_cannot_be_read_out", Setup::default(), |t| {
        let key =
            HsmKey::generate(&t.uri("object=sealed"), KeyAlgorithm::Ed25519, &opts()).unwrap();

        // The token itself answers C_GetAttributeValue(CKA_VALUE) with CKR_ATTRIBUTE_SENSITIVE.
        // (A second cryptoki context in the process: C_Initialize reports "already initialised".)
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
        let pkcs11 = Pkcs11::new(&t.module).unwrap();
        let _ = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        let slot = pkcs11
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| pkcs11.get_token_info(*s).unwrap().label() == LABEL)
            .unwrap();
        let session = pkcs11.open_ro_session(slot).unwrap();
        let handle = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"sealed".to_vec()),
            ])
            .unwrap()[0];
        let info = session
            .get_attribute_info(handle, &[AttributeType::Value])
            .unwrap();
        assert!(matches!(info[0], AttributeInfo::Sensitive), "{info:?}");
        assert!(
            session
                .get_attributes(handle, &[AttributeType::Value])
                .unwrap()
                .is_empty()
        );
        drop(session);
        // Still usable afterwards.
        verify_with_ring(&key, b"m", &key.sign(b"m").unwrap());

        if have("pkcs11-tool") {
            let out = t.pkcs11_tool(&["--read-object", "--type", "privkey", "--label", "sealed"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            // OpenSC 0.23 refuses to read any private key ("reading private keys not (yet)
            // supported", exit 0), so this only shows that no key material comes out.
            assert!(out.stdout.len() < 16 && !text.contains("BEGIN"), "{text}");
            let out = t.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success());
            assert!(listing.contains("label:      sealed"), "{listing}");
            assert!(listing.contains("Usage:      sign\n"), "{listing}");
            assert!(
                listing
                    .contains("Access:     sensitive, always sensitive, never extractable, local"),
                "{listing}"
            );
        }
    });
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn wrong_pin_makes_exactly_one_login_attempt() {
    softhsm("wrong_pin_makes_exactly_one_login_attempt", SPY, |t| {
        let log = t.spy_log();
        std::fs::write(t.dir.join("wrong-pin"), "wrong-pin-7391\n").unwrap();
        let uri = |pin_file: &str, object: &str| t.spy_uri(pin_file, object);
        let e =
            HsmKey::generate(&uri("wrong-pin", "k"), KeyAlgorithm::Ed25519, &opts()).unwrap_err();
        assert_eq!(
            e,
            HsmError::PinIncorrect {
                token: LABEL.into()
            }
        );
        assert_eq!(
            e.to_string(),
            format!("C_Login returned CKR_PIN_INCORRECT for token \"{LABEL}\"")
        );
        assert!(e.hint().unwrap().starts_with("one attempt was made"));
        assert!(!format!("{e} {e:?} {}", e.hint().unwrap()).contains("7391"));
        assert_eq!(
            common::spy_calls(&log, "C_Login"),
            1,
            "one open, one C_Login"
        );

        // The token noticed: CKF_USER_PIN_COUNT_LOW (check() does not log in without an object).
        let token_only = t.spy_uri("wrong-pin", "");
        let report = check(&token_only, &opts()).unwrap();
        assert!(report.token.user_pin_count_low);
        assert_eq!(common::spy_calls(&log, "C_Login"), 1);

        // Each open is one attempt, never a loop.
        assert!(matches!(
            HsmKey::open(&uri("wrong-pin", "k"), &opts()),
            Err(HsmError::PinIncorrect { .. })
        ));
        assert_eq!(common::spy_calls(&log, "C_Login"), 2);

        // The right PIN works afterwards, and later opens reuse the login.
        let key = HsmKey::generate(&uri("pin", "k"), KeyAlgorithm::Ed25519, &opts()).unwrap();
        assert_eq!(common::spy_calls(&log, "C_Login"), 3);
        let _again = HsmKey::open(&uri("pin", "k"), &opts()).unwrap();
        let _other = HsmKey::generate(&uri("pin", "k2"), KeyAlgorithm::EcdsaP256, &opts()).unwrap();
        assert_eq!(common::spy_calls(&log, "C_Login"), 3);
        verify_with_ring(&key, b"m", &key.sign(b"m").unwrap());
    });
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn one_login_and_one_session_per_token_per_process() {
    softhsm(
        "one_login_and_one_session_per_token_per_process",
        SPY,
        |t| {
            let uri = |object: &str| t.spy_uri("pin", object);
            let a = HsmKey::generate(&uri("a"), KeyAlgorithm::Ed25519, &opts()).unwrap();
            let b = HsmKey::generate(&uri("b"), KeyAlgorithm::EcdsaP256, &opts()).unwrap();
            let a2 = HsmKey::open(&uri("a"), &opts()).unwrap();
            check(&uri("b"), &opts()).unwrap();
            // Keys are shared across threads (Mutex<Session>).
            std::thread::scope(|s| {
                for key in [&a, &b, &a2] {
                    s.spawn(move || verify_with_ring(key, b"t", &key.sign(b"t").unwrap()));
                }
            });
            let log = t.spy_log();
            assert_eq!(common::spy_calls(&log, "C_Initialize"), 1);
            assert_eq!(common::spy_calls(&log, "C_Login"), 1);
            assert_eq!(common::spy_calls(&log, "C_OpenSession"), 1);
            assert_eq!(common::spy_calls(&log, "C_CloseSession"), 0);
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn pin_from_the_environment_when_the_uri_has_no_pin_source() {
    let setup = Setup {
        conf: "",
        env: &[("TALVAULT_PKCS11_PIN", PIN)],
    };
    softhsm(
        "pin_from_the_environment_when_the_uri_has_no_pin_source",
        setup,
        |t| {
            let prompt = |_: &str| -> Result<SecretString, String> {
                panic!("the prompt must not be asked")
            };
            let options = OpenOptions {
                pin_prompt: Some(&prompt),
                ..opts()
            };
            HsmKey::generate(
                &t.uri_without_pin_source("object=env"),
                KeyAlgorithm::Ed25519,
                &options,
            )
            .unwrap();
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn pin_prompt_is_asked_once_with_the_token_label() {
    softhsm(
        "pin_prompt_is_asked_once_with_the_token_label",
        Setup::default(),
        |t| {
            let asked = std::sync::Mutex::new(Vec::new());
            let prompt = |label: &str| {
                asked.lock().unwrap().push(label.to_owned());
                Ok(SecretString::from(PIN))
            };
            let options = OpenOptions {
                pin_prompt: Some(&prompt),
                ..opts()
            };
            HsmKey::generate(
                &t.uri_without_pin_source("object=p"),
                KeyAlgorithm::Ed25519,
                &options,
            )
            .unwrap();
            HsmKey::open(&t.uri_without_pin_source("object=p"), &options).unwrap();
            assert_eq!(*asked.lock().unwrap(), vec![LABEL.to_owned()]);
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn missing_ambiguous_and_existing_keys_are_reported() {
    softhsm(
        "missing_ambiguous_and_existing_keys_are_reported",
        Setup::default(),
        |t| {
            let e = HsmKey::open(&t.uri("object=nope"), &opts()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "no private key matches object=\"nope\" on token \"{LABEL}\" (C_FindObjects found none)"
                )
            );
            assert!(e.hint().unwrap().contains("--list-objects"));

            HsmKey::generate(&t.uri("object=dup;id=%01"), KeyAlgorithm::Ed25519, &opts()).unwrap();
            let e =
                HsmKey::generate(&t.uri("object=dup"), KeyAlgorithm::Ed25519, &opts()).unwrap_err();
            assert_eq!(
                e,
                HsmError::KeyExists {
                    token: LABEL.into(),
                    what: "label \"dup\"".into()
                }
            );
            let e = HsmKey::generate(
                &t.uri("object=other;id=%01"),
                KeyAlgorithm::EcdsaP256,
                &opts(),
            )
            .unwrap_err();
            assert_eq!(
                e,
                HsmError::KeyExists {
                    token: LABEL.into(),
                    what: "id 01".into()
                }
            );
            let e =
                HsmKey::generate(&t.uri("id=%02"), KeyAlgorithm::EcdsaP256, &opts()).unwrap_err();
            assert!(matches!(e, HsmError::UriUnsuitable { .. }), "{e}");

            if have("pkcs11-tool") {
                // Two keys under one label (only another tool can make that): ambiguous by label,
                // each still reachable by id.
                t.keypair_by_pkcs11_tool("EC:prime256v1", "twin", "11");
                t.keypair_by_pkcs11_tool("EC:prime256v1", "twin", "12");
                let e = HsmKey::open(&t.uri("object=twin"), &opts()).unwrap_err();
                assert_eq!(
                    e,
                    HsmError::AmbiguousKey {
                        token: LABEL.into(),
                        wanted: "object=\"twin\"".into(),
                        count: 2
                    }
                );
                assert!(e.hint().unwrap().contains("id="));
                HsmKey::open(&t.uri("object=twin;id=%12"), &opts()).unwrap();
            }
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_token_that_is_not_there_is_reported_with_the_tokens_that_are() {
    softhsm(
        "a_token_that_is_not_there_is_reported_with_the_tokens_that_are",
        Setup::default(),
        |t| {
            let uri = Pkcs11Uri::parse(&format!(
                "pkcs11:token=prod-ca;object=x?module-path={}",
                t.module.display()
            ))
            .unwrap();
            let e = HsmKey::open(&uri, &opts()).unwrap_err();
            let HsmError::TokenNotPresent {
                wanted, available, ..
            } = &e
            else {
                panic!("{e}")
            };
            assert_eq!(wanted, "token=\"prod-ca\"");
            assert_eq!(available.len(), 1);
            assert!(
                available[0].starts_with(&format!("\"{LABEL}\" (serial ")),
                "{available:?}"
            );
            assert!(
                e.to_string()
                    .starts_with("no token matches token=\"prod-ca\" in "),
                "{e}"
            );

            // Token fields other than the label select too, and library-* match C_GetInfo.
            let with = |path: &str| {
                Pkcs11Uri::parse(&format!("pkcs11:{path}?module-path={}", t.module.display()))
                    .unwrap()
            };
            let report = check(
                &with("manufacturer=SoftHSM%20project;model=SoftHSM%20v2;library-manufacturer=SoftHSM;library-version=2"),
                &opts(),
            )
            .unwrap();
            assert_eq!(report.token.label, LABEL);
            let e = check(&with("model=Other"), &opts()).unwrap_err();
            assert!(matches!(e, HsmError::TokenNotPresent { .. }), "{e}");
            let e = check(&with("library-manufacturer=Acme"), &opts()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "module {} does not match the URI: its library-manufacturer is \"SoftHSM\", the URI asks for \"Acme\"",
                    t.module.display()
                )
            );
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn check_reports_module_token_mechanisms_and_key() {
    softhsm(
        "check_reports_module_token_mechanisms_and_key",
        Setup::default(),
        |t| {
            let report = check(&t.uri(""), &opts()).unwrap();
            assert_eq!(report.module.path, t.module.display().to_string());
            assert_eq!(report.module.description, "Implementation of PKCS11");
            assert_eq!(report.token.label, LABEL);
            assert_eq!(report.token.manufacturer, "SoftHSM project");
            assert!(report.token.login_required && !report.token.user_pin_locked);
            assert!(report.key.is_none());
            for a in &report.algorithms {
                assert!(a.usable, "{a:?}");
                assert!(
                    a.mechanisms
                        .iter()
                        .all(|m| m.offered && m.min_key_size.is_some())
                );
            }

            HsmKey::generate(&t.uri("object=checked"), KeyAlgorithm::EcdsaP256, &opts()).unwrap();
            let report = check(&t.uri("object=checked"), &opts()).unwrap();
            let key = report.key.as_ref().unwrap();
            assert!(key.usable);
            assert_eq!(key.key_type.as_deref(), Some("CKK_EC"));
            assert_eq!(key.algorithm, Some(KeyAlgorithm::EcdsaP256));
            assert_eq!((key.sensitive, key.extractable), (Some(true), Some(false)));
            assert_eq!(
                (key.never_extractable, key.always_sensitive),
                (Some(true), Some(true))
            );
            assert_eq!(
                key.verdict,
                "usable: ecdsa-p256 key, sensitive and not extractable, and always was (generated inside the token)"
            );
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(json["algorithms"][0]["algorithm"], "ed25519");
            assert_eq!(json["algorithms"][0]["mechanisms"][1]["name"], "CKM_EDDSA");
            assert_eq!(json["key"]["extractable"], false);
            let text = report.to_text();
            eprintln!("{text}");
            assert!(
                text.contains(
                    "ed25519:    supported: CKM_EC_EDWARDS_KEY_PAIR_GEN offered key size 256-456;"
                ),
                "{text}"
            );
            assert!(
                text.contains("verdict:    usable: ecdsa-p256 key"),
                "{text}"
            );
            assert_eq!(report.uri, t.uri_text("object=checked"));

            let report = check(&t.uri("object=absent"), &opts()).unwrap();
            let key = report.key.unwrap();
            assert!(!key.usable);
            assert_eq!(
                (key.matches, key.verdict.as_str()),
                (0, "no private key matches object=\"absent\"")
            );
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_missing_mechanism_is_reported_before_use() {
    // SoftHSM 2.6.1 does not disable the first mechanism of a "-A,B" list (measured with
    // pkcs11-tool -M: "-CKM_EDDSA" alone disables nothing), so this takes away CKM_EDDSA only.
    let setup = Setup {
        conf: "slots.mechanisms = -CKM_EC_EDWARDS_KEY_PAIR_GEN,CKM_EDDSA",
        env: &[],
    };
    softhsm("a_missing_mechanism_is_reported_before_use", setup, |t| {
        let missing = HsmError::MechanismUnsupported {
            token: LABEL.into(),
            mechanism: "CKM_EDDSA",
            algorithm: KeyAlgorithm::Ed25519,
        };
        let e = HsmKey::generate(&t.uri("object=ed"), KeyAlgorithm::Ed25519, &opts()).unwrap_err();
        assert_eq!(e, missing);
        assert_eq!(
            e.to_string(),
            format!(
                "token \"{LABEL}\" does not offer CKM_EDDSA (C_GetMechanismList), needed for ed25519"
            )
        );
        // Generation stopped before C_GenerateKeyPair: nothing was left on the token.
        let report = check(&t.uri("object=ed"), &opts()).unwrap();
        assert_eq!(report.key.as_ref().unwrap().matches, 0);
        assert!(!report.algorithms[0].usable);
        assert!(!report.algorithms[0].mechanisms[1].offered);
        assert!(report.algorithms[1].usable);
        HsmKey::generate(&t.uri("object=p"), KeyAlgorithm::EcdsaP256, &opts()).unwrap();

        // An existing Ed25519 key (made by another tool) is refused at open, not at first use.
        if have("pkcs11-tool") {
            let out = t.pkcs11_tool(&[
                "--keypairgen",
                "--key-type",
                "EC:edwards25519",
                "--label",
                "ed-ext",
                "--id",
                "e1",
                "--usage-sign",
            ]);
            assert!(out.status.success());
            let e = HsmKey::open(&t.uri("object=ed-ext"), &opts()).unwrap_err();
            assert_eq!(e, missing);
            let report = check(&t.uri("object=ed-ext"), &opts()).unwrap();
            assert_eq!(
                report.key.unwrap().verdict,
                "unusable: the token does not offer CKM_EDDSA"
            );
        }
    });
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn an_extractable_key_is_refused_unless_allowed() {
    softhsm(
        "an_extractable_key_is_refused_unless_allowed",
        Setup::default(),
        |t| {
            if !have("pkcs11-tool") {
                return;
            }
            let out = t.pkcs11_tool(&[
                "--keypairgen",
                "--key-type",
                "EC:prime256v1",
                "--label",
                "leaky",
                "--id",
                "42",
                "--usage-sign",
                "--extractable",
            ]);
            assert!(out.status.success());
            let listing = String::from_utf8_lossy(
                &t.pkcs11_tool(&["--list-objects", "--type", "privkey"])
                    .stdout,
            )
            .into_owned();
            assert!(
                listing.contains("extractable") && !listing.contains("never extractable"),
                "{listing}"
            );

            let e = HsmKey::open(&t.uri("object=leaky"), &opts()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "private key object=\"leaky\" on token \"{LABEL}\" is not protected: CKA_EXTRACTABLE=true, CKA_SENSITIVE=true"
                )
            );
            assert!(e.hint().unwrap().contains("--danger-allow-extractable"));
            let report = check(&t.uri("object=leaky"), &opts()).unwrap();
            assert!(!report.key.as_ref().unwrap().usable);
            assert!(
                report
                    .key
                    .unwrap()
                    .verdict
                    .starts_with("refused: the key can leave the token")
            );

            let allowed = OpenOptions {
                allow_extractable: true,
                ..opts()
            };
            let key = HsmKey::open(&t.uri("object=leaky"), &allowed).unwrap();
            verify_with_ring(&key, b"m", &key.sign(b"m").unwrap());
        },
    );
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_failed_signature_keeps_the_pkcs11_error() {
    softhsm(
        "a_failed_signature_keeps_the_pkcs11_error",
        Setup::default(),
        |t| {
            if !have("pkcs11-tool") {
                return;
            }
            let key = HsmKey::generate(
                &t.uri("object=doomed;id=%66"),
                KeyAlgorithm::Ed25519,
                &opts(),
            )
            .unwrap();
            assert!(key.last_error().is_none());
            // Another process deletes the key from under us.
            assert!(
                t.pkcs11_tool(&["--delete-object", "--type", "privkey", "--id", "66"])
                    .status
                    .success()
            );
            let e = key.sign(b"m").unwrap_err();
            assert_eq!(e, rcgen::Error::RemoteKeyError);
            let last = key.last_error().expect("the PKCS#11 error is kept");
            let text = last.to_string();
            eprintln!("last_error: {text}");
            assert!(
                text.starts_with("C_SignInit returned CKR_")
                    || text.starts_with("C_Sign returned CKR_"),
                "{text}"
            );
            assert!(
                text.ends_with("while signing with object=\"doomed\", id=%66"),
                "{text}"
            );
        },
    );
}

/// No SoftHSM needed: a module path that does not exist.
#[test]
fn a_missing_module_is_module_not_found() {
    let uri =
        Pkcs11Uri::parse("pkcs11:token=t;object=k?module-path=/nonexistent/libvendor-pkcs11.so")
            .unwrap();
    let e = HsmKey::open(&uri, &opts()).unwrap_err();
    assert_eq!(
        e,
        HsmError::ModuleNotFound {
            tried: vec!["/nonexistent/libvendor-pkcs11.so".into()]
        }
    );
    assert_eq!(
        e.to_string(),
        "no PKCS#11 module found; tried /nonexistent/libvendor-pkcs11.so"
    );
    let e = check(
        &Pkcs11Uri::parse("pkcs11:?module-name=no-such-module-xyz").unwrap(),
        &opts(),
    )
    .unwrap_err();
    let HsmError::ModuleNotFound { tried } = &e else {
        panic!("{e}")
    };
    assert!(
        tried
            .iter()
            .any(|p| p.ends_with("no-such-module-xyz.module")),
        "{tried:?}"
    );
    assert!(
        tried
            .iter()
            .any(|p| p.ends_with("libno-such-module-xyz.so")),
        "{tried:?}"
    );
}

/// No SoftHSM needed: a real shared library that is not a PKCS#11 module.
#[test]
fn a_library_that_is_not_pkcs11_is_refused() {
    let lib = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/aarch64-linux-gnu/libz.so.1",
        "/usr/lib64/libz.so.1",
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
        "/usr/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("zlib or libm at a usual place");
    let uri = Pkcs11Uri::parse(&format!("pkcs11:token=t;object=k?module-path={lib}")).unwrap();
    let e = HsmKey::open(&uri, &opts()).unwrap_err();
    assert_eq!(
        e,
        HsmError::NotAPkcs11Module {
            path: PathBuf::from(lib),
            reason: "it exports no C_GetFunctionList".into()
        }
    );
    assert_eq!(
        e.to_string(),
        format!("{lib} is not a PKCS#11 module: it exports no C_GetFunctionList")
    );
}
