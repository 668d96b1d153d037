//! How a key is opened or generated: the PIN prompt the caller supplies, whether a key that can
//! leave the token is acceptable, and how a new Ed25519 key names its curve. Plain data.

use std::fmt;

use secrecy::SecretString;

/// How CKA_EC_PARAMS names the curve of a new Ed25519 key. Tokens disagree: PKCS#11 3.0 asks for
/// the curve name, many tokens (and SoftHSM 2.6.1, which takes both) accept the RFC 8410 OID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EdwardsParams {
    /// The OID first; the curve name if the token answers CKR_ATTRIBUTE_VALUE_INVALID,
    /// CKR_DOMAIN_PARAMS_INVALID or CKR_CURVE_NOT_SUPPORTED.
    #[default]
    Auto,
    /// Only the OID `id-Ed25519` (1.3.101.112).
    Oid,
    /// Only the PrintableString `edwards25519`.
    CurveName,
}

/// The PIN prompt the CLI supplies: given the token label, return the PIN or a reason why not.
pub type PinPrompt<'a> = &'a dyn Fn(&str) -> Result<SecretString, String>;

/// How to open or generate a key.
#[derive(Clone, Copy, Default)]
pub struct OpenOptions<'a> {
    /// Asked for the user PIN (with the token label) when neither the URI's `pin-source` nor
    /// `TALVAULT_PKCS11_PIN` gives one. This crate never reads the terminal itself.
    pub pin_prompt: Option<PinPrompt<'a>>,
    /// Accept a private key that may leave the token (CKA_EXTRACTABLE true or CKA_SENSITIVE
    /// false). The CLI spells this `--danger-allow-extractable`.
    pub allow_extractable: bool,
    /// CKA_EC_PARAMS encoding for generated Ed25519 keys.
    pub ed25519_params: EdwardsParams,
}

impl fmt::Debug for OpenOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("pin_prompt", &self.pin_prompt.map(|_| "<prompt>"))
            .field("allow_extractable", &self.allow_extractable)
            .field("ed25519_params", &self.ed25519_params)
            .finish()
    }
}
