//! talvault: the offline PKI vault for Talos Linux clusters.
//!
//! The library does the work; `main.rs` only parses arguments and maps errors to exit codes.
//! Pure modules (`bundle`, `pki`, `patch`, `talosconfig`, `kubeconfig`, `goyaml`, `audit`,
//! `model`, `holder`, `der`, `hex`, `keys`, `secret`) do no I/O and take time and randomness as
//! arguments (clippy.toml enforces it); edge modules (`store`, `cli`, `process`) touch files, the terminal, processes
//! and the clock; `vault` is the application service that joins them.

pub mod audit;
pub mod backup;
pub mod bundle;
pub mod cli;
pub mod der;
pub mod digest;
pub mod goyaml;
pub mod hex;
pub mod holder;
pub mod inventory;
pub mod keys;
pub mod kubeconfig;
pub mod model;
pub mod nesting;
pub mod patch;
pub mod pki;
pub mod process;
pub mod secret;
pub mod store;
pub mod talosconfig;
pub mod vault;
