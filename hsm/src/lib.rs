//! talvault-hsm: signing keys that never leave a PKCS#11 token, for talvault's issuers.
//!
//! - [`Pkcs11Uri`]: strict RFC 7512 `pkcs11:` URIs; a PIN in a URI is refused.
//! - [`HsmKey`]: open a key by URI or generate one in the token; it implements
//!   `rcgen::SigningKey`, so rcgen signs certificates and CRLs with it (Ed25519 through CKM_EDDSA,
//!   ECDSA P-256 through CKM_ECDSA over a local SHA-256 digest, converted with
//!   [`raw_ecdsa_to_der`]).
//! - [`check`]: what a module and token offer and whether a key is usable, for `talvault hsm check`.
//!
//! The PKCS#11 library is loaded at run time (dlopen through cryptoki), so nothing here needs one
//! at build time. Per process, each module is initialised once and each token gets one session
//! and at most one successful login, kept until exit (see `module.rs`, `token.rs`). PINs come from
//! the URI's `pin-source` file, `TALVAULT_PKCS11_PIN` or the caller's prompt, live in
//! `secrecy::SecretString`, and reach no error message. Private key material is never read.

mod algorithm;
mod asn1;
mod check;
mod error;
mod key;
mod module;
mod options;
mod token;
mod uri;

pub use algorithm::KeyAlgorithm;
pub use asn1::raw_ecdsa_to_der;
pub use check::{
    AlgorithmReport, CheckReport, KeyReport, MechanismReport, ModuleReport, TokenReport, check,
};
pub use error::HsmError;
pub use key::HsmKey;
pub use options::{EdwardsParams, OpenOptions, PinPrompt};
pub use token::{PIN_ENV, PIN_FILE_MAX, read_pin_file};
pub use uri::{Component, Pkcs11Uri, UriError};
