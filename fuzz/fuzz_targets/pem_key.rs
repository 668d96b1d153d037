//! Fuzz target `pem_key`: see `talvault_fuzz::pem_key` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::pem_key(data));
