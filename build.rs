//! Sets `cfg(softhsm)` when the end-to-end SoftHSM2 tests of the CLI (`tests/it/hsm.rs`) should
//! run: under `CI=true` (where a missing SoftHSM must fail the tests, not skip them) or when the
//! SoftHSM2 module is installed. Without it, those tests are reported as ignored. The same rule,
//! module list and rerun triggers as `hsm/build.rs`. Builds nothing and links nothing.

#![expect(
    clippy::disallowed_methods,
    reason = "a build script reads its environment"
)]

use std::path::Path;

/// Where Debian, Ubuntu, Fedora and source installs put the SoftHSM2 module (the one list that
/// `hsm/build.rs`, the hsm crate's tests and its benchmark use).
const SOFTHSM_MODULES: &[&str] = include!("hsm/tests/common/softhsm_modules.rs");

/// Changes whenever apt/dpkg installs or removes a package, so installing softhsm2 re-runs this
/// script on Debian and Ubuntu.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(softhsm)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut installed = false;
    for path in SOFTHSM_MODULES {
        // Cargo treats a missing rerun-if-changed path as always stale (the crate would rebuild
        // on every build), so only existing paths are watched.
        if Path::new(path).exists() {
            println!("cargo::rerun-if-changed={path}");
            installed = true;
        }
    }
    if !installed && Path::new(DPKG_STATUS).exists() {
        println!("cargo::rerun-if-changed={DPKG_STATUS}");
    }
    if ci || installed {
        println!("cargo::rustc-cfg=softhsm");
    }
}
