//! talvault's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;
mod cli;
mod generate;
mod issue;
mod vectors;
