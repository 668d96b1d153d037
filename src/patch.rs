//! PURE (temporary stub until the patch module lands): the acceptedCAs patch.
use thiserror::Error;
/// A CA for the patch.
pub struct AcceptedCa {
    /// Label.
    pub label: String,
    /// PEM.
    pub certificate_pem: String,
}
/// Patch error.
#[derive(Debug, Error)]
#[error("patch")]
pub struct PatchError;
/// The patch.
pub fn accepted_cas_patch(cas: &[AcceptedCa]) -> Result<String, PatchError> {
    use base64::Engine as _;
    let mut s = String::from("machine:\n  acceptedCAs:\n");
    for c in cas {
        s.push_str(&format!(
            "    # {}\n    - crt: {}\n",
            c.label,
            base64::engine::general_purpose::STANDARD.encode(&c.certificate_pem)
        ));
    }
    Ok(s)
}
