//! PKCS#11 issuers end to end through the CLI, against SoftHSM2: `issuer create --pkcs11 …
//! --generate`, `issue`, `break-glass`, `revoke`, `crl` and `hsm check`, judged by independent
//! verifiers (the Go apid-style TLS handshake, `openssl verify` and `openssl crl`, pkcs11-tool
//! reading the token), and every fault an operator can meet: one line plus a hint, a non-zero
//! exit, and a vault left exactly as it was.
//!
//! Each test has its own SOFTHSM2_CONF, token directory and token; every talvault run is a new
//! process, so the module is initialised once per run. Without SoftHSM2 the tests are reported as
//! ignored; `build.rs` turns them on when the module is installed or under `CI=true`, where a
//! missing SoftHSM2, pkcs11-tool, openssl, age or Go fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::issue::{apid_check, from_talosconfig, have_go};
use crate::issuing::Env;
use crate::support::{
    assert_crl_verifies, assert_matches, have, openssl, talvault_env, verify_with_crl,
};

/// The SoftHSM module list and token setup the hsm crate's tests and benchmark use.
#[path = "../../hsm/tests/common/mod.rs"]
mod common;

const TOKEN: &str = "tv";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";
/// The wrong PIN's tail, which must appear in no output.
const WRONG_PIN_TAIL: &str = "7391";

/// A library that exists everywhere and is not a PKCS#11 module.
const NOT_PKCS11: &[&str] = &[
    "/lib/x86_64-linux-gnu/libz.so.1",
    "/usr/lib/x86_64-linux-gnu/libz.so.1",
    "/lib/aarch64-linux-gnu/libz.so.1",
    "/usr/lib64/libz.so.1",
    "/lib/x86_64-linux-gnu/libm.so.6",
    "/lib/aarch64-linux-gnu/libm.so.6",
    "/usr/lib64/libm.so.6",
];

/// What every test here needs: age for the vault, SoftHSM2 and pkcs11-tool for the token.
fn token_tools() -> bool {
    have("age-keygen") && have("softhsm2-util") && have("pkcs11-tool")
}

/// A vault (environment `prod`) and, beside it, a private SoftHSM configuration with one token.
struct Hsm {
    env: Env,
    /// softhsm2.conf, tokens/, the PIN files: outside the vault's directory, so `Env::tree`
    /// sees only the vault and the work files.
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
}

impl Hsm {
    fn new() -> Hsm {
        let module = common::softhsm_module().unwrap_or_else(|| {
            panic!(
                "SoftHSM2 not found at {:?} (apt-get install softhsm2 opensc; .ci/run does)",
                common::SOFTHSM_MODULES
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let conf = common::init_token(dir.path(), TOKEN, PIN, SO_PIN, "");
        std::fs::write(dir.path().join("pin"), format!("{PIN}\n")).unwrap();
        std::fs::write(
            dir.path().join("wrong-pin"),
            format!("wrong-pin-{WRONG_PIN_TAIL}\n"),
        )
        .unwrap();
        Hsm {
            env: Env::new(),
            dir,
            conf,
            module,
        }
    }

    /// A file of the SoftHSM directory.
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `pkcs11:token=tv;PATH?module-path=…&pin-source=…/pin` (PATH may be empty).
    fn uri(&self, path: &str) -> String {
        self.uri_with(path, &self.module.display().to_string(), "pin")
    }

    /// The same with another module and PIN file.
    fn uri_with(&self, path: &str, module: &str, pin_file: &str) -> String {
        let sep = if path.is_empty() { "" } else { ";" };
        format!(
            "pkcs11:token={TOKEN}{sep}{path}?module-path={module}&pin-source={}",
            self.file(pin_file)
        )
    }

    /// `talvault --vault v ARGS` with the vault's identity, this test's SoftHSM configuration and
    /// `extra` environment.
    fn run_env(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let home = self.env.dir.path().display().to_string();
        let conf = self.conf.display().to_string();
        let module = self.module.display().to_string();
        // The operator names the module (issuer.yaml never does).
        let mut env = vec![
            ("TALVAULT_IDENTITY", self.env.key.as_str()),
            ("TALVAULT_ACTOR", "tester"),
            ("HOME", home.as_str()),
            ("SOFTHSM2_CONF", conf.as_str()),
            ("TALVAULT_PKCS11_MODULE", module.as_str()),
        ];
        env.extend_from_slice(extra);
        talvault_env(
            self.env.dir.path(),
            &[&["--vault", "v"][..], args].concat(),
            &env,
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_env(args, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    /// Like [`Hsm::ok`], with `--pin-file` (a stored URI has no pin-source).
    fn ok_pin(&self, args: &[&str]) -> String {
        let pin = self.file("pin");
        self.ok(&[&["--pin-file", pin.as_str()][..], args].concat())
    }

    /// `talvault issuer create prod --pkcs11 URI EXTRA…`; returns the new issuer's id.
    fn create(&self, uri: &str, extra: &[&str]) -> String {
        let out = self.ok(&[&["issuer", "create", "prod", "--pkcs11", uri][..], extra].concat());
        assert!(
            out.contains(
                "its key is in the PKCS#11 token and never leaves it; the certificate was signed there\n"
            ),
            "{out}"
        );
        created_id(&out)
    }

    fn issuer_yaml(&self, id: &str) -> PathBuf {
        self.env
            .path(&format!("v/envs/prod/issuers/{id}/issuer.yaml"))
    }

    fn issuer_meta(&self, id: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(self.issuer_yaml(id)).unwrap()).unwrap()
    }

    /// pkcs11-tool on the token, logged in with the right PIN.
    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(["--token-label", TOKEN, "--login", "--pin", PIN])
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
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

    /// A P-256 key pair made by pkcs11-tool (not by talvault).
    fn keypair_by_pkcs11_tool(&self, label: &str, id: &str, extractable: bool) {
        let mut args = vec![
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            label,
            "--id",
            id,
            "--usage-sign",
        ];
        if extractable {
            args.push("--extractable");
        }
        assert!(self.pkcs11_tool(&args).status.success());
    }

    /// Runs `args`, which must fail with exactly `expected` on stderr (`[..]` matches within a
    /// line), print nothing on stdout, and change no file of the vault or the work directory.
    fn refused(
        &self,
        name: &str,
        args: &[&str],
        extra: &[(&str, &str)],
        code: i32,
        expected: &str,
    ) {
        let before = self.env.tree();
        let (got, out, err) = self.run_env(args, extra);
        eprintln!("## {name} (exit {got})\n{err}");
        assert_eq!(got, code, "{name}: {err}");
        assert_eq!(out, "", "{name}");
        assert_matches(expected, &err);
        assert!(!err.contains(WRONG_PIN_TAIL), "{name} echoed a PIN: {err}");
        assert!(self.env.tree() == before, "{name} changed files");
    }
}

fn created_id(out: &str) -> String {
    out.strip_prefix("created issuer ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The CRL number of a PEM CRL file, read with x509-parser, as (length, big-endian bytes): that
/// orders like the number (no leading zero bytes).
fn crl_number(path: &Path) -> (usize, Vec<u8>) {
    let pem = std::fs::read(path).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    assert_eq!(block.label, "X509 CRL");
    let (_, crl) = CertificateRevocationList::from_der(&block.contents).unwrap();
    let bytes = crl.crl_number().unwrap().to_bytes_be();
    (bytes.len(), bytes)
}

/// The whole life of a token-held issuer, for one algorithm.
fn issuer_in_the_token_end_to_end(algorithm: &str) {
    if !(token_tools() && have("openssl") && have_go()) {
        return;
    }
    let h = Hsm::new();
    let dir = h.env.dir.path();
    let label = format!("issuer-{algorithm}");

    // Create: the key pair is generated in the token and signs the issuer certificate there.
    let out = h.ok(&[
        "issuer",
        "create",
        "prod",
        "--pkcs11",
        &h.uri(&format!("object={label}")),
        "--generate",
        "--algorithm",
        algorithm,
    ]);
    let id = created_id(&out);
    assert!(
        out.starts_with(&format!(
            "created issuer {id} ({algorithm}, O=talvault, CN=prod issuer e1 "
        )),
        "{out}"
    );
    assert!(
        out.contains("its key is in the PKCS#11 token and never leaves it"),
        "{out}"
    );

    // What the vault keeps: the URI without any PIN source, the public key, and no key file.
    let files: Vec<String> = std::fs::read_dir(h.env.path(&format!("v/envs/prod/issuers/{id}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["issuer.yaml"], "no key.age for a token key");
    let meta = h.issuer_meta(&id);
    assert_eq!(meta["algorithm"], algorithm);
    assert_eq!(meta["key"]["store"], "pkcs11");
    let uri = meta["key"]["uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!(
            "pkcs11:token={TOKEN};object={label};type=private;id=%"
        )),
        "{uri}"
    );
    // The token and key identity only: which module to load and where a PIN is kept are the
    // operator's, never the vault's.
    assert!(
        !uri.contains("module-path") && !uri.contains("module-name") && !uri.contains('?'),
        "{uri}"
    );
    assert!(
        !uri.contains("pin-source") && !uri.contains("pin-value") && !uri.contains(&h.file("pin")),
        "{uri}"
    );
    assert!(
        meta["key"].get("danger_allow_extractable").is_none(),
        "{meta:?}"
    );
    // The recorded public key is the certificate's (32 bytes Ed25519, 65-byte point P-256).
    let issuer_pem = meta["certificate"].as_str().unwrap().as_bytes().to_vec();
    let block = x509_parser::pem::parse_x509_pem(&issuer_pem).unwrap().1;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&block.contents).unwrap();
    let spki: String = cert
        .public_key()
        .subject_public_key
        .data
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(meta["key"]["public_key"].as_str().unwrap(), spki);
    assert_eq!(spki.len(), if algorithm == "ed25519" { 64 } else { 130 });
    let list = json(&h.ok(&["issuer", "list", "prod", "-o", "json"]));
    assert_eq!(list[0]["key_store"], "pkcs11");
    assert_eq!(list[0]["algorithm"], algorithm);

    // The self-signed issuer certificate, signed in the token, verifies on its own.
    std::fs::write(h.env.path("issuer.pem"), &issuer_pem).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            "issuer.pem",
            "issuer.pem",
        ],
        dir,
    );
    assert!(ok && text.contains("issuer.pem: OK"), "{text}");

    h.ok(&["issuer", "activate", "prod", &id, "--force"]);

    // Issue with the PIN from --pin-file, then from TALVAULT_PKCS11_PIN; break-glass too.
    let out = h.ok_pin(&[
        "issue",
        "prod",
        "--role",
        "os:operator",
        "--holder",
        "alice",
        "-o",
        "alice.tc",
    ]);
    assert!(
        out.contains(&format!(
            "\nsigned by issuer {id} inside its PKCS#11 token\n"
        )),
        "{out}"
    );
    let (code, out, err) = h.run_env(
        &[
            "issue",
            "prod",
            "--role",
            "os:reader",
            "--holder",
            "bob",
            "-o",
            "bob.tc",
        ],
        &[("TALVAULT_PKCS11_PIN", PIN)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("signed by issuer {id} inside its PKCS#11 token")),
        "{out}"
    );
    let out = h.ok_pin(&["break-glass", "prod", "--reason", "INC-9", "-o", "bg.tc"]);
    assert!(
        out.contains(&format!("signed by issuer {id} inside its PKCS#11 token")),
        "{out}"
    );

    // apid: accepted while the server trusts [OS CA, issuer], refused with the OS CA alone.
    let (crt, key, ca) =
        from_talosconfig(&std::fs::read_to_string(h.env.path("alice.tc")).unwrap());
    let verdict = apid_check(dir, &[&ca, &issuer_pem], &crt, &key);
    assert!(verdict.accepted, "{verdict:?}");
    assert_eq!(verdict.roles, ["os:operator"]);
    let refused = apid_check(dir, &[&ca], &crt, &key);
    assert!(!refused.accepted, "{refused:?}");
    let (bg_crt, bg_key, _) =
        from_talosconfig(&std::fs::read_to_string(h.env.path("bg.tc")).unwrap());
    let verdict = apid_check(dir, &[&ca, &issuer_pem], &bg_crt, &bg_key);
    assert!(verdict.accepted, "{verdict:?}");
    assert_eq!(verdict.roles, ["os:admin"]);

    // openssl: each leaf is a strict, valid TLS client certificate under the issuer.
    let (bob_crt, _, _) = from_talosconfig(&std::fs::read_to_string(h.env.path("bob.tc")).unwrap());
    std::fs::write(h.env.path("alice.pem"), &crt).unwrap();
    std::fs::write(h.env.path("bob.pem"), &bob_crt).unwrap();
    for leaf in ["alice.pem", "bob.pem"] {
        let (ok, text) = openssl(
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "sslclient",
                "-CAfile",
                "issuer.pem",
                leaf,
            ],
            dir,
        );
        assert!(ok && text.contains(&format!("{leaf}: OK")), "{text}");
    }

    // Revoke alice: the revocation is recorded, and the CRL to publish comes from `crl`.
    let out = h.ok_pin(&[
        "revoke",
        "prod",
        "--talosconfig",
        "alice.tc",
        "--reason",
        "keyCompromise",
    ]);
    assert!(
        out.contains(&format!(
            "publish a fresh CRL for the certificate's issuer: talvault crl prod --issuer {id} -o {id}.crl.pem\n"
        )),
        "{out}"
    );
    let out = h.ok_pin(&["crl", "prod", "--issuer", &id, "-o", "first.pem"]);
    assert!(
        out.starts_with("CRL number ")
            && out.ends_with(&format!(
                " of issuer {id} with 1 entries, signed inside its PKCS#11 token\n"
            )),
        "{out}"
    );
    assert_crl_verifies(dir, "first.pem", "issuer.pem");
    let (ok, text) = verify_with_crl(dir, "first.pem", "issuer.pem", "alice.pem");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify_with_crl(dir, "first.pem", "issuer.pem", "bob.pem");
    assert!(ok && text.contains("bob.pem: OK"), "{text}");
    let first = crl_number(&h.env.path("first.pem"));

    // Another `crl -o`: a fresh CRL, signed in the token, with a larger number.
    let out = h.ok_pin(&["crl", "prod", "-o", "c.pem"]);
    assert!(
        out.starts_with("CRL number ")
            && out.ends_with(&format!(
                " of issuer {id} with 1 entries, signed inside its PKCS#11 token\n"
            )),
        "{out}"
    );
    assert_crl_verifies(dir, "c.pem", "issuer.pem");
    assert!(crl_number(&h.env.path("c.pem")) > first);

    // The private key cannot be read out of the token, and the token says why.
    let out = h.pkcs11_tool(&["--read-object", "--type", "privkey", "--label", &label]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // OpenSC 0.23 refuses every private-key read ("reading private keys not (yet) supported",
    // exit 0), so what is asserted is that no key material comes out; the attributes below are
    // the token's own word that it could not.
    assert!(
        out.stdout.len() < 16 && !text.contains("BEGIN") && !text.contains("PRIVATE"),
        "{text}"
    );
    let out = h.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    let block = listing
        .split("Private Key Object")
        .find(|b| b.contains(&format!("label:      {label}\n")))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        block.contains(if algorithm == "ed25519" {
            "; EC_EDWARDS"
        } else {
            "; EC\n"
        }),
        "{block}"
    );
    assert!(block.contains("Usage:      sign\n"), "{block}");
    assert!(
        block.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{block}"
    );

    // The audit trail names the token key (URI without PIN) for each use of it.
    let events = json(&h.ok(&["audit", "log", "prod", "-o", "json"]));
    let by_key = format!("PKCS#11 key {uri}");
    let mut used = Vec::new();
    for e in events.as_array().unwrap() {
        let action = e["action"].as_str().unwrap();
        if ["issuer.create", "issue", "break-glass", "crl"].contains(&action) {
            assert_eq!(e["opened_by"], by_key.as_str(), "{e}");
            used.push(action);
        } else if action == "revoke" {
            // Recording a revocation signs nothing.
            assert_eq!(e["opened_by"], serde_json::Value::Null, "{e}");
            used.push(action);
        }
    }
    assert_eq!(
        used,
        [
            "issuer.create",
            "issue",
            "issue",
            "break-glass",
            "revoke",
            "crl",
            "crl"
        ]
    );
    h.ok(&["audit", "verify", "prod"]);

    // Nothing in the vault or the work directory mentions the PIN file or the SoftHSM setup.
    let private = h.dir.path().display().to_string();
    for (path, bytes) in h.env.tree() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&private) && !text.contains("pin-source"),
            "{path}"
        );
    }
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn ed25519_issuer_in_softhsm_signs_leaves_and_crls_end_to_end() {
    issuer_in_the_token_end_to_end("ed25519");
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn p256_issuer_in_softhsm_signs_leaves_and_crls_end_to_end() {
    issuer_in_the_token_end_to_end("ecdsa-p256");
}

const PIN_INCORRECT: &str = "error: C_Login returned CKR_PIN_INCORRECT for token \"tv\"\n\
    hint: one attempt was made; check the PIN source (pin-source file, TALVAULT_PKCS11_PIN) — repeated failures lock the token\n";

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_wrong_pin_is_one_login_attempt_and_changes_nothing() {
    if !token_tools() {
        return;
    }
    let h = Hsm::new();
    let module = h.module.display().to_string();
    let wrong_pin = h.file("wrong-pin");
    let right_pin = h.file("pin");

    // Through pkcs11-spy, to count the C_Login calls one talvault process makes.
    let spy = common::first_existing(common::SPY_MODULES, "pkcs11-spy (OpenSC)")
        .display()
        .to_string();
    let log = h.dir.path().join("spy.log");
    let log_text = log.display().to_string();
    let spy_env = [
        ("PKCS11SPY", module.as_str()),
        ("PKCS11SPY_OUTPUT", log_text.as_str()),
    ];
    h.refused(
        "issuer create, wrong pin-source",
        &[
            "issuer",
            "create",
            "prod",
            "--pkcs11",
            &h.uri_with("object=ca", &spy, "wrong-pin"),
            "--generate",
        ],
        &spy_env,
        1,
        PIN_INCORRECT,
    );
    assert_eq!(common::spy_calls(&log, "C_Login"), 1, "exactly one attempt");
    assert_eq!(common::spy_calls(&log, "C_GenerateKeyPair"), 0);

    // The token is not locked: the right PIN works at once.
    let id = h.create(&h.uri("object=ca"), &["--generate"]);
    h.ok(&["issuer", "activate", "prod", &id, "--force"]);

    // A stored URI has no pin-source: a wrong --pin-file, then a wrong TALVAULT_PKCS11_PIN.
    let issue = ["issue", "prod", "--role", "os:reader", "-o", "r.tc"];
    h.refused(
        "issue, wrong --pin-file",
        &[&["--pin-file", wrong_pin.as_str()][..], &issue].concat(),
        &[],
        1,
        PIN_INCORRECT,
    );
    let wrong = format!("wrong-pin-{WRONG_PIN_TAIL}");
    h.refused(
        "issue, wrong TALVAULT_PKCS11_PIN",
        &issue,
        &[("TALVAULT_PKCS11_PIN", wrong.as_str())],
        1,
        PIN_INCORRECT,
    );
    h.refused(
        "crl, wrong --pin-file",
        &["--pin-file", &wrong_pin, "crl", "prod"],
        &[],
        1,
        PIN_INCORRECT,
    );
    // Both sources at once: refused before any login (the variable would otherwise win).
    h.refused(
        "--pin-file and TALVAULT_PKCS11_PIN",
        &[&["--pin-file", right_pin.as_str()][..], &issue].concat(),
        &[("TALVAULT_PKCS11_PIN", wrong.as_str())],
        2,
        "error: --pin-file and TALVAULT_PKCS11_PIN are both set; talvault will not guess which PIN is meant\n\
         hint: unset TALVAULT_PKCS11_PIN or drop --pin-file\n",
    );
    // Three failed logins later the token still takes the right PIN, and says it is not locked.
    let out = h.ok_pin(&issue);
    assert!(
        out.contains(&format!("signed by issuer {id} inside its PKCS#11 token")),
        "{out}"
    );
    let check = json(&h.ok(&["hsm", "check", &h.uri(""), "-o", "json"]));
    assert_eq!(check["token"]["user_pin_locked"], false, "{check}");
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn module_token_key_and_uri_faults_change_nothing() {
    if !token_tools() {
        return;
    }
    let h = Hsm::new();
    let module = h.module.display().to_string();
    let pin = h.file("pin");
    let create = |uri: &str| -> Vec<String> {
        ["issuer", "create", "prod", "--pkcs11", uri]
            .map(str::to_owned)
            .to_vec()
    };
    let refused = |name: &str, args: Vec<String>, expected: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        h.refused(name, &args, &[], 1, expected);
    };

    refused(
        "module not found",
        create(&h.uri_with("object=ca", "/nonexistent/libvendor-pkcs11.so", "pin")),
        "error: no PKCS#11 module found; tried /nonexistent/libvendor-pkcs11.so\n\
         hint: add ?module-path=/path/to/module.so (or ?module-name=NAME for a module registered with p11-kit) to the URI\n",
    );
    let lib = common::first_existing(NOT_PKCS11, "zlib or libm")
        .display()
        .to_string();
    refused(
        "not a PKCS#11 module",
        create(&h.uri_with("object=ca", &lib, "pin")),
        &format!(
            "error: {lib} is not a PKCS#11 module: it exports no C_GetFunctionList\n\
             hint: module-path must name the vendor's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so), built for this architecture\n"
        ),
    );
    refused(
        "token not present",
        create(&format!(
            "pkcs11:token=nosuch;object=ca?module-path={module}&pin-source={pin}"
        )),
        &format!(
            "error: no token matches token=\"nosuch\" in {module} (tokens present: \"tv\" (serial [..]))\n\
             hint: check that the token is plugged in and initialised, and that token=/serial= match `talvault hsm check` or `pkcs11-tool --list-token-slots`\n"
        ),
    );
    refused(
        "key not found",
        create(&h.uri("object=nosuch")),
        "error: no private key matches object=\"nosuch\" on token \"tv\" (C_FindObjects found none)\n\
         hint: list the token's keys with `pkcs11-tool --module M --token-label L --login --list-objects --type privkey`\n",
    );
    refused(
        "URI with a duplicate attribute",
        create(&format!("pkcs11:token=a;token=b?module-path={module}")),
        "error: --pkcs11: token appears more than once\n",
    );
    refused(
        "URI with pin-value",
        create(&format!(
            "pkcs11:token=tv;object=ca?module-path={module}&pin-value=secret-{WRONG_PIN_TAIL}"
        )),
        "error: --pkcs11: pin-value is refused: a PIN must never appear in a URI\n\
         hint: put the PIN in a file and add ?pin-source=/path/to/file, or set TALVAULT_PKCS11_PIN\n",
    );
    refused(
        "URI with slot-id",
        create(&format!(
            "pkcs11:token=tv;slot-id=0;object=ca?module-path={module}"
        )),
        "error: --pkcs11: [..]slot-id[..]\n\
         hint: name the token with token=LABEL (and serial= if labels repeat)\n",
    );
    refused(
        "not a pkcs11: URI",
        create("token=tv;object=ca"),
        "error: --pkcs11: it does not start with \"pkcs11:\"\n\
         hint: write it like pkcs11:token=MyToken;object=my-key\n",
    );
    // An extractable key (pkcs11-tool --extractable): refused unless --danger-allow-extractable.
    h.keypair_by_pkcs11_tool("leaky", "42", true);
    refused(
        "key extractable",
        create(&h.uri("object=leaky")),
        "error: private key object=\"leaky\" on token \"tv\" is not protected: CKA_EXTRACTABLE=true, CKA_SENSITIVE=true\n\
         hint: generate a new key inside the token with talvault; --danger-allow-extractable accepts this key anyway\n",
    );

    // A key talvault generated: generating again under its label is refused; an existing key of
    // the other algorithm is named.
    let id = h.create(&h.uri("object=ca"), &["--generate"]);
    refused(
        "generate over an existing label",
        [create(&h.uri("object=ca")), vec!["--generate".into()]].concat(),
        "error: an object with label \"ca\" already exists on token \"tv\"; refusing to generate another\n\
         hint: choose another object= label (and id=), or use the existing key with `--pkcs11` without generating\n",
    );
    refused(
        "--algorithm against an existing key",
        [
            create(&h.uri("object=ca")),
            vec!["--algorithm".into(), "ecdsa-p256".into()],
        ]
        .concat(),
        "error: --algorithm ecdsa-p256: the token's key is ed25519\n",
    );

    // With --danger-allow-extractable the key is accepted, recorded as such, and used.
    let leaky = h.create(&h.uri("object=leaky"), &["--danger-allow-extractable"]);
    let meta = h.issuer_meta(&leaky);
    assert_eq!(meta["key"]["danger_allow_extractable"], true, "{meta:?}");
    assert_eq!(meta["algorithm"], "ecdsa-p256");
    h.ok(&["issuer", "activate", "prod", &leaky, "--force"]);
    // Using it needs the operator's own consent: issuer.yaml's flag is a record, not a switch.
    let pin = h.file("pin");
    let (code, _, err) = h.run(&[
        "--pin-file",
        &pin,
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "leaky.tc",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is not protected: CKA_EXTRACTABLE=true"),
        "{err}"
    );
    let (code, out, err) = h.run_env(
        &[
            "--pin-file",
            &pin,
            "issue",
            "prod",
            "--role",
            "os:reader",
            "-o",
            "leaky.tc",
        ],
        &[("TALVAULT_PKCS11_ALLOW_EXTRACTABLE", "1")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "signed by issuer {leaky} inside its PKCS#11 token"
        )),
        "{out}"
    );
    // The other issuer is still pending: the faults above left it alone.
    let list = json(&h.ok(&["issuer", "list", "prod", "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "pending");
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_token_key_that_is_not_the_certificates_is_refused() {
    if !token_tools() {
        return;
    }
    let h = Hsm::new();
    let first = h.create(
        &h.uri("object=first"),
        &["--generate", "--algorithm", "ecdsa-p256"],
    );
    let second = h.create(&h.uri("object=second"), &["--generate"]);
    h.ok(&["issuer", "activate", "prod", &first, "--force"]);
    h.ok_pin(&["issue", "prod", "--role", "os:reader", "-o", "before.tc"]);
    let own = h.issuer_meta(&first)["key"]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let pin = h.file("pin");
    let commands = || -> Vec<(&'static str, Vec<String>)> {
        let p = pin.clone();
        [
            (
                "issue",
                vec!["issue", "prod", "--role", "os:reader", "-o", "x.tc"],
            ),
            (
                "break-glass",
                vec!["break-glass", "prod", "--reason", "x", "-o", "x.tc"],
            ),
            ("crl", vec!["crl", "prod", "-o", "x.pem"]),
        ]
        .into_iter()
        .map(|(n, args)| {
            let mut all = vec!["--pin-file".to_owned(), p.clone()];
            all.extend(args.into_iter().map(str::to_owned));
            (n, all)
        })
        .collect()
    };
    // (`revoke` is not among them: recording a revocation signs nothing.)
    let refuse_all = |expected: &str| {
        for (name, args) in commands() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            h.refused(name, &args, &[], 1, expected);
        }
    };

    // issuer.yaml edited to point the first issuer's key.uri at the second issuer's key (a key
    // in the same token that opens, logs in and signs): the audit chain sealed issuer.yaml, so
    // the edit is refused before any token is opened.
    let yaml = std::fs::read_to_string(h.issuer_yaml(&first)).unwrap();
    let other = h.issuer_meta(&second)["key"]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let edited = yaml.replace(&format!("  uri: {own}\n"), &format!("  uri: {other}\n"));
    assert_ne!(edited, yaml);
    std::fs::write(h.issuer_yaml(&first), &edited).unwrap();
    refuse_all(&format!(
        "error: envs/prod/issuers/{first}/issuer.yaml: its contents are not what audit event [..] recorded\n\
         hint: restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed\n"
    ));
    std::fs::write(h.issuer_yaml(&first), &yaml).unwrap();
    h.ok_pin(&["issue", "prod", "--role", "os:reader", "-o", "between.tc"]);

    // The token changes instead: the first issuer's key pair is deleted and pkcs11-tool makes
    // another under the same label and id, so the unchanged URI finds a key that is not the
    // certificate's.
    let id_hex: String = own
        .split(';')
        .find_map(|part| part.strip_prefix("id="))
        .expect("the stored URI names the key id")
        .split('?')
        .next()
        .unwrap()
        .replace('%', "");
    for kind in ["privkey", "pubkey"] {
        assert!(
            h.pkcs11_tool(&["--delete-object", "--type", kind, "--label", "first"])
                .status
                .success()
        );
    }
    h.keypair_by_pkcs11_tool("first", &id_hex, false);
    refuse_all(&format!(
        "error: envs/prod/issuers/{first}/issuer.yaml: the token's key at {own} does not match the issuer certificate\n\
         hint: another key answers at that URI in the token: find out who changed the token; until then nothing signs with it (cut access with `talvault issuer retire ENV {first}` once a new issuer is active)\n"
    ));
}

#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn hsm_check_reports_the_token_and_refuses_an_extractable_key() {
    if !token_tools() {
        return;
    }
    let h = Hsm::new();
    let module = h.module.display().to_string();
    // `hsm check` needs no vault: run it where there is none.
    let check = |uri: &str, json_out: bool| {
        let conf = h.conf.display().to_string();
        let mut args = vec!["hsm", "check", uri];
        if json_out {
            args.extend(["-o", "json"]);
        }
        talvault_env(h.dir.path(), &args, &[("SOFTHSM2_CONF", conf.as_str())])
    };

    // The token alone: both algorithms are offered; exit 0.
    let (code, text, err) = check(&h.uri(""), false);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with(&format!("uri:        {}\n", h.uri(""))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\nmodule:     {module} (Implementation of PKCS11 "
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "\ntoken:      \"tv\" (manufacturer \"SoftHSM project\", model \"SoftHSM v2\", serial "
        ),
        "{text}"
    );
    assert!(
        text.contains("\ned25519:    supported: CKM_EC_EDWARDS_KEY_PAIR_GEN offered key size 256-456; CKM_EDDSA offered"),
        "{text}"
    );
    assert!(
        text.contains("\necdsa-p256: supported: CKM_EC_KEY_PAIR_GEN offered key size 112-521; CKM_ECDSA offered"),
        "{text}"
    );
    assert!(!text.contains("\nkey:"), "{text}");
    let (code, out, _) = check(&h.uri(""), true);
    assert_eq!(code, 0);
    let report = json(&out);
    assert_eq!(report["token"]["label"], TOKEN);
    assert_eq!(report["module"]["path"], module.as_str());
    let algorithms: Vec<(&str, bool)> = report["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["algorithm"].as_str().unwrap(), a["usable"] == true))
        .collect();
    assert_eq!(algorithms, [("ed25519", true), ("ecdsa-p256", true)]);
    assert!(report["key"].is_null(), "{report}");

    // A key talvault would accept: exit 0, "usable".
    h.keypair_by_pkcs11_tool("good", "01", false);
    let (code, text, err) = check(&h.uri("object=good"), false);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains("\nverdict:    usable: ecdsa-p256 key, sensitive and not extractable, and always was (generated inside the token)\n"),
        "{text}"
    );

    // An extractable key: exit 1, "refused: …", in both forms.
    h.keypair_by_pkcs11_tool("leaky", "02", true);
    let (code, text, _) = check(&h.uri("object=leaky"), false);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("\n            sensitive yes, extractable yes, never extractable no, "),
        "{text}"
    );
    assert!(
        text.contains("\nverdict:    refused: the key can leave the token"),
        "{text}"
    );
    let (code, out, _) = check(&h.uri("object=leaky"), true);
    assert_eq!(code, 1);
    let report = json(&out);
    assert_eq!(report["key"]["usable"], false);
    assert_eq!(report["key"]["extractable"], true);
    assert!(
        report["key"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("refused: "),
        "{report}"
    );

    // No such key: exit 1; no such token: the one-line error.
    let (code, out, _) = check(&h.uri("object=absent"), true);
    assert_eq!(code, 1);
    assert_eq!(
        json(&out)["key"]["verdict"],
        "no private key matches object=\"absent\""
    );
    let (code, out, err) = check(&format!("pkcs11:token=nosuch?module-path={module}"), false);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_matches(
        &format!(
            "error: no token matches token=\"nosuch\" in {module} (tokens present: \"tv\" (serial [..]))\n\
             hint: check that the token is plugged in and initialised, and that token=/serial= match `talvault hsm check` or `pkcs11-tool --list-token-slots`\n"
        ),
        &err,
    );
    let (code, _, err) = check("pkcs11:token=a;token=b", false);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err, "error: URI: token appears more than once\n");
}

/// A vault file never decides which code runs: a `module-path` planted in issuer.yaml's key URI
/// (here a library whose constructor would leave a mark) is not loaded — the operator's module
/// is — and a PIN "file" that is a FIFO is refused rather than read.
#[test]
#[cfg_attr(
    not(softhsm),
    ignore = "SoftHSM2 not installed (apt-get install softhsm2 opensc); runs under CI=true"
)]
fn a_planted_module_path_is_never_loaded() {
    if !token_tools() || !have("cc") {
        return;
    }
    let h = Hsm::new();
    h.keypair_by_pkcs11_tool("ca", "01", false);
    let id = h.create(&h.uri("object=ca"), &[]);
    h.ok(&["issuer", "activate", "prod", &id, "--force"]);
    // The planted library: its constructor writes MARK when it is loaded.
    let src = h.dir.path().join("evil.c");
    let lib = h.dir.path().join("evil.so");
    let mark = h.dir.path().join("loaded");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void planted(void) {{ FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            mark.display()
        ),
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap();
    assert!(built.success());
    let yaml = std::fs::read_to_string(h.issuer_yaml(&id)).unwrap();
    let planted: String = yaml
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("uri: pkcs11:") {
                format!("{l}?module-path={}\n", lib.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(planted, yaml);
    std::fs::write(h.issuer_yaml(&id), planted).unwrap();
    // The audit chain sealed issuer.yaml: the edit is refused before any module is loaded.
    let pin = h.file("pin");
    let (code, _, err) = h.run(&[
        "--pin-file",
        &pin,
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "a.tc",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("issuer.yaml: its contents are not what audit event"),
        "{err}"
    );
    assert!(!mark.exists(), "the planted module was loaded");
    // And the module named by a key URI is never the one loaded: even a URI that passes the
    // seal keeps only the token and key identity (`Pkcs11Uri::identity_only`, unit-tested in
    // hsm/src/uri.rs); the operator's TALVAULT_PKCS11_MODULE decides.
    std::fs::write(h.issuer_yaml(&id), yaml).unwrap();
    let out = h.ok_pin(&["issue", "prod", "--role", "os:reader", "-o", "a.tc"]);
    assert!(out.contains("inside its PKCS#11 token"), "{out}");
    assert!(!mark.exists(), "the planted module was loaded");
    // A FIFO as PIN file is refused (reading it could block forever).
    let fifo = h.dir.path().join("pin-fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    let (code, _, err) = h.run(&[
        "--pin-file",
        &fifo,
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "b.tc",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

/// A key URI read from the vault keeps only the token and key identity: no module to load, no
/// PIN file to read; the operator's module replaces whatever the URI named.
#[test]
fn a_stored_uri_keeps_only_the_token_and_key_identity() {
    let uri = talvault_hsm::Pkcs11Uri::parse(
        "pkcs11:token=tv;object=ca;id=%01;type=private?module-path=/tmp/evil.so&pin-source=/etc/shadow",
    )
    .unwrap();
    assert_eq!(uri.module_path(), Some("/tmp/evil.so"));
    let stored = uri.identity_only();
    assert_eq!(stored.module_path(), None);
    assert_eq!(stored.module_name(), None);
    assert_eq!(stored.object(), Some("ca"));
    assert_eq!(stored.id(), Some(&[1u8][..]));
    assert_eq!(
        stored.to_string(),
        "pkcs11:token=tv;object=ca;type=private;id=%01"
    );
    let operated = stored.with_module_path("/usr/lib/softhsm/libsofthsm2.so");
    assert_eq!(
        operated.module_path(),
        Some("/usr/lib/softhsm/libsofthsm2.so")
    );
}
