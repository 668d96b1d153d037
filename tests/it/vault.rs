//! The vault, black-box: the real binary in a private HOME and TMPDIR, checked against the Go
//! `age` CLI both ways, a plaintext canary, SIGKILL at random points, two processes at once,
//! audit tampering, and every refusal leaving the vault untouched. No assertion message here
//! prints a secret (exported plaintext is compared, never shown).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_matches, have, only_issuer, snapshot, talvault_env};

/// A private directory for one test: the working directory holds `home/`, `tmp/` and the vault
/// `v/`; every process (ours and the tools) gets HOME and TMPDIR inside it.
struct Sandbox {
    _root: tempfile::TempDir,
    dir: PathBuf,
    home: String,
    tmp: String,
}

/// An age identity file (relative to the sandbox) and its recipient.
struct Key {
    file: String,
    recipient: String,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_path_buf();
        for d in ["home", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Self {
            home: dir.join("home").to_str().unwrap().to_owned(),
            tmp: dir.join("tmp").to_str().unwrap().to_owned(),
            dir,
            _root: root,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The environment of every process: private HOME and TMPDIR, a fixed actor, and no
    /// identity or vault inherited from the developer's shell (empty counts as unset).
    fn envs<'a>(&'a self, actor: &'a str) -> [(&'a str, &'a str); 6] {
        [
            ("HOME", &self.home),
            ("TMPDIR", &self.tmp),
            ("TALVAULT_ACTOR", actor),
            ("TALVAULT_IDENTITY", ""),
            ("SOPS_AGE_KEY_FILE", ""),
            ("TALVAULT_VAULT", ""),
        ]
    }

    /// `talvault ARGS` in the sandbox (no `--vault`).
    fn raw(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let mut env: Vec<(&str, &str)> = self.envs("alice").to_vec();
        env.extend_from_slice(extra);
        talvault_env(&self.dir, args, &env)
    }

    /// `talvault --vault VAULT ARGS` as `actor`.
    fn run_in(&self, vault: &str, actor: &str, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["--vault", vault];
        all.extend_from_slice(args);
        talvault_env(&self.dir, &all, &self.envs(actor))
    }

    /// `talvault --vault v ARGS` as alice.
    fn v(&self, args: &[&str]) -> (i32, String, String) {
        self.run_in("v", "alice", args)
    }

    /// Like `v`, asserting success; returns stdout (shown only through the stderr on failure).
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.v(args);
        assert_eq!(code, 0, "talvault {args:?} failed: {err}");
        out
    }

    /// The same process as `v`, unstarted, for tests that kill or race it.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_talvault"));
        c.args(["--vault", "v"])
            .args(args)
            .current_dir(&self.dir)
            .envs(self.envs("alice"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs an external tool in the sandbox with the same HOME and TMPDIR.
    fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// `age-keygen -o home/NAME.key`.
    fn keygen(&self, name: &str) -> Key {
        let file = format!("home/{name}.key");
        let out = self.tool("age-keygen", &["-o", &file]);
        assert!(out.status.success(), "age-keygen failed");
        let out = self.tool("age-keygen", &["-y", &file]);
        assert!(out.status.success(), "age-keygen -y failed");
        Key {
            recipient: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            file,
        }
    }

    /// `age -d -i KEY FILE`: the plaintext, or None when age refuses.
    fn age_decrypt(&self, key: &str, file: &str) -> Option<Vec<u8>> {
        let out = self.tool("age", &["-d", "-i", key, file]);
        out.status.success().then_some(out.stdout)
    }

    fn init(&self) {
        let (code, _, err) = self.raw(&["init", "v"], &[]);
        assert_eq!(code, 0, "init: {err}");
    }

    /// `env create NAME -r R… --talos-version v1.6`.
    fn create(&self, env: &str, recipients: &[&str]) {
        let mut args = vec!["env", "create", env, "--talos-version", "v1.6"];
        for r in recipients {
            args.extend(["-r", r]);
        }
        self.ok(&args);
    }

    /// `bundle export ENV` with `key`.
    fn export(&self, key: &Key, env: &str) -> Vec<u8> {
        self.ok(&["-i", &key.file, "bundle", "export", env])
            .into_bytes()
    }

    /// The audit events of `env`, oldest first (`audit log ENV -o json`).
    fn events(&self, env: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["audit", "log", env, "-o", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
    }

    fn recipients(&self, env: &str) -> Vec<String> {
        self.ok(&["recipients", "list", env])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `audit verify` (every environment) must pass, authenticity included: `key` opens
    /// every environment's audit keys.
    fn verify_ok(&self, key: &Key) -> String {
        let (code, out, err) = self.v(&["-i", &key.file, "audit", "verify"]);
        assert_eq!(code, 0, "audit verify: {out}{err}");
        assert!(!out.contains("TAMPERED"), "{out}");
        out
    }
}

fn bundle_path(env: &str) -> String {
    format!("v/envs/{env}/bundle.age")
}

type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// Every file and directory below `root` with its contents (None for directories), except the
/// lock file, whose contents mean nothing.
fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".lock" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The paths whose presence or contents differ (names only: contents may be secret).
fn changed(before: &Tree, after: &Tree) -> Vec<String> {
    let mut out: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    out.dedup();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The event file of `id` below the vault's `env` audit directory.
fn event_file(s: &Sandbox, env: &str, id: &str) -> PathBuf {
    files_below(&s.path(&format!("v/envs/{env}/audit")))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}.json")))
        .unwrap_or_else(|| panic!("no file for event {id}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Interop with the Go age CLI

#[test]
fn go_age_opens_our_bundle_and_we_open_its() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    let s = Sandbox::new();
    s.init();
    let a = s.keygen("a");
    let b = s.keygen("b");
    s.create("prod", &[&a.recipient, &b.recipient]);
    let env_before = std::fs::read(s.path("v/envs/prod/env.yaml")).unwrap();

    // Ours → age: the Go CLI decrypts bundle.age to exactly what `bundle export` prints.
    let exported = s.export(&a, "prod");
    assert!(exported.starts_with(b"cluster:\n"));
    let by_age = s.age_decrypt(&a.file, &bundle_path("prod"));
    assert!(by_age.is_some(), "age -d refused bundle.age");
    assert!(
        by_age.unwrap() == exported,
        "age -d and bundle export differ"
    );

    // age → ours: the exported plaintext sealed by `age -a -r` opens with talvault's age layer,
    // with either key, which it names.
    std::fs::write(s.path("tmp/plain.yaml"), &exported).unwrap();
    let out = s.tool(
        "age",
        &[
            "-a",
            "-r",
            &a.recipient,
            "-r",
            &b.recipient,
            "-o",
            "tmp/by-age.age",
            "tmp/plain.yaml",
        ],
    );
    std::fs::remove_file(s.path("tmp/plain.yaml")).unwrap();
    assert!(out.status.success(), "age -a -r failed");
    for key in [&a, &b] {
        let (plain, by) = open_with_our_age(&s, key, "tmp/by-age.age");
        assert!(plain == exported, "{}", key.file);
        assert_eq!(by, key.recipient);
    }
    // Swapped in for bundle.age by hand, the same file is refused: the audit trail recorded
    // another bundle.age (pins and all, it is an edit nobody can account for).
    let ours = std::fs::read(s.path(&bundle_path("prod"))).unwrap();
    std::fs::copy(s.path("tmp/by-age.age"), s.path(&bundle_path("prod"))).unwrap();
    let (code, _, err) = s.v(&["-i", &a.file, "bundle", "export", "prod"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("envs/prod/bundle.age: its contents are not what audit event"),
        "{err}"
    );
    std::fs::write(s.path(&bundle_path("prod")), &ours).unwrap();
    assert_eq!(
        std::fs::read(s.path("v/envs/prod/env.yaml")).unwrap(),
        env_before
    );
    assert!(s.export(&b, "prod") == exported);
    // The audit trail names the recipient whose identity opened it.
    let events = s.events("prod");
    assert_eq!(
        events.last().unwrap()["opened_by"].as_str(),
        Some(b.recipient.as_str())
    );

    // And talvault re-seals: `recipients add` opens the bundle, age reads the result.
    let c = s.keygen("c");
    s.ok(&[
        "-i",
        &b.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &c.recipient,
    ]);
    assert!(s.age_decrypt(&c.file, &bundle_path("prod")).unwrap() == exported);
    s.verify_ok(&a);
}

#[test]
fn ssh_ed25519_recipient_interop() {
    if !have("age") || !have("age-keygen") || !have("ssh-keygen") {
        return;
    }
    let s = Sandbox::new();
    s.init();
    let out = s.tool(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ops@example.invalid",
            "-f",
            "home/id_ed25519",
        ],
    );
    assert!(out.status.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(s.path("home/id_ed25519.pub")).unwrap();
    let public = public.trim();
    let without_comment = public.rsplit_once(' ').unwrap().0;
    s.create("prod", &[public]);
    // Listed canonically, without the comment.
    assert_eq!(s.recipients("prod"), [without_comment]);

    let ssh = Key {
        file: "home/id_ed25519".into(),
        recipient: without_comment.into(),
    };
    let exported = s.export(&ssh, "prod");
    let by_age = s.age_decrypt(&ssh.file, &bundle_path("prod"));
    assert!(by_age.is_some(), "age -d -i id_ed25519 refused bundle.age");
    assert!(
        by_age.unwrap() == exported,
        "age -d and bundle export differ"
    );
    assert_eq!(
        s.events("prod").last().unwrap()["opened_by"].as_str(),
        Some(without_comment)
    );

    // age -R id_ed25519.pub → talvault's age layer opens it with the ssh key.
    std::fs::write(s.path("tmp/plain.yaml"), &exported).unwrap();
    let out = s.tool(
        "age",
        &[
            "-a",
            "-R",
            "home/id_ed25519.pub",
            "-o",
            "tmp/by-age.age",
            "tmp/plain.yaml",
        ],
    );
    std::fs::remove_file(s.path("tmp/plain.yaml")).unwrap();
    assert!(out.status.success(), "age -R failed");
    let (plain, by) = open_with_our_age(&s, &ssh, "tmp/by-age.age");
    assert!(plain == exported);
    assert_eq!(by, without_comment);

    // Mixed: an X25519 recipient added by talvault; both keys open the result with age.
    let a = s.keygen("a");
    s.ok(&[
        "-i",
        &ssh.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &a.recipient,
    ]);
    for key in [&ssh.file, &a.file] {
        assert!(
            s.age_decrypt(key, &bundle_path("prod")).unwrap() == exported,
            "{key}"
        );
    }
    s.verify_ok(&a);
}

/// Opens `file` (relative to the sandbox) with `key` through talvault's age layer (as the vault
/// opens its sealed files): the plaintext and the recipient that opened it.
fn open_with_our_age(s: &Sandbox, key: &Key, file: &str) -> (Vec<u8>, String) {
    #[derive(Clone, Copy)]
    struct NoPrompts;
    impl age::Callbacks for NoPrompts {
        fn display_message(&self, _: &str) {}
        fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
            None
        }
        fn request_public_string(&self, _: &str) -> Option<String> {
            None
        }
        fn request_passphrase(&self, _: &str) -> Option<age::secrecy::SecretString> {
            None
        }
    }
    let identities =
        talvault::store::age::load_identity_file(&s.path(&key.file), NoPrompts).unwrap();
    let bytes = std::fs::read(s.path(file)).unwrap();
    let (plain, by) =
        talvault::store::age::open(&s.path(file), &bytes, &identities).expect("opens");
    (plain.expose().to_vec(), by.to_string())
}

/// A recipient given twice (`-r` twice, or `-r` and `-R`) is stored, sealed to and audited once,
/// as `recipients list` (which reads recipients.txt the way `age -R` does) already shows it.
#[test]
fn duplicate_recipients_are_stored_once() {
    if !have("age-keygen") {
        return;
    }
    let s = Sandbox::new();
    s.init();
    let a = s.keygen("a");
    let b = s.keygen("b");
    std::fs::write(
        s.path("team.txt"),
        format!("{}\n{}\n", a.recipient, b.recipient),
    )
    .unwrap();
    s.ok(&[
        "env",
        "create",
        "prod",
        "--talos-version",
        "v1.6",
        "-r",
        &a.recipient,
        "-r",
        &a.recipient,
        "-R",
        "team.txt",
    ]);
    let want = [a.recipient.as_str(), b.recipient.as_str()];
    let stored = std::fs::read_to_string(s.path("v/envs/prod/recipients.txt")).unwrap();
    let lines: Vec<&str> = stored.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines, want);
    assert_eq!(s.recipients("prod"), want);
    assert_eq!(
        s.events("prod")[0]["data"]["recipients"],
        serde_json::json!(want)
    );
    // One stanza per recipient in the sealed file.
    let armored = std::fs::read_to_string(s.path(&bundle_path("prod"))).unwrap();
    let body: String = armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let sealed = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    let header_end = sealed.windows(4).position(|w| w == b"\n---").unwrap();
    let stanzas = sealed[..header_end]
        .split(|&c| c == b'\n')
        .filter(|l| l.starts_with(b"-> X25519 "))
        .count();
    assert_eq!(stanzas, 2);
}

// ---------------------------------------------------------------------------------------------
// 2. Canary: no plaintext secret reaches any file but the one asked for

/// The secret values of a secrets.yaml, as strings to look for: every scalar below `secrets`,
/// `cluster.secret`, `trustdinfo.token`, every `certs.*.key` (base64) and each line of the PEM
/// inside it.
fn secret_needles(bundle: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let y: serde_yaml::Value = serde_yaml::from_slice(bundle).unwrap();
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &serde_yaml::Value| {
        if let Some(s) = v.as_str() {
            out.push(s.to_owned());
        }
    };
    push(&y["cluster"]["secret"]);
    push(&y["trustdinfo"]["token"]);
    for (_, v) in y["secrets"].as_mapping().unwrap() {
        push(v);
    }
    let mut keys = Vec::new();
    for (_, cert) in y["certs"].as_mapping().unwrap() {
        if let Some(k) = cert["key"].as_str() {
            keys.push(k.to_owned());
        }
    }
    for k in keys {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(&k)
            .unwrap();
        for line in String::from_utf8(pem).unwrap().lines() {
            if !line.starts_with("-----") && line.len() >= 16 {
                out.push(line.to_owned());
            }
        }
        out.push(k);
    }
    assert!(out.len() >= 10, "too few secrets found: {}", out.len());
    assert!(y["secrets"]["bootstraptoken"].as_str().is_some());
    assert!(y["trustdinfo"]["token"].as_str().is_some());
    out.retain(|n| n.len() >= 16);
    out
}

#[test]
fn canary_no_plaintext_outside_the_export_file() {
    if !have("age-keygen") {
        return;
    }
    let s = Sandbox::new();
    let a = s.keygen("a");
    // The key sops users already have, found through SOPS_AGE_KEY_FILE.
    std::fs::create_dir_all(s.path("home/.config/sops/age")).unwrap();
    let b = s.keygen("b");
    std::fs::rename(s.path(&b.file), s.path("home/.config/sops/age/keys.txt")).unwrap();
    let sops = s.path("home/.config/sops/age/keys.txt");
    let sops_env = [("SOPS_AGE_KEY_FILE", sops.to_str().unwrap())];

    let mut outputs = String::new();
    let mut step = |args: &[&str], extra: &[(&str, &str)], want: i32| {
        let (code, out, err) = s.raw(args, extra);
        assert_eq!(code, want, "talvault {args:?}: {err}");
        outputs.push_str(&out);
        outputs.push_str(&err);
    };
    step(&["init", "v"], &[], 0);
    step(
        &[
            "--vault",
            "v",
            "env",
            "create",
            "prod",
            "-r",
            &a.recipient,
            "--talos-version",
            "v1.6",
        ],
        &[],
        0,
    );
    // An issuer: its key sealed beside the bundle; issue, revoke and a CRL use it.
    step(
        &["--vault", "v", "-i", &a.file, "issuer", "create", "prod"],
        &[],
        0,
    );
    let issuer_id = only_issuer(&s.path("v/envs/prod/issuers"));
    step(
        &[
            "--vault", "v", "-i", &a.file, "issuer", "activate", "prod", &issuer_id, "--force",
        ],
        &[],
        0,
    );
    step(
        &[
            "--vault",
            "v",
            "-i",
            &a.file,
            "issue",
            "prod",
            "--role",
            "os:reader",
            "-e",
            "1.2.3.4",
            "-o",
            "home/r.talosconfig",
        ],
        &[],
        0,
    );
    step(
        &[
            "--vault",
            "v",
            "-i",
            &a.file,
            "revoke",
            "prod",
            "--talosconfig",
            "home/r.talosconfig",
            "--reason",
            "superseded",
        ],
        &[],
        0,
    );
    step(
        &[
            "--vault",
            "v",
            "-i",
            &a.file,
            "crl",
            "prod",
            "-o",
            "home/crl.pem",
        ],
        &[],
        0,
    );
    let issuer_key = format!("v/envs/prod/issuers/{issuer_id}/key.age");
    step(
        &[
            "--vault", "v", "-i", &a.file, "bundle", "export", "prod", "-o", "out.yaml",
        ],
        &[],
        0,
    );
    let out_mode = std::fs::metadata(s.path("out.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(out_mode & 0o777, 0o600);
    // exec hands the same bytes through a pipe.
    step(
        &[
            "--vault",
            "v",
            "-i",
            &a.file,
            "bundle",
            "exec",
            "prod",
            "--",
            "sh",
            "-c",
            "cmp -s \"$1\" out.yaml",
            "sh",
            "{}",
        ],
        &[],
        0,
    );
    step(
        &[
            "--vault",
            "v",
            "-i",
            &a.file,
            "recipients",
            "add",
            "prod",
            "-r",
            &b.recipient,
        ],
        &[],
        0,
    );
    step(
        &[
            "--vault",
            "v",
            "recipients",
            "remove",
            "prod",
            "-r",
            &a.recipient,
        ],
        &sops_env,
        0,
    );
    // The removed key is refused (and says nothing secret).
    step(
        &["--vault", "v", "-i", &a.file, "bundle", "export", "prod"],
        &[],
        1,
    );
    step(
        &[
            "--vault",
            "v",
            "bundle",
            "exec",
            "prod",
            "--",
            "sh",
            "-c",
            "grep -q bootstraptoken \"$1\"",
            "sh",
            "{}",
        ],
        &sops_env,
        0,
    );
    for args in [
        &["recipients", "list", "prod"][..],
        &["env", "show", "prod"],
        &["env", "list", "-o", "json"],
        &["audit", "log"],
        &["audit", "log", "prod", "-o", "json"],
        &["audit", "verify"],
    ] {
        let mut all = vec!["--vault", "v"];
        all.extend_from_slice(args);
        // b (through SOPS_AGE_KEY_FILE) is the recipient left: audit verify checks
        // authenticity with it.
        step(&all, &sops_env, 0);
    }

    let plaintext = std::fs::read(s.path("out.yaml")).unwrap();
    let needles = secret_needles(&plaintext);
    std::fs::remove_file(s.path("out.yaml")).unwrap();
    let mut needles: Vec<Vec<u8>> = needles.into_iter().map(String::into_bytes).collect();
    needles.push(b"PRIVATE KEY".to_vec());
    // The issuer key, as the Go age CLI opens it with the remaining recipient's key; the removed
    // key no longer opens it (recipients remove re-sealed it too).
    if crate::support::have("age") {
        let open = |key: &std::path::Path| {
            std::process::Command::new("age")
                .args(["-d", "-i"])
                .arg(key)
                .arg(s.path(&issuer_key))
                .output()
                .unwrap()
        };
        let opened = open(&sops);
        assert!(opened.status.success(), "age -d {issuer_key}");
        let pem = String::from_utf8(opened.stdout).unwrap();
        assert!(pem.starts_with("-----BEGIN ") && pem.contains("PRIVATE KEY"));
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            needles.push(line.as_bytes().to_vec());
        }
        assert!(
            !open(&s.path(&a.file)).status.success(),
            "the removed key still opens {issuer_key}"
        );
    }

    let found = |hay: &[u8]| {
        needles
            .iter()
            .position(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
    };
    // Index of the needle only, never the needle.
    assert_eq!(
        found(outputs.as_bytes()),
        None,
        "a secret in command output"
    );
    let files = files_below(&s.dir);
    let mut searched = 0;
    for f in &files {
        if f.extension().is_some_and(|e| e == "age") {
            continue;
        }
        searched += 1;
        let bytes = std::fs::read(f).unwrap();
        assert_eq!(found(&bytes), None, "a secret in {}", f.display());
    }
    // HOME, TMPDIR and the vault were all there to search.
    assert!(searched >= 8, "only {searched} files searched");
    assert!(files.iter().any(|f| f.ends_with("keys.txt")));
    assert!(files.iter().any(|f| f.ends_with("env.yaml")));
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL at random points

/// xorshift64*, seeded from the clock (or TALVAULT_CRASH_SEED to replay a failure).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("TALVAULT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("crash test seed: TALVAULT_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Runs `args` to completion five times (after `reset`) and returns the median wall time.
fn measure(s: &Sandbox, mut args: impl FnMut(usize) -> Vec<String>, reset: impl Fn()) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|i| {
            reset();
            let a = args(i);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let start = Instant::now();
            let status = s.command(&a).status().unwrap();
            let t = start.elapsed();
            assert!(status.success(), "{a:?}");
            t
        })
        .collect();
    times.sort();
    times[2]
}

/// What one SIGKILL did.
struct Kill {
    /// Killed, rather than finished before the signal.
    killed: bool,
    /// Killed after its commit point: the journal was left for recovery to roll forward.
    journal: bool,
    /// Killed while staging: temporary files but no journal were left.
    staged: bool,
}

/// Starts `args` and SIGKILLs it after `delay`; looks at what it left before anything recovers.
fn kill_after(s: &Sandbox, args: &[&str], delay: Duration) -> Kill {
    let mut child = s.command(args).spawn().unwrap();
    std::thread::sleep(delay);
    // std's Child::kill is SIGKILL on Unix; an already finished child is fine.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let killed = match status.signal() {
        Some(9) => true,
        None => {
            assert!(status.success(), "{args:?} failed on its own: {status}");
            false
        }
        Some(other) => panic!("{args:?} died of signal {other}"),
    };
    let journal = s.path("v/.talvault-journal").exists();
    let staged = !journal
        && files_below(&s.path("v/envs")).iter().any(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".talvault-tmp-")
        });
    Kill {
        killed,
        journal,
        staged,
    }
}

/// Per command: how the runs ended.
#[derive(Debug, Default)]
struct Tally {
    killed: usize,
    /// Killed after staging began, before the journal existed.
    staged: usize,
    /// Killed between the journal and the last rename (rolled forward).
    journal: usize,
    old: usize,
    new: usize,
}

impl Tally {
    fn add(&mut self, k: &Kill, new: bool) {
        self.killed += usize::from(k.killed);
        self.staged += usize::from(k.staged);
        self.journal += usize::from(k.journal);
        self.old += usize::from(!new);
        self.new += usize::from(new);
    }
}

/// No journal and no temporary file is left once a command has run recovery.
fn assert_recovered(s: &Sandbox) {
    assert!(
        !s.path("v/.talvault-journal").exists(),
        "journal left behind"
    );
    for f in files_below(&s.path("v/envs")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".talvault-tmp-"),
            "temporary file left: {}",
            f.display()
        );
    }
}

#[test]
fn sigkill_leaves_the_old_or_the_new_state() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    let s = Sandbox::new();
    s.init();
    let a = s.keygen("a");
    let b = s.keygen("b");
    let (ra, rb) = (a.recipient.as_str(), b.recipient.as_str());
    s.create("x", &[ra]);
    s.create("r", &[ra, rb]);
    let x_plain = s.export(&a, "x");
    let r_plain = s.export(&a, "r");
    let restore_b = || {
        if s.recipients("r") == [ra] {
            s.ok(&["-i", &a.file, "recipients", "add", "r", "-r", rb]);
        }
    };
    let create_args = |name: &str| -> Vec<String> {
        [
            "env",
            "create",
            name,
            "--talos-version",
            "v1.6",
            "-r",
            ra,
            "-r",
            rb,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let remove_args: Vec<String> = ["-i", a.file.as_str(), "recipients", "remove", "r", "-r", rb]
        .map(str::to_owned)
        .to_vec();
    let export_args: Vec<String> = ["-i", a.file.as_str(), "bundle", "export", "x"]
        .map(str::to_owned)
        .to_vec();
    let durations = [
        measure(&s, |i| create_args(&format!("m{i}")), || {}),
        measure(&s, |_| remove_args.clone(), restore_b),
        measure(&s, |_| export_args.clone(), || {}),
    ];
    eprintln!("durations (create, remove, export): {durations:?}");

    let mut rng = Rng::new();
    let started = Instant::now();
    let mut tally: [Tally; 3] = Default::default();
    // The commit is the last few percent of a run, so a uniform delay alone rarely lands in
    // it. Per command, a staircase tracks the delay at which the outcome flips from old to new
    // state (down after a new state, up after an old one).
    let mut flip: [u64; 3] = durations.map(|d| d.as_micros() as u64 * 9 / 10);
    for run in 0..100 {
        let kind = run % 3;
        // Even rounds: anywhere in the run. Odd rounds: around the flip point (±20 %).
        let targeted = (run / 3) % 2 == 1;
        let delay = Duration::from_micros(if targeted {
            flip[kind] * 8 / 10 + rng.below(flip[kind] * 4 / 10 + 1)
        } else {
            rng.below(durations[kind].as_micros() as u64 + 1)
        });
        let before_new = tally[kind].new;
        match kind {
            0 => {
                let name = format!("c{run}");
                let args = create_args(&name);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let k = kill_after(&s, &args, delay);
                let killed = k.killed;
                s.verify_ok(&a);
                assert_recovered(&s);
                let (code, out, err) = s.v(&["env", "show", &name, "-o", "json"]);
                let exists = code == 0;
                if exists {
                    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
                    assert_eq!(view["audit_events"], 1, "{name}");
                    assert_eq!(s.recipients(&name), [ra, rb], "{name}");
                    let plain = s.export(&a, &name);
                    for key in [&a, &b] {
                        assert!(
                            s.age_decrypt(&key.file, &bundle_path(&name)).as_ref() == Some(&plain),
                            "{name}: {} cannot open bundle.age",
                            key.file
                        );
                    }
                } else {
                    assert!(killed, "{name}: finished but does not exist");
                    assert_eq!(
                        (code, err.as_str()),
                        (
                            1,
                            format!(
                                "error: environment \"{name}\" does not exist\nhint: list environments with `talvault env list`\n"
                            )
                            .as_str()
                        )
                    );
                    assert!(!s.ok(&["env", "list"]).contains(&format!("{name}\t")));
                    // Nothing left in the way of a retry.
                    s.create(&name, &[ra]);
                }
                tally[0].add(&k, exists);
            }
            1 => {
                restore_b();
                let before = s.events("r").len();
                let args: Vec<&str> = remove_args.iter().map(String::as_str).collect();
                let k = kill_after(&s, &args, delay);
                let killed = k.killed;
                s.verify_ok(&a);
                assert_recovered(&s);
                let listed = s.recipients("r");
                let events = s.events("r");
                let new = if listed == [ra, rb] {
                    assert_eq!(events.len(), before, "run {run}: event without the change");
                    assert!(killed, "run {run}: finished but nothing changed");
                    false
                } else if listed == [ra] {
                    assert_eq!(events.len(), before + 1, "run {run}: change without event");
                    assert_eq!(events.last().unwrap()["action"], "recipients.remove");
                    true
                } else {
                    panic!(
                        "run {run}: recipients.txt is neither the old nor the new set: {listed:?}"
                    );
                };
                // The key that stays opens it through talvault, and the plaintext never changes.
                assert!(s.export(&a, "r") == r_plain, "run {run}: bundle changed");
                // recipients.txt and bundle.age agree: every listed key opens it, and the
                // removed key does not once it is no longer listed.
                for key in [&a, &b] {
                    let listed_key = listed.contains(&key.recipient);
                    let opens = s.age_decrypt(&key.file, &bundle_path("r"));
                    assert_eq!(
                        opens.is_some(),
                        listed_key,
                        "run {run}: {} listed={listed_key} but opens={}",
                        key.file,
                        opens.is_some()
                    );
                    if let Some(p) = opens {
                        assert!(p == r_plain, "run {run}: age -d differs");
                    }
                }
                tally[1].add(&k, new);
            }
            _ => {
                let before = s.events("x").len();
                let args: Vec<&str> = export_args.iter().map(String::as_str).collect();
                let k = kill_after(&s, &args, delay);
                let killed = k.killed;
                s.verify_ok(&a);
                assert_recovered(&s);
                let after = s.events("x").len();
                assert!(
                    after == before || after == before + 1,
                    "run {run}: {before} -> {after} events"
                );
                if !killed {
                    assert_eq!(after, before + 1, "run {run}: export without event");
                }
                if after == before + 1 {
                    assert_eq!(s.events("x").last().unwrap()["action"], "bundle.export");
                }
                assert!(s.export(&a, "x") == x_plain, "run {run}: bundle changed");
                tally[2].add(&k, after != before);
            }
        }
        if targeted {
            flip[kind] = if tally[kind].new > before_new {
                flip[kind] * 9 / 10
            } else {
                flip[kind] * 11 / 10
            };
        }
    }
    eprintln!(
        "100 runs in {:?}; flip points {flip:?} µs; create, remove, export: {tally:#?}",
        started.elapsed()
    );
    // The delays reached into the commands: some runs were cut short, some got through.
    let killed: usize = tally.iter().map(|t| t.killed).sum();
    let new: usize = tally.iter().map(|t| t.new).sum();
    assert!(killed > 0 && new > 0, "{tally:?}");
    // And some kills landed inside a commit (staging, or between journal and last rename).
    let in_commit: usize = tally.iter().map(|t| t.staged + t.journal).sum();
    assert!(in_commit > 0, "{tally:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Two processes at once

#[test]
fn concurrent_mutations_wait_for_the_lock() {
    if !have("age") || !have("age-keygen") {
        return;
    }
    const EXPORTS: usize = 12;
    const CHANGES: usize = 10;
    let s = Sandbox::new();
    s.init();
    let a = s.keygen("a");
    let b = s.keygen("b");
    s.create("prod", &[&a.recipient]);
    let plain = s.export(&a, "prod");
    let base = s.events("prod").len();

    let (s, a, b, plain) = (&s, &a, &b, &plain);
    std::thread::scope(|scope| {
        let exporters: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(move || {
                    for _ in 0..EXPORTS {
                        let (code, out, err) = s.v(&["-i", &a.file, "bundle", "export", "prod"]);
                        assert_eq!(code, 0, "export: {err}");
                        assert!(out.as_bytes() == plain, "export differs");
                    }
                })
            })
            .collect();
        let changer = scope.spawn(move || {
            for i in 0..CHANGES {
                let verb = if i % 2 == 0 { "add" } else { "remove" };
                let (code, _, err) = s.v(&[
                    "-i",
                    &a.file,
                    "recipients",
                    verb,
                    "prod",
                    "-r",
                    &b.recipient,
                ]);
                assert_eq!(code, 0, "recipients {verb}: {err}");
            }
        });
        for t in exporters {
            t.join().unwrap();
        }
        changer.join().unwrap();
    });

    let events = s.events("prod");
    assert_eq!(events.len(), base + 2 * EXPORTS + CHANGES);
    let out = s.verify_ok(a);
    assert_eq!(
        out,
        format!(
            "prod: ok, {} events, 1 head(s), 7 files accounted for, authenticated\n",
            events.len()
        )
    );
    // Serialised by the lock: a single chain, each event on top of the one before.
    for pair in events.windows(2) {
        assert_eq!(pair[1]["parents"], serde_json::json!([pair[0]["id"]]));
    }
    assert_eq!(s.recipients("prod"), [a.recipient.as_str()]);
    assert!(s.age_decrypt(&b.file, &bundle_path("prod")).is_none());
}

// ---------------------------------------------------------------------------------------------
// 5. Tampering with the audit trail

#[test]
fn audit_verify_catches_tampering_and_accepts_merges() {
    if !have("age-keygen") {
        return;
    }
    let base = Sandbox::new();
    base.init();
    let a = base.keygen("a");
    base.create("prod", &[&a.recipient]);
    for _ in 0..3 {
        base.export(&a, "prod");
    }
    let events = base.events("prod");
    assert_eq!(events.len(), 4);
    let id = |i: usize| events[i]["id"].as_str().unwrap().to_owned();

    // Each case on a fresh copy of the vault.
    let fresh = || {
        let s = Sandbox::new();
        copy_dir(&base.path("v"), &s.path("v"));
        copy_dir(&base.path("home"), &s.path("home"));
        s
    };
    let tampered = |s: &Sandbox, what: &str, kind: &str| {
        for args in [
            &["-i", &a.file, "audit", "verify"][..],
            &["-i", &a.file, "audit", "verify", "prod"],
            &["audit", "verify", "prod"],
        ] {
            let (code, out, err) = s.v(args);
            assert_eq!((code, err.as_str()), (1, ""), "{what}: {out}");
            assert!(out.starts_with("prod: TAMPERED, "), "{what}: {out}");
            assert!(out.contains(&format!("  {kind}: ")), "{what}: {out}");
        }
    };

    // An edited field (the actor of the first event, which has a child).
    let s = fresh();
    let f = event_file(&s, "prod", &id(0));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("\"actor\": \"alice\""));
    std::fs::write(
        &f,
        text.replace("\"actor\": \"alice\"", "\"actor\": \"mallory\""),
    )
    .unwrap();
    tampered(&s, "edited actor", "Edited");

    // An edited data field of a middle event.
    let s = fresh();
    let f = event_file(&s, "prod", &id(1));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains("\"destination\": \"stdout\""));
    std::fs::write(&f, text.replace("\"stdout\"", "\"file\"")).unwrap();
    tampered(&s, "edited data", "Edited");

    // A deleted event that has a child.
    let s = fresh();
    std::fs::remove_file(event_file(&s, "prod", &id(1))).unwrap();
    tampered(&s, "deleted", "Deleted");

    // Two event files' contents swapped.
    let s = fresh();
    let (f1, f2) = (
        event_file(&s, "prod", &id(1)),
        event_file(&s, "prod", &id(2)),
    );
    let (t1, t2) = (std::fs::read(&f1).unwrap(), std::fs::read(&f2).unwrap());
    std::fs::write(&f1, &t2).unwrap();
    std::fs::write(&f2, &t1).unwrap();
    tampered(&s, "swapped", "Reordered");

    // The untouched base is intact.
    assert_eq!(
        base.verify_ok(&a),
        "prod: ok, 4 events, 1 head(s), 7 files accounted for, authenticated\n"
    );

    // A git-merge-like second head: two clones each add an event on the same parent, then
    // one gets the other's files.
    let s = fresh();
    copy_dir(&s.path("v"), &s.path("v2"));
    let (code, _, err) = s.run_in("v", "alice", &["-i", &a.file, "bundle", "export", "prod"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = s.run_in("v2", "bob", &["-i", &a.file, "bundle", "export", "prod"]);
    assert_eq!(code, 0, "{err}");
    let mut copied = 0;
    for f in files_below(&s.path("v2/envs/prod/audit")) {
        let target = s.path("v").join(f.strip_prefix(s.path("v2")).unwrap());
        if !target.exists() {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&f, &target).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, 1);
    let (code, out, err) = s.v(&["-i", &a.file, "audit", "verify"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "prod: ok, 6 events, 2 head(s), 7 files accounted for, authenticated\n",
            ""
        )
    );
    // The next event names both heads; one head again.
    s.export(&a, "prod");
    let merged = s.events("prod");
    assert_eq!(
        merged.last().unwrap()["parents"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        s.verify_ok(&a),
        "prod: ok, 7 events, 1 head(s), 7 files accounted for, authenticated\n"
    );
}

/// The heads a new event names come from the record cache (`.cache/ENV/audit-YYYY-MM.idx`):
/// once a month directory has settled, its event files are not read again, yet a file added to
/// it (a merge, another clone's event) is seen, and `audit verify` never relies on the cache.
#[test]
fn audit_heads_come_from_the_cache_and_merges_are_still_seen() {
    if !have("age-keygen") || !have("touch") {
        return;
    }
    let s = Sandbox::new();
    s.init();
    let a = s.keygen("a");
    s.create("prod", &[&a.recipient]);
    s.export(&a, "prod");
    let events = s.events("prod");
    assert_eq!(events.len(), 2);
    let month_dir = event_file(&s, "prod", events[0]["id"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned();
    let month = month_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let year = month_dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cache = s.path(&format!("v/.cache/prod/audit-{year}-{month}.idx"));
    assert!(cache.is_file(), "no audit cache after a commit");

    // Settle the directory (as if the last change were a minute old), let one command record
    // that in the cache, and check the cache names both events.
    // Each time a different past time: a directory time only moves forward in real use, and the
    // cache takes an unchanged (inode, time) to mean an unchanged directory.
    let settled = std::cell::Cell::new(0);
    let settle = || {
        settled.set(settled.get() + 1);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 100
            + settled.get();
        let out = std::process::Command::new("touch")
            .args(["-m", "-d", &format!("@{t}")])
            .arg(&month_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    settle();
    s.export(&a, "prod");
    settle();
    s.export(&a, "prod");
    let events = s.events("prod");
    assert_eq!(events.len(), 4);
    let last = events[3]["id"].as_str().unwrap().to_owned();
    settle();
    s.export(&a, "prod"); // builds the settled cache
    let events = s.events("prod");
    let last = {
        assert_eq!(events[4]["parents"][0].as_str().unwrap(), last);
        events[4]["id"].as_str().unwrap().to_owned()
    };
    // The cache holds what the command read before its commit: every event but its own.
    let text = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(text.lines().count(), 1 + 4, "{text}");
    assert!(!text.contains(&last), "{text}");
    assert!(text.contains(events[3]["id"].as_str().unwrap()), "{text}");

    // A cached event file is not read again: rewritten in place (same inode) to claim a made-up
    // event whose parent is the head, it would make that made-up event the head for a command
    // that read every file. The next event still names the real head...
    settle();
    s.export(&a, "prod");
    let events = s.events("prod");
    let head = events.last().unwrap()["id"].as_str().unwrap().to_owned();
    let fake = "f".repeat(64);
    let victim = event_file(&s, "prod", events[1]["id"].as_str().unwrap());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&victim)
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        format!("{{\"id\": \"{fake}\", \"parents\": [\"{head}\"]}}").as_bytes(),
    )
    .unwrap();
    drop(file);
    settle();
    s.export(&a, "prod");
    let newest: Vec<serde_json::Value> = files_below(&s.path("v/envs/prod/audit"))
        .iter()
        .map(|f| serde_json::from_slice::<serde_json::Value>(&std::fs::read(f).unwrap()).unwrap())
        .filter(|e| e["id"] != fake.as_str() && e["parents"][0] == head.as_str())
        .collect();
    assert_eq!(newest.len(), 1, "the new event does not name the real head");
    assert_eq!(newest[0]["parents"].as_array().unwrap().len(), 1);
    // ...while `audit verify` reads every file and reports the rewrite.
    let (code, out, _) = s.v(&["audit", "verify", "prod"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("prod: TAMPERED"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input: exact message, non-zero exit, vault untouched

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !have("age-keygen") {
        return;
    }
    let s = Sandbox::new();
    let a = s.keygen("a");
    let b = s.keygen("b");
    let c = s.keygen("c");
    s.init();
    s.create("prod", &[&a.recipient]);
    s.create("stage", &[&a.recipient]);
    copy_dir(&s.path("v"), &s.path("base"));
    let reset = || {
        std::fs::remove_dir_all(s.path("v")).unwrap();
        copy_dir(&s.path("base"), &s.path("v"));
    };
    let c_secret = std::fs::read_to_string(s.path(&c.file))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_owned();
    std::fs::write(
        s.path("recipients.txt"),
        format!("# team\n{}\nnot a key\n", b.recipient),
    )
    .unwrap();
    std::fs::copy(s.path(&a.file), s.path("home/open.key")).unwrap();
    std::fs::set_permissions(
        s.path("home/open.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(s.path("out.yaml"), "keep me\n").unwrap();

    let bundle = s.path(&bundle_path("prod"));
    let set_bundle = |bytes: &[u8]| std::fs::write(&bundle, bytes).unwrap();
    let original = std::fs::read(&bundle).unwrap();

    type Setup<'a> = Box<dyn Fn() + 'a>;
    let none: fn() -> Setup<'static> = || Box::new(|| {});
    let (ai, bi) = (a.file.as_str(), b.file.as_str());
    let (ra, rb, secret) = (
        a.recipient.as_str(),
        b.recipient.as_str(),
        c_secret.as_str(),
    );
    let cases: Vec<(&str, Setup, Vec<&str>, i32)> = vec![
        (
            "wrong-identity",
            none(),
            vec!["-i", bi, "bundle", "export", "prod"],
            1,
        ),
        ("no-identity", none(), vec!["bundle", "export", "prod"], 1),
        (
            "corrupted-bundle",
            Box::new(|| {
                // Flip one base64 character in the middle of the armored body: a payload chunk.
                let mut d = original.clone();
                let mut i = d.len() / 2;
                while !d[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                d[i] = if d[i] == b'A' { b'B' } else { b'A' };
                set_bundle(&d);
            }),
            vec!["-i", ai, "bundle", "export", "prod"],
            1,
        ),
        (
            "truncated-bundle",
            Box::new(|| {
                // Cut at the line end after the middle, like an interrupted copy.
                let half = original.len() / 2;
                let end = half + original[half..].iter().position(|&c| c == b'\n').unwrap() + 1;
                set_bundle(&original[..end]);
            }),
            vec!["-i", ai, "bundle", "export", "prod"],
            1,
        ),
        (
            "recipient-is-a-secret-key",
            none(),
            vec!["-i", ai, "recipients", "add", "prod", "-r", secret],
            2,
        ),
        (
            "recipient-is-random-text",
            none(),
            vec!["-i", ai, "recipients", "add", "prod", "-r", "hello world"],
            2,
        ),
        (
            "create-with-random-recipient",
            none(),
            vec![
                "env",
                "create",
                "dev",
                "-r",
                "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
                "--talos-version",
                "v1.6",
            ],
            2,
        ),
        (
            "recipients-file-with-a-non-age-line",
            none(),
            vec![
                "-i",
                ai,
                "recipients",
                "add",
                "prod",
                "-R",
                "recipients.txt",
            ],
            2,
        ),
        (
            "missing-environment",
            none(),
            vec!["-i", ai, "bundle", "export", "nope"],
            1,
        ),
        (
            "environment-exists",
            none(),
            vec!["env", "create", "prod", "-r", rb, "--talos-version", "v1.6"],
            1,
        ),
        (
            "invalid-name-traversal",
            none(),
            vec!["env", "create", "../x", "-r", rb, "--talos-version", "v1.6"],
            1,
        ),
        (
            "invalid-name-uppercase",
            none(),
            vec!["env", "create", "Prod", "-r", rb, "--talos-version", "v1.6"],
            1,
        ),
        (
            "newer-format",
            Box::new(|| {
                let p = s.path("v/talvault.yaml");
                let t = std::fs::read_to_string(&p).unwrap();
                assert!(t.contains("format_version: 2\n"));
                std::fs::write(&p, t.replace("format_version: 2\n", "format_version: 99\n"))
                    .unwrap();
            }),
            vec!["-i", ai, "bundle", "export", "prod"],
            1,
        ),
        (
            "pin-mismatch",
            Box::new(|| {
                std::fs::copy(s.path(&bundle_path("stage")), &bundle).unwrap();
            }),
            vec!["-i", ai, "bundle", "export", "prod"],
            1,
        ),
        (
            "remove-unknown-recipient",
            none(),
            vec!["-i", ai, "recipients", "remove", "prod", "-r", rb],
            1,
        ),
        (
            "remove-last-recipient",
            none(),
            vec!["-i", ai, "recipients", "remove", "prod", "-r", ra],
            1,
        ),
        (
            "identity-file-mode-0644",
            none(),
            vec!["-i", "home/open.key", "bundle", "export", "prod"],
            1,
        ),
        (
            "export-over-existing-file",
            none(),
            vec!["-i", ai, "bundle", "export", "prod", "-o", "out.yaml"],
            1,
        ),
        (
            "exec-without-placeholder",
            none(),
            vec![
                "-i",
                ai,
                "bundle",
                "exec",
                "prod",
                "--",
                "cat",
                "secrets.yaml",
            ],
            2,
        ),
    ];
    let mut all = String::new();
    let mut check = |name: &str, code: i32, out: &str, err: &str, want: i32, before: &Tree| {
        assert_eq!(code, want, "{name}: {err}");
        assert_eq!(out, "", "{name}: stdout");
        let after = tree(&s.path("v"));
        assert_eq!(changed(before, &after), Vec::<String>::new(), "{name}");
        assert!(
            !err.contains(&c_secret[12..]),
            "{name}: the secret key is echoed"
        );
        all.push_str(&format!("## {name}\n{err}"));
    };
    for (name, setup, args, want) in &cases {
        reset();
        setup();
        let before = tree(&s.path("v"));
        let mut full = vec!["--vault", "v"];
        full.extend_from_slice(args);
        let (code, out, err) = s.raw(&full, &[]);
        check(name, code, &out, &err, *want, &before);
    }

    // The lock held by another holder (a second open file description in this process excludes
    // just like another process does: it is flock(2)).
    reset();
    let before = tree(&s.path("v"));
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(s.path("v/.lock"))
        .unwrap();
    lock.lock().unwrap();
    let started = Instant::now();
    let (code, out, err) = s.raw(
        &[
            "--vault",
            "v",
            "--lock-timeout",
            "1",
            "-i",
            ai,
            "bundle",
            "export",
            "prod",
        ],
        &[],
    );
    let waited = started.elapsed();
    lock.unlock().unwrap();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    check("lock-held", code, &out, &err, 1, &before);

    assert_eq!(std::fs::read(s.path("out.yaml")).unwrap(), b"keep me\n");
    snapshot("vault-bad-input.txt", &all);
    // And once the input is right, the same vault works.
    reset();
    assert!(s.export(&a, "prod").starts_with(b"cluster:\n"));
    assert_matches(
        "prod: ok, 2 events, 1 head(s), 7 files accounted for, authenticated\n",
        &s.ok(&["-i", &a.file, "audit", "verify", "prod"]),
    );
}
