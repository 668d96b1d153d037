//! Fuzz target `ttl`: see `talvault_fuzz::ttl` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::ttl(data));
