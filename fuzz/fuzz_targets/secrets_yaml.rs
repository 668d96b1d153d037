//! Fuzz target `secrets_yaml`: see `talvault_fuzz::secrets_yaml` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::secrets_yaml(data));
