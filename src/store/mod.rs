//! EDGE: the vault on disk. Atomic writes, confined bounded reads, the vault lock, age
//! sealing/opening and the audit directory. It must not decide policy or build domain objects;
//! `vault.rs` joins this layer with the pure modules.
//!
//! - [`fs`]: the one write path (`write_atomic`, `create_new_atomic`), `read_bounded`,
//!   `ensure_dir`, `list_dir`.
//! - [`name`]: validators for user-supplied path components.
//! - [`lock`]: the vault lock.
//! - [`age`]: recipients, identities, seal and open.
//! - [`audit_dir`]: append and load the audit event files of an environment.
//! - [`index`]: record directories read as cached one-line summaries.
//! - [`user_file`]: files the user names outside the vault (`-o`, `--merge`).

pub mod age;
pub mod audit_dir;
pub mod fs;
pub mod index;
pub mod lock;
pub mod name;
pub mod txn;
pub mod user_file;

pub use fs::{Mode, StoreError, create_new_atomic, ensure_dir, read_bounded, write_atomic};
pub use lock::{LockError, VaultLock};
pub use name::{EnvName, NameError};
