//! talvault-hsm: PKCS#11 signing keys for talvault.
//!
//! This crate is deliberately empty until the HSM work lands: it will hold a key in a PKCS#11
//! token exposed as an `rcgen::SigningKey`, `pkcs11:` URI parsing (RFC 7512) and the r‖s → DER
//! conversion for ECDSA signatures. It must never export private key material.
