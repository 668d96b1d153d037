//! Shared helpers: locating test vectors, requiring external tools.

use std::path::PathBuf;
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
        .map(|o| o.status.success() || !o.stdout.is_empty())
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
