//! talvault's integration tests: one binary, one module per area.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::disallowed_methods,
    missing_docs
)]

mod architecture;
mod backup;
mod catalogue;
mod cli;
mod crl;
mod faults;
mod fuzz_regressions;
mod generate;
mod holders;
mod hsm;
mod import;
mod integrity;
mod issue;
mod issuing;
mod kubernetes;
mod patch;
mod revocation;
mod support;
mod vault;
mod vectors;
