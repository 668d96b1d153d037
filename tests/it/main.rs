//! talvault's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod import;
mod support;
mod vectors;
