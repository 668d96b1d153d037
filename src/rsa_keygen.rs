//! Placeholder until the fast RSA-4096 generator lands on this branch.

use thiserror::Error;

/// RSA key generation failed.
#[derive(Debug, Error)]
#[error("RSA key generation failed: {0}")]
pub struct RsaKeygenError(String);

/// Generates an RSA-4096 key (e = 65537) and returns its PKCS#1 RSAPrivateKey DER.
pub fn generate_rsa4096(
    _rng: &dyn ring::rand::SecureRandom,
) -> Result<zeroize::Zeroizing<Vec<u8>>, RsaKeygenError> {
    Err(RsaKeygenError("not yet implemented".into()))
}
