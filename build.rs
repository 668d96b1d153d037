//! Sets `cfg(softhsm)` when the end-to-end SoftHSM2 tests of the CLI (`tests/it/hsm.rs`) should
//! run: the same rule as for the hsm crate's own tests (`hsm/build/softhsm_cfg.rs`). Builds
//! nothing and links nothing.

#![expect(
    clippy::disallowed_methods,
    reason = "a build script reads its environment"
)]

include!("hsm/build/softhsm_cfg.rs");

fn main() {
    println!("cargo::rerun-if-changed=hsm/build/softhsm_cfg.rs");
    println!("cargo::rerun-if-changed=hsm/tests/common/softhsm_modules.rs");
    set_softhsm_cfg();
}
