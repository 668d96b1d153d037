//! Shared helpers: locating test vectors, requiring external tools.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/testdata/talos` beside the project (the upstream vectors), or `TALVAULT_TESTDATA`.
pub fn talos_vectors() -> PathBuf {
    if let Ok(p) = std::env::var("TALVAULT_TESTDATA") {
        return PathBuf::from(p);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vendored = here.join("tests/data/talos");
    if vendored.exists() {
        return vendored;
    }
    here.join("../shared/testdata/talos")
}

pub fn vector(name: &str) -> Vec<u8> {
    let p = talos_vectors().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Whether `tool` runs. Under `CI=true` a missing tool fails the test instead of skipping it,
/// so coverage cannot shrink silently.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .output()
        // Some tools (ssh-keygen) have no version flag and print their usage to stderr.
        .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI=true (install it; .ci/run does)"
        );
        eprintln!("skipping: {tool} not installed");
    }
    ok
}

/// Runs the talvault binary in `dir` with `args`; returns (exit code, stdout, stderr).
pub fn talvault(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    talvault_env(dir, args, &[])
}

/// Like [`talvault`], with extra environment variables.
pub fn talvault_env(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_talvault"))
        .args(args)
        .current_dir(dir)
        // The caller's own settings must not leak in; `env` may set them on purpose.
        .env_remove("TALVAULT_KUBERNETES_BOOTSTRAP_TOKEN")
        .env_remove("TALVAULT_PKCS11_PIN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Compares `actual` with `pattern`, where `[..]` in the pattern matches any text within a line.
pub fn assert_matches(pattern: &str, actual: &str) {
    let ok = pattern.lines().count() == actual.lines().count()
        && pattern.ends_with('\n') == actual.ends_with('\n')
        && pattern
            .lines()
            .zip(actual.lines())
            .all(|(p, a)| line_matches(p, a));
    assert!(
        ok,
        "output does not match.\n--- expected\n{pattern}\n--- actual\n{actual}"
    );
}

fn line_matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == actual;
    }
    let mut rest = match actual.strip_prefix(parts[0]) {
        Some(r) => r,
        None => return false,
    };
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(pos) => rest = &rest[pos + part.len()..],
            None => return false,
        }
    }
    true
}

/// Compares `actual` with the snapshot file `tests/snapshots/NAME`; with `TALVAULT_BLESS=1`
/// the file is (re)written instead.
pub fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var("TALVAULT_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with TALVAULT_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_matches(&expected, actual);
}

/// `openssl ARGS…` run in `dir`: whether it succeeded, and its stdout and stderr together.
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `openssl crl -verify` of the PEM CRL `crl` against the CA certificate `ca` (paths relative to
/// `dir`): must print "verify OK".
pub fn assert_crl_verifies(dir: &Path, crl: &str, ca: &str) {
    let (ok, text) = openssl(
        &["crl", "-in", crl, "-CAfile", ca, "-noout", "-verify"],
        dir,
    );
    assert!(ok && text.contains("verify OK"), "{text}");
}

/// `openssl verify -x509_strict -crl_check` of `leaf` under `ca` with the CRL `crl`.
pub fn verify_with_crl(dir: &Path, crl: &str, ca: &str, leaf: &str) -> (bool, String) {
    openssl(
        &[
            "verify",
            "-x509_strict",
            "-crl_check",
            "-CRLfile",
            crl,
            "-CAfile",
            ca,
            leaf,
        ],
        dir,
    )
}

/// The id of the only issuer in `issuers_dir` (`v/envs/ENV/issuers`), for tests that made one.
pub fn only_issuer(issuers_dir: &Path) -> String {
    let ids: Vec<String> = std::fs::read_dir(issuers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.into_iter().next().unwrap()
}
