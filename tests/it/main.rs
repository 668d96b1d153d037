//! talvault's integration tests: one binary, one module per area.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

mod cli;
mod generate;
mod import;
mod issue;
mod support;
mod vault;
mod vectors;
