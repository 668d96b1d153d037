//! Fuzz target `vault_meta`: see `talvault_fuzz::vault_meta` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::vault_meta(data));
