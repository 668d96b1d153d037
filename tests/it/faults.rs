//! Crash safety at every syscall: each mutating command is run once under strace to list the
//! system calls it makes, then once more for every one of them made while it holds the vault
//! lock (and every twentieth before), with strace injecting SIGKILL at exactly that call
//! (`-e inject=SYSCALL:signal=KILL:when=N`). After each kill the vault must open and recover
//! with `audit verify` passing, no temporary file, journal or mark may be left, and the vault
//! must hold the old state (then the command must succeed when run again) or the new one (then
//! the environment must still issue, which loads every issuer and record, and list its holders,
//! each agreeing with the trail). The test prints kills per command and fails on any damaged
//! vault.
//!
//! Under libfaketime (`scripts/date-sweep`) only every tenth kill point runs: the date has
//! nothing to do with crash safety, and the full campaign already ran at today's date.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use age::secrecy::ExposeSecret as _;

use crate::support::{have, only_issuer};

const TEMP_MARKS: [&str; 3] = [".talvault-tmp-", ".talvault-journal", ".talvault-dirty"];

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    vars: BTreeMap<&'static str, String>,
}

fn talvault(dir: &Path, args: &[String]) -> (i32, String, String) {
    let out = base_command(dir, env!("CARGO_BIN_EXE_talvault"), args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn base_command(dir: &Path, program: &str, args: &[String]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .env("TMPDIR", dir.join("tmp"))
        .env("TALVAULT_ACTOR", "crash")
        .env("TALVAULT_IDENTITY", "")
        .env("SOPS_AGE_KEY_FILE", "")
        .env("TALVAULT_VAULT", "")
        .env_remove("TALVAULT_PKCS11_PIN")
        .stdin(Stdio::null());
    c
}

fn words(s: &str, vars: &BTreeMap<&'static str, String>) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            let mut w = w.to_owned();
            for (k, v) in vars {
                w = w.replace(&format!("{{{k}}}"), v);
            }
            w
        })
        .collect()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        for d in ["home", "tmp"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let mut vars = BTreeMap::new();
        for (name, file_var, recipient_var) in
            [("a", "A", "RA"), ("b", "B", "RB"), ("c", "C", "RC")]
        {
            #[expect(
                deprecated,
                reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
            )]
            let id = age::x25519::Identity::generate();
            let file = format!("home/{name}.key");
            std::fs::write(
                base.join(&file),
                format!("{}\n", id.to_string().expose_secret()),
            )
            .unwrap();
            std::fs::set_permissions(
                base.join(&file),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            vars.insert(file_var, file);
            vars.insert(recipient_var, id.to_public().to_string());
        }
        let ok = |line: &str, vars: &BTreeMap<&'static str, String>| {
            let (code, out, err) = talvault(&base, &words(line, vars));
            assert_eq!(code, 0, "fixture: {line}: {err}");
            out
        };
        ok("init v", &vars);
        ok(
            "--vault v env create prod -r {RA} -r {RB} --talos-version v1.6 --endpoint 10.0.0.1",
            &vars,
        );
        ok("--vault v -i {A} issuer create prod", &vars);
        let e1 = only_issuer(&base.join("v/envs/prod/issuers"));
        ok(
            &format!("--vault v -i {{A}} issuer activate prod {e1} --force"),
            &vars,
        );
        ok(
            "--vault v -i {A} issue prod --role os:reader --holder bob -o home/bob.tc",
            &vars,
        );
        // Two holders with standing grants and no certificate yet (renew issues both), and an
        // outbox for their sealed talosconfigs.
        ok(
            "--vault v -i {A} holder add prod carol -r {RC} --role os:reader",
            &vars,
        );
        ok(
            "--vault v -i {A} holder add prod dan -r {RB} --role os:operator --ttl 8h",
            &vars,
        );
        std::fs::create_dir_all(base.join("home/outbox")).unwrap();
        let serial = std::fs::read_dir(base.join("v/envs/prod/certs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        ok("--vault v -i {A} issuer create prod", &vars);
        let e2 = std::fs::read_dir(base.join("v/envs/prod/issuers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| *n != e1)
            .unwrap();
        ok(
            "--vault v -i {A} break-glass prod --reason INC-1 -o home/bg.tc",
            &vars,
        );
        ok(
            "bundle generate --talos-version v1.6 -o home/secrets.yaml",
            &vars,
        );
        // Two sealed backups (of any file), for `backup prune`.
        for n in 1..=2 {
            ok(
                &format!("--vault v -i {{A}} backup seal prod home/secrets.yaml -o home/b{n}.age"),
                &vars,
            );
        }
        // Warm the record caches (exit 2: prod is tainted).
        let (code, _, err) = talvault(&base, &words("--vault v status", &vars));
        assert_eq!(code, 2, "fixture status: {err}");
        vars.insert("S", serial);
        vars.insert("E2", e2);
        Fixture {
            _dir: dir,
            base,
            vars,
        }
    })
}

/// The mutating commands, each from the fixture's state. `issue`, `kubeconfig` (sealed to a
/// holder) and `break-glass` write with `--force`, so that running them again after a kill can
/// succeed.
const SCENARIOS: [(&str, &str); 23] = [
    ("init", "init w"),
    (
        "env create",
        "--vault v env create stage -r {RA} --talos-version v1.6 --endpoint 10.0.0.2",
    ),
    (
        "env import",
        "--vault v env import imp -r {RA} --from-secrets home/secrets.yaml --talos-version v1.6 --endpoint 10.0.0.3",
    ),
    (
        "recipients add",
        "--vault v -i {A} recipients add prod -r {RC}",
    ),
    (
        "recipients remove",
        "--vault v -i {A} recipients remove prod -r {RB}",
    ),
    (
        "issue",
        "--vault v -i {A} issue prod --role os:reader -o home/n.tc --force",
    ),
    (
        "break-glass",
        "--vault v -i {A} break-glass prod --reason INC-2 -o home/bg2.tc --force",
    ),
    (
        "kubeconfig",
        "--vault v -i {A} kubeconfig prod --holder carol --group talvault:viewers --seal -o home/k.age --force",
    ),
    (
        "break-glass --kubernetes",
        "--vault v -i {A} break-glass prod --kubernetes --user carol --reason INC-3 -o home/bgk.kubeconfig --force",
    ),
    (
        "revoke",
        "--vault v -i {A} revoke prod {S} --reason keyCompromise",
    ),
    ("crl", "--vault v -i {A} crl prod -o home/crl.pem"),
    ("issuer create", "--vault v -i {A} issuer create prod"),
    (
        "issuer create --api kubernetes",
        "--vault v -i {A} issuer create prod --api kubernetes",
    ),
    ("issuer rotate", "--vault v -i {A} issuer rotate prod"),
    (
        "issuer activate",
        "--vault v -i {A} issuer activate prod {E2} --force",
    ),
    ("issuer retire", "--vault v -i {A} issuer retire prod {E2}"),
    (
        "env untaint",
        "--vault v -i {A} env untaint prod --reason done",
    ),
    (
        "holder add",
        "--vault v -i {A} holder add prod erin -r {RC} --role os:reader",
    ),
    // A removal: the record goes and the event names it removed, together or not at all.
    ("holder remove", "--vault v -i {A} holder remove prod carol"),
    // Two certificates, two records and two chained events in one commit.
    ("renew", "--vault v -i {A} renew prod --all -o home/outbox"),
    // To stdout: a sealed backup never replaces a file, so a rerun after a kill that left
    // the output in place would be refused for that alone.
    (
        "backup seal",
        "--vault v -i {A} backup seal prod home/secrets.yaml -o -",
    ),
    (
        "backup prune",
        "--vault v -i {A} backup prune prod --keep 1",
    ),
    (
        "backup-only add",
        "--vault v -i {A} recipients add prod --backup-only -r {RC}",
    ),
];

/// Copies a tree (no links in these vaults).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Every file of a vault with its contents, leaving out what is not vault state.
fn state(vault: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with(".cache") || rel == Path::new(".lock") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(rel.clone(), Vec::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(vault, vault, &mut out);
    out
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if TEMP_MARKS.iter().any(|m| name.starts_with(m)) {
                out.push(e.path().display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(leftovers(&e.path()));
            }
        }
    }
    out
}

/// The system calls the command's main thread makes, in order, as (name, invocation number of
/// that name, whether the vault lock was held), in a fresh copy.
fn syscalls(args: &[String]) -> Vec<(String, usize, bool)> {
    let sandbox = tempfile::tempdir().unwrap();
    copy_tree(&fixture().base, sandbox.path());
    let log = sandbox.path().join("tmp/strace.log");
    let mut full = vec![
        "-f".to_owned(),
        "-qq".to_owned(),
        "-o".to_owned(),
        log.display().to_string(),
        "--".to_owned(),
        env!("CARGO_BIN_EXE_talvault").to_owned(),
    ];
    full.extend(args.iter().cloned());
    let status = base_command(sandbox.path(), "strace", &full)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{args:?} failed under strace");
    let text = std::fs::read_to_string(&log).unwrap();
    let main = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut locked = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&main).map(str::trim_start) else {
            continue;
        };
        if rest.starts_with('<') || rest.starts_with('+') || rest.starts_with("---") {
            continue;
        }
        let Some(name) = rest
            .split('(')
            .next()
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        else {
            continue;
        };
        let n = counts.entry(name.to_owned()).or_insert(0);
        *n += 1;
        out.push((name.to_owned(), *n, locked));
        if name == "flock" && rest.contains("LOCK_EX") {
            locked = true;
        }
    }
    out
}

/// One kill and the checks after it; `Err` describes the damage.
fn kill_and_check(name: &str, args: &[String], syscall: &str, n: usize) -> Result<bool, String> {
    let fx = fixture();
    let sandbox = tempfile::tempdir().unwrap();
    let dir = sandbox.path();
    copy_tree(&fx.base, dir);
    let vault = if name == "init" { "w" } else { "v" };
    let before = state(&dir.join(vault));
    let mut full = vec![
        "-f".to_owned(),
        "-qq".to_owned(),
        "-o".to_owned(),
        "/dev/null".to_owned(),
        "-e".to_owned(),
        format!("trace={syscall}"),
        "-e".to_owned(),
        format!("inject={syscall}:signal=KILL:when={n}"),
        "--".to_owned(),
        env!("CARGO_BIN_EXE_talvault").to_owned(),
    ];
    full.extend(args.iter().cloned());
    let killed = !base_command(dir, "strace", &full)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    let run = |line: String| talvault(dir, &words(&line, &fx.vars));
    let at = format!("{name}: kill at {syscall} #{n}");
    if name == "init" && !dir.join("w/talvault.yaml").exists() {
        // Not a vault (yet): init must finish or start over.
        let (code, _, err) = run("init w".into());
        if code != 0 {
            return Err(format!("{at}: init again: {err}"));
        }
    }
    let (code, out, err) = run(format!("--vault {vault} -i {{A}} audit verify"));
    if code != 0 {
        return Err(format!("{at}: audit verify: {out}{err}"));
    }
    let left = leftovers(&dir.join(vault));
    if !left.is_empty() {
        return Err(format!("{at}: left behind {left:?}"));
    }
    if state(&dir.join(vault)) == before {
        // The old state: the command must work now.
        let (code, _, err) = talvault(dir, args);
        if code != 0 {
            return Err(format!(
                "{at}: old state, but the command fails again: {err}"
            ));
        }
    } else {
        // The new state: the environment still works (this loads every issuer and record).
        let check = if name == "init" {
            "--vault w env create x -r {RA} --talos-version v1.6 --endpoint 10.0.0.9"
        } else {
            "--vault v -i {A} issue prod --role os:reader -o home/after.tc --force"
        };
        let (code, _, err) = run(check.into());
        if code != 0 {
            return Err(format!("{at}: new state, but `{check}` fails: {err}"));
        }
        // And its holders load (every record agrees with the trail).
        if name != "init" {
            let (code, out, err) = run("--vault v -i {A} holder list prod".into());
            if code != 0 || out.contains("DISAGREES") {
                return Err(format!(
                    "{at}: new state, but `holder list` says: {out}{err}"
                ));
            }
        }
    }
    Ok(killed)
}

#[test]
fn a_kill_at_any_syscall_leaves_a_working_vault() {
    if !have("strace") {
        return;
    }
    let fx = fixture();
    let step = if std::env::var_os("FAKETIME").is_some() {
        10
    } else {
        1
    };
    // Every call once the vault lock is held (nothing in the vault can change before), and
    // every twentieth before it (process start, arguments, identities).
    // TALVAULT_FAULT_SCENARIOS=WORD runs only the scenarios whose name contains WORD (to try
    // one command's kill points on a slow machine); the full campaign is the default.
    let only = std::env::var("TALVAULT_FAULT_SCENARIOS").unwrap_or_default();
    let mut jobs = Vec::new();
    for (name, line) in SCENARIOS
        .into_iter()
        .filter(|(n, _)| n.contains(only.as_str()))
    {
        let args = words(line, &fx.vars);
        for (i, (syscall, n, locked)) in syscalls(&args).into_iter().enumerate() {
            let every = if locked { step } else { step * 20 };
            if i % every == 0 {
                jobs.push((name, args.clone(), syscall, n));
            }
        }
    }
    let total = jobs.len();
    let jobs = Arc::new(Mutex::new(jobs));
    type Outcome = (&'static str, Result<bool, String>);
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (jobs, results) = (Arc::clone(&jobs), Arc::clone(&results));
            std::thread::spawn(move || {
                loop {
                    let Some((name, args, syscall, n)) = jobs.lock().unwrap().pop() else {
                        break;
                    };
                    let r = kill_and_check(name, &args, &syscall, n);
                    results.lock().unwrap().push((name, r));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let results = results.lock().unwrap();
    let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut damage = Vec::new();
    for (name, r) in results.iter() {
        let e = per.entry(name).or_default();
        e.0 += 1;
        match r {
            Ok(true) => e.1 += 1,
            Ok(false) => {}
            Err(d) => damage.push(d.clone()),
        }
    }
    eprintln!("crash campaign: {total} kill points (step {step})");
    for (name, (points, killed)) in &per {
        eprintln!("  {name:<30} {points:>5} kill points, {killed:>5} killed before finishing");
    }
    assert_eq!(results.len(), total);
    assert!(
        damage.is_empty(),
        "{} of {total} kills damaged the vault:\n{}",
        damage.len(),
        damage.join("\n")
    );
}

/// A fresh copy of the fixture (vault `v` with `prod`, keys in `home/`).
fn sandbox() -> tempfile::TempDir {
    let sandbox = tempfile::tempdir().unwrap();
    copy_tree(&fixture().base, sandbox.path());
    sandbox
}

/// `issue --merge` into one file from many processes at once: the file is read, merged and
/// replaced under a lock on it, so no context is lost (before, 8 × 10 merges kept 72 of 81).
#[test]
fn concurrent_merges_keep_every_context() {
    let s = sandbox();
    let dir = s.path().to_path_buf();
    let vars = &fixture().vars;
    let (code, _, err) = talvault(
        &dir,
        &words(
            "--vault v -i {A} issue prod --role os:reader -o home/merged.tc --context first",
            vars,
        ),
    );
    assert_eq!(code, 0, "{err}");
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    let line = format!(
                        "--vault v -i {{A}} --lock-timeout 120 issue prod --role os:reader --merge home/merged.tc --context c{i}-{j}"
                    );
                    let (code, _, err) = talvault(&dir, &words(&line, &fixture().vars));
                    assert_eq!(code, 0, "{line}: {err}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let text = std::fs::read_to_string(dir.join("home/merged.tc")).unwrap();
    let cfg = talvault::talosconfig::Config::from_yaml(text.as_bytes()).unwrap();
    assert_eq!(cfg.contexts.len(), 81, "{:?}", cfg.contexts.keys());
}

/// An output that cannot be written is refused before anything is signed, recorded or audited
/// (and break-glass taints nothing); `--force` replaces regular files only, never a link, a
/// FIFO or a device.
#[test]
fn bad_destinations_change_nothing() {
    let s = sandbox();
    let dir = s.path();
    let vars = &fixture().vars;
    std::os::unix::fs::symlink("precious", dir.join("home/link.tc")).unwrap();
    std::fs::write(dir.join("home/precious"), b"keep\n").unwrap();
    let fifo = dir.join("home/fifo.tc");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let before = state(&dir.join("v"));
    for (line, message) in [
        (
            "--vault v -i {A} issue prod --role os:reader -o /nonexistent/dir/x.tc",
            "cannot write \"/nonexistent/dir/x.tc\"",
        ),
        (
            "--vault v -i {A} break-glass prod --reason INC-9 -o /nonexistent/dir/x.tc",
            "cannot write \"/nonexistent/dir/x.tc\"",
        ),
        (
            "--vault v -i {A} bundle export prod -o /nonexistent/dir/s.yaml",
            "cannot write \"/nonexistent/dir/s.yaml\"",
        ),
        (
            "--vault v -i {A} crl prod -o /nonexistent/dir/c.pem",
            "cannot write \"/nonexistent/dir/c.pem\"",
        ),
        (
            "--vault v -i {A} issue prod --role os:reader -o home/link.tc --force",
            "is not a regular file",
        ),
        (
            "--vault v -i {A} issue prod --role os:reader -o home/fifo.tc --force",
            "is not a regular file",
        ),
        (
            "--vault v -i {A} bundle export prod -o /dev/null --force",
            "is not a regular file",
        ),
    ] {
        let (code, out, err) = talvault(dir, &words(line, vars));
        assert_eq!(code, 1, "{line}: {out}{err}");
        assert!(err.contains(message), "{line}: {err}");
        assert!(err.contains("hint: "), "{line}: {err}");
        assert_eq!(state(&dir.join("v")), before, "{line} changed the vault");
    }
    assert_eq!(
        std::fs::read_link(dir.join("home/link.tc")).unwrap(),
        Path::new("precious")
    );
    assert_eq!(std::fs::read(dir.join("home/precious")).unwrap(), b"keep\n");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}
