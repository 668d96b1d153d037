//! Sealed backups, black-box: the real binary against a real etcd (snapshot, seal, verify, open,
//! `etcdctl snapshot restore`, a second etcd reading the keys back), the Go `age` CLI opening
//! what we seal (a backup-only key opens backups, never the bundle), damaged backups refused
//! with nothing written, recipients changes naming stale backups, reseal, prune, status grading
//! and the machine-config drill. Every process runs in a private directory; etcd runs without
//! libfaketime (the date sweep must not freeze its timers).

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;

use crate::support::{have, talvault_env};

/// The etcd snapshot vector (tests/data/etcd/README.md).
fn snapshot_vector() -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/etcd/snapshot-3.4.23.db"),
    )
    .unwrap()
}

/// An age identity file in the sandbox and its recipient.
struct Key {
    file: String,
    recipient: String,
}

/// A private directory: `v/` (the vault), `home/`, `tmp/`; keys a, b and dr (disaster
/// recovery) made with the age crate.
struct Sandbox {
    _root: tempfile::TempDir,
    dir: PathBuf,
    a: Key,
    b: Key,
    dr: Key,
}

impl Sandbox {
    /// A vault with environment `prod` sealed to a, and dr as its backup-only recipient.
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_path_buf();
        for d in ["home", "tmp", "store"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let key = |name: &str| {
            #[expect(
                deprecated,
                reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
            )]
            let id = age::x25519::Identity::generate();
            let file = format!("home/{name}.key");
            std::fs::write(
                dir.join(&file),
                format!("{}\n", id.to_string().expose_secret()),
            )
            .unwrap();
            std::fs::set_permissions(dir.join(&file), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            Key {
                file,
                recipient: id.to_public().to_string(),
            }
        };
        let s = Sandbox {
            a: key("a"),
            b: key("b"),
            dr: key("dr"),
            dir,
            _root: root,
        };
        s.run_ok(&["init", "v"]);
        // Contract v1.6: an ECDSA service-account key, not a slow RSA-4096 one.
        s.ok(&[
            "env",
            "create",
            "prod",
            "-r",
            &s.a.recipient,
            "--endpoint",
            "10.0.0.1",
            "--talos-version",
            "v1.6",
        ]);
        s.ok(&[
            "recipients",
            "add",
            "prod",
            "--backup-only",
            "-r",
            &s.dr.recipient,
        ]);
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), self.path("home").display().to_string()),
            ("TMPDIR".into(), self.path("tmp").display().to_string()),
            ("TALVAULT_ACTOR".into(), "alice".into()),
            // Format 2: every command that records an event opens the audit keys; `-i`
            // overrides this where a test acts as someone else.
            (
                "TALVAULT_IDENTITY".into(),
                self.path(&self.a.file).display().to_string(),
            ),
            ("SOPS_AGE_KEY_FILE".into(), String::new()),
            ("TALVAULT_VAULT".into(), String::new()),
            ("TALVAULT_PASSPHRASE".into(), String::new()),
        ]
    }

    /// `talvault ARGS` (no `--vault`).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let envs = self.envs();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        talvault_env(&self.dir, args, &envs)
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "talvault {args:?}: {err}");
        out
    }

    /// `talvault --vault v ARGS`.
    fn v(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["--vault", "v"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.v(args);
        assert_eq!(code, 0, "talvault {args:?}: {err}");
        out
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        std::fs::write(self.path(rel), bytes).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }

    /// Seals `rel` into `out` with `args`; returns the backup id.
    fn seal(&self, rel: &str, out: &str, args: &[&str]) -> String {
        let mut all = vec!["backup", "seal", "prod", rel, "-o", out];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        text.strip_prefix("sealed backup ")
            .and_then(|t| t.get(..16))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned()
    }

    /// The audit event files of prod.
    fn events(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["audit", "log", "prod", "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    fn actions(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every file below the sandbox, with its size (to prove nothing else was written).
    fn files(&self) -> Vec<(String, u64)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((rel, e.metadata().unwrap().len()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &self.dir, &mut out);
        out.sort();
        out
    }

    /// Runs a tool in the sandbox; `(success, stdout, stderr)`.
    fn tool(&self, program: &str, args: &[&str]) -> (bool, Vec<u8>, String) {
        let o = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.success(),
            o.stdout,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

/// Bytes that look random (and are distinct per `seed`), not compressible to anything.
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = [seed; 32];
    while out.len() < len {
        block = talvault::digest::sha256(&block);
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

// --- a real etcd -----------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd tool with a clean environment: v3 API, and no libfaketime (the date sweep preloads
/// it into the test binary; etcd's timers must run on the real clock).
fn etcd_tool(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("ETCDCTL_API", "3")
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .env_remove("FAKETIME_SHARED")
        .stdin(Stdio::null());
    c
}

/// A single-member etcd on loopback ports, killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
}

impl Etcd {
    /// Starts `name` on `data_dir` (created, or restored into already) with `peer_port`.
    fn start(dir: &Path, name: &str, data_dir: &str, peer_port: u16) -> Etcd {
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = etcd_tool("etcd")
            .current_dir(dir)
            .args(["--name", name, "--data-dir", data_dir])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let etcd = Etcd {
            child,
            endpoint: client,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = etcd
                .ctl(dir, &["endpoint", "health"])
                .is_some_and(|o| o.contains("is healthy"));
            if ok {
                return etcd;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {name} did not become healthy: {}",
                std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcdctl --endpoints E ARGS`: stdout and stderr, or None when it failed.
    fn ctl(&self, dir: &Path, args: &[&str]) -> Option<String> {
        let o = etcd_tool("etcdctl")
            .current_dir(dir)
            .args(["--endpoints", &self.endpoint])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o.status.success().then_some(text)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole job with real components: etcd → `etcdctl snapshot save` → `backup seal` → the Go
/// age CLI opens it with a recipient's and the backup-only identity → `backup verify` →
/// `backup open -o` → `etcdctl snapshot restore` → a second etcd serves the keys again.
#[test]
fn a_real_etcd_snapshot_is_sealed_verified_opened_restored_and_served_again() {
    if !(have("etcd") && have("etcdctl") && have("age")) {
        return;
    }
    let s = Sandbox::new();
    let first = Etcd::start(&s.dir, "one", "data-one", free_port());
    for i in 0..200 {
        let (k, v) = (
            format!("/talvault/k{i:03}"),
            format!("value-{i}-{}", "x".repeat(i)),
        );
        assert!(first.ctl(&s.dir, &["put", &k, &v]).is_some(), "put {k}");
    }
    let saved = first.ctl(&s.dir, &["snapshot", "save", "snap.db"]);
    assert!(saved.is_some(), "snapshot save");
    drop(first);
    let snapshot = s.read("snap.db");

    // Seal: no plaintext written anywhere but the input the operator gave.
    let before = s.files();
    let id = s.seal("snap.db", "store/prod-1.age", &["--label", "nightly"]);
    let new_files: Vec<String> = s
        .files()
        .into_iter()
        .filter(|f| !before.contains(f))
        .map(|f| f.0)
        .collect();
    for f in &new_files {
        assert!(
            f == "store/prod-1.age"
                || f.starts_with("v/envs/prod/backups/")
                || f.starts_with("v/envs/prod/audit/")
                || f.starts_with("v/.cache/"),
            "seal wrote {f}: {new_files:?}"
        );
    }
    let record = String::from_utf8(s.read(&format!("v/envs/prod/backups/{id}.yaml"))).unwrap();
    assert!(record.contains("format: etcd-snapshot"), "{record}");
    assert!(
        record.contains(&talvault::hex::encode(&snapshot[snapshot.len() - 32..])),
        "the snapshot's own hash is recorded: {record}"
    );

    // The Go age CLI opens it with the environment's key and the backup-only key…
    for key in [&s.a, &s.dr] {
        let (ok, plain, err) = s.tool("age", &["-d", "-i", &key.file, "store/prod-1.age"]);
        assert!(ok && plain == snapshot, "age -d -i {}: {err}", key.file);
    }
    // …and the backup-only key opens no bundle.
    let (ok, _, _) = s.tool("age", &["-d", "-i", &s.dr.file, "v/envs/prod/bundle.age"]);
    assert!(!ok, "a backup-only key opened the bundle");
    let (code, _, err) = s.v(&["-i", &s.dr.file, "bundle", "export", "prod", "-o", "x.yaml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no identity matched"), "{err}");

    // Verify, with the backup-only key: nothing written but the audit event.
    let before = s.files();
    let out = s.ok(&[
        "-i",
        &s.dr.file,
        "backup",
        "verify",
        "prod",
        "store/prod-1.age",
    ]);
    assert!(
        out.starts_with(&format!("verified backup {id} (nightly)")),
        "{out}"
    );
    for f in s.files().into_iter().filter(|f| !before.contains(f)) {
        assert!(
            f.0.starts_with("v/envs/prod/audit/") || f.0.starts_with("v/.cache/"),
            "verify wrote {f:?}"
        );
    }
    assert_eq!(
        s.actions().last().map(String::as_str),
        Some("backup.verify")
    );

    // Open to a 0600 file, restore it with etcdctl, serve it with a second etcd.
    s.ok(&[
        "-i",
        &s.a.file,
        "backup",
        "open",
        "prod",
        "store/prod-1.age",
        "-o",
        "restored.db",
    ]);
    assert_eq!(s.read("restored.db"), snapshot);
    let mode = std::fs::metadata(s.path("restored.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let peer = free_port();
    let restore = etcd_tool("etcdctl")
        .current_dir(&s.dir)
        .args([
            "snapshot",
            "restore",
            "restored.db",
            "--data-dir",
            "data-two",
        ])
        .args(["--name", "two"])
        .args(["--initial-cluster", &format!("two=http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let second = Etcd::start(&s.dir, "two", "data-two", peer);
    let keys = second
        .ctl(
            &s.dir,
            &["get", "/talvault/", "--prefix", "--print-value-only"],
        )
        .unwrap();
    let values: Vec<&str> = keys.lines().collect();
    assert_eq!(values.len(), 200, "{keys}");
    assert_eq!(values[7], format!("value-7-{}", "x".repeat(7)));
    let audit = s.actions();
    assert!(
        audit.ends_with(&["backup.verify".into(), "backup.open".into()]),
        "{audit:?}"
    );
    let (code, out, _) = s.v(&["audit", "verify", "prod"]);
    assert_eq!(code, 0, "{out}");
}

/// A flipped ciphertext byte, a truncated file and a damaged snapshot: `verify` and `open` say
/// so, write no plaintext, and record nothing.
#[test]
fn damaged_backups_are_refused_with_nothing_written() {
    let s = Sandbox::new();
    // Three age chunks, so damage in the last one comes after plaintext has flowed.
    s.write("data.bin", &noise(150_000, 1));
    let id = s.seal("data.bin", "store/d.age", &[]);
    let sealed = s.read("store/d.age");
    let mut flipped = sealed.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x40;
    s.write("store/flipped.age", &flipped);
    s.write("store/truncated.age", &sealed[..sealed.len() - 5000]);
    s.write("store/stub.age", &sealed[..50]);
    let mut appended = sealed.clone();
    appended.extend_from_slice(b"tail");
    s.write("store/appended.age", &appended);
    let events = s.events().len();
    let size = |len: usize| {
        format!(
            "(backup {id}): the sealed file is {len} bytes, the record says {}",
            sealed.len()
        )
    };
    for (file, message) in [
        (
            "store/flipped.age",
            format!("(backup {id}) is damaged: a chunk failed authentication"),
        ),
        ("store/truncated.age", size(sealed.len() - 5000)),
        (
            "store/stub.age",
            "is not a backup recorded for environment \"prod\"".to_owned(),
        ),
        ("store/appended.age", size(sealed.len() + 4)),
    ] {
        for cmd in [
            vec!["backup", "verify", "prod", file],
            vec!["backup", "open", "prod", file, "-o", "out.bin"],
        ] {
            let mut args = vec!["-i", s.a.file.as_str()];
            args.extend(&cmd);
            let (code, out, err) = s.v(&args);
            assert_eq!(code, 1, "{cmd:?}: {err}");
            assert!(out.is_empty(), "{out}");
            assert!(err.contains(&message), "{cmd:?}: {err}");
            assert!(err.contains("\nhint: "), "{err}");
            assert!(!s.path("out.bin").exists(), "{cmd:?} left plaintext");
        }
    }
    // Nothing at all in the output's directory (no temporary file either), no event.
    let leftovers: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".talvault"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(s.events().len(), events);

    // A program that reads the stream has bytes before the damage shows: non-zero, and said.
    let (code, _, err) = s.v(&[
        "-i",
        &s.a.file,
        "backup",
        "open",
        "prod",
        "store/flipped.age",
        "--",
        "sh",
        "-c",
        "cat \"$1\" > got.bin",
        "sh",
        "{}",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("bytes of backup {id} had already gone to sh")),
        "{err}"
    );
    assert!(
        err.contains("hint: discard whatever sh made of them"),
        "{err}"
    );
    assert_eq!(
        s.read("got.bin").len(),
        131_072,
        "the two intact chunks went through"
    );
    assert_eq!(s.actions().last().map(String::as_str), Some("backup.open"));
}

/// A snapshot whose appended SHA-256 does not match its contents is refused by `seal`; and
/// should such a backup exist (sealed by other means, its record edited to match), `verify` and
/// `open` refuse it for the snapshot's own hash.
#[test]
fn a_snapshot_with_a_wrong_trailer_is_refused_at_every_step() {
    let s = Sandbox::new();
    let good = snapshot_vector();
    let mut bad = good.clone();
    bad[9000] ^= 1;
    s.write("bad.db", &bad);
    let (code, _, err) = s.v(&["backup", "seal", "prod", "bad.db", "-o", "store/bad.age"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.db: the etcd snapshot is damaged: its SHA-256 trailer says"),
        "{err}"
    );
    assert!(!s.path("store/bad.age").exists());
    assert!(!s.path("v/envs/prod/backups").exists());
    // Truncated at a page boundary: still ≡ 32 (mod 512), which `snapshot save` would accept.
    s.write("cut.db", &good[..good.len() - 4096]);
    let (code, _, err) = s.v(&["backup", "seal", "prod", "cut.db", "-o", "store/cut.age"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the etcd snapshot is truncated: 28704 bytes"),
        "{err}"
    );

    // Seal the intact one, then forge: the damaged snapshot sealed with age directly and the
    // record edited to vouch for its bytes.
    s.write("good.db", &good);
    let id = s.seal("good.db", "store/good.age", &[]);
    let rec_path = format!("v/envs/prod/backups/{id}.yaml");
    let record = String::from_utf8(s.read(&rec_path)).unwrap();
    #[expect(
        deprecated,
        reason = "X25519 recipients, as vaults use them (age 0.13 prefers post-quantum ones)"
    )]
    let recipient: age::x25519::Recipient = s.a.recipient.parse().unwrap();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let mut forged_file = Vec::new();
    let mut w = encryptor.wrap_output(&mut forged_file).unwrap();
    w.write_all(&bad).unwrap();
    w.finish().unwrap();
    s.write("store/forged.age", &forged_file);
    let hex = |b: &[u8]| talvault::hex::encode(&talvault::digest::sha256(b));
    let field = |yaml: &str, key: &str| -> String {
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap()
            .to_owned()
    };
    let sealed_block = record.split("sealed:").nth(1).unwrap().to_owned();
    // The head: the age header (up to its MAC line) and the 16-byte nonce.
    let mac = forged_file.windows(4).position(|w| w == b"\n---").unwrap() + 1;
    let head_len = mac + forged_file[mac..].iter().position(|b| *b == b'\n').unwrap() + 1 + 16;
    let forged = record
        .replace(&field(&record, "sha256"), &hex(&bad))
        .replace(&field(&sealed_block, "sha256"), &hex(&forged_file))
        .replace(
            &field(&sealed_block, "head_sha256"),
            &hex(&forged_file[..head_len]),
        )
        .replace(
            &format!("head_len: {}", field(&sealed_block, "head_len")),
            &format!("head_len: {head_len}"),
        )
        .replace(
            &format!("size: {}", field(&sealed_block, "size")),
            &format!("size: {}", forged_file.len()),
        );
    s.write(&rec_path, forged.as_bytes());
    for cmd in [
        vec!["backup", "verify", "prod", "store/forged.age"],
        vec!["backup", "open", "prod", "store/forged.age", "-o", "out.db"],
    ] {
        let mut args = vec!["-i", s.a.file.as_str()];
        args.extend(&cmd);
        let (code, _, err) = s.v(&args);
        assert_eq!(code, 1, "{cmd:?}: {err}");
        // Format 2: the edited record is not the one the audit chain recorded, so nothing
        // is decrypted on its word.
        assert!(
            err.contains(&format!(
                "envs/prod/backups/{id}.yaml: its contents are not what audit event"
            )),
            "{cmd:?}: {err}"
        );
        assert!(!s.path("out.db").exists());
    }
}

/// `recipients add|remove` name the backups sealed to another set; `backup reseal` re-encrypts
/// them (a removed key no longer opens the new file), and only a new verify counts again.
#[test]
fn recipient_changes_name_stale_backups_and_reseal_brings_them_current() {
    let s = Sandbox::new();
    s.write("data.bin", &noise(70_000, 2));
    let id = s.seal("data.bin", "store/r.age", &[]);
    s.ok(&["-i", &s.a.file, "backup", "verify", "prod", "store/r.age"]);
    let out = s.ok(&[
        "-i",
        &s.a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &s.b.recipient,
    ]);
    assert!(
        out.contains("1 backup(s) are sealed to other recipients"),
        "{out}"
    );
    assert!(out.contains(&format!("  {id}  sealed ")), "{out}");
    assert!(out.contains("1 current recipient(s) cannot"), "{out}");
    assert!(out.contains("talvault backup reseal prod FILE"), "{out}");
    let out = s.ok(&[
        "-i",
        &s.b.file,
        "recipients",
        "remove",
        "prod",
        "-r",
        &s.a.recipient,
    ]);
    assert!(
        out.contains("1 removed recipient(s) can still open it"),
        "{out}"
    );
    let list = s.ok(&["backup", "list", "prod"]);
    assert!(
        list.contains("sealed to 1 removed recipient(s), not to 1 current one(s)"),
        "{list}"
    );

    // b cannot open it yet; a (removed) still can, but can no longer record anything: it
    // opens neither the audit keys nor the backup lane's. Reseal with both.
    let (code, _, err) = s.v(&["-i", &s.b.file, "backup", "verify", "prod", "store/r.age"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = s.v(&["-i", &s.a.file, "backup", "reseal", "prod", "store/r.age"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no identity matched"), "{err}");
    let out = s.ok(&[
        "-i",
        &s.a.file,
        "-i",
        &s.b.file,
        "backup",
        "reseal",
        "prod",
        "store/r.age",
    ]);
    assert!(
        out.starts_with(&format!("re-sealed backup {id} in store/r.age")),
        "{out}"
    );
    let (code, _, err) = s.v(&["-i", &s.a.file, "backup", "verify", "prod", "store/r.age"]);
    assert_eq!(code, 1);
    assert!(err.contains("no identity matched"), "{err}");
    let list = s.ok(&["backup", "list", "prod", "-o", "json"]);
    let views: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(views[0]["id"], id.as_str());
    assert_eq!(views[0]["sealed_to_removed"], 0);
    assert_eq!(views[0]["missing_current"], 0);
    assert!(views[0]["resealed"].is_string());
    // The earlier verification was of the old file: it no longer counts.
    assert!(views[0]["verified"].is_null(), "{views}");
    s.ok(&["-i", &s.dr.file, "backup", "verify", "prod", "store/r.age"]);
    s.ok(&[
        "-i",
        &s.b.file,
        "backup",
        "open",
        "prod",
        "store/r.age",
        "-o",
        "r.bin",
    ]);
    assert_eq!(s.read("r.bin"), noise(70_000, 2));
    assert!(s.actions().contains(&"backup.reseal".to_owned()));
    // Backup-only changes are audited, re-seal nothing but the backup lane's keys, and are
    // refused when pointless. (b is the recipient now.)
    let (code, _, err) = s.v(&[
        "-i",
        &s.b.file,
        "recipients",
        "add",
        "prod",
        "--backup-only",
        "-r",
        &s.b.recipient,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is already a recipient of environment"),
        "{err}"
    );
    let bundle = s.read("v/envs/prod/bundle.age");
    let lane = s.read("v/envs/prod/backup-audit.age");
    s.ok(&[
        "-i",
        &s.b.file,
        "recipients",
        "remove",
        "prod",
        "--backup-only",
        "-r",
        &s.dr.recipient,
    ]);
    assert_eq!(s.read("v/envs/prod/bundle.age"), bundle);
    // The lane rotated: the removed disaster-recovery key no longer opens its keys.
    assert_ne!(s.read("v/envs/prod/backup-audit.age"), lane);
    let (ok, _, _) = s.tool(
        "age",
        &["-d", "-i", &s.dr.file, "v/envs/prod/backup-audit.age"],
    );
    assert!(!ok, "a removed backup-only key opens the new lane keys");
    assert_eq!(s.ok(&["recipients", "list", "prod", "--backup-only"]), "");
    assert_eq!(
        s.actions().last().map(String::as_str),
        Some("backup-recipients.remove")
    );
}

/// `prune --keep N` removes the older records (one event) and prints where their files live;
/// the files themselves are left alone.
#[test]
fn prune_keeps_the_newest_and_names_the_files_to_delete() {
    let s = Sandbox::new();
    let mut ids = Vec::new();
    for i in 0..3u8 {
        s.write("data.bin", &noise(1000, i));
        ids.push(s.seal(
            "data.bin",
            &format!("store/p{i}.age"),
            &["--label", "nightly"],
        ));
        // Seal times have one-second resolution; newest-first needs distinct ones.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let out = s.ok(&["backup", "prune", "prod", "--keep", "2"]);
    let abs = s.path("store/p0.age").display().to_string();
    assert!(
        out.starts_with("removed 1 backup record(s) of prod, kept the 2 newest"),
        "{out}"
    );
    assert!(
        out.contains(&format!("  {abs}  ({}, sealed ", ids[0])),
        "{out}"
    );
    assert!(
        s.path("store/p0.age").exists(),
        "prune never deletes backups"
    );
    assert!(
        !s.path(&format!("v/envs/prod/backups/{}.yaml", ids[0]))
            .exists()
    );
    let list = s.ok(&["backup", "list", "prod"]);
    assert!(list.contains(&ids[1]) && list.contains(&ids[2]) && !list.contains(&ids[0]));
    assert!(
        list.find(&ids[2]) < list.find(&ids[1]),
        "newest first: {list}"
    );
    let events = s.events();
    let last = events.last().unwrap();
    assert_eq!(last["action"], "backup.prune");
    assert_eq!(last["data"]["removed"][0], ids[0].as_str());
    let out = s.ok(&["backup", "prune", "prod", "--keep", "5"]);
    assert!(out.starts_with("nothing to prune"), "{out}");
    assert_eq!(s.events().len(), events.len());
    let (code, _, _) = s.v(&["audit", "verify", "prod"]);
    assert_eq!(code, 0);
}

/// `status` grades backups: none verified, the newest verified older than `backup.max_age`,
/// and no backups at all only when the policy has a backup section.
#[test]
fn status_grades_the_newest_verified_backup_against_the_policy() {
    let s = Sandbox::new();
    let status = |s: &Sandbox| {
        let (code, out, err) = s.v(&["status", "prod"]);
        assert!(err.is_empty(), "{err}");
        (code, out)
    };
    let (code, out) = status(&s);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  backups: none recorded"), "{out}");
    let mut policy = String::from_utf8(s.read("v/envs/prod/policy.yaml")).unwrap();
    policy.push_str("backup:\n  max_age: 1h\n");
    s.write("v/envs/prod/policy.yaml", policy.as_bytes());
    s.ok(&["policy", "accept", "prod", "--reason", "test"]);
    let (code, out) = status(&s);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("BACKUP: no backups recorded, and policy.yaml has a backup section"),
        "{out}"
    );

    s.write("data.bin", b"any file at all");
    let id = s.seal("data.bin", "store/s.age", &[]);
    let (code, out) = status(&s);
    assert_eq!(code, 1);
    assert!(
        out.contains("BACKUP: none of 1 backup(s) has been verified"),
        "{out}"
    );
    s.ok(&["-i", &s.a.file, "backup", "verify", "prod", "store/s.age"]);
    let (code, out) = status(&s);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("  backups: 1, newest verified {id} sealed ")),
        "{out}"
    );
    let json = s.ok(&["status", "prod", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["backups"]["newest_verified"], id.as_str());
    let prom = s.ok(&["status", "prod", "-o", "prometheus"]);
    assert!(prom.contains("talvault_backups{env=\"prod\"} 1"), "{prom}");
    assert!(prom.contains("talvault_backup_newest_verified_sealed_seconds{env=\"prod\"} "));
    // Two seconds old against a one-second policy.
    let policy = String::from_utf8(s.read("v/envs/prod/policy.yaml"))
        .unwrap()
        .replace("max_age: 1h", "max_age: 1s");
    s.write("v/envs/prod/policy.yaml", policy.as_bytes());
    s.ok(&["policy", "accept", "prod", "--reason", "test"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (code, out) = status(&s);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BACKUP: the newest verified backup ({id}) is ")),
        "{out}"
    );
    assert!(out.contains("above backup.max_age 1s"), "{out}");
}

/// With `open_requires_reason`, `open` needs `--reason`, and the reason is in the event.
#[test]
fn the_policy_can_require_a_reason_to_open_a_backup() {
    let s = Sandbox::new();
    s.write("data.bin", b"contents");
    s.seal("data.bin", "store/o.age", &[]);
    let mut policy = String::from_utf8(s.read("v/envs/prod/policy.yaml")).unwrap();
    policy.push_str("backup:\n  open_requires_reason: true\n");
    s.write("v/envs/prod/policy.yaml", policy.as_bytes());
    s.ok(&["policy", "accept", "prod", "--reason", "test"]);
    let (code, _, err) = s.v(&[
        "-i",
        &s.a.file,
        "backup",
        "open",
        "prod",
        "store/o.age",
        "-o",
        "o.bin",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("requires a reason to open a backup"), "{err}");
    assert!(!s.path("o.bin").exists());
    s.ok(&[
        "-i",
        &s.a.file,
        "backup",
        "open",
        "prod",
        "store/o.age",
        "-o",
        "o.bin",
        "--reason",
        "restore drill DR-7",
    ]);
    assert_eq!(s.read("o.bin"), b"contents");
    let events = s.events();
    let last = events.last().unwrap();
    assert_eq!(last["data"]["reason"], "restore drill DR-7");
    assert_eq!(last["data"]["destination"], "file");
    assert_eq!(last["opened_by"], s.a.recipient.as_str());
}

/// Streams go to stdout too (sealed: for an uploader; opened: for a pipe), and `-` reads stdin.
#[test]
fn stdin_and_stdout_stream_both_ways() {
    let s = Sandbox::new();
    let data = noise(200_000, 9);
    s.write("data.bin", &data);
    let sealed = Command::new(env!("CARGO_BIN_EXE_talvault"))
        .args([
            "--vault",
            "v",
            "backup",
            "seal",
            "prod",
            "-",
            "-o",
            "-",
            "--location",
            "s3://b/p.age",
        ])
        .current_dir(&s.dir)
        .envs(s.envs())
        .stdin(std::fs::File::open(s.path("data.bin")).unwrap())
        .output()
        .unwrap();
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let report = String::from_utf8_lossy(&sealed.stderr);
    assert!(report.contains("file: s3://b/p.age"), "{report}");
    s.write("store/p.age", &sealed.stdout);
    let out = Command::new(env!("CARGO_BIN_EXE_talvault"))
        .args([
            "--vault",
            "v",
            "-i",
            &s.a.file,
            "backup",
            "open",
            "prod",
            "store/p.age",
            "-o",
            "-",
        ])
        .current_dir(&s.dir)
        .envs(s.envs())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data, "stdout is the plaintext");
}

/// A control-plane machine config (v1alpha1) carrying the secrets of `bundle` (a secrets.yaml),
/// as `talosctl gen config --with-secrets` lays them out: the same base64 values under their
/// machine-config names.
fn machine_config_from(bundle: &str) -> String {
    let b: serde_yaml::Value = serde_yaml::from_str(bundle).unwrap();
    let get = |path: &str| {
        path.split('.')
            .fold(&b, |v, k| &v[k])
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let pair = |ca: &str| {
        format!(
            "{{crt: {}, key: {}}}",
            get(&format!("certs.{ca}.crt")),
            get(&format!("certs.{ca}.key"))
        )
    };
    format!(
        "version: v1alpha1\nmachine:\n  type: controlplane\n  token: {}\n  ca: {}\ncluster:\n  id: {}\n  secret: {}\n  token: {}\n  secretboxEncryptionSecret: {}\n  ca: {}\n  aggregatorCA: {}\n  serviceAccount: {{key: {}}}\n  etcd:\n    ca: {}\n",
        get("trustdinfo.token"),
        pair("os"),
        get("cluster.id"),
        get("cluster.secret"),
        get("secrets.bootstraptoken"),
        get("secrets.secretboxencryptionsecret"),
        pair("k8s"),
        pair("k8saggregator"),
        get("certs.k8sserviceaccount.key"),
        pair("etcd"),
    )
}

/// The recovery drill: a control-plane config carrying the environment's secrets matches its
/// bundle field by field; another cluster's does not, and the fields are named without a single
/// value printed. (The upstream v1alpha1 and 1.14 vectors are compared in `bundle::compare`;
/// their CAs expire in 2033, which the date sweep passes.)
#[test]
fn env_check_compares_a_machine_config_with_the_bundle() {
    let s = Sandbox::new();
    s.ok(&[
        "env",
        "create",
        "other",
        "-r",
        &s.a.recipient,
        "--endpoint",
        "10.0.0.2",
        "--talos-version",
        "v1.6",
    ]);
    s.ok(&[
        "-i",
        &s.a.file,
        "bundle",
        "export",
        "prod",
        "-o",
        "prod-secrets.yaml",
    ]);
    let bundle = String::from_utf8(s.read("prod-secrets.yaml")).unwrap();
    let config = machine_config_from(&bundle);
    s.write("cp.yaml", config.as_bytes());
    let (code, out, err) = s.v(&[
        "-i",
        &s.a.file,
        "env",
        "check",
        "prod",
        "--machine-config",
        "cp.yaml",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with("prod: cp.yaml matches the bundle (14 fields)\n"),
        "{out}"
    );
    assert!(
        out.contains("certs.os.crt                         match  sha256:"),
        "{out}"
    );

    let (code, out, err) = s.v(&[
        "-i",
        &s.a.file,
        "env",
        "check",
        "other",
        "--machine-config",
        "cp.yaml",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("other: cp.yaml does NOT match the bundle: cluster.id, cluster.secret"),
        "{out}"
    );
    assert!(
        out.contains("certs.os.key                         differs\n"),
        "{out}"
    );
    // No secret of the machine config (its tokens, its keys) is printed.
    for line in config.lines() {
        for value in line.split([' ', '{', '}', ',']).filter(|v| v.len() > 12) {
            assert!(
                !out.contains(value) && !err.contains(value),
                "a value was printed"
            );
        }
    }
    let events = s.events();
    assert_eq!(events.last().unwrap()["action"], "env.check");
    let other: serde_json::Value =
        serde_json::from_str(&s.ok(&["audit", "log", "other", "-o", "json"])).unwrap();
    let last = other.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "env.check");
    assert_eq!(last["data"]["matches"], false);
    assert_eq!(last["data"]["mismatched"].as_array().unwrap().len(), 14);
    let (code, _, err) = s.v(&[
        "-i",
        &s.a.file,
        "env",
        "check",
        "prod",
        "--machine-config",
        "data-missing.yaml",
    ]);
    assert_eq!(code, 2, "{err}");
}

/// A passphrase environment has no recipients: its backups go to its backup-only recipients,
/// and `seal` refuses until there is one.
#[test]
fn a_passphrase_environment_seals_backups_to_its_backup_only_recipients() {
    let s = Sandbox::new();
    let mut envs = s.envs();
    envs.retain(|(k, _)| k != "TALVAULT_PASSPHRASE");
    envs.push((
        "TALVAULT_PASSPHRASE".into(),
        "correct horse battery staple".into(),
    ));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // `talvault --vault v ARGS` with the passphrase: it opens the audit keys.
    let solo = |args: &[&str]| {
        let mut all = vec!["--vault", "v"];
        all.extend_from_slice(args);
        talvault_env(&s.dir, &all, &envs)
    };
    let (code, _, err) = solo(&[
        "env",
        "create",
        "solo",
        "--passphrase",
        "--talos-version",
        "v1.6",
    ]);
    assert_eq!(code, 0, "{err}");
    // A passphrase environment has no backup lane (age cannot seal to a passphrase and
    // recipients at once).
    assert!(!s.path("v/envs/solo/backup-audit.age").exists());
    s.write("data.bin", b"solo data");
    let (code, _, err) = solo(&["backup", "seal", "solo", "data.bin", "-o", "store/solo.age"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("environment \"solo\" has no recipients a backup can be sealed to"),
        "{err}"
    );
    assert!(
        err.contains("hint: add one with `talvault recipients add ENV --backup-only"),
        "{err}"
    );
    assert!(!s.path("store/solo.age").exists());
    let (code, _, err) = solo(&[
        "recipients",
        "add",
        "solo",
        "--backup-only",
        "-r",
        &s.dr.recipient,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = solo(&["backup", "seal", "solo", "data.bin", "-o", "store/solo.age"]);
    assert_eq!(code, 0, "{err}");
    // Verifying decrypts with the backup-only key and records with the passphrase.
    let (code, _, err) = solo(&[
        "-i",
        &s.dr.file,
        "backup",
        "verify",
        "solo",
        "store/solo.age",
    ]);
    assert_eq!(code, 0, "{err}");
    // The backup-only key alone decrypts (the Go age CLI) but cannot record here.
    let (ok, plain, err) = s.tool("age", &["-d", "-i", &s.dr.file, "store/solo.age"]);
    assert!(ok, "{err}");
    assert_eq!(plain, b"solo data");
    let (code, _, _) = s.v(&[
        "-i",
        &s.dr.file,
        "backup",
        "verify",
        "solo",
        "store/solo.age",
    ]);
    assert_eq!(code, 1, "recorded without the passphrase");
    let (code, _, _) = solo(&[
        "-i",
        &s.a.file,
        "backup",
        "verify",
        "solo",
        "store/solo.age",
    ]);
    assert_eq!(code, 1, "a key of another environment opened it");
}

/// A recipients change is committed before the backups are listed: an unreadable backup record
/// turns the list into a note, never into a failure of the change that already happened.
#[test]
fn a_recipients_change_succeeds_even_when_a_backup_record_is_unreadable() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path("v/envs/prod/backups")).unwrap();
    s.write("v/envs/prod/backups/0000000000000000.yaml", b"junk\n");
    let (code, out, err) = s.v(&[
        "-i",
        &s.a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &s.b.recipient,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("note: cannot list the backups sealed to the old recipients: envs/prod/backups/0000000000000000.yaml"), "{out}");
    // And `audit verify` reports it: no event accounts for it.
    assert_eq!(s.ok(&["recipients", "list", "prod"]).lines().count(), 2);
    let (code, out, err) = s.v(&["-i", &s.b.file, "audit", "verify", "prod"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        out.contains("backups/0000000000000000.yaml: no event accounts for it"),
        "{out}{err}"
    );
}

/// The backup lane's keys of prod as the backup-only key `dr` opens them (Go age CLI).
fn lane_keys(s: &Sandbox) -> Vec<u8> {
    let (ok, plain, err) = s.tool(
        "age",
        &["-d", "-i", &s.dr.file, "v/envs/prod/backup-audit.age"],
    );
    assert!(ok, "{err}");
    plain
}

/// Writes an event MACed under the newest key of `lane` (a lane key file's plaintext) into
/// prod's trail, on its heads: what a backup-only identity could forge. `files` are paths
/// below the environment, named with their current hashes.
fn forge_lane(s: &Sandbox, lane: &[u8], action: &str, data: serde_json::Value, files: &[&str]) {
    use talvault::audit;
    let env = "prod";
    let env_dir = s.path("v/envs").join(env);
    let keys = audit::AuditKeys::from_json(lane).unwrap();
    let config = String::from_utf8(s.read("v/talvault.yaml")).unwrap();
    let vault = config
        .lines()
        .find_map(|l| l.strip_prefix("vault_id: "))
        .expect("a format-2 vault")
        .trim_matches('"')
        .to_owned();
    let current = keys.current().unwrap();
    let key = current.derive_lane(&vault, env).unwrap();
    let summaries: Vec<_> = talvault::store::audit_dir::load_all(&env_dir)
        .unwrap()
        .iter()
        .filter_map(|(_, b)| audit::EventSummary::read(b))
        .collect();
    let files = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(env_dir.join(f)).unwrap();
            ((*f).to_owned(), Some(talvault::digest::sha256_hex(&bytes)))
        })
        .collect();
    let event = audit::new_event(
        audit::heads_of(&summaries),
        audit::EventBody {
            time: time::OffsetDateTime::now_utc(),
            actor: "nightly".into(),
            opened_by: None,
            env: env.into(),
            action: action.into(),
            data: data.as_object().unwrap().clone(),
            seal: Some(audit::Seal {
                vault,
                epoch: current.epoch,
                files,
                lane: Some(audit::BACKUP_LANE.into()),
                lane_epoch: None,
            }),
        },
    )
    .unwrap()
    .with_mac(&key);
    let path = env_dir.join("audit").join(event.relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, event.to_json()).unwrap();
}

/// The nightly job holds a backup-only identity: through the backup lane it seals, verifies,
/// opens and prunes, and its events are authenticated by a full identity's `audit verify`; it
/// opens no bundle and records nothing else, and what its lane key could forge beyond backups
/// (an issuer, an accepted policy, a bundle through a backup event) is rejected.
#[test]
fn a_backup_only_identity_records_backups_through_the_lane_and_nothing_else() {
    let s = Sandbox::new();
    assert!(s.path("v/envs/prod/backup-audit.age").exists());
    let dr = |args: &[&str]| {
        let mut all = vec!["-i", s.dr.file.as_str()];
        all.extend_from_slice(args);
        s.v(&all)
    };
    let full_verify = |s: &Sandbox| {
        let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
        (code, format!("{out}{err}"))
    };
    let mut ids = Vec::new();
    for i in 0..2u8 {
        s.write("data.bin", &noise(5000, i));
        let out_file = format!("store/n{i}.age");
        let (code, out, err) = dr(&["backup", "seal", "prod", "data.bin", "-o", &out_file]);
        assert_eq!(code, 0, "{err}");
        ids.push(out.strip_prefix("sealed backup ").unwrap()[..16].to_owned());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (code, _, err) = dr(&["backup", "verify", "prod", "store/n1.age"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = dr(&["backup", "open", "prod", "store/n1.age", "-o", "n1.bin"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.read("n1.bin"), noise(5000, 1));
    let (code, out, err) = dr(&["backup", "prune", "prod", "--keep", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&ids[0]), "{out}");
    // Every one of its events went through the lane…
    let events = s.events();
    let lane: Vec<&str> = events
        .iter()
        .filter(|e| e["lane"] == "backup")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        lane,
        [
            "backup.seal",
            "backup.seal",
            "backup.verify",
            "backup.open",
            "backup.prune"
        ]
    );
    // …and a full identity authenticates them, the pruned record accounted for as removed.
    let (code, out) = full_verify(&s);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("no event accounts"), "{out}");
    // status rests on the lane's verification.
    let list = s.ok(&["backup", "list", "prod", "-o", "json"]);
    let views: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(views.as_array().unwrap().len(), 1);
    assert!(views[0]["verified"].is_string(), "{views}");

    // Nothing else: not the bundle, not the recipients, not the policy.
    for args in [
        vec!["bundle", "export", "prod", "-o", "x.yaml"],
        vec![
            "recipients",
            "add",
            "prod",
            "--backup-only",
            "-r",
            &s.b.recipient,
        ],
        vec!["policy", "accept", "prod", "--reason", "mine"],
    ] {
        let before = s.files();
        let (code, _, err) = dr(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(s.files(), before, "{args:?}: a refusal changed files");
    }

    // What the lane key could forge beyond backups is rejected: an issuer, an accepted policy,
    // a bundle slipped in through a backup event.
    let mut policy = String::from_utf8(s.read("v/envs/prod/policy.yaml")).unwrap();
    policy.push_str("backup:\n  max_age: 1h\n");
    s.write("v/envs/prod/policy.yaml", policy.as_bytes());
    forge_lane(
        &s,
        &lane_keys(&s),
        "policy.accept",
        serde_json::json!({"reason": "mine"}),
        &["policy.yaml"],
    );
    let (code, _, err) = s.v(&["status", "prod"]);
    assert!(
        err.contains("policy.yaml differs from the policy the audit trail accepted")
            || err.contains("policy.yaml: its contents are not what audit event"),
        "{code} {err}"
    );
    forge_lane(
        &s,
        &lane_keys(&s),
        "issuer.activate",
        serde_json::json!({"issuer": "e9-forged"}),
        &[],
    );
    s.write("data.bin", b"x");
    forge_lane(
        &s,
        &lane_keys(&s),
        "backup.verify",
        serde_json::json!({"id": ids[1], "sealed_sha256": "00"}),
        &["bundle.age"],
    );
    let (code, out) = full_verify(&s);
    assert_ne!(code, 0, "{out}");
    assert_eq!(
        out.matches("forged: MACed under the backup lane key")
            .count(),
        3,
        "{out}"
    );
}

/// A backup record dropped in by hand, with no event, is refused wherever records are read,
/// and `audit verify` names it; so is a hand-edited backup-recipients.txt.
#[test]
fn a_hand_dropped_backup_record_is_reported_and_not_trusted() {
    let s = Sandbox::new();
    s.write("data.bin", &noise(3000, 4));
    s.seal("data.bin", "store/h.age", &[]);
    // A well-formed record from another vault, dropped in with no event.
    let other = Sandbox::new();
    other.write("data.bin", &noise(3000, 5));
    let planted = other.seal("data.bin", "store/o.age", &[]);
    let planted_rel = format!("v/envs/prod/backups/{planted}.yaml");
    s.write(&planted_rel, &other.read(&planted_rel));
    for args in [
        vec!["backup", "list", "prod"],
        vec!["status", "prod"],
        vec!["backup", "verify", "prod", "store/h.age"],
    ] {
        let (code, _, err) = s.v(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains(&format!(
                "backups/{planted}.yaml: no audit event accounts for it"
            )),
            "{args:?}: {err}"
        );
    }
    let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
    assert_ne!(code, 0);
    assert!(
        out.contains(&format!("backups/{planted}.yaml: no event accounts for it")),
        "{out}{err}"
    );
    std::fs::remove_file(s.path(&planted_rel)).unwrap();
    // A backup-recipients.txt edited by hand is refused before anything is sealed to it.
    let mut txt = String::from_utf8(s.read("v/envs/prod/backup-recipients.txt")).unwrap();
    txt.push_str(&s.b.recipient);
    txt.push('\n');
    s.write("v/envs/prod/backup-recipients.txt", txt.as_bytes());
    let (code, _, err) = s.v(&["backup", "seal", "prod", "data.bin", "-o", "store/h2.age"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("backup-recipients.txt: its contents are not what audit event"),
        "{err}"
    );
    assert!(!s.path("store/h2.age").exists());
}

/// Every recipients change seals a new lane epoch to the new sets; a backup-only key removed
/// from the environment keeps the old lane keys, and what it MACs with them afterwards is not
/// trusted.
#[test]
fn recipients_changes_rotate_the_lane_and_retire_its_old_keys() {
    use talvault::audit::AuditKeys;
    let s = Sandbox::new();
    let epochs = |plain: &[u8]| {
        let keys = AuditKeys::from_json(plain).unwrap();
        keys.keys.iter().map(|k| k.epoch).collect::<Vec<_>>()
    };
    // Created with the environment (epoch 1), rotated by the backup-only add in Sandbox::new.
    assert_eq!(epochs(&lane_keys(&s)), [1, 2]);
    s.ok(&[
        "-i",
        &s.a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &s.b.recipient,
    ]);
    let held = lane_keys(&s);
    assert_eq!(epochs(&held), [1, 2, 3]);
    let (ok, _, err) = s.tool(
        "age",
        &["-d", "-i", &s.b.file, "v/envs/prod/backup-audit.age"],
    );
    assert!(ok, "the new recipient opens the new lane keys: {err}");
    // The backup-only key records through epoch 3.
    s.write("data.bin", &noise(2000, 7));
    let (code, _, err) = s.v(&[
        "-i",
        &s.dr.file,
        "backup",
        "seal",
        "prod",
        "data.bin",
        "-o",
        "store/l.age",
    ]);
    assert_eq!(code, 0, "{err}");
    let events = s.events();
    let last = events.last().unwrap();
    assert_eq!(
        (&last["lane"], &last["epoch"]),
        (&"backup".into(), &3.into())
    );
    // A recipients change after a lane event builds on it (one head), and rotates the lane.
    s.ok(&[
        "-i",
        &s.a.file,
        "recipients",
        "remove",
        "prod",
        "-r",
        &s.b.recipient,
    ]);
    let events = s.events();
    let change = events.last().unwrap();
    assert_eq!(change["parents"][0], last["id"], "{change}");
    assert_eq!(change["lane_epoch"], 4);
    let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 1 head(s)"), "{out}");
    // Removed: a new epoch it cannot open, and its own events stop.
    s.ok(&[
        "-i",
        &s.a.file,
        "recipients",
        "remove",
        "prod",
        "--backup-only",
        "-r",
        &s.dr.recipient,
    ]);
    let (ok, _, _) = s.tool(
        "age",
        &["-d", "-i", &s.dr.file, "v/envs/prod/backup-audit.age"],
    );
    assert!(!ok);
    let (code, _, _) = s.v(&["-i", &s.dr.file, "backup", "verify", "prod", "store/l.age"]);
    assert_eq!(code, 1);
    let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
    assert_eq!(code, 0, "{out}{err}");
    // With the lane keys it kept, it forges a verification: retired.
    forge_lane(
        &s,
        &held,
        "backup.verify",
        serde_json::json!({"id": "0000000000000000", "sealed_sha256": "00"}),
        &[],
    );
    let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("MACed with audit key epoch 3, retired by epoch 5"),
        "{out}{err}"
    );
}

/// `upgrade` gives a format-1 environment its backup lane, sealed to its recipients and its
/// backup-only ones, so the nightly key records through it from then on.
#[test]
fn upgrade_creates_the_backup_lane() {
    let s = Sandbox::new();
    // A format-1 vault with the same environment: a fresh vault written as an older talvault
    // would, then the environment and its backup-only recipient.
    std::fs::remove_dir_all(s.path("v")).unwrap();
    s.run_ok(&["init", "v"]);
    s.write(
        "v/talvault.yaml",
        b"# talvault vault. Public metadata; secrets live only in .age files.\nformat_version: 1\n",
    );
    s.ok(&[
        "env",
        "create",
        "prod",
        "-r",
        &s.a.recipient,
        "--endpoint",
        "10.0.0.1",
        "--talos-version",
        "v1.6",
    ]);
    s.ok(&[
        "recipients",
        "add",
        "prod",
        "--backup-only",
        "-r",
        &s.dr.recipient,
    ]);
    assert!(!s.path("v/envs/prod/audit.age").exists());
    assert!(!s.path("v/envs/prod/backup-audit.age").exists());
    s.ok(&["-i", &s.a.file, "upgrade"]);
    assert_eq!(
        talvault::audit::AuditKeys::from_json(&lane_keys(&s))
            .unwrap()
            .current()
            .unwrap()
            .epoch,
        1
    );
    s.write("data.bin", &noise(1500, 3));
    let (code, _, err) = s.v(&[
        "-i",
        &s.dr.file,
        "backup",
        "seal",
        "prod",
        "data.bin",
        "-o",
        "store/u.age",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = s.v(&["-i", &s.a.file, "audit", "verify", "prod"]);
    assert_eq!(code, 0, "{out}{err}");
}
