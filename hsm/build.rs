//! Sets `cfg(softhsm)` when the SoftHSM2 integration tests should run (`build/softhsm_cfg.rs`:
//! under `CI=true`, or when the SoftHSM2 module is installed). Builds nothing and links nothing.

#![expect(
    clippy::disallowed_methods,
    reason = "a build script reads its environment"
)]

include!("build/softhsm_cfg.rs");

fn main() {
    println!("cargo::rerun-if-changed=build/softhsm_cfg.rs");
    println!("cargo::rerun-if-changed=tests/common/softhsm_modules.rs");
    set_softhsm_cfg();
}
