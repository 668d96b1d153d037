//! What the SoftHSM2 tests and the benchmark share: where the module is, and making a private
//! SoftHSM configuration with one initialised token. Not a test target of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Candidate paths of the SoftHSM2 module, in order.
pub const SOFTHSM_MODULES: &[&str] = include!("softhsm_modules.rs");

/// pkcs11-spy (OpenSC), which logs every PKCS#11 call of the module behind it.
pub const SPY_MODULES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
    "/usr/lib64/pkcs11/pkcs11-spy.so",
    "/usr/lib/pkcs11/pkcs11-spy.so",
];

/// The first of `candidates` that exists; none fails the test (`what` names it).
pub fn first_existing(candidates: &[&str], what: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{what} not found at {candidates:?} (apt-get install softhsm2 opensc; .ci/run does)"
            )
        })
}

/// Number of calls to `function` in a pkcs11-spy log (lines like `12: C_Login`).
pub fn spy_calls(log: &Path, function: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| {
            line.split_once(": ")
                .is_some_and(|(n, f)| n.chars().all(|c| c.is_ascii_digit()) && f.trim() == function)
        })
        .count()
}

/// The installed SoftHSM2 module, if any.
pub fn softhsm_module() -> Option<PathBuf> {
    SOFTHSM_MODULES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Writes `dir/softhsm2.conf` (token directory `dir/tokens`, file object store, plus
/// `extra_conf` lines), initialises a token labelled `label` with `pin` and `so_pin` via
/// softhsm2-util, and returns the configuration's path for SOFTHSM2_CONF.
pub fn init_token(dir: &Path, label: &str, pin: &str, so_pin: &str, extra_conf: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
             slots.removable = false\n{extra_conf}\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| {
            panic!("softhsm2-util: {e} (apt-get install softhsm2 opensc; .ci/run does)")
        });
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    conf
}
