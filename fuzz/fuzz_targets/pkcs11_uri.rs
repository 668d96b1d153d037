//! Fuzz target `pkcs11_uri`: see `talvault_fuzz::pkcs11_uri` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::pkcs11_uri(data));
