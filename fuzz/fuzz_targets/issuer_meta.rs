//! Fuzz target `issuer_meta`: see `talvault_fuzz::issuer_meta` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::issuer_meta(data));
