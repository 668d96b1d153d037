//! Errors of the crate: one variant per condition an operator can act on, each a single line that
//! names the PKCS#11 function and return code where there is one, plus a `hint()` for the CLI.
//!
//! No variant carries a PIN: PINs flow only from their source to `C_Login`, and the URI parser
//! refuses `pin-value` without echoing it.

use std::fmt::Write as _;
use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

use crate::algorithm::KeyAlgorithm;
use crate::uri::UriError;

/// Why a PKCS#11 operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The `pkcs11:` URI does not parse, or asks for something talvault refuses.
    #[error("invalid pkcs11: URI: {0}")]
    UriMalformed(#[from] UriError),

    /// The URI does not name what the operation needs (e.g. generation without `object=`).
    #[error("the pkcs11: URI {uri} cannot be used to {operation}: {reason}")]
    UriUnsuitable {
        /// The URI, re-serialised (never holds a PIN).
        uri: String,
        /// What was attempted.
        operation: &'static str,
        /// What is missing or wrong.
        reason: String,
    },

    /// No PKCS#11 library exists at any of the places searched.
    #[error("no PKCS#11 module found; tried {}", list_paths(tried))]
    ModuleNotFound {
        /// Every path looked at, in search order.
        tried: Vec<PathBuf>,
    },

    /// The file exists but is not a usable PKCS#11 module (dlopen failed, or no
    /// `C_GetFunctionList`/`C_GetInterface` in it).
    #[error("{} is not a PKCS#11 module: {reason}", path.display())]
    NotAPkcs11Module {
        /// The library that was loaded.
        path: PathBuf,
        /// dlopen's message, or the missing symbol.
        reason: String,
    },

    /// A `library-*` attribute of the URI does not match the module's `C_GetInfo`.
    #[error("module {} does not match the URI: its {attribute} is {found:?}, the URI asks for {wanted:?}", path.display())]
    ModuleMismatch {
        /// The module that was loaded.
        path: PathBuf,
        /// The URI attribute that did not match.
        attribute: &'static str,
        /// The URI's value.
        wanted: String,
        /// The module's value.
        found: String,
    },

    /// A PKCS#11 call failed in a way no other variant describes.
    #[error("{function} returned {rv} while {doing}")]
    Pkcs11 {
        /// The PKCS#11 function, e.g. `C_Sign`.
        function: String,
        /// The return code, e.g. `CKR_KEY_FUNCTION_NOT_PERMITTED`.
        rv: String,
        /// What talvault was doing, e.g. `signing with key "ca"`.
        doing: String,
    },

    /// No initialised token matches the URI's token attributes.
    #[error("no token matches {wanted} in {} (tokens present: {})", module.display(), list_or_none(available))]
    TokenNotPresent {
        /// The token attributes of the URI.
        wanted: String,
        /// The module searched.
        module: PathBuf,
        /// Label and serial of each initialised token found.
        available: Vec<String>,
    },

    /// More than one token matches the URI's token attributes.
    #[error("{} tokens match {wanted}: {}", matches.len(), matches.join(", "))]
    AmbiguousToken {
        /// The token attributes of the URI.
        wanted: String,
        /// Label and serial of each matching token.
        matches: Vec<String>,
    },

    /// `C_Login` returned CKR_PIN_INCORRECT. Exactly one attempt was made.
    #[error("C_Login returned CKR_PIN_INCORRECT for token {token:?}")]
    PinIncorrect {
        /// Token label.
        token: String,
    },

    /// The user PIN is locked (CKF_USER_PIN_LOCKED, or `C_Login` returned CKR_PIN_LOCKED).
    #[error("the user PIN of token {token:?} is locked ({detail})")]
    PinLocked {
        /// Token label.
        token: String,
        /// Which signal said so.
        detail: &'static str,
    },

    /// A PIN is needed but none could be obtained.
    #[error("no PIN for token {token:?}: {reason}")]
    PinUnavailable {
        /// Token label.
        token: String,
        /// Why (unreadable pin-source file, prompt refused, no source at all).
        reason: String,
    },

    /// No private key matches the URI's object attributes.
    #[error("no private key matches {wanted} on token {token:?} (C_FindObjects found none)")]
    KeyNotFound {
        /// Token label.
        token: String,
        /// The URI's object attributes.
        wanted: String,
    },

    /// Several private keys match the URI's object attributes.
    #[error("{count} private keys match {wanted} on token {token:?} (C_FindObjects)")]
    AmbiguousKey {
        /// Token label.
        token: String,
        /// The URI's object attributes.
        wanted: String,
        /// How many matched.
        count: usize,
    },

    /// Generation was asked for a label or id that an object on the token already has.
    #[error(
        "an object with {what} already exists on token {token:?}; refusing to generate another"
    )]
    KeyExists {
        /// Token label.
        token: String,
        /// The clashing label and/or id.
        what: String,
    },

    /// The private key may leave the token (CKA_EXTRACTABLE true or CKA_SENSITIVE false).
    #[error("private key {wanted} on token {token:?} is not protected: CKA_EXTRACTABLE={}, CKA_SENSITIVE={}", show_bool(*extractable), show_bool(*sensitive))]
    KeyExtractable {
        /// Token label.
        token: String,
        /// The URI's object attributes.
        wanted: String,
        /// CKA_EXTRACTABLE, if the token disclosed it.
        extractable: Option<bool>,
        /// CKA_SENSITIVE, if the token disclosed it.
        sensitive: Option<bool>,
    },

    /// The key exists but talvault cannot sign with it (curve, key type, CKA_SIGN, …).
    #[error("private key {wanted} on token {token:?} cannot be used: {reason}")]
    KeyUnsuitable {
        /// Token label.
        token: String,
        /// The URI's object attributes.
        wanted: String,
        /// Why.
        reason: String,
    },

    /// A signature the token made does not verify under the key's public key object: the pair
    /// is mismatched (the public object belongs to another key) or the token is faulty. The
    /// signature is never used.
    #[error(
        "a signature by private key {wanted} on token {token:?} does not verify under its public key object (C_Sign)"
    )]
    SignatureMismatch {
        /// Token label.
        token: String,
        /// The key's object attributes.
        wanted: String,
    },

    /// The token does not list a mechanism the operation needs in `C_GetMechanismList`.
    #[error(
        "token {token:?} does not offer {mechanism} (C_GetMechanismList), needed for {algorithm}"
    )]
    MechanismUnsupported {
        /// Token label.
        token: String,
        /// The missing mechanism, e.g. `CKM_EDDSA`.
        mechanism: &'static str,
        /// The algorithm that needs it.
        algorithm: KeyAlgorithm,
    },

    /// A PKCS#11 call succeeded but returned a value talvault cannot use.
    #[error("{function} returned a malformed value: {reason}")]
    MalformedTokenData {
        /// The PKCS#11 function.
        function: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl HsmError {
    /// A second line for the CLI: what to check or do next.
    pub fn hint(&self) -> Option<String> {
        let text = match self {
            Self::UriMalformed(e) => return e.hint().map(str::to_owned),
            Self::UriUnsuitable { .. } => {
                "name the token with token= (or serial=) and the key with object= and/or id="
            }
            Self::ModuleNotFound { .. } => {
                "add ?module-path=/path/to/module.so (or ?module-name=NAME for a module registered with p11-kit) to the URI"
            }
            Self::NotAPkcs11Module { .. } => {
                "module-path must name the vendor's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so), built for this architecture"
            }
            Self::ModuleMismatch { .. } => {
                "drop the library-* attributes or point module-path/module-name at the intended module"
            }
            Self::Pkcs11 { rv, .. } => return Some(rv_hint(rv)),
            Self::TokenNotPresent { .. } => {
                "check that the token is plugged in and initialised, and that token=/serial= match `talvault hsm check` or `pkcs11-tool --list-token-slots`"
            }
            Self::AmbiguousToken { .. } => "add serial= to the URI to pick one token",
            Self::PinIncorrect { .. } => {
                "one attempt was made; check the PIN source (pin-source file, TALVAULT_PKCS11_PIN) — repeated failures lock the token"
            }
            Self::PinLocked { .. } => {
                "no attempt was made or more would fail; the security officer must unlock the PIN (e.g. pkcs11-tool --init-pin or the vendor tool)"
            }
            Self::PinUnavailable { .. } => {
                "give the PIN with ?pin-source=/path/to/pinfile in the URI, the TALVAULT_PKCS11_PIN environment variable, or run interactively"
            }
            Self::KeyNotFound { .. } => {
                "list the token's keys with `pkcs11-tool --module M --token-label L --login --list-objects --type privkey`"
            }
            Self::AmbiguousKey { .. } => {
                "add id= (the CKA_ID, percent-encoded) to the URI to pick one key"
            }
            Self::KeyExists { .. } => {
                "choose another object= label (and id=), or use the existing key with `--pkcs11` without generating"
            }
            Self::KeyExtractable { .. } => {
                "generate a new key inside the token with talvault; --danger-allow-extractable accepts this key anyway"
            }
            Self::KeyUnsuitable { .. } => {
                "talvault signs with Ed25519 (CKK_EC_EDWARDS) and ECDSA P-256 (CKK_EC) keys that have CKA_SIGN set"
            }
            Self::SignatureMismatch { .. } => {
                "its public key object (same CKA_ID or CKA_LABEL) belongs to another key, or the token is faulty; compare them with `pkcs11-tool -O`"
            }
            Self::MechanismUnsupported { .. } => {
                "run `talvault hsm check URI` to see what the token offers; pick the other algorithm if it is offered"
            }
            Self::MalformedTokenData { .. } => {
                "the token answered outside the PKCS#11 specification; report this with the module name and version"
            }
        };
        Some(text.to_owned())
    }

    /// Maps a cryptoki error to the generic variant, naming the function and return code.
    pub(crate) fn from_cryptoki(error: CkError, doing: impl Into<String>) -> Self {
        let doing = doing.into();
        match error {
            CkError::Pkcs11(rv, function) => Self::Pkcs11 {
                function: function_name(function),
                rv: rv_name(rv),
                doing,
            },
            other => Self::Pkcs11 {
                function: "cryptoki".to_owned(),
                rv: other.to_string(),
                doing,
            },
        }
    }
}

/// The return code a cryptoki error carries, if it is a PKCS#11 return code.
pub(crate) fn rv_of(error: &CkError) -> Option<RvError> {
    match error {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// `CKR_…` name of a return code, e.g. `CKR_PIN_INCORRECT` (PKCS#11 v2.40 base §5.1, pkcs11t.h).
///
/// cryptoki's variant names are the CKR names in CamelCase (checked for all 99 codes it maps), so
/// the name is derived rather than tabled.
pub(crate) fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+{:#x}", code),
        RvError::UnknownErrorCode(code) => format!("unknown return code {code:#x}"),
        other => format!("CKR_{}", screaming_snake(&format!("{other:?}"))),
    }
}

/// `C_…` name of a function, e.g. `C_Sign`: cryptoki's variant names are the C names without
/// the `C_` prefix.
pub(crate) fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    let mut prev_lower_or_digit = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && prev_lower_or_digit {
            out.push('_');
        }
        prev_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn rv_hint(rv: &str) -> String {
    match rv {
        "CKR_KEY_FUNCTION_NOT_PERMITTED" => {
            "the key's attributes forbid this use (CKA_SIGN false?); check with `talvault hsm check URI`"
        }
        "CKR_MECHANISM_INVALID" | "CKR_MECHANISM_PARAM_INVALID" => {
            "the token does not support this mechanism for this key; run `talvault hsm check URI`"
        }
        "CKR_USER_NOT_LOGGED_IN" => {
            "the session is not logged in (a key with CKA_ALWAYS_AUTHENTICATE needs a PIN per signature, which talvault does not support)"
        }
        "CKR_TOKEN_NOT_PRESENT" | "CKR_DEVICE_REMOVED" | "CKR_SESSION_HANDLE_INVALID" => {
            "the token went away; plug it back in and run the command again"
        }
        "CKR_DEVICE_ERROR" | "CKR_GENERAL_ERROR" | "CKR_FUNCTION_FAILED" => {
            "the module reported an internal failure; check the vendor's logs (for SoftHSM: SOFTHSM2_CONF and its tokendir permissions)"
        }
        _ => "see the PKCS#11 return code in the vendor's documentation; `talvault hsm check URI` shows what the token offers",
    }
    .to_owned()
}

fn list_paths(paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        let _ = write!(out, "{}{}", if i == 0 { "" } else { ", " }, p.display());
    }
    if out.is_empty() {
        out.push_str("nothing");
    }
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn show_bool(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "not disclosed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_are_named_like_pkcs11t_h() {
        assert_eq!(rv_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            rv_name(RvError::KeyFunctionNotPermitted),
            "CKR_KEY_FUNCTION_NOT_PERMITTED"
        );
        assert_eq!(
            rv_name(RvError::CryptokiAlreadyInitialized),
            "CKR_CRYPTOKI_ALREADY_INITIALIZED"
        );
        assert_eq!(rv_name(RvError::SlotIdInvalid), "CKR_SLOT_ID_INVALID");
        assert_eq!(rv_name(RvError::DataLenRange), "CKR_DATA_LEN_RANGE");
        assert_eq!(
            rv_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED+0x80000001"
        );
    }

    #[test]
    fn functions_are_named_like_the_c_api() {
        assert_eq!(function_name(Function::Sign), "C_Sign");
        assert_eq!(
            function_name(Function::GetMechanismList),
            "C_GetMechanismList"
        );
        assert_eq!(function_name(Function::Login), "C_Login");
        assert_eq!(function_name(Function::InitPIN), "C_InitPIN");
        assert_eq!(
            function_name(Function::GetAttributeValue),
            "C_GetAttributeValue"
        );
    }

    #[test]
    fn a_pkcs11_error_is_one_line_naming_function_and_code() {
        let e = HsmError::from_cryptoki(
            CkError::Pkcs11(RvError::KeyFunctionNotPermitted, Function::Sign),
            "signing with key \"ca\"",
        );
        assert_eq!(
            e.to_string(),
            "C_Sign returned CKR_KEY_FUNCTION_NOT_PERMITTED while signing with key \"ca\""
        );
        assert!(!e.to_string().contains('\n'));
        assert!(e.hint().unwrap().contains("CKA_SIGN"));
    }

    #[test]
    fn wrong_pin_hint_says_one_attempt() {
        let e = HsmError::PinIncorrect { token: "L".into() };
        assert_eq!(
            e.to_string(),
            "C_Login returned CKR_PIN_INCORRECT for token \"L\""
        );
        assert!(e.hint().unwrap().starts_with("one attempt was made"));
    }

    #[test]
    fn module_not_found_lists_every_path() {
        let e = HsmError::ModuleNotFound {
            tried: vec!["/a/x.so".into(), "/b/y.so".into()],
        };
        assert_eq!(
            e.to_string(),
            "no PKCS#11 module found; tried /a/x.so, /b/y.so"
        );
    }
}
