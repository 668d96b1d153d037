//! EDGE: process-wide hardening and error reporting for the binary.

use std::io::Write as _;

use crate::cli::CliError;

/// Disables core dumps (RLIMIT_CORE = 0) so a crash cannot write decrypted secrets to disk.
pub fn harden() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit only reads the valid, properly aligned struct passed by reference.
    #[expect(unsafe_code, reason = "setrlimit has no safe std wrapper")]
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}

/// Prints `error: …` and `hint: …` to stderr.
pub fn report(e: &CliError) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", e.message);
    if let Some(h) = &e.hint {
        let _ = writeln!(err, "hint: {h}");
    }
}
