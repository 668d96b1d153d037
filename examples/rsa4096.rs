//! Generates one RSA-4096 key with `talvault::rsa_keygen` and writes it to stdout as a PKCS#1 PEM (`RSA PRIVATE KEY`, LF); for benches/rsa-keygen/compare.sh, not for real keys: it must not write files or keep the key anywhere.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rng = ring::rand::SystemRandom::new();
    let der = talvault::rsa_keygen::generate_rsa4096(&rng)?;
    let pem = zeroize::Zeroizing::new(pem::encode_config(
        &pem::Pem::new("RSA PRIVATE KEY", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ));
    let mut out = std::io::stdout().lock();
    out.write_all(pem.as_bytes())?;
    out.flush()?;
    Ok(())
}
