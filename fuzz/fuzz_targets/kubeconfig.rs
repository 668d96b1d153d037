//! Fuzz target `kubeconfig`: see `talvault_fuzz::kubeconfig` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::kubeconfig(data));
