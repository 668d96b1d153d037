//! Fuzz target `talosconfig`: see `talvault_fuzz::talosconfig` (fuzz/src/lib.rs) for what it checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| talvault_fuzz::talosconfig(data));
