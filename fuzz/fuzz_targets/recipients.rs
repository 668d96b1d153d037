//! Fuzz target `recipients`: see `talvault_fuzz::recipients` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::recipients(data));
