// The one rule behind `cfg(softhsm)`, included (`include!`) by the build scripts of both crates,
// `build.rs` and `hsm/build.rs`: set it under `CI=true` (where a missing SoftHSM must fail the
// tests, not skip them) or when the SoftHSM2 module is installed. Without it, the SoftHSM2 tests
// are reported as ignored.

/// Where Debian, Ubuntu, Fedora and source installs put the SoftHSM2 module (the one list that
/// the build scripts, the hsm crate's tests and its benchmark use).
const SOFTHSM_MODULES: &[&str] = include!("../tests/common/softhsm_modules.rs");

/// Changes whenever apt/dpkg installs or removes a package, so installing softhsm2 re-runs the
/// build script on Debian and Ubuntu.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Prints the cargo instructions: the cfg, when to run again, and whether to set it.
fn set_softhsm_cfg() {
    println!("cargo::rustc-check-cfg=cfg(softhsm)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut installed = false;
    for path in SOFTHSM_MODULES {
        // Cargo treats a missing rerun-if-changed path as always stale (the crate would rebuild
        // on every build), so only existing paths are watched.
        if std::path::Path::new(path).exists() {
            println!("cargo::rerun-if-changed={path}");
            installed = true;
        }
    }
    if !installed && std::path::Path::new(DPKG_STATUS).exists() {
        println!("cargo::rerun-if-changed={DPKG_STATUS}");
    }
    if ci || installed {
        println!("cargo::rustc-cfg=softhsm");
    }
}
