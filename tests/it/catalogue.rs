//! The bad-input catalogue: every case in `tests/catalogue/cases.txt` runs the real binary
//! against a fresh copy of one fixture vault (after the case's setup: a hostile file, a link, an
//! oversized input…) and checks the exit code, the exact stderr (error line, hint line), stdout,
//! and that **nothing changed**: every name, type, link target, mode and content in the vault
//! and in the directory outside it that hostile links point to is the same afterwards. No
//! external tool is needed (keys are made with the age crate), so this runs everywhere.
//!
//! Adding a case is adding an entry to the data file; see its header for the format. With
//! `TALVAULT_BLESS=1` the expectations of failing cases are rewritten from what the binary did
//! (review the diff: a blessed bug is still a bug).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;
use talvault::audit::{self, EventBody, EventId};

use crate::support::{assert_matches, only_issuer, talvault_env};

const CASES: &str = "tests/catalogue/cases.txt";

/// One case of the data file.
#[derive(Clone, Debug, Default)]
struct Case {
    name: String,
    /// Comment lines before the case, kept when blessing.
    comments: Vec<String>,
    /// Comment lines between the header and the first key: notes about the case.
    notes: Vec<String>,
    setup: Vec<String>,
    /// The command line, without the leading `--vault v` (unless `bare`).
    run: String,
    bare: bool,
    exit: i32,
    /// Expected stderr lines (`error: …`, `hint: …`, or `stderr: …` for anything else).
    stderr: Vec<String>,
    /// Expected stdout lines (`stdout: …`); none means stdout must be empty.
    stdout: Vec<String>,
}

fn parse_cases(text: &str) -> (String, Vec<Case>) {
    let mut header = String::new();
    let mut cases: Vec<Case> = Vec::new();
    let mut comments = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{CASES}:{}", n + 1);
        if let Some(name) = line.strip_prefix("== ") {
            cases.push(Case {
                name: name.trim().to_owned(),
                comments: std::mem::take(&mut comments),
                exit: -1,
                ..Case::default()
            });
            continue;
        }
        let Some(case) = cases.last_mut() else {
            header.push_str(line);
            header.push('\n');
            continue;
        };
        if line.starts_with('#') || line.trim().is_empty() {
            let started = !case.setup.is_empty() || !case.run.is_empty() || case.exit != -1;
            if line.starts_with('#') && !started {
                case.notes.push(line.to_owned());
            } else {
                comments.push(line.to_owned());
            }
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
            .unwrap_or_else(|| panic!("{}: expected `key: value`", at()));
        match key {
            "setup" => case.setup.push(value.to_owned()),
            "run" => case.run = value.to_owned(),
            "run-bare" => {
                case.run = value.to_owned();
                case.bare = true;
            }
            "exit" => case.exit = value.parse().unwrap_or_else(|_| panic!("{}", at())),
            "error" | "hint" => case.stderr.push(format!("{key}: {value}")),
            "stderr" => case.stderr.push(value.to_owned()),
            "stdout" => case.stdout.push(value.to_owned()),
            other => panic!("{}: unknown key {other:?}", at()),
        }
    }
    (header, cases)
}

fn render_case(c: &Case) -> String {
    let mut s = String::new();
    for l in &c.comments {
        let _ = writeln!(s, "{l}");
    }
    let _ = writeln!(s, "== {}", c.name);
    for l in &c.notes {
        let _ = writeln!(s, "{l}");
    }
    for l in &c.setup {
        let _ = writeln!(s, "setup: {l}");
    }
    let _ = writeln!(s, "{}: {}", if c.bare { "run-bare" } else { "run" }, c.run);
    let _ = writeln!(s, "exit: {}", c.exit);
    for l in &c.stderr {
        if l.starts_with("error: ") || l.starts_with("hint: ") {
            let _ = writeln!(s, "{l}");
        } else {
            let _ = writeln!(s, "stderr: {l}");
        }
    }
    for l in &c.stdout {
        let _ = writeln!(s, "stdout: {l}");
    }
    s
}

/// Splits a command line into words: whitespace separates, `"…"` groups (no escapes inside
/// except `\"`), `''` is an empty word.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => word.push(chars.next().unwrap_or('"')),
                    '"' => break,
                    '\\' if chars.peek() == Some(&'n') => {
                        chars.next();
                        word.push('\n');
                    }
                    c => word.push(c),
                }
            }
        } else if c == '\'' {
            chars.next();
            chars.next();
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

/// The fixture: a vault `v` with environments `prod` (recipient a; one issued certificate)
/// and `stage` (recipient a), keys a, b and c in `home/`, and a directory `outside/` that
/// hostile links point into. Built once per test run, copied for each case.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    vars: BTreeMap<&'static str, String>,
    /// Secrets no message may contain.
    secrets: Vec<String>,
}

fn envs(sandbox: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), sandbox.join("home").display().to_string()),
        ("TMPDIR".into(), sandbox.join("tmp").display().to_string()),
        ("TALVAULT_ACTOR".into(), "alice".into()),
        ("TALVAULT_IDENTITY".into(), String::new()),
        ("SOPS_AGE_KEY_FILE".into(), String::new()),
        ("TALVAULT_VAULT".into(), String::new()),
        ("TALVAULT_PASSPHRASE".into(), String::new()),
    ]
}

fn run(sandbox: &Path, args: &[String]) -> (i32, String, String) {
    let env = envs(sandbox);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    talvault_env(sandbox, &args, &env)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        for d in ["home", "tmp", "outside"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let mut vars = BTreeMap::new();
        let mut secrets = Vec::new();
        for name in ["a", "b", "c"] {
            #[expect(deprecated, reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)")]
            let id = age::x25519::Identity::generate();
            let secret = id.to_string().expose_secret().to_owned();
            let file = base.join(format!("home/{name}.key"));
            std::fs::write(&file, format!("# test key {name}\n{secret}\n")).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let upper = name.to_uppercase();
            vars.insert(
                match name {
                    "a" => "A",
                    "b" => "B",
                    _ => "C",
                },
                format!("home/{name}.key"),
            );
            vars.insert(
                match upper.as_str() {
                    "A" => "RA",
                    "B" => "RB",
                    _ => "RC",
                },
                id.to_public().to_string(),
            );
            if name == "c" {
                vars.insert("SECRET_C", secret.clone());
            }
            secrets.push(secret);
        }
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        vars.insert("REPO", repo.display().to_string());
        vars.insert("OUT", base.join("outside").display().to_string());
        let ok = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            let (code, _, err) = run(&base, &args);
            assert_eq!(code, 0, "fixture: talvault {args:?}: {err}");
        };
        ok(&["init", "v"]);
        for env in ["prod", "stage"] {
            ok(&[
                "--vault",
                "v",
                "env",
                "create",
                env,
                "-r",
                &vars["RA"],
                "--talos-version",
                "v1.6",
                "--endpoint",
                "10.0.0.1",
            ]);
        }
        ok(&[
            "--vault",
            "v",
            "-i",
            &vars["A"],
            "issue",
            "prod",
            "--role",
            "os:reader",
            "--holder",
            "alice",
            "-o",
            "home/alice.talosconfig",
        ]);
        // The serial of that certificate ({SERIAL}).
        let serial = std::fs::read_dir(base.join("v/envs/prod/certs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .next()
            .unwrap();
        vars.insert(
            "SERIAL",
            serial.file_stem().unwrap().to_string_lossy().into_owned(),
        );
        // stage signs with an issuer: one active issuer ({ISSUER}) and one certificate under it.
        ok(&["--vault", "v", "-i", &vars["A"], "issuer", "create", "stage"]);
        let issuer = only_issuer(&base.join("v/envs/stage/issuers"));
        ok(&[
            "--vault", "v", "-i", &vars["A"], "issuer", "activate", "stage", &issuer, "--force",
        ]);
        ok(&[
            "--vault",
            "v",
            "-i",
            &vars["A"],
            "issue",
            "stage",
            "--role",
            "os:operator",
            "--holder",
            "bob",
            "-o",
            "home/bob.talosconfig",
        ]);
        // prod has one sealed and verified backup (3 KiB of text, so its sealed file is longer
        // than the 1 KiB by which backups are recognised): home/prod.age.
        std::fs::write(
            base.join("home/data.txt"),
            "backup fixture line\n".repeat(150),
        )
        .unwrap();
        ok(&[
            "--vault",
            "v",
            "-i",
            &vars["A"],
            "backup",
            "seal",
            "prod",
            "home/data.txt",
            "-o",
            "home/prod.age",
            "--label",
            "fixture",
        ]);
        ok(&[
            "--vault",
            "v",
            "-i",
            &vars["A"],
            "backup",
            "verify",
            "prod",
            "home/prod.age",
        ]);
        let backups: Vec<String> = std::fs::read_dir(base.join("v/envs/prod/backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(backups.len(), 1, "{backups:?}");
        vars.insert("BACKUP", backups[0].trim_end_matches(".yaml").to_owned());
        // A second, pending issuer in stage ({PENDING}), and a passphrase environment (lone).
        ok(&["--vault", "v", "-i", &vars["A"], "issuer", "create", "stage"]);
        let pending = std::fs::read_dir(base.join("v/envs/stage/issuers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| *n != issuer)
            .unwrap();
        // A third issuer, retired without ever being active ({RETIRED}).
        ok(&["--vault", "v", "-i", &vars["A"], "issuer", "create", "stage"]);
        let retired = std::fs::read_dir(base.join("v/envs/stage/issuers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| *n != issuer && *n != pending)
            .unwrap();
        ok(&[
            "--vault", "v", "-i", &vars["A"], "issuer", "retire", "stage", &retired,
        ]);
        vars.insert("RETIRED", retired);
        vars.insert("PENDING", pending);
        std::fs::write(base.join("home/pass"), "correct horse battery staple\n").unwrap();
        ok(&[
            "--vault",
            "v",
            "--passphrase-file",
            "home/pass",
            "env",
            "create",
            "lone",
            "--passphrase",
            "--talos-version",
            "v1.6",
            "--endpoint",
            "10.0.0.1",
        ]);
        // Warm the record caches, as any earlier `status` would have.
        let (_, _, err) = run(&base, &["--vault".into(), "v".into(), "status".into()]);
        assert!(!err.contains("error:"), "fixture status: {err}");
        vars.insert("ISSUER", issuer);
        // The month directory of prod's first event, as the fixture wrote it: cases that plant
        // files beside events take it from here, never from the calendar.
        let events = talvault::store::audit_dir::load_all(&base.join("v/envs/prod")).unwrap();
        let first = &events.first().expect("the fixture wrote prod events").0;
        let month_dir = first
            .rsplit_once('/')
            .map(|(dir, _)| dir.to_owned())
            .unwrap();
        assert!(
            month_dir.len() == 7 && month_dir.as_bytes()[4] == b'/',
            "not yyyy/mm: {month_dir}"
        );
        vars.insert("MONTH_STAMP", month_dir.replace('/', ""));
        vars.insert("MONTH_DIR", month_dir);
        // Things outside the vault that hostile links aim at.
        std::fs::write(base.join("outside/precious"), "do not touch\n").unwrap();
        copy_tree(&base.join("v/envs/prod"), &base.join("outside/prod"));
        std::fs::copy(
            base.join("v/talvault.yaml"),
            base.join("outside/talvault.yaml"),
        )
        .unwrap();
        std::fs::write(base.join("existing.txt"), "keep me\n").unwrap();
        Fixture {
            _dir: dir,
            base,
            vars,
            secrets,
        }
    })
}

/// Copies a tree, keeping links as links and permission bits.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Everything about a tree that a command could change: per path, its type, permission bits,
/// and content hash or link target. Nothing is followed.
type Snapshot = BTreeMap<String, String>;

fn snapshot_tree(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let ft = meta.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:o}")
            } else if ft.is_file() {
                // Sparse giants are compared by size and mtime, not read.
                if meta.len() > 1 << 20 {
                    format!("file {mode:o} {} bytes {}", meta.len(), meta.mtime())
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
                    format!("file {mode:o} {:?}", hash.as_ref())
                }
            } else {
                format!("other {mode:o}")
            };
            out.insert(rel, what);
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Replaces `{NAME}` placeholders.
fn expand(text: &str, vars: &BTreeMap<&'static str, String>) -> String {
    let mut s = text.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Runs one setup step in `dir` (the case's sandbox). Paths are relative to it.
fn setup_step(dir: &Path, step: &str, vars: &BTreeMap<&'static str, String>) {
    let w = words(&expand(step, vars));
    let arg = |i: usize| -> &str {
        w.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("setup {step:?}: missing argument {i}"))
    };
    let p = |i: usize| dir.join(arg(i));
    let remove = |path: &Path| {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.is_dir() {
                std::fs::remove_dir_all(path).unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
        }
    };
    match arg(0) {
        // write PATH TEXT: replace the file (\n and \t escapes).
        "write" => {
            remove(&p(1));
            std::fs::write(p(1), unescape(arg(2))).unwrap();
        }
        // append PATH TEXT: add to the end (the file may be binary).
        "append" => {
            let mut t = std::fs::read(p(1)).unwrap();
            t.extend_from_slice(unescape(arg(2)).as_bytes());
            std::fs::write(p(1), t).unwrap();
        }
        // replace PATH FROM TO: FROM must occur.
        "replace" => {
            let t = std::fs::read_to_string(p(1)).unwrap();
            let (from, to) = (unescape(arg(2)), unescape(arg(3)));
            assert!(t.contains(&from), "setup {step:?}: {from:?} not found");
            std::fs::write(p(1), t.replace(&from, &to)).unwrap();
        }
        "rm" => remove(&p(1)),
        "mkdir" => std::fs::create_dir_all(p(1)).unwrap(),
        "copy" => {
            remove(&p(2));
            let from = p(1);
            if from.is_dir() {
                copy_tree(&from, &p(2));
            } else {
                std::fs::copy(from, p(2)).unwrap();
            }
        }
        // symlink PATH TARGET: PATH becomes a link to TARGET (taken verbatim).
        "symlink" => {
            remove(&p(1));
            std::os::unix::fs::symlink(arg(2), p(1)).unwrap();
        }
        // sparse PATH BYTES: a file of that size that occupies no disk (100M, 2M, …).
        "sparse" => {
            remove(&p(1));
            let size = arg(2);
            let (n, unit) = size.split_at(size.len() - 1);
            let n: u64 = n.parse().unwrap();
            let len = match unit {
                "M" => n << 20,
                "K" => n << 10,
                _ => panic!("setup {step:?}: size like 100M"),
            };
            std::fs::File::create(p(1)).unwrap().set_len(len).unwrap();
        }
        // truncate PATH BYTES: cut the file to that length.
        "truncate" => {
            let len: u64 = arg(2).parse().unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p(1))
                .unwrap()
                .set_len(len)
                .unwrap();
        }
        // flip PATH OFFSET: invert the low bit of one byte (a negative offset counts from the end).
        "flip" => {
            let mut bytes = std::fs::read(p(1)).unwrap();
            let at: i64 = arg(2).parse().unwrap();
            let at = if at < 0 { bytes.len() as i64 + at } else { at } as usize;
            bytes[at] ^= 1;
            std::fs::write(p(1), bytes).unwrap();
        }
        "fifo" => {
            remove(&p(1));
            let status = std::process::Command::new("mkfifo")
                .arg(p(1))
                .status()
                .unwrap();
            assert!(status.success());
        }
        "chmod" => {
            let mode = u32::from_str_radix(arg(2), 8).unwrap();
            std::fs::set_permissions(p(1), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // event ENV PARENT ACTION: a well-formed audit event (its id matches its content) in
        // ENV's audit directory naming PARENT (an id, or `heads` for the current heads).
        "event" => {
            let env = arg(1);
            let env_dir = dir.join("v/envs").join(env);
            let files = talvault::store::audit_dir::load_all(&env_dir).unwrap();
            let parents: Vec<EventId> = if arg(2) == "heads" {
                let summaries: Vec<_> = files
                    .iter()
                    .filter_map(|(_, b)| audit::EventSummary::read(b))
                    .collect();
                audit::heads_of(&summaries)
            } else {
                vec![EventId::parse(arg(2)).unwrap()]
            };
            let event = audit::new_event(
                parents,
                EventBody {
                    time: time::OffsetDateTime::now_utc(),
                    actor: "mallory".into(),
                    opened_by: None,
                    env: env.into(),
                    action: arg(3).into(),
                    data: serde_json::Map::new(),
                    seal: None,
                },
            )
            .unwrap();
            let path = env_dir.join("audit").join(event.relative_path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, event.to_json()).unwrap();
        }
        // forge ENV ACTION DATA FILE…: what someone without an identity can write: a sealed
        // (format 2) event on the current heads naming this vault, accounting for FILEs (paths
        // below the environment, as they are now) and carrying DATA (`KEY=VALUE,…` strings, or
        // `-`), MACed with a key of their own.
        "forge" => {
            let env = arg(1);
            let env_dir = dir.join("v/envs").join(env);
            let files = talvault::store::audit_dir::load_all(&env_dir).unwrap();
            let summaries: Vec<_> = files
                .iter()
                .filter_map(|(_, b)| audit::EventSummary::read(b))
                .collect();
            let config = std::fs::read_to_string(dir.join("v/talvault.yaml")).unwrap();
            let vault = config
                .lines()
                .find_map(|l| l.strip_prefix("vault_id: "))
                .expect("a format-2 vault")
                .trim_matches('"')
                .to_owned();
            let data: serde_json::Map<String, serde_json::Value> = arg(3)
                .split(',')
                .filter(|pair| *pair != "-")
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("DATA is KEY=VALUE,…");
                    (k.to_owned(), serde_json::Value::String(v.to_owned()))
                })
                .collect();
            let sealed_files = w[4..]
                .iter()
                .map(|f| {
                    let bytes = std::fs::read(env_dir.join(f)).unwrap();
                    (f.clone(), Some(talvault::digest::sha256_hex(&bytes)))
                })
                .collect();
            let event = audit::new_event(
                audit::heads_of(&summaries),
                EventBody {
                    time: time::OffsetDateTime::now_utc(),
                    actor: "mallory".into(),
                    opened_by: None,
                    env: env.into(),
                    action: arg(2).into(),
                    data,
                    seal: Some(audit::Seal {
                        vault: vault.clone(),
                        epoch: 1,
                        files: sealed_files,
                        lane: None,
                        lane_epoch: None,
                    }),
                },
            )
            .unwrap()
            .with_mac(&audit::AuditKey::derive(&[7; 32], &vault, env, 1).unwrap());
            let path = env_dir.join("audit").join(event.relative_path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, event.to_json()).unwrap();
        }
        // seal PATH RECIPIENT TEXT: TEXT (\n escapes) age-encrypted to RECIPIENT, as a sealed
        // delivery is (what anyone holding the public key can make).
        "seal" => {
            remove(&p(1));
            let recipient = talvault::store::age::Recipient::parse(arg(2)).unwrap();
            let sealed =
                talvault::store::age::seal(unescape(arg(3)).as_bytes(), &[recipient]).unwrap();
            std::fs::write(p(1), sealed).unwrap();
        }
        // talvault ARGS…: `talvault --vault v ARGS` as the fixture runs it; must succeed.
        "talvault" => {
            let mut args = vec!["--vault".to_owned(), "v".to_owned()];
            args.extend(w[1..].iter().cloned());
            let (code, _, err) = run(dir, &args);
            assert_eq!(code, 0, "setup {step:?}: {err}");
        }
        other => panic!("setup {step:?}: unknown step {other:?}"),
    }
}

#[test]
fn bad_input_catalogue() {
    let fx = fixture();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CASES);
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, cases) = parse_cases(&text);
    let bless = std::env::var("TALVAULT_BLESS").as_deref() == Ok("1");
    let mut seen = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    let mut blessed = Vec::new();
    for case in &cases {
        assert!(
            seen.insert(case.name.clone()),
            "duplicate case {}",
            case.name
        );
        let sandbox = tempfile::tempdir().unwrap();
        let dir = sandbox.path();
        copy_tree(&fx.base, dir);
        for step in &case.setup {
            setup_step(dir, step, &fx.vars);
        }
        let before = (
            snapshot_tree(&dir.join("v")),
            snapshot_tree(&dir.join("outside")),
        );
        let mut args: Vec<String> = if case.bare {
            Vec::new()
        } else {
            vec!["--vault".into(), "v".into()]
        };
        args.extend(words(&expand(&case.run, &fx.vars)));
        let started = Instant::now();
        let (code, out, err) = run(dir, &args);
        let took = started.elapsed();
        let after = (
            snapshot_tree(&dir.join("v")),
            snapshot_tree(&dir.join("outside")),
        );

        let mut problems = Vec::new();
        let mut diff = changed(&before.0, &after.0);
        diff.extend(
            changed(&before.1, &after.1)
                .into_iter()
                .map(|p| format!("outside/{p}")),
        );
        if !diff.is_empty() {
            problems.push(format!("changed: {diff:?}"));
        }
        if took > Duration::from_secs(10) {
            problems.push(format!("took {took:?}"));
        }
        for s in &fx.secrets {
            if err.contains(&s[16..]) || out.contains(&s[16..]) {
                problems.push("a secret key is echoed".into());
            }
        }
        if err.contains("PRIVATE KEY") {
            problems.push("a private key is echoed".into());
        }
        let matches = |want: &[String], got: &str| {
            let want: String = want
                .iter()
                .map(|l| format!("{}\n", expand(l, &fx.vars)))
                .collect();
            std::panic::catch_unwind(|| assert_matches(&want, got)).is_ok()
        };
        let expectation_ok =
            code == case.exit && matches(&case.stderr, &err) && matches(&case.stdout, &out);
        if !expectation_ok {
            problems.push(format!(
                "expected exit {} and\n{}{}got exit {code} and\n{err}{out}",
                case.exit,
                case.stderr.join("\n") + "\n",
                case.stdout.join("\n"),
            ));
        }
        if bless && !expectation_ok {
            let mut c = case.clone();
            c.exit = code;
            c.stderr = err.lines().map(str::to_owned).collect();
            c.stdout = out.lines().map(str::to_owned).collect();
            blessed.push(c);
        } else {
            blessed.push(case.clone());
        }
        // Blessing fixes expectations, never a changed vault or an echoed secret.
        let hard: Vec<&String> = problems
            .iter()
            .filter(|p| !(bless && p.starts_with("expected exit")))
            .collect();
        if !hard.is_empty() {
            failures.push(format!(
                "## {}\n{}",
                case.name,
                hard.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    if bless {
        let mut out = header.clone();
        for c in &blessed {
            out.push_str(&render_case(c));
        }
        std::fs::write(&path, out).unwrap();
    }
    assert!(
        cases.len() >= 60,
        "the catalogue shrank to {} cases",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} catalogue cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
