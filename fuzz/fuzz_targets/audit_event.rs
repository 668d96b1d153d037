//! Fuzz target `audit_event`: see `talvault_fuzz::audit_event` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::audit_event(data));
