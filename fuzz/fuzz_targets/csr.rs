//! Fuzz target `csr`: see `talvault_fuzz::csr` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::csr(data));
