//! talvault
pub mod rsa_keygen;
