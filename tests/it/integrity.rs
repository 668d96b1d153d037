//! Issue 14, attack by attack: someone with write access to the vault repository but no
//! recipient identity deletes, edits, forges, re-hashes, inserts and replays records and events;
//! honest clocks differ; two clones merge in real `git`; `--since` guards a pull request; a
//! format-1 vault is upgraded. Each test asserts the exact detection (exit code, problem kind
//! and line) and that honest use keeps working afterwards. Keys are made with the age crate;
//! `git`, `faketime` and `openssl` are required under `CI=true`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret as _;
use serde_json::Value;
use talvault::audit::{self, EventBody, EventId};

use crate::support::{have, talvault_env};

/// A private directory for one test: `home/` (identity files), `tmp/`, and the vault `v/`
/// (or several: `a/v`, `b/v` for clones).
struct Lab {
    _root: tempfile::TempDir,
    dir: PathBuf,
    home: String,
    tmp: String,
}

/// An age X25519 identity file (relative to the lab) and its recipient.
struct Key {
    file: String,
    recipient: String,
}

impl Lab {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_path_buf();
        for d in ["home", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Lab {
            home: dir.join("home").display().to_string(),
            tmp: dir.join("tmp").display().to_string(),
            dir,
            _root: root,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A fresh identity in `home/NAME.key`.
    fn key(&self, name: &str) -> Key {
        #[expect(
            deprecated,
            reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
        )]
        let id = age::x25519::Identity::generate();
        let file = format!("home/{name}.key");
        std::fs::write(
            self.path(&file),
            format!("# test key {name}\n{}\n", id.to_string().expose_secret()),
        )
        .unwrap();
        std::fs::set_permissions(self.path(&file), std::fs::Permissions::from_mode(0o600)).unwrap();
        Key {
            file,
            recipient: id.to_public().to_string(),
        }
    }

    /// The environment of every process: private HOME and TMPDIR, a fixed actor, UTC, and no
    /// identity or vault inherited from the developer's shell.
    fn envs(&self) -> Vec<(&str, &str)> {
        vec![
            ("HOME", self.home.as_str()),
            ("TMPDIR", self.tmp.as_str()),
            ("TALVAULT_ACTOR", "alice"),
            ("TALVAULT_IDENTITY", ""),
            ("SOPS_AGE_KEY_FILE", ""),
            ("TALVAULT_VAULT", ""),
            ("TZ", "UTC"),
        ]
    }

    /// `talvault ARGS` in the lab directory.
    fn raw(&self, args: &[&str]) -> (i32, String, String) {
        talvault_env(&self.dir, args, &self.envs())
    }

    /// `talvault --vault VAULT ARGS`.
    fn at(&self, vault: &str, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["--vault", vault];
        all.extend_from_slice(args);
        self.raw(&all)
    }

    /// `talvault --vault v ARGS`.
    fn v(&self, args: &[&str]) -> (i32, String, String) {
        self.at("v", args)
    }

    /// Like [`Lab::at`], asserting success; returns stdout and stderr together.
    fn ok_at(&self, vault: &str, args: &[&str]) -> String {
        let (code, out, err) = self.at(vault, args);
        assert_eq!(code, 0, "talvault --vault {vault} {args:?}: {out}{err}");
        out + &err
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_at("v", args)
    }

    /// A vault `v` with environment `prod` sealed to `key` (endpoint 10.0.0.1).
    fn vault(&self, key: &Key) {
        let (code, _, err) = self.raw(&["init", "v"]);
        assert_eq!(code, 0, "init: {err}");
        self.create("v", "prod", key);
    }

    fn create(&self, vault: &str, env: &str, key: &Key) {
        self.ok_at(
            vault,
            &[
                "env",
                "create",
                env,
                "-r",
                &key.recipient,
                "--talos-version",
                "v1.11",
                "--endpoint",
                "10.0.0.1",
            ],
        );
    }

    /// `issue ENV --role os:reader --holder HOLDER -o home/HOLDER.talosconfig`; the serial.
    fn issue(&self, vault: &str, key: &Key, env: &str, holder: &str) -> String {
        let out = self.ok_at(
            vault,
            &[
                "-i",
                &key.file,
                "issue",
                env,
                "--role",
                "os:reader",
                "--holder",
                holder,
                "-o",
                &format!("home/{holder}.talosconfig"),
                "--force",
            ],
        );
        serial_in(&out)
    }

    /// `issuer create ENV` and `issuer activate ENV ID --force`; the id.
    fn issuer(&self, vault: &str, key: &Key, env: &str) -> String {
        let out = self.ok_at(vault, &["-i", &key.file, "issuer", "create", env]);
        let id = word_after(&out, "created issuer ");
        self.ok_at(
            vault,
            &["-i", &key.file, "issuer", "activate", env, &id, "--force"],
        );
        id
    }

    /// `audit verify [ENV]` with the identity (or without, `key` None): exit code, stdout.
    fn audit(&self, vault: &str, key: Option<&Key>, env: &str) -> (i32, String) {
        let mut args = Vec::new();
        if let Some(k) = key {
            args.extend(["-i", k.file.as_str()]);
        }
        args.extend(["audit", "verify", env]);
        let (code, out, err) = self.at(vault, &args);
        assert_eq!(err, "", "audit verify wrote to stderr");
        (code, out)
    }

    /// `audit verify ENV` with the identity must say ok, authenticated, with no warning.
    fn intact(&self, vault: &str, key: &Key, env: &str) -> String {
        let (code, out) = self.audit(vault, Some(key), env);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.starts_with(&format!("{env}: ok, "))
                && out.lines().count() == 1
                && out.contains(", authenticated"),
            "{out}"
        );
        out
    }

    /// `status ENV -o json` with the identity: the environment's report.
    fn status(&self, vault: &str, key: &Key, env: &str) -> Value {
        let (code, out, err) = self.at(vault, &["-i", &key.file, "status", env, "-o", "json"]);
        assert!(code <= 2, "status: {err}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap()[0].clone()
    }

    /// The event files of ENV, parsed, oldest first (`audit log -o json`).
    fn events(&self, vault: &str, env: &str) -> Vec<Value> {
        let out = self.ok_at(vault, &["audit", "log", env, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// The path of the event file with id `id` below `VAULT/envs/ENV/audit`.
    fn event_file(&self, vault: &str, env: &str, id: &str) -> PathBuf {
        files_below(&self.path(&format!("{vault}/envs/{env}/audit")))
            .into_iter()
            .find(|f| f.to_string_lossy().ends_with(&format!("-{id}.json")))
            .unwrap_or_else(|| panic!("no event file {id}"))
    }

    /// Runs `git ARGS` in `dir` (relative to the lab), asserting success; stdout.
    fn git(&self, dir: &str, args: &[&str]) -> String {
        let out = self.git_status(dir, args);
        assert!(out.0, "git {args:?}: {}", out.1);
        out.1
    }

    /// Runs `git ARGS` in `dir`: whether it succeeded, stdout and stderr.
    fn git_status(&self, dir: &str, args: &[&str]) -> (bool, String) {
        let o = Command::new("git")
            .args(args)
            .current_dir(self.path(dir))
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }
}

/// The serial in `… serial 0a1b…, roles …`.
fn serial_in(text: &str) -> String {
    word_after(text, "serial ").trim_end_matches(',').to_owned()
}

/// The word after the first `marker` in `text`.
fn word_after(text: &str, marker: &str) -> String {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {text}"))
        + marker.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

/// Every file below `dir`, sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The problem lines of an `audit verify` report (`  Kind: …`), without warnings.
fn problems(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("  warning: "))
        .map(str::trim)
        .collect()
}

/// Asserts that `report` says TAMPERED with exactly the problems matching `expected` (each a
/// pattern with `[..]`), in order.
fn assert_tampered(env: &str, report: &str, expected: &[&str]) {
    let got = problems(report);
    assert!(
        report.starts_with(&format!("{env}: TAMPERED, {} problem(s)\n", got.len())),
        "{report}"
    );
    assert_eq!(got.len(), expected.len(), "{report}");
    for (p, g) in expected.iter().zip(&got) {
        crate::support::assert_matches(p, g);
    }
}

/// The findings of a `status -o json` environment report, as `kind: what`.
fn findings(status: &Value) -> Vec<String> {
    status["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["kind"].as_str().unwrap(),
                f["what"].as_str().unwrap()
            )
        })
        .collect()
}

/// The vault id in `VAULT/talvault.yaml`.
fn vault_id(lab: &Lab, vault: &str) -> String {
    std::fs::read_to_string(lab.path(&format!("{vault}/talvault.yaml")))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("vault_id: "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// Writes a sealed (format 2) event for ENV of VAULT as someone without the audit key can: on
/// `parents`, dated `time`, accounting for no file, MACed with a key of their own.
fn forge(
    lab: &Lab,
    vault: &str,
    env: &str,
    parents: Vec<EventId>,
    time: time::OffsetDateTime,
    action: &str,
    data: serde_json::Map<String, Value>,
) -> audit::Event {
    forge_files(
        lab,
        vault,
        env,
        parents,
        time,
        action,
        data,
        BTreeMap::new(),
    )
}

/// [`forge`], the event also accounting for `files` (path below the environment → SHA-256).
#[allow(clippy::too_many_arguments)]
fn forge_files(
    lab: &Lab,
    vault: &str,
    env: &str,
    parents: Vec<EventId>,
    time: time::OffsetDateTime,
    action: &str,
    data: serde_json::Map<String, Value>,
    files: BTreeMap<String, Option<String>>,
) -> audit::Event {
    let id = vault_id(lab, vault);
    let event = audit::new_event(
        parents,
        EventBody {
            time,
            actor: "mallory".into(),
            opened_by: None,
            env: env.into(),
            action: action.into(),
            data,
            seal: Some(audit::Seal {
                vault: id.clone(),
                epoch: 1,
                files,
                lane: None,
                lane_epoch: None,
            }),
        },
    )
    .unwrap()
    .with_mac(&audit::AuditKey::derive(&[7; 32], &id, env, 1).unwrap());
    let path = lab
        .path(&format!("{vault}/envs/{env}/audit"))
        .join(event.relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, event.to_json()).unwrap();
    event
}

/// Replaces a file the way `git checkout` does (a new file renamed over the old one), so that
/// the record cache, which trusts an unchanged inode, sees the change.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-edit");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sha256_file(path: &Path) -> String {
    talvault::digest::sha256_hex(&std::fs::read(path).unwrap())
}

// ---------------------------------------------------------------------------------------------
// 1. Records: deleted, edited, forged, planted

/// An edited `not_after` (the 2099 trick) takes the record out of the count instead of making
/// the certificate look valid; `status` says which record disagrees, `audit verify` which
/// event wrote it, and commands that need the record refuse it.
#[test]
fn edited_certificate_record_is_not_counted() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let kept = lab.issue("v", &a, "prod", "alice");
    let edited = lab.issue("v", &a, "prod", "bob");
    let record = lab.path(&format!("v/envs/prod/certs/{edited}.yaml"));
    let text = std::fs::read_to_string(&record).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("not_after: "))
        .unwrap()
        .to_owned();
    replace_file(
        &record,
        text.replace(&line, "not_after: 2099-01-01T00:00:00Z")
            .as_bytes(),
    );

    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["issued"], 1, "{s}");
    assert_eq!(s["counts"]["live"], 1, "{s}");
    assert_eq!(s["live"][0]["serial"], kept.as_str());
    assert_eq!(
        findings(&s),
        [format!(
            "disagrees: envs/prod/certs/{edited}.yaml is not what the audit trail recorded; not counted"
        )]
    );
    assert_eq!(s["grade"], 2);
    for key in [Some(&a), None] {
        let (code, out) = lab.audit("v", key, "prod");
        assert_eq!(code, 1, "{out}");
        assert_tampered(
            "prod",
            &out,
            &[&format!(
                "Edited: certs/{edited}.yaml: changed since event [..] wrote it"
            )],
        );
    }
    // Revoking it needs its record: refused, as every use of a disagreeing record is.
    let (code, _, err) = lab.v(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &edited,
        "--reason",
        "keyCompromise",
    ]);
    assert_eq!(code, 1);
    crate::support::assert_matches(
        &format!(
            "error: envs/prod/certs/{edited}.yaml: its contents are not what audit event [..] recorded\n\
             hint: restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed\n"
        ),
        &err,
    );
    // `verify` finds no record it can trust for bob's certificate.
    let (_, out, _) = lab.v(&[
        "-i",
        &a.file,
        "verify",
        "prod",
        "home/bob.talosconfig",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let check_of = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("{v}"))
            .clone()
    };
    assert_eq!(check_of("recorded")["result"], "warn", "{v}");
    let files = check_of("record files");
    assert_eq!(files["result"], "warn", "{v}");
    let detail = files["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("envs/prod/certs/{edited}.yaml"))
            && detail.ends_with("not trusted"),
        "{v}"
    );

    // Honest use goes on; restoring the record restores the count.
    lab.issue("v", &a, "prod", "carol");
    replace_file(&record, text.as_bytes());
    assert_eq!(lab.status("v", &a, "prod")["counts"]["live"], 3);
    lab.intact("v", &a, "prod");
}

/// Deleting a revocation's file does not un-revoke: `verify`, `crl` (JSON and signed) still
/// say revoked, and `status` and `audit verify` say the file is missing.
#[test]
fn deleted_revocation_still_revokes() {
    if !have("openssl") {
        return;
    }
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let issuer = lab.issuer("v", &a, "prod");
    let serial = lab.issue("v", &a, "prod", "bob");
    lab.ok(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &serial,
        "--reason",
        "keyCompromise",
    ]);
    std::fs::remove_file(lab.path(&format!("v/envs/prod/revocations/{serial}.yaml"))).unwrap();

    let (code, out, _) = lab.v(&["-i", &a.file, "verify", "prod", "home/bob.talosconfig"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("revoked"), "{out}");
    let (code, out, err) = lab.v(&["-i", &a.file, "crl", "prod", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["revoked"][0]["serial"], serial.as_str(), "{list}");
    assert_eq!(list["revoked"].as_array().unwrap().len(), 1);
    lab.ok(&["-i", &a.file, "crl", "prod", "-o", "home/prod.crl"]);
    let (ok, text) = crate::support::openssl(
        &["crl", "-in", "home/prod.crl", "-noout", "-text"],
        &lab.dir,
    );
    assert!(ok, "{text}");
    // openssl prints whole bytes ("0A1B…"), the vault's serial may start with a zero nibble:
    // compare without leading zeros on either side.
    let listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|s| s.to_lowercase().trim_start_matches('0').to_owned())
        .collect();
    assert_eq!(listed, [serial.trim_start_matches('0')], "{text}");
    let _ = issuer;

    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["revoked"], 1, "{s}");
    assert_eq!(s["counts"]["live"], 0, "{s}");
    assert_eq!(
        findings(&s),
        [format!(
            "disagrees: envs/prod/revocations/{serial}.yaml is missing; the audit trail records the revocation, which still counts"
        )]
    );
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[&format!(
            "Deleted: revocations/{serial}.yaml: missing; last written by event [..]"
        )],
    );
    // Revoking again changes nothing: the trail already knows.
    let out = lab.ok(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &serial,
        "--reason",
        "superseded",
    ]);
    assert!(out.contains("was already revoked"), "{out}");
    assert!(out.contains("(keyCompromise)"), "{out}");
    lab.issue("v", &a, "prod", "carol");
}

/// A revocation file no event wrote (made by copying a real one from a clone that revoked)
/// revokes nothing and is reported as planted.
#[test]
fn forged_revocation_file_is_not_counted() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let serial = lab.issue("v", &a, "prod", "bob");
    copy_dir(&lab.path("v"), &lab.path("w"));
    lab.ok_at(
        "w",
        &[
            "-i",
            &a.file,
            "revoke",
            "prod",
            &serial,
            "--reason",
            "keyCompromise",
        ],
    );
    let name = format!("envs/prod/revocations/{serial}.yaml");
    std::fs::create_dir_all(lab.path("v/envs/prod/revocations")).unwrap();
    std::fs::copy(
        lab.path(&format!("w/{name}")),
        lab.path(&format!("v/{name}")),
    )
    .unwrap();

    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["revoked"], 0, "{s}");
    assert_eq!(s["counts"]["live"], 1, "{s}");
    assert_eq!(
        findings(&s),
        [format!(
            "disagrees: {name} is not what the audit trail recorded; not counted"
        )]
    );
    let (_, out, _) = lab.v(&["-i", &a.file, "crl", "prod", "--format", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["revoked"], serde_json::json!([]), "{list}");
    let (code, out, _) = lab.v(&["-i", &a.file, "verify", "prod", "home/bob.talosconfig"]);
    assert_eq!(code, 0, "{out}");
    for key in [Some(&a), None] {
        let (code, out) = lab.audit("v", key, "prod");
        assert_eq!(code, 1, "{out}");
        assert_tampered(
            "prod",
            &out,
            &[&format!(
                "Forged: revocations/{serial}.yaml: no event accounts for it (planted?)"
            )],
        );
    }
    // An honest revoke replaces the planted file with its own record and event.
    std::fs::remove_file(lab.path(&format!("v/{name}"))).unwrap();
    lab.ok(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &serial,
        "--reason",
        "keyCompromise",
    ]);
    assert_eq!(lab.status("v", &a, "prod")["counts"]["revoked"], 1);
    lab.intact("v", &a, "prod");
}

/// Whether `key`'s identity opens the age file at `path`.
fn opens(lab: &Lab, key: &Key, path: &Path) -> bool {
    let text = std::fs::read_to_string(lab.path(&key.file)).unwrap();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let identity: age::x25519::Identity = secret.parse().unwrap();
    let bytes = std::fs::read(path).unwrap();
    talvault::store::age::open(
        path,
        &bytes,
        &[talvault::store::age::Identity::from_x25519(identity, "k")],
    )
    .is_ok()
}

/// The expected refusal of a file that disagrees with the trail.
fn disagrees(file: &str) -> String {
    format!(
        "error: {file}: its contents are not what audit event [..] recorded\n\
         hint: restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed\n"
    )
}

/// `issuer.yaml` is written once and never again: an edited one is refused by every command
/// that reads it, and reported by `audit verify`.
#[test]
fn edited_issuer_yaml_is_refused() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let id = lab.issuer("v", &a, "prod");
    let file = lab.path(&format!("v/envs/prod/issuers/{id}/issuer.yaml"));
    let text = std::fs::read_to_string(&file).unwrap();
    replace_file(&file, format!("{text}# reviewed\n").as_bytes());
    let shown = format!("envs/prod/issuers/{id}/issuer.yaml");
    for args in [
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"][..],
        &["issuer", "list", "prod"],
        &["patch", "accepted-cas", "prod"],
        &["status", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        crate::support::assert_matches(&disagrees(&shown), &err);
    }
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[&format!(
            "Edited: issuers/{id}/issuer.yaml: changed since event [..] wrote it"
        )],
    );
    replace_file(&file, text.as_bytes());
    lab.issue("v", &a, "prod", "bob");
    lab.intact("v", &a, "prod");
}

/// `env.yaml` holds the endpoints and the OS CA a talosconfig trusts: an edited one must not
/// reach a talosconfig, and is reported.
#[test]
fn edited_env_yaml_is_refused() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let file = lab.path("v/envs/prod/env.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("- 10.0.0.1\n"), "{text}");
    replace_file(
        &file,
        text.replace("- 10.0.0.1\n", "- 10.6.6.6\n").as_bytes(),
    );
    for args in [
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"][..],
        &["break-glass", "prod", "--reason", "INC-1", "-o", "home/y"],
        &["env", "show", "prod"],
        &["status", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        crate::support::assert_matches(&disagrees("envs/prod/env.yaml"), &err);
    }
    assert!(!lab.path("home/x").exists() && !lab.path("home/y").exists());
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &["Edited: env.yaml: changed since event [..] wrote it"],
    );
    replace_file(&file, text.as_bytes());
    lab.issue("v", &a, "prod", "bob");
    lab.intact("v", &a, "prod");
}

/// `recipients.txt` decides who new secrets are sealed to: a recipient an attacker appends must
/// never receive one.
#[test]
fn edited_recipients_txt_is_refused() {
    let lab = Lab::new();
    let a = lab.key("a");
    let m = lab.key("mallory");
    lab.vault(&a);
    let file = lab.path("v/envs/prod/recipients.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    replace_file(&file, format!("{text}{}\n", m.recipient).as_bytes());
    let b = lab.key("b");
    for args in [
        &["issuer", "create", "prod"][..],
        &["recipients", "add", "prod", "-r", b.recipient.as_str()],
        &["status", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        crate::support::assert_matches(&disagrees("envs/prod/recipients.txt"), &err);
    }
    // Nothing in the vault opens for mallory.
    for f in files_below(&lab.path("v/envs/prod")) {
        if f.extension().is_some_and(|e| e == "age") {
            assert!(!opens(&lab, &m, &f), "{}", f.display());
        }
    }
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &["Edited: recipients.txt: changed since event [..] wrote it"],
    );
    replace_file(&file, text.as_bytes());
    lab.ok(&[
        "-i",
        &a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &b.recipient,
    ]);
    lab.intact("v", &a, "prod");
    lab.intact("v", &b, "prod");
}

/// A policy change takes effect only once accepted into the trail (`policy accept`).
#[test]
fn edited_policy_needs_acceptance() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let file = lab.path("v/envs/prod/policy.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("max_ttl: 168h", "max_ttl: 8760h", 1);
    assert_ne!(edited, text, "{text}");
    replace_file(&file, edited.as_bytes());
    let refused = "error: envs/prod/policy.yaml differs from the policy the audit trail accepted\n\
                   hint: review the change, then record it: talvault policy accept prod --reason \"PR …\"\n";
    for args in [
        &[
            "issue", "prod", "--role", "os:admin", "--ttl", "8000h", "-o", "home/x",
        ][..],
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"],
        &["policy", "show", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (1, "", refused),
            "{args:?}"
        );
    }
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &["Edited: policy.yaml: changed since event [..] wrote it"],
    );
    lab.ok(&[
        "-i",
        &a.file,
        "policy",
        "accept",
        "prod",
        "--reason",
        "PR 12: longer admin",
    ]);
    lab.ok(&[
        "-i", &a.file, "issue", "prod", "--role", "os:admin", "--ttl", "8000h", "-o", "home/x",
    ]);
    lab.intact("v", &a, "prod");
    let accept = lab
        .events("v", "prod")
        .into_iter()
        .find(|e| e["action"] == "policy.accept")
        .unwrap();
    assert_eq!(accept["data"]["reason"], "PR 12: longer admin");
    assert_eq!(
        accept["files"]["policy.yaml"],
        sha256_file(&file).as_str(),
        "{accept}"
    );
}

/// An issuer directory copied in from elsewhere (the attacker holds its key) is not this
/// environment's: not listed, not in acceptedCAs, cannot be activated, reported as planted.
#[test]
fn planted_issuer_directory_is_ignored() {
    let lab = Lab::new();
    let a = lab.key("a");
    let m = lab.key("mallory");
    lab.vault(&a);
    let ours = lab.issuer("v", &a, "prod");
    // Mallory's own vault, with an issuer whose key she holds.
    let (code, _, err) = lab.raw(&["init", "m"]);
    assert_eq!(code, 0, "{err}");
    lab.create("m", "prod", &m);
    let out = lab.ok_at("m", &["-i", &m.file, "issuer", "create", "prod"]);
    let theirs = word_after(&out, "created issuer ");
    copy_dir(
        &lab.path(&format!("m/envs/prod/issuers/{theirs}")),
        &lab.path(&format!("v/envs/prod/issuers/{theirs}")),
    );

    let list = lab.ok(&["-i", &a.file, "issuer", "list", "prod", "-o", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ours.as_str()]);
    let patch = lab.ok(&["-i", &a.file, "patch", "accepted-cas", "prod"]);
    let their_pem =
        std::fs::read_to_string(lab.path(&format!("m/envs/prod/issuers/{theirs}/issuer.yaml")))
            .unwrap();
    let their_line = their_pem
        .lines()
        .find(|l| l.trim_start().starts_with("MII") || l.len() > 60)
        .unwrap()
        .trim()
        .to_owned();
    assert!(!patch.contains(&their_line), "{patch}");
    let (code, _, err) = lab.v(&[
        "-i", &a.file, "issuer", "activate", "prod", &theirs, "--force",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error: environment \"prod\" has no issuer \"{theirs}\"\n"
        )),
        "{err}"
    );
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[
            &format!("Forged: issuers/{theirs}/issuer.yaml: no event accounts for it (planted?)"),
            &format!("Forged: issuers/{theirs}/key.age: no event accounts for it (planted?)"),
        ],
    );
    // Signing goes on with ours.
    let out = lab.ok(&[
        "-i",
        &a.file,
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "home/x",
    ]);
    assert!(out.contains(&format!("signed by issuer {ours}")), "{out}");
}

/// A removed recipient restores the key files, bundle and recipients list from before their
/// removal (all still open for the remaining recipients and agree with each other): the events
/// since the removal name a newer key epoch than the restored `audit.age` holds, so every
/// command given an identity refuses it instead of setting those events aside and sealing the
/// next secret to the removed recipient again.
#[test]
fn key_files_rolled_back_past_a_removal_are_refused() {
    let lab = Lab::new();
    let a = lab.key("a");
    let b = lab.key("b");
    lab.vault(&a);
    lab.ok(&[
        "-i",
        &a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &b.recipient,
    ]);
    let files = [
        "audit.age",
        "bundle.age",
        "recipients.txt",
        "backup-audit.age",
    ];
    let saved: Vec<(String, Option<Vec<u8>>)> = files
        .iter()
        .map(|f| {
            let path = lab.path(&format!("v/envs/prod/{f}"));
            ((*f).to_owned(), std::fs::read(path).ok())
        })
        .collect();
    lab.ok(&[
        "-i",
        &a.file,
        "recipients",
        "remove",
        "prod",
        "-r",
        &b.recipient,
    ]);
    lab.issue("v", &a, "prod", "carol");
    for (f, bytes) in &saved {
        if let Some(bytes) = bytes {
            replace_file(&lab.path(&format!("v/envs/prod/{f}")), bytes);
        }
    }
    for args in [
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"][..],
        &["recipients", "add", "prod", "-r", &b.recipient],
        &["status", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}: {err}");
        assert!(
            err.starts_with("error: envs/prod/audit.age: it holds key epochs up to ")
                && err.contains(": the file was rolled back or replaced\n"),
            "{args:?}: {err}"
        );
    }
}

/// `audit.age` replaced by one the attacker sealed to the public recipients, with a key of
/// their own, so that their forged events carry valid MACs under it: it does not belong to the
/// bundle, so commands refuse it and `audit verify` says so (and does not take the attacker's
/// MACs for genuine).
#[test]
fn replaced_audit_keys_are_refused() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let serial = lab.issue("v", &a, "prod", "bob");
    let keys = audit::AuditKeys {
        bundle_sha256: "0".repeat(64),
        keys: vec![audit::EpochKey::new(1, &[7; 32])],
    };
    let recipient = talvault::store::age::Recipient::parse(&a.recipient).unwrap();
    let sealed = talvault::store::age::seal(&keys.to_json(), &[recipient]).unwrap();
    std::fs::write(lab.path("v/envs/prod/audit.age"), &sealed).unwrap();
    // Alone, the replaced file is not the one the chain recorded.
    for args in [
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"][..],
        &["status", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        assert!(
            err.starts_with("error: envs/prod/audit.age: its contents are not what audit event ")
                && err.ends_with(" recorded\nhint: restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed\n"),
            "{args:?}: {err}"
        );
    }
    // With a forged revocation MACed under the planted key and accounting for the planted file
    // (the chain, read with the attacker's keys, now agrees with it), the binding to the bundle
    // is what refuses it.
    let events = lab.events("v", "prod");
    let head = EventId::parse(events.last().unwrap()["id"].as_str().unwrap()).unwrap();
    let mut data = serde_json::Map::new();
    data.insert("serial".into(), Value::from(serial.as_str()));
    data.insert("reason".into(), Value::from("keyCompromise"));
    forge_files(
        &lab,
        "v",
        "prod",
        vec![head],
        time::OffsetDateTime::now_utc(),
        "revoke",
        data,
        BTreeMap::from([(
            "audit.age".to_owned(),
            Some(talvault::digest::sha256_hex(&sealed)),
        )]),
    );
    let refused = "error: envs/prod/audit.age: it does not belong to this environment's bundle (anyone can seal a file to the public recipients: one of the two was replaced)\n\
                   hint: restore envs/ENV/audit.age and bundle.age from git history, then run `talvault audit verify ENV`\n";
    for args in [
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"][..],
        &["bundle", "export", "prod"],
        &["status", "prod"],
        &["verify", "prod", "home/bob.talosconfig"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (1, "", refused),
            "{args:?}"
        );
    }
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        // (The forged event accounts for the planted file, so no file looks edited.)
        &["Forged: audit.age was not sealed with this environment's bundle (replaced?)"],
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The chain: re-hashed, inserted, replayed events

/// The canonical form an event id is computed over: the event without `id` and `mac`, keys
/// sorted by their UTF-8 bytes, no whitespace (what an attacker re-implements in a few lines).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        scalar => scalar.to_string(),
    }
}

/// Rewrites every event file of `dir` (an environment's `audit/`) through `edit`, oldest first,
/// and re-hashes: each event's id is recomputed, its children's parents follow, files are
/// renamed. MACs are left as they were (the attacker cannot compute them). Returns how many
/// events were rewritten.
fn edit_and_rehash(
    dir: &Path,
    mut edit: impl FnMut(usize, &mut serde_json::Map<String, Value>),
) -> usize {
    let mut events: Vec<(PathBuf, serde_json::Map<String, Value>)> = files_below(dir)
        .into_iter()
        .map(|f| {
            let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            (f, v.as_object().unwrap().clone())
        })
        .collect();
    // Parents before children: by time, then by whether a parent is still to come.
    events.sort_by(|a, b| a.1["time"].as_str().cmp(&b.1["time"].as_str()));
    let mut order = Vec::new();
    let mut done: std::collections::BTreeSet<String> = Default::default();
    while !events.is_empty() {
        let i = events
            .iter()
            .position(|(_, e)| {
                e["parents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| done.contains(p.as_str().unwrap()))
            })
            .unwrap();
        let e = events.remove(i);
        done.insert(e.1["id"].as_str().unwrap().to_owned());
        order.push(e);
    }
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for (n, (path, mut e)) in order.into_iter().enumerate() {
        let old = e["id"].as_str().unwrap().to_owned();
        edit(n, &mut e);
        let parents: Vec<Value> = e["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                Value::from(
                    renamed
                        .get(p.as_str().unwrap())
                        .cloned()
                        .unwrap_or_else(|| p.as_str().unwrap().to_owned()),
                )
            })
            .collect();
        e.insert("parents".into(), Value::Array(parents));
        let mac = e.remove("mac");
        e.remove("id");
        let id = talvault::digest::sha256_hex(canonical(&Value::Object(e.clone())).as_bytes());
        e.insert("id".into(), Value::from(id.as_str()));
        if let Some(mac) = mac {
            e.insert("mac".into(), mac);
        }
        std::fs::remove_file(&path).unwrap();
        let name = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace(&old, &id);
        std::fs::write(
            path.with_file_name(name),
            serde_json::to_vec_pretty(&Value::Object(e)).unwrap(),
        )
        .unwrap();
        renamed.insert(old, id);
    }
    renamed.len()
}

/// Edit the oldest event and re-hash everything after it: the ids and links hold, the MACs do
/// not. With an identity `audit verify` names every rewritten event; without one it says
/// plainly that authenticity was not checked (exit 3); commands with an identity ignore the
/// rewritten events.
#[test]
fn edit_and_rehash_fails_the_mac() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    lab.issue("v", &a, "prod", "bob");
    lab.ok(&["-i", &a.file, "bundle", "export", "prod"]);
    let before = lab.events("v", "prod").len();
    let n = edit_and_rehash(&lab.path("v/envs/prod/audit"), |i, e| {
        if i == 0 {
            e.insert("actor".into(), Value::from("mallory"));
        }
    });
    assert_eq!(n, before);
    // The structure is intact: the re-hash is consistent.
    let (code, out) = lab.audit("v", None, "prod");
    assert_eq!(code, 3, "{out}");
    crate::support::assert_matches(
        "prod: ok, 3 events, 1 head(s), [..] files accounted for; authenticity NOT checked: cannot open audit.age: no identity to open envs/prod/audit.age\n",
        &out,
    );
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    // Every event is forged, so no genuine event accounts for any file.
    let mut expected: Vec<String> = lab
        .events("v", "prod")
        .iter()
        .map(|_| "Forged: [..]: forged: its MAC does not verify under the audit key".to_owned())
        .collect();
    let env_dir = lab.path("v/envs/prod");
    let mut files: Vec<String> = files_below(&env_dir)
        .iter()
        .map(|f| f.strip_prefix(&env_dir).unwrap().display().to_string())
        .filter(|f| !f.starts_with("audit/"))
        .chain(["/talvault.yaml".to_owned()])
        .collect();
    files.sort();
    expected.extend(
        files
            .iter()
            .map(|f| format!("Forged: {f}: no event accounts for it (planted?)")),
    );
    assert_tampered(
        "prod",
        &out,
        &expected.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(lab.events("v", "prod")[0]["actor"] == "mallory");
    // With the identity nothing rests on the rewritten events: no event accounts for the
    // bundle (the first file checked once the keys are in use) or anything else any more, and
    // every command refuses the environment.
    let refused = "error: envs/prod/bundle.age: no audit event accounts for it\n\
                   hint: restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed\n";
    for args in [
        &["status", "prod"][..],
        &["issue", "prod", "--role", "os:reader", "-o", "home/x"],
        &["bundle", "export", "prod"],
    ] {
        let mut all = vec!["-i", a.file.as_str()];
        all.extend_from_slice(args);
        let (code, out, err) = lab.v(&all);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (1, "", refused),
            "{args:?}"
        );
    }
    // Without it, status reads the structure and says so.
    let (code, out, _) = lab.v(&["status", "prod"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("  audit trail: structure only (no identity given that opens audit.age)\n"),
        "{out}"
    );
}

/// A well-formed sealed event with a made-up MAC, inserted as a side branch on an old event
/// (back-dated to just after it): `audit verify` with an identity calls it forged, commands do
/// not count it, and the next honest event does not link it in.
#[test]
fn inserted_side_branch_is_not_linked_in() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let serial = lab.issue("v", &a, "prod", "bob");
    lab.ok(&["-i", &a.file, "bundle", "export", "prod"]);
    let events = lab.events("v", "prod");
    let root = &events[0];
    let head = events.last().unwrap()["id"].as_str().unwrap().to_owned();
    let root_time = time::OffsetDateTime::parse(
        root["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // Un-issue nothing, revoke bob's certificate behind everyone's back, with a record to match.
    let mut data = serde_json::Map::new();
    data.insert("serial".into(), Value::from(serial.as_str()));
    data.insert("reason".into(), Value::from("keyCompromise"));
    let forged = forge(
        &lab,
        "v",
        "prod",
        vec![EventId::parse(root["id"].as_str().unwrap()).unwrap()],
        root_time,
        "revoke",
        data,
    );
    let forged_path = forged.relative_path();
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[&format!(
            "Forged: {forged_path}: forged: its MAC does not verify under the audit key"
        )],
    );
    // Structure alone cannot tell: two heads, as after a merge, and it says so.
    let (code, out) = lab.audit("v", None, "prod");
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("prod: ok, 4 events, 2 head(s), "), "{out}");
    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["revoked"], 0, "{s}");
    assert_eq!(s["counts"]["live"], 1, "{s}");
    // The next honest event names the real head only.
    lab.issue("v", &a, "prod", "carol");
    let newest = lab
        .events("v", "prod")
        .into_iter()
        .find(|e| e["action"] == "issue" && e["data"]["holder"] == "carol")
        .unwrap();
    assert_eq!(newest["parents"], serde_json::json!([head]), "{newest}");
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_eq!(problems(&out).len(), 1, "{out}");
}

/// A root event copied from another vault, or from another environment of this one, names
/// where it came from (and its MAC is under another key).
#[test]
fn replayed_root_events_are_foreign() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    lab.create("v", "stage", &a);
    let (code, _, err) = lab.raw(&["init", "w"]);
    assert_eq!(code, 0, "{err}");
    lab.create("w", "prod", &a);
    let mut head = lab.events("v", "prod").last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_vault = vault_id(&lab, "w");
    for (from, names) in [
        ("w/envs/prod", format!("vault {other_vault}")),
        ("v/envs/stage", "environment \"stage\"".to_owned()),
    ] {
        let root = files_below(&lab.path(&format!("{from}/audit")))
            .into_iter()
            .next()
            .unwrap();
        let rel = root
            .strip_prefix(lab.path(&format!("{from}/audit")))
            .unwrap()
            .to_owned();
        let target = lab.path("v/envs/prod/audit").join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&root, &target).unwrap();
        let rel = rel.display().to_string();
        let (code, out) = lab.audit("v", Some(&a), "prod");
        assert_eq!(code, 1, "{out}");
        assert_tampered(
            "prod",
            &out,
            &[
                &format!("Forged: {rel}: copied from elsewhere: it names {names}"),
                &format!("Forged: {rel}: forged: its MAC does not verify under the audit key"),
            ],
        );
        // Without an identity the binding is still checked.
        let (code, out) = lab.audit("v", None, "prod");
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "  Forged: {rel}: copied from elsewhere: it names {names}\n"
            )),
            "{out}"
        );
        // Honest work goes on, on the real head.
        let (code, _, err) = lab.v(&["-i", &a.file, "bundle", "export", "prod"]);
        assert_eq!(code, 0, "{err}");
        let events = lab.events("v", "prod");
        let newest = events
            .iter()
            .find(|e| e["parents"] == serde_json::json!([head.clone()]))
            .unwrap();
        assert_eq!(newest["action"], "bundle.export");
        head = newest["id"].as_str().unwrap().to_owned();
        std::fs::remove_file(&target).unwrap();
        lab.intact("v", &a, "prod");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Clocks

impl Lab {
    /// `talvault --vault VAULT ARGS` with the clock started at `at` (libfaketime, as another
    /// machine whose clock is off would run it).
    fn at_time(
        &self,
        vault: &str,
        at: time::OffsetDateTime,
        args: &[&str],
    ) -> (i32, String, String) {
        let stamp = format!(
            "@{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        );
        let out = Command::new("faketime")
            .args([
                "-f",
                &stamp,
                env!("CARGO_BIN_EXE_talvault"),
                "--vault",
                vault,
            ])
            .args(args)
            .current_dir(&self.dir)
            .env_remove("TALVAULT_KUBERNETES_BOOTSTRAP_TOKEN")
            .env_remove("TALVAULT_PKCS11_PIN")
            .envs(self.envs())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

fn event_time(e: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        e["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// Another machine's clock 3 s fast writes an event, this one (right) writes the next: a
/// warning, exit 0. An hour fast: a finding (exit 1), yet no command refuses to work.
#[test]
fn clock_skew_warns_within_the_tolerance() {
    if !have("faketime") {
        return;
    }
    for ahead in [3i64, 3600] {
        let lab = Lab::new();
        let a = lab.key("a");
        lab.vault(&a);
        let t0 = event_time(lab.events("v", "prod").last().unwrap()) + time::Duration::seconds(1);
        let fast = t0 + time::Duration::seconds(ahead);
        let (code, _, err) = lab.at_time(
            "v",
            fast,
            &[
                "-i",
                &a.file,
                "issue",
                "prod",
                "--role",
                "os:reader",
                "-o",
                "home/fast",
            ],
        );
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = lab.at_time("v", t0, &["-i", &a.file, "bundle", "export", "prod"]);
        assert_eq!(code, 0, "{err}");
        let events = lab.events("v", "prod");
        let (parent, child) = (&events[events.len() - 2], &events[events.len() - 1]);
        assert_eq!(child["parents"][0], parent["id"]);
        let skew = (event_time(parent) - event_time(child)).whole_seconds();
        assert!((ahead - 1..=ahead + 1).contains(&skew), "{skew}");
        let name = |e: &Value| {
            let t = event_time(e);
            format!(
                "{:04}/{:02}/{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}.json",
                t.year(),
                u8::from(t.month()),
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                e["id"].as_str().unwrap()
            )
        };
        let (code, out) = lab.audit("v", Some(&a), "prod");
        if ahead == 3 {
            assert_eq!(code, 0, "{out}");
            crate::support::assert_matches(
                &format!(
                    "prod: ok, 3 events, 1 head(s), [..] files accounted for, authenticated\n  warning: {}: dated {skew} s before its parent {} (clocks differ; within the tolerance)\n",
                    name(child),
                    name(parent)
                ),
                &out,
            );
        } else {
            assert_eq!(code, 1, "{out}");
            assert_tampered(
                "prod",
                &out,
                &[&format!(
                    "Reordered: {}: re-ordered: dated before its parent {} by more than the clock tolerance",
                    name(child),
                    name(parent)
                )],
            );
        }
        // No command refuses to work because another machine's clock was off.
        let serial = lab.issue("v", &a, "prod", "bob");
        let (code, _, err) = lab.v(&["-i", &a.file, "status", "prod"]);
        assert!(code <= 1, "{err}");
        lab.ok(&["-i", &a.file, "verify", "prod", "home/bob.talosconfig"]);
        lab.ok(&[
            "-i",
            &a.file,
            "revoke",
            "prod",
            &serial,
            "--reason",
            "superseded",
        ]);
        lab.ok(&["-i", &a.file, "crl", "prod", "--format", "json"]);
        lab.ok(&[
            "-i",
            &a.file,
            "break-glass",
            "prod",
            "--reason",
            "INC-9",
            "-o",
            "home/bg",
        ]);
        lab.ok(&[
            "-i",
            &a.file,
            "env",
            "untaint",
            "prod",
            "--reason",
            "INC-9 closed",
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Git: two clones, and --since

impl Lab {
    /// Commits everything in the repository `dir`.
    fn commit(&self, dir: &str, message: &str) {
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// Merges branch `main` of the repository `from` into `into`: whether git merged without a
    /// conflict, and the paths it could not merge (relative to the repository).
    fn merge(&self, into: &str, from: &str) -> (bool, Vec<String>) {
        self.git(into, &["fetch", "-q", &format!("../{from}"), "main"]);
        let (ok, text) = self.git_status(into, &["merge", "--no-edit", "-q", "FETCH_HEAD"]);
        let conflicted: Vec<String> = self
            .git(into, &["diff", "--name-only", "--diff-filter=U"])
            .lines()
            .map(str::to_owned)
            .collect();
        assert!(ok || !conflicted.is_empty(), "merge failed: {text}");
        (ok, conflicted)
    }

    /// A vault `v` in its own git repository: environment prod sealed to `key`, an active
    /// issuer, and two certificates; committed on branch main.
    fn repo(&self, key: &Key) -> (String, String, String) {
        self.vault(key);
        let issuer = self.issuer("v", key, "prod");
        let one = self.issue("v", key, "prod", "one");
        let two = self.issue("v", key, "prod", "two");
        self.git("v", &["init", "-q", "-b", "main"]);
        self.commit("v", "vault");
        (issuer, one, two)
    }
}

/// Two clones run every mutating command, commit, and merge in real git: no textual conflict in
/// any file; the merged trail verifies (two heads until the next event); the one thing a merge
/// makes inconsistent, two active issuers of one epoch, is reported with the command that fixes
/// it; after the fix all is well.
#[test]
fn two_clones_merge_without_conflicts() {
    if !have("git") {
        return;
    }
    let lab = Lab::new();
    let a = lab.key("a");
    let b = lab.key("b");
    let (first, one, two) = lab.repo(&a);
    lab.git(".", &["clone", "-q", "v", "w"]);
    let mut rotated = Vec::new();
    let mut crl_numbers = Vec::new();
    for (side, revoke, holder) in [("v", &one, "alice"), ("w", &two, "bob")] {
        let i = ["-i", a.file.as_str()];
        let run = |args: &[&str]| lab.ok_at(side, &[&i[..], args].concat());
        lab.issue(side, &a, "prod", holder);
        run(&["revoke", "prod", revoke, "--reason", "keyCompromise"]);
        run(&["crl", "prod", "-o", &format!("home/{side}.crl")]);
        crl_numbers.push(
            lab.events(side, "prod").last().unwrap()["data"]["crl_number"]
                .as_u64()
                .unwrap(),
        );
        run(&[
            "break-glass",
            "prod",
            "--reason",
            "INC-7",
            "-o",
            &format!("home/{side}.bg"),
        ]);
        run(&["env", "untaint", "prod", "--reason", "INC-7 closed"]);
        let out = run(&["issuer", "rotate", "prod"]);
        let id = word_after(&out, "created issuer ");
        run(&["issuer", "activate", "prod", &id, "--force"]);
        rotated.push(id);
        // v changes the policy (reviewed, accepted); w accepts its unchanged policy later.
        if side == "v" {
            let file = lab.path("v/envs/prod/policy.yaml");
            let text = std::fs::read_to_string(&file).unwrap();
            replace_file(
                &file,
                text.replacen("max_ttl: 168h", "max_ttl: 100h", 1)
                    .as_bytes(),
            );
        }
        run(&[
            "policy",
            "accept",
            "prod",
            "--reason",
            &format!("reviewed on {side}"),
        ]);
        run(&["bundle", "export", "prod"]);
        run(&["patch", "accepted-cas", "prod"]);
    }
    // Recipients change on one side only (both sides: see the next test).
    lab.ok_at(
        "v",
        &[
            "-i",
            &a.file,
            "recipients",
            "add",
            "prod",
            "-r",
            &b.recipient,
        ],
    );
    lab.commit("v", "work on v");
    lab.commit("w", "work on w");
    let (ok, conflicted) = lab.merge("v", "w");
    assert!(ok, "conflicts: {conflicted:?}");
    assert_eq!(conflicted, Vec::<String>::new());

    // The merged trail: intact but for the two active epoch-2 issuers, with the fix.
    let (v_issuer, w_issuer) = (rotated[0].clone(), rotated[1].clone());
    rotated.sort();
    let fix = format!("talvault issuer retire prod {}", rotated[1]);
    let (code, out) = lab.audit("v", Some(&a), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[&format!(
            "Conflict: issuers {}, {} are all active in epoch 2 (concurrent rotations merged); keep one: {fix}",
            rotated[0], rotated[1]
        )],
    );
    let s = lab.status("v", &a, "prod");
    assert!(
        findings(&s).contains(&format!(
            "conflict: issuers {} and {} are both active in epoch 2 (concurrent rotations merged); keep one: {fix}",
            rotated[0], rotated[1]
        )),
        "{s}"
    );
    // Both sides' work counts: four certificates issued (two break-glass), two revoked, no
    // taint, the first issuer still active beside the rotated ones.
    assert_eq!(s["counts"]["issued"], 6, "{s}");
    assert_eq!(s["counts"]["revoked"], 2, "{s}");
    assert_eq!(s["tainted"], Value::Null, "{s}");
    let states: BTreeMap<String, String> = s["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states[&first], "active");
    let fix_args: Vec<&str> = fix.split(' ').skip(1).collect();
    lab.ok(&[&["-i", a.file.as_str()][..], &fix_args].concat());
    lab.commit("v", "one issuer per epoch");
    let merge_event = lab.events("v", "prod").pop().unwrap();
    assert_eq!(
        merge_event["parents"].as_array().unwrap().len(),
        2,
        "{merge_event}"
    );
    let out = lab.intact("v", &a, "prod");
    assert!(out.contains(" 1 head(s)"), "{out}");
    lab.intact("v", &b, "prod");
    // What no file conflict shows: w rotated while v added b, so w's new issuer key is sealed
    // to the recipients w knew (a only). Re-sealing to the current set (adding a recipient who
    // is already there) mends it.
    let key_of = |id: &str| lab.path(&format!("v/envs/prod/issuers/{id}/key.age"));
    assert!(opens(&lab, &b, &key_of(&v_issuer)));
    assert!(!opens(&lab, &b, &key_of(&w_issuer)));
    lab.ok(&[
        "-i",
        &a.file,
        "recipients",
        "add",
        "prod",
        "-r",
        &b.recipient,
    ]);
    assert!(opens(&lab, &b, &key_of(&w_issuer)));
    lab.commit("v", "re-seal");
    let s = lab.status("v", &a, "prod");
    assert_eq!(s["grade"], 0, "{s}");
    // The next CRL number of the issuer both clones' CRLs came from is above both (numbers
    // run per issuer, RFC 5280 §5.2.3; the clones signed within the same second, often).
    lab.ok(&[
        "-i",
        &a.file,
        "crl",
        "prod",
        "--issuer",
        &first,
        "-o",
        "home/next.crl",
    ]);
    let next = lab.events("v", "prod").pop().unwrap()["data"]["crl_number"]
        .as_u64()
        .unwrap();
    assert!(
        next > crl_numbers[0].max(crl_numbers[1]),
        "{next} {crl_numbers:?}"
    );
    // Merging back the other way is a fast-forward; both clones verify.
    let (ok, _) = lab.merge("w", "v");
    assert!(ok);
    lab.intact("w", &b, "prod");
}

/// Two clones that both change the recipients of one environment: a known limitation. Each
/// re-seals the bundle, every issuer key and the audit keys to its own new set, and each adds an
/// audit key epoch of the same number, so git cannot merge them and neither side's version can
/// be kept without losing the other side's key epoch. What happens, exactly, and the way out:
/// abort the merge, drop one side's change, merge, and make it again.
#[test]
fn concurrent_recipient_changes_conflict() {
    if !have("git") {
        return;
    }
    let lab = Lab::new();
    let a = lab.key("a");
    let b = lab.key("b");
    let c = lab.key("c");
    let (issuer, _, _) = lab.repo(&a);
    lab.git(".", &["clone", "-q", "v", "w"]);
    lab.ok_at(
        "v",
        &[
            "-i",
            &a.file,
            "recipients",
            "add",
            "prod",
            "-r",
            &b.recipient,
        ],
    );
    lab.ok_at(
        "w",
        &[
            "-i",
            &a.file,
            "recipients",
            "add",
            "prod",
            "-r",
            &c.recipient,
        ],
    );
    lab.commit("v", "add b");
    lab.commit("w", "add c");
    let (ok, conflicted) = lab.merge("v", "w");
    assert!(!ok);
    assert_eq!(
        conflicted,
        [
            "envs/prod/audit.age".to_owned(),
            "envs/prod/backup-audit.age".to_owned(),
            "envs/prod/bundle.age".to_owned(),
            format!("envs/prod/issuers/{issuer}/key.age"),
            "envs/prod/recipients.txt".to_owned(),
        ]
    );
    // The way out: abort, drop w's change, take v's, and make w's change again.
    lab.git("v", &["merge", "--abort"]);
    lab.git("w", &["reset", "-q", "--hard", "HEAD~1"]);
    let (ok, _) = lab.merge("w", "v");
    assert!(ok);
    lab.ok_at(
        "w",
        &[
            "-i",
            &a.file,
            "recipients",
            "add",
            "prod",
            "-r",
            &c.recipient,
        ],
    );
    lab.commit("w", "add c again");
    let (ok, conflicted) = lab.merge("v", "w");
    assert!(ok, "{conflicted:?}");
    for k in [&a, &b, &c] {
        lab.intact("v", k, "prod");
    }
}

/// `audit verify --since REV` against a commit made here: removing an event or editing a
/// record after it fails with the path; adding events does not.
#[test]
fn since_a_revision_events_and_records_are_append_only() {
    if !have("git") {
        return;
    }
    let lab = Lab::new();
    let a = lab.key("a");
    let (_, one, _) = lab.repo(&a);
    let base = lab.git("v", &["rev-parse", "HEAD"]).trim().to_owned();
    let since = |key: Option<&Key>| {
        let mut args = Vec::new();
        if let Some(k) = key {
            args.extend(["-i", k.file.as_str()]);
        }
        args.extend(["audit", "verify", "prod", "--since", base.as_str()]);
        let (code, out, err) = lab.v(&args);
        assert_eq!(err, "");
        (code, out)
    };
    // New events and records since the revision: fine.
    let three = lab.issue("v", &a, "prod", "three");
    lab.ok(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &three,
        "--reason",
        "superseded",
    ]);
    lab.commit("v", "more");
    let (code, out) = since(Some(&a));
    assert_eq!(code, 0, "{out}");
    // An event present at the revision, removed (and the chain patched up around it would
    // not help: the path is gone).
    let events = lab.events("v", "prod");
    let victim = lab.event_file("v", "prod", events[1]["id"].as_str().unwrap());
    let victim_rel = victim
        .strip_prefix(lab.path("v"))
        .unwrap()
        .display()
        .to_string();
    let saved = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    for key in [Some(&a), None] {
        let (code, out) = since(key);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!(
                "  Rewritten: {victim_rel}: removed since the revision (events and records are append-only)\n"
            )),
            "{out}"
        );
    }
    std::fs::write(&victim, saved).unwrap();
    // A certificate record present at the revision, edited.
    let record = format!("envs/prod/certs/{one}.yaml");
    let text = std::fs::read_to_string(lab.path(&format!("v/{record}"))).unwrap();
    replace_file(
        &lab.path(&format!("v/{record}")),
        format!("{text}# edited\n").as_bytes(),
    );
    let (code, out) = since(Some(&a));
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[
            &format!("Edited: certs/{one}.yaml: changed since event [..] wrote it"),
            &format!(
                "Rewritten: {record}: changed since the revision (events and records are append-only)"
            ),
        ],
    );
    // Committed, the edit is still caught against the older revision.
    lab.commit("v", "edit");
    let (code, out) = since(Some(&a));
    assert_eq!(code, 1, "{out}");
    replace_file(&lab.path(&format!("v/{record}")), text.as_bytes());
    let (code, out) = since(Some(&a));
    assert_eq!(code, 0, "{out}");
    // A revision git does not know: a usage error.
    let (code, out, err) = lab.v(&["audit", "verify", "prod", "--since", "no-such-rev"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.starts_with("error: --since no-such-rev: "), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 5. A format-1 vault (tests/data/format1, made by the last format-1 release)

/// Today's talvault reads a format-1 vault; `talvault upgrade` brings it to format 2 in one
/// audited step per environment; the old events still verify, byte for byte unchanged, what
/// they recorded (the issuer, the revocation, the untaint) still counts, and the events written
/// from then on are authenticated. Nothing here depends on the fixture's certificates being
/// valid: it ages, and the date sweep runs far ahead.
#[test]
fn upgrade_keeps_format_1_history_verifiable() {
    let lab = Lab::new();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1");
    copy_dir(&fixture.join("vault"), &lab.path("v"));
    std::fs::copy(fixture.join("identity.key"), lab.path("home/f1.key")).unwrap();
    std::fs::set_permissions(
        lab.path("home/f1.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let key = Key {
        file: "home/f1.key".into(),
        recipient: String::new(),
    };
    let i = ["-i", key.file.as_str()];
    let old_events: BTreeMap<PathBuf, Vec<u8>> = files_below(&lab.path("v/envs"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("/audit/"))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect();
    assert_eq!(old_events.len(), 10);

    // Format 1 as it is: readable, hash-linked, and said to be unauthenticated.
    for key in [None, Some(&key)] {
        let (code, out) = lab.audit("v", key, "prod");
        assert_eq!(
            (code, out.as_str()),
            (
                3,
                "prod: ok, 8 events, 1 head(s); format 1: hash links only, nothing to authenticate with (`talvault upgrade`)\n"
            )
        );
    }
    let (code, out, err) = lab.v(&[&i[..], &["status", "prod"]].concat());
    assert!(code <= 2, "{err}");
    assert!(
        out.contains("  audit trail: format 1 (not authenticated; run `talvault upgrade`)\n"),
        "{out}"
    );
    let s = lab.status("v", &key, "prod");
    assert_eq!(s["counts"]["issued"], 3, "{s}");
    assert_eq!(s["counts"]["revoked"], 1, "{s}");
    assert_eq!(s["tainted"], Value::Null, "{s}");

    // The upgrade needs every environment's identity; without one it changes nothing.
    let before = files_below(&lab.path("v"));
    let (code, out, err) = lab.v(&["upgrade"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with("error: no identity to open environment "),
        "{err}"
    );
    assert_eq!(files_below(&lab.path("v")), before);
    let out = lab.ok(&[&i[..], &["upgrade"]].concat());
    assert_eq!(
        out,
        "upgraded the vault to format 2: events are authenticated and account for every file (2 environment(s): prod, stage)\n"
    );
    let config = std::fs::read_to_string(lab.path("v/talvault.yaml")).unwrap();
    assert!(config.contains("format_version: 2\n"), "{config}");
    assert_eq!(vault_id(&lab, "v").len(), 32);
    let (code, _, err) = lab.v(&[&i[..], &["upgrade"]].concat());
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: the vault is already format 2\nhint: nothing to do\n"
        )
    );

    // The old events are untouched and verify; the upgrade event names every file.
    for (f, bytes) in &old_events {
        assert_eq!(&std::fs::read(f).unwrap(), bytes, "{}", f.display());
    }
    for (env, old) in [("prod", 8), ("stage", 2)] {
        let out = lab.intact("v", &key, env);
        crate::support::assert_matches(
            &format!(
                "{env}: ok, {} events, 1 head(s), [..] files accounted for, authenticated ({old} older events hash-linked only)\n",
                old + 1
            ),
            &out,
        );
        let upgrade = lab.events("v", env).pop().unwrap();
        assert_eq!(upgrade["action"], "upgrade");
        assert_eq!(upgrade["v"], 2);
        assert!(upgrade["mac"].is_string());
        let named: Vec<&str> = upgrade["files"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let env_dir = lab.path(&format!("v/envs/{env}"));
        let mut on_disk: Vec<String> = files_below(&env_dir)
            .iter()
            .map(|f| f.strip_prefix(&env_dir).unwrap().display().to_string())
            .filter(|f| !f.starts_with("audit/"))
            .chain(["/talvault.yaml".to_owned()])
            .collect();
        on_disk.sort();
        assert_eq!(named, on_disk, "{upgrade}");
    }

    // What the format-1 history recorded still counts.
    let s = lab.status("v", &key, "prod");
    assert_eq!(s["audit"], "authenticated");
    assert_eq!(s["counts"]["issued"], 3, "{s}");
    assert_eq!(s["counts"]["revoked"], 1, "{s}");
    assert_eq!(s["tainted"], Value::Null, "{s}");
    assert_eq!(s["issuers"][0]["state"], "active", "{s}");
    assert!(
        !findings(&s)
            .iter()
            .any(|f| f.starts_with("disagrees") || f.starts_with("forged")),
        "{s}"
    );

    // New events are sealed and MACed, and verify.
    let alice = std::fs::read_dir(lab.path("v/envs/prod/certs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("holder: alice")
        })
        .unwrap();
    let alice = alice.file_stem().unwrap().to_string_lossy().into_owned();
    lab.ok(&[
        &i[..],
        &["revoke", "prod", &alice, "--reason", "superseded"],
    ]
    .concat());
    lab.ok(&[&i[..], &["bundle", "export", "stage"]].concat());
    for env in ["prod", "stage"] {
        let newest = lab.events("v", env).pop().unwrap();
        assert_eq!(newest["v"], 2, "{newest}");
        assert_eq!(newest["vault"], vault_id(&lab, "v").as_str());
        lab.intact("v", &key, env);
    }
    assert_eq!(lab.status("v", &key, "prod")["counts"]["revoked"], 2);

    // After the upgrade a format-1 event is no longer something talvault writes: one planted
    // on the head is reported and ignored, and an edited old event is still caught.
    let head = lab.events("v", "prod").pop().unwrap();
    let planted = audit::new_event(
        vec![EventId::parse(head["id"].as_str().unwrap()).unwrap()],
        EventBody {
            time: event_time(&head),
            actor: "mallory".into(),
            opened_by: None,
            env: "prod".into(),
            action: "env.untaint".into(),
            data: serde_json::Map::new(),
            seal: None,
        },
    )
    .unwrap();
    let path = lab.path("v/envs/prod/audit").join(planted.relative_path());
    std::fs::write(&path, planted.to_json()).unwrap();
    let (code, out) = lab.audit("v", Some(&key), "prod");
    assert_eq!(code, 1, "{out}");
    assert_tampered(
        "prod",
        &out,
        &[&format!(
            "Forged: {}: an event without seal or MAC (format 1) that no sealed event descends from: written after the environment moved to format 2, so not by talvault",
            planted.relative_path()
        )],
    );
    lab.ok(&[&i[..], &["bundle", "export", "prod"]].concat());
    let newest = lab.events("v", "prod").pop().unwrap();
    assert_eq!(
        newest["parents"],
        serde_json::json!([head["id"]]),
        "{newest}"
    );
    std::fs::remove_file(&path).unwrap();
    lab.intact("v", &key, "prod");
    let (first, bytes) = old_events.iter().next().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    std::fs::write(first, text.replace("\"format1\"", "\"mallory\"")).unwrap();
    let (code, out) = lab.audit("v", Some(&key), "prod");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  Edited: "), "{out}");
}

/// The derived-state cache (`.cache/prod/chain-*.state`): used while the trail is unchanged
/// (the file is not rewritten), never once edited (with keys its tag is an HMAC under the audit
/// keys, so an edit that drops a revocation is refused and the state derived again), and not
/// used after a new event.
#[test]
fn the_chain_state_cache_is_used_only_while_current_and_genuine() {
    let lab = Lab::new();
    let a = lab.key("a");
    lab.vault(&a);
    let serial = lab.issue("v", &a, "prod", "bob");
    lab.ok(&[
        "-i",
        &a.file,
        "revoke",
        "prod",
        &serial,
        "--reason",
        "keyCompromise",
    ]);
    // The cache counts only once the month directories have been still for two seconds:
    // date them a minute back rather than wait.
    let audit = lab.path("v/envs/prod/audit");
    for year in std::fs::read_dir(&audit).unwrap() {
        for month in std::fs::read_dir(year.unwrap().path()).unwrap() {
            let ok = Command::new("touch")
                .args(["-m", "-d", "1 minute ago"])
                .arg(month.unwrap().path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "touch");
        }
    }
    let cache = lab.path("v/.cache/prod/chain-keys.state");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let revoked = |s: &Value| s["counts"]["revoked"].as_u64().unwrap();

    let s = lab.status("v", &a, "prod");
    assert_eq!(revoked(&s), 1, "{s}");
    let built = inode(&cache);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.starts_with("talvault-chain v1 built "), "{text}");
    assert!(text.contains(&format!("\nrevoked {serial} ")), "{text}");
    // Used: the next command reads it and writes nothing.
    let s = lab.status("v", &a, "prod");
    assert_eq!(revoked(&s), 1, "{s}");
    assert_eq!(
        inode(&cache),
        built,
        "an unchanged trail's cache is used as it is"
    );

    // Edited (the revocation dropped): refused, derived again, rewritten.
    let edited: String = text
        .lines()
        .filter(|l| !l.starts_with("revoked "))
        .map(|l| format!("{l}\n"))
        .collect();
    replace_file(&cache, edited.as_bytes());
    let forged = inode(&cache);
    let s = lab.status("v", &a, "prod");
    assert_eq!(revoked(&s), 1, "an edited cache must not un-revoke: {s}");
    assert_ne!(inode(&cache), forged, "the edited cache was derived again");
    let (code, out, _) = lab.v(&["-i", &a.file, "verify", "prod", "home/bob.talosconfig"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("revoked"), "{out}");

    // A command that writes folds its event into the state it derived and caches that under
    // the directory its commit changed (with the event file names' digest, since that directory
    // has not been still): the next command uses it as it is.
    let carol = lab.issue("v", &a, "prod", "carol");
    let folded = std::fs::read_to_string(&cache).unwrap();
    assert!(
        folded.contains(&format!("\nfile certs/{carol}.yaml ")),
        "the issuing command cached the state with its own certificate"
    );
    assert!(!folded.contains("\nnames -\n"), "{}", &folded[..300]);
    // Everything but the first line (the build time, which a reader may move forward once the
    // directories have settled: a slow machine takes more than two seconds between commands).
    let body = |text: &str| text.split_once('\n').unwrap().1.to_owned();
    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["live"], 1, "{s}");
    assert_eq!(revoked(&s), 1, "{s}");
    assert_eq!(
        body(&std::fs::read_to_string(&cache).unwrap()),
        body(&folded),
        "the folded cache is used as it is"
    );
    // A file added beside the events with the directory's time set back (its stamp is what
    // the cache recorded, as after a change within one clock tick): the listing no longer
    // gives the recorded digest, so the state is derived again.
    let year = std::fs::read_dir(&audit)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let month = std::fs::read_dir(&year)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mtime = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        let (s, ns) = (
            std::os::unix::fs::MetadataExt::mtime(&m),
            std::os::unix::fs::MetadataExt::mtime_nsec(&m),
        );
        format!("@{s}.{ns:09}")
    };
    let before = mtime(&month);
    std::fs::write(month.join("planted.txt"), b"x").unwrap();
    let ok = Command::new("touch")
        .args(["-m", "-d", &before])
        .arg(&month)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch");
    assert_eq!(mtime(&month), before);
    // Dated as written right after that commit (the build time is not under the tag), so that
    // the listing is what decides, whatever the clock says (the date sweep runs this test with
    // a faked clock that file times do not follow).
    let text = std::fs::read_to_string(&cache).unwrap();
    let secs = before.trim_start_matches('@').split('.').next().unwrap();
    replace_file(
        &cache,
        format!("talvault-chain v1 built {secs}\n{}", body(&text)).as_bytes(),
    );
    let s = lab.status("v", &a, "prod");
    assert_eq!(s["counts"]["live"], 1, "{s}");
    let derived = std::fs::read_to_string(&cache).unwrap();
    assert!(
        derived.contains("\nnames -\n"),
        "a changed listing is derived again: {}",
        &derived[..300]
    );
}
