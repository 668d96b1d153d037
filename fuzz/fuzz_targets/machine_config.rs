//! Fuzz target `machine_config`: see `talvault_fuzz::machine_config` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::machine_config(data));
