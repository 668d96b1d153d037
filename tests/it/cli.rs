//! The command line: help, outputs and every error message, pinned by snapshots; exit codes;
//! files written with the right mode; nothing written on error; no secret in any error.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{assert_matches, snapshot, talos_vectors, talvault, talvault_env};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn help_texts() {
    let d = tmp();
    for (name, args) in [
        ("help.txt", &["--help"][..]),
        ("bundle-help.txt", &["bundle", "--help"]),
        (
            "bundle-generate-help.txt",
            &["bundle", "generate", "--help"],
        ),
        (
            "bundle-validate-help.txt",
            &["bundle", "validate", "--help"],
        ),
        ("bundle-inspect-help.txt", &["bundle", "inspect", "--help"]),
    ] {
        let (code, out, err) = talvault(d.path(), args);
        assert_eq!((code, err.as_str()), (0, ""), "{name}");
        snapshot(name, &out);
    }
    let (code, out, _) = talvault(d.path(), &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("talvault {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_and_man() {
    let d = tmp();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = talvault(d.path(), &["completions", shell]);
        assert_eq!(code, 0);
        assert!(out.contains("generate"), "{shell}");
    }
    let (code, out, _) = talvault(d.path(), &["man"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &out[..40.min(out.len())]
    );
    assert!(out.contains("talvault"));
}

#[test]
fn generate_writes_0600_and_refuses_to_overwrite() {
    let d = tmp();
    let (code, out, err) = talvault(d.path(), &["bundle", "generate", "--talos-version", "v1.6"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    let path = d.path().join("secrets.yaml");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&path).unwrap();
    let (code, out, err) = talvault(d.path(), &["bundle", "generate", "--talos-version", "v1.6"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    snapshot("generate-exists.stderr", &err);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    let (code, _, _) = talvault(
        d.path(),
        &["bundle", "generate", "--talos-version", "v1.6", "-f"],
    );
    assert_eq!(code, 0);
    assert_ne!(std::fs::read(&path).unwrap(), before);
    // Output to stdout when it is not a terminal (here: a pipe).
    let (code, out, _) = talvault(
        d.path(),
        &["bundle", "generate", "--talos-version", "v1.2", "-o", "-"],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("cluster:\n    id: "));
    assert!(out.contains("    aescbcencryptionsecret: "));
}

#[test]
fn validate_and_inspect_outputs() {
    let d = tmp();
    let v = talos_vectors();
    let good = v.join("secrets.yaml");
    let bad = v.join("invalid-secrets.yaml");
    // A bundle made now validates. (The upstream vector's CAs expire in 2033, and validation
    // judges expiry at the real clock; that the vector passes every deep check within its
    // lifetime is vectors::deep_checks_pass_on_upstream_vectors_in_their_lifetime, at a fixed
    // instant.)
    let fresh = d.path().join("secrets.yaml");
    let (code, _, err) = talvault(
        d.path(),
        &[
            "bundle",
            "generate",
            "--talos-version",
            "v1.6",
            "-o",
            fresh.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = talvault(
        d.path(),
        &[
            "bundle",
            "validate",
            fresh.to_str().unwrap(),
            "--talos-version",
            "v1.6",
        ],
    );
    assert_eq!(code, 0);
    assert_matches("valid: [..]secrets.yaml (contract v1.6)\n", &out);
    let (code, out, _) = talvault(d.path(), &["bundle", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    // The vector's k8s CA (the only CA Talos accepted in it) ends 2033-05-22T12:14:42Z; from then
    // on the deeper checks add that it expired (judged at any instant in
    // vectors::deep_checks_judge_ca_expiry_at_the_given_instant). The rest never changes.
    let k8s_ended =
        time::OffsetDateTime::now_utc() > time::macros::datetime!(2033-05-22 12:14:42 UTC);
    let expired = "error: certs.k8s expired (notAfter May 22 12:14:42 2033 +00:00)\n";
    assert_eq!(out.contains(expired), k8s_ended, "{out}");
    let out = out
        .replace(expired, "")
        .replace("1 further error,", "0 further errors,");
    snapshot("validate-invalid.stdout", &out);
    let (code, out, _) = talvault(
        d.path(),
        &["bundle", "validate", bad.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["talos_errors"].as_array().unwrap().len(), 6);
    let (code, out, _) = talvault(d.path(), &["bundle", "inspect", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    snapshot("inspect-secrets.stdout", &out);
    let (code, out, _) = talvault(
        d.path(),
        &["bundle", "inspect", good.to_str().unwrap(), "-o", "json"],
    );
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["cas"].as_array().unwrap().len(), 4);
    assert_eq!(json["cas"][3]["subject"], "O=talos");
    assert_eq!(json["cluster_id_alphabet"], "url");
    // Nothing secret in inspect output.
    let yaml = std::fs::read_to_string(&good).unwrap();
    for secret in [
        "2psnp2.lry8e9gycdix3bpa",
        "oamejv.9tk1nhuwnlc2nghf",
        "Wiu0qx68V3MKhFDr8",
    ] {
        assert!(yaml.contains(secret));
        assert!(!out.contains(secret));
    }
}

/// Bad input: one line plus a hint, the documented exit code, and never a secret value.
#[test]
fn bad_input_errors() {
    let d = tmp();
    let token = "k3y9ab.topsecrettoken99";
    let write = |name: &str, body: String| {
        std::fs::write(d.path().join(name), body).unwrap();
    };
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    write("not-yaml.yaml", format!("cluster: [{token}\n"));
    write(
        "wrong-type.yaml",
        format!("secrets:\n    bootstraptoken: [{token}]\n"),
    );
    write(
        "truncated.yaml",
        format!(
            "certs:\n    os:\n        crt: {}\n        key: {}\n",
            "LS0tLS1CRUdJTi",
            b64(token)
        ),
    );
    write(
        "cert-as-key.yaml",
        format!(
            "secrets:\n    bootstraptoken: {token}\ncerts:\n    os:\n        crt: \"\"\n        key: {}\n",
            b64("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
        ),
    );
    write(
        "unknown-label.yaml",
        format!(
            "secrets:\n    bootstraptoken: {token}\ncerts:\n    os:\n        crt: \"\"\n        key: {}\n",
            b64("-----BEGIN OPENSSH PRIVATE KEY-----\nMAA=\n-----END OPENSSH PRIVATE KEY-----\n")
        ),
    );
    write(
        "unknown-field.yaml",
        format!("trustdinfo:\n    tokn: {token}\n"),
    );
    let cases: &[(&str, &[&str], i32)] = &[
        ("missing-file", &["bundle", "validate", "nope.yaml"], 2),
        ("directory", &["bundle", "validate", "."], 2),
        ("not-yaml", &["bundle", "validate", "not-yaml.yaml"], 2),
        ("wrong-type", &["bundle", "validate", "wrong-type.yaml"], 2),
        (
            "truncated-base64",
            &["bundle", "validate", "truncated.yaml"],
            2,
        ),
        (
            "unknown-field",
            &["bundle", "inspect", "unknown-field.yaml"],
            2,
        ),
        (
            "bad-contract",
            &["bundle", "generate", "--talos-version", "v1.7-beta"],
            2,
        ),
        (
            "bad-contract-validate",
            &[
                "bundle",
                "validate",
                "not-yaml.yaml",
                "--talos-version",
                "latest",
            ],
            2,
        ),
        (
            "pki-not-dir",
            &["bundle", "generate", "--from-kubernetes-pki", "nope"],
            2,
        ),
        ("token-without-pki", &["bundle", "generate", "-t", token], 2),
        (
            "both-imports",
            &[
                "bundle",
                "generate",
                "-p",
                "a",
                "--from-controlplane-config",
                "b",
            ],
            2,
        ),
    ];
    let mut all = String::new();
    for (name, args, want) in cases {
        let (code, out, err) = talvault(d.path(), args);
        assert_eq!(code, *want, "{name}: {err}");
        assert_eq!(out, "", "{name}");
        assert!(!err.contains("topsecret"), "{name} leaked: {err}");
        assert!(err.lines().count() <= 6, "{name}: {err}");
        all.push_str(&format!("## {name}\n{err}"));
    }
    // Validation errors name the problem (on stdout, exit 1) without echoing values either.
    for (name, file) in [
        ("cert-as-key", "cert-as-key.yaml"),
        ("unknown-label", "unknown-label.yaml"),
    ] {
        let (code, out, err) = talvault(d.path(), &["bundle", "validate", file]);
        assert_eq!(code, 1, "{name}");
        assert!(
            !out.contains("topsecret") && !err.contains("topsecret"),
            "{name}"
        );
        all.push_str(&format!("## {name}\n{out}"));
    }
    snapshot("bad-input.txt", &all);
    // Nothing was written anywhere.
    let (_, _, _) = talvault_env(d.path(), &["--version"], &[]);
    assert!(!d.path().join("secrets.yaml").exists());
}

#[test]
fn init_keeps_an_existing_gitignore_and_refuses_a_second_init() {
    let d = tmp();
    std::fs::write(d.path().join(".gitignore"), "node_modules").unwrap();
    let (code, _, err) = talvault(d.path(), &["init", "."]);
    assert_eq!(code, 0, "{err}");
    let gi = std::fs::read_to_string(d.path().join(".gitignore")).unwrap();
    assert_eq!(
        gi,
        "node_modules\n.lock\n.talvault-tmp-*\n.talvault-journal\n.talvault-dirty\n"
    );
    let (code, out, err) = talvault(d.path(), &["init", "."]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "error: . is already a talvault vault\n");
    assert_eq!(
        std::fs::read_to_string(d.path().join(".gitignore")).unwrap(),
        gi
    );
}

/// A passphrase-only environment: sealed with scrypt, opened with TALVAULT_PASSPHRASE or
/// --passphrase-file; a wrong passphrase is one line; recipients cannot be changed.
#[test]
fn passphrase_environment() {
    let d = tmp();
    let pass = [
        ("TALVAULT_PASSPHRASE", "correct horse battery staple"),
        ("TALVAULT_ACTOR", "t"),
    ];
    assert_eq!(talvault(d.path(), &["init", "v"]).0, 0);
    let (code, _, err) = talvault_env(
        d.path(),
        &[
            "--vault",
            "v",
            "env",
            "create",
            "bg",
            "--passphrase",
            "--talos-version",
            "v1.6",
            "-e",
            "10.1.1.1",
        ],
        &pass,
    );
    assert_eq!(code, 0, "{err}");
    let sealed = std::fs::read_to_string(d.path().join("v/envs/bg/bundle.age")).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let (code, out, err) =
        talvault_env(d.path(), &["--vault", "v", "bundle", "export", "bg"], &pass);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("cluster:\n"));
    std::fs::write(d.path().join("pass.txt"), "correct horse battery staple\n").unwrap();
    let (code, _, err) = talvault_env(
        d.path(),
        &[
            "--vault",
            "v",
            "--passphrase-file",
            "pass.txt",
            "issue",
            "bg",
            "--role",
            "os:reader",
            "-o",
            "tc",
        ],
        &[("TALVAULT_ACTOR", "t")],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = talvault_env(
        d.path(),
        &["--vault", "v", "bundle", "export", "bg"],
        &[("TALVAULT_PASSPHRASE", "wrong")],
    );
    assert_eq!((code, out.as_str()), (1, ""));
    assert_matches("error: wrong passphrase for [..].age\nhint: [..]\n", &err);
    let (code, _, err) = talvault_env(
        d.path(),
        &[
            "--vault",
            "v",
            "recipients",
            "add",
            "bg",
            "-r",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        ],
        &pass,
    );
    assert_eq!(code, 1);
    assert!(err.contains("sealed with a passphrase"), "{err}");
    let (_, log, _) = talvault(
        d.path(),
        &["--vault", "v", "audit", "log", "bg", "-o", "json"],
    );
    assert!(log.contains("\"opened_by\": \"passphrase\""), "{log}");
}

/// `process::harden` makes talvault non-dumpable (PR_SET_DUMPABLE 0, issue 15 item 14): the
/// kernel then gives every file under `/proc/PID` to root (proc(5)), so another process of the
/// same user can neither read `/proc/PID/mem` nor ptrace it. Observed from outside on the real
/// binary: talvault runs as an unprivileged user (as nobody through `setpriv` when the tests run
/// as root, else as the test's own user) and blocks opening a FIFO given as the bundle to
/// validate; opening the FIFO's write end returns only once talvault has opened it, so `main` and
/// `harden` have run. `/proc/PID/status` must then be owned by root, not by talvault's user. If
/// `harden` stopped clearing the flag, the owner would be talvault's own uid and this fails.
#[test]
fn talvault_is_not_dumpable_while_it_runs() {
    use std::os::unix::fs::MetadataExt as _;
    let d = tmp();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = d.path().join("bundle.fifo");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "0666"])
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());

    let as_root = rustix::process::geteuid().is_root();
    let bin = env!("CARGO_BIN_EXE_talvault");
    let mut cmd = if as_root {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            bin,
        ]);
        c
    } else {
        std::process::Command::new(bin)
    };
    let child = cmd
        .args(["bundle", "validate"])
        .arg(&fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Blocks until talvault opens the FIFO for reading.
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let status = std::fs::metadata(format!("/proc/{}/status", child.id())).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();

    assert!(
        exe.ends_with("talvault"),
        "the process holding the FIFO is {}",
        exe.display()
    );
    assert_eq!(
        status.uid(),
        0,
        "/proc/PID/status of a running talvault is owned by uid {}: it is dumpable",
        status.uid()
    );
    // An empty bundle is refused (1 or 2); what matters is that talvault ran to the end.
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
