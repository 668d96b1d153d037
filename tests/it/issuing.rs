//! `talvault issue` and `break-glass` end to end: the talosconfig a user gets is accepted by an
//! apid-style TLS server with the right roles; policy refusals, merge rules and bad input leave
//! no record, no audit event and no file.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::issue::{apid_check, from_talosconfig, have_go};
use crate::support::{snapshot, talvault_env};

pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: String,
}

impl Env {
    pub(crate) fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id.key");
        let out = Command::new("age-keygen").arg("-o").arg(&key).output();
        let recipient = match out {
            Ok(o) if o.status.success() => {
                let pubkey = Command::new("age-keygen")
                    .arg("-y")
                    .arg(&key)
                    .output()
                    .unwrap();
                String::from_utf8(pubkey.stdout).unwrap().trim().to_owned()
            }
            _ => panic!("age-keygen failed (callers check have(\"age-keygen\") first)"),
        };
        let env = Env {
            dir,
            key: key.display().to_string(),
        };
        env.ok(&["init", "v"]);
        env.ok(&[
            "--vault",
            "v",
            "env",
            "create",
            "prod",
            "-r",
            &recipient,
            "--talos-version",
            "v1.6",
            "--cluster-name",
            "demo",
            "--endpoint",
            "10.5.0.2",
        ]);
        env
    }

    pub(crate) fn run(&self, args: &[&str]) -> (i32, String, String) {
        let home = self.dir.path().display().to_string();
        talvault_env(
            self.dir.path(),
            args,
            &[
                ("TALVAULT_IDENTITY", &self.key),
                ("TALVAULT_ACTOR", "tester"),
                ("HOME", &home),
            ],
        )
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    pub(crate) fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    /// Every file of the vault and the work dir, by path, with its contents.
    pub(crate) fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }
}

/// Walks the tree; `.lock` and the derived, git-ignored `.cache/` (record summaries) are not
/// vault state and are left out.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(root, &p, out);
        } else if p.file_name().unwrap() != ".lock"
            && !p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .contains(".cache/")
        {
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
}

#[test]
fn issued_talosconfigs_pass_an_apid_handshake() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--role", "os:reader"], &["os:reader"]),
        (
            &["--role", "os:operator", "--role", "os:etcd:backup"],
            &["os:etcd:backup", "os:operator"],
        ),
        (&["--role", "os:admin", "--ttl", "2h"], &["os:admin"]),
    ];
    for (i, (args, roles)) in cases.iter().enumerate() {
        let out = format!("tc{i}");
        let mut full = vec![
            "--vault", "v", "issue", "prod", "--holder", "alice", "-o", &out,
        ];
        full.extend_from_slice(args);
        env.ok(&full);
        let yaml = std::fs::read_to_string(env.path(&out)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(env.path(&out))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let (crt, key, ca) = from_talosconfig(&yaml);
        if have_go() {
            let v = apid_check(env.dir.path(), &[&ca], &crt, &key);
            assert!(v.accepted, "{args:?}");
            let mut got = v.roles.clone();
            got.sort();
            assert_eq!(got, *roles);
        }
    }
    let bg = env.ok(&[
        "--vault",
        "v",
        "break-glass",
        "prod",
        "--reason",
        "INC-7",
        "-o",
        "bg",
    ]);
    assert!(bg.contains("BREAK-GLASS"));
    let (crt, key, ca) = from_talosconfig(&std::fs::read_to_string(env.path("bg")).unwrap());
    if have_go() {
        let v = apid_check(env.dir.path(), &[&ca], &crt, &key);
        assert!(v.accepted);
        assert_eq!(v.roles, ["os:admin"]);
    }
    let show = env.ok(&["--vault", "v", "env", "show", "prod"]);
    assert!(show.contains("tainted:        since"), "{show}");
    // Four records, four issuance events plus the creation, a verified trail.
    assert_eq!(
        std::fs::read_dir(env.path("v/envs/prod/certs"))
            .unwrap()
            .count(),
        4
    );
    let log = env.ok(&["--vault", "v", "audit", "log", "prod", "-o", "json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["env.create", "issue", "issue", "issue", "break-glass"]
    );
    assert_eq!(events[4]["data"]["reason"], "INC-7");
    env.ok(&["--vault", "v", "audit", "verify"]);
    env.ok(&[
        "--vault",
        "v",
        "env",
        "untaint",
        "prod",
        "--reason",
        "INC-7 closed",
    ]);
    assert!(
        env.ok(&["--vault", "v", "env", "show", "prod"])
            .contains("tainted:        no")
    );
}

#[test]
fn merge_adds_a_context_and_never_renames() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "tc",
    ]);
    env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:operator",
        "--merge",
        "tc",
    ]);
    let yaml = std::fs::read_to_string(env.path("tc")).unwrap();
    assert!(
        yaml.starts_with("context: operator@demo\ncontexts:\n    operator@demo:\n"),
        "{yaml}"
    );
    assert!(yaml.contains("\n    reader@demo:\n"));
    let before = env.tree();
    let (code, _, err) = env.run(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:operator",
        "--merge",
        "tc",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("context \"operator@demo\" already exists"),
        "{err}"
    );
    assert_eq!(env.tree(), before, "a refused merge changed files");
    env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:operator",
        "--merge",
        "tc",
        "--replace",
    ]);
    let yaml = std::fs::read_to_string(env.path("tc")).unwrap();
    assert!(!yaml.contains("operator@demo-1"));
}

#[test]
fn csr_flow_writes_no_key() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    let d = env.dir.path();
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", "holder.key"])
        .current_dir(d)
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args([
                "req",
                "-new",
                "-key",
                "holder.key",
                "-subj",
                "/O=os:admin/CN=bob",
                "-out",
                "bob.csr",
            ])
            .current_dir(d)
            .status()
            .unwrap()
            .success();
    assert!(ok);
    let out = env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:reader",
        "--csr",
        "bob.csr",
        "-o",
        "bob.tc",
    ]);
    assert!(out.contains("has no key"), "{out}");
    let yaml = std::fs::read_to_string(env.path("bob.tc")).unwrap();
    assert!(!yaml.contains("key:"), "{yaml}");
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let ctx = &v["contexts"]["reader@demo"];
    let b64 =
        |s: &str| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap();
    let crt = b64(ctx["crt"].as_str().unwrap());
    let ca = b64(ctx["ca"].as_str().unwrap());
    if have_go() {
        let key = std::fs::read(env.path("holder.key")).unwrap();
        let v = apid_check(d, &[&ca], &crt, &key);
        assert!(v.accepted);
        assert_eq!(
            v.roles,
            ["os:reader"],
            "roles come from the flags, never the CSR"
        );
    }
}

/// Bad input: one line and a hint, non-zero exit, and no record, event or file.
#[test]
fn refusals_change_nothing() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    std::fs::write(
        env.path("not-a-tc.yaml"),
        "apiVersion: v1\nkind: Config\nclusters: []\n",
    )
    .unwrap();
    std::fs::write(
        env.path("bad.csr"),
        "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    env.ok(&[
        "--vault",
        "v",
        "env",
        "create",
        "noep",
        "-r",
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "--talos-version",
        "v1.6",
    ]);
    let before = env.tree();
    let cases: &[(&str, &[&str])] = &[
        ("unknown-role", &["issue", "prod", "--role", "os:root"]),
        (
            "impersonator",
            &["issue", "prod", "--role", "os:impersonator"],
        ),
        (
            "ttl-above-policy",
            &["issue", "prod", "--role", "os:admin", "--ttl", "8d"],
        ),
        (
            "ttl-zero",
            &["issue", "prod", "--role", "os:reader", "--ttl", "0s"],
        ),
        (
            "ttl-negative",
            &["issue", "prod", "--role", "os:reader", "--ttl=-1h"],
        ),
        (
            "ttl-garbage",
            &["issue", "prod", "--role", "os:reader", "--ttl", "soon"],
        ),
        (
            "break-glass-empty-reason",
            &["break-glass", "prod", "--reason", "  "],
        ),
        (
            "break-glass-too-long",
            &["break-glass", "prod", "--reason", "x", "--ttl", "5h"],
        ),
        (
            "bad-csr",
            &["issue", "prod", "--role", "os:reader", "--csr", "bad.csr"],
        ),
        (
            "merge-not-talosconfig",
            &[
                "issue",
                "prod",
                "--role",
                "os:reader",
                "--merge",
                "not-a-tc.yaml",
            ],
        ),
        ("no-endpoints", &["issue", "noep", "--role", "os:reader"]),
        ("no-such-env", &["issue", "staging", "--role", "os:reader"]),
        (
            "output-exists",
            &[
                "issue",
                "prod",
                "--role",
                "os:reader",
                "-o",
                "not-a-tc.yaml",
            ],
        ),
    ];
    let mut all = String::new();
    for (name, args) in cases {
        let mut full = vec!["--vault", "v"];
        full.extend_from_slice(args);
        let (code, out, err) = env.run(&full);
        assert_ne!(code, 0, "{name}");
        assert_eq!(out, "", "{name}");
        all.push_str(&format!("## {name} (exit {code})\n{err}"));
        assert_eq!(env.tree(), before, "{name} changed files");
    }
    snapshot("issue-bad-input.txt", &all);
}
