//! Fuzz target `revocation_record`: see `talvault_fuzz::revocation_record` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::revocation_record(data));
