//! Finding the token a URI names (by label, serial, manufacturer, model and slot text, never by
//! slot id) and logging in to it once per process, with one attempt.
//!
//! The PIN comes from, in order: the URI's `pin-source` file (its content minus one trailing
//! newline), the `TALVAULT_PKCS11_PIN` environment variable, the caller's prompt. It lives in a
//! `SecretString` (cryptoki's `AuthPin`) and is only ever handed to `C_Login`. This module never
//! touches the terminal; the CLI passes the prompt.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: reads the PIN from its file or from TALVAULT_PKCS11_PIN"
)]

use std::sync::Arc;

use cryptoki::error::RvError;
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Slot, SlotInfo, TokenInfo};
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use crate::error::{HsmError, rv_of};
use crate::module::Module;
use crate::options::OpenOptions;
use crate::uri::Pkcs11Uri;

/// The environment variable read for the user PIN when the URI has no `pin-source`.
pub const PIN_ENV: &str = "TALVAULT_PKCS11_PIN";

/// A token the URI selected.
pub(crate) struct Token {
    pub(crate) module: Arc<Module>,
    pub(crate) slot: Slot,
    pub(crate) info: TokenInfo,
    pub(crate) slot_info: SlotInfo,
}

impl Token {
    pub(crate) fn label(&self) -> &str {
        self.info.label()
    }
}

/// `"label" (serial S)`, how tokens are listed in messages.
fn describe(info: &TokenInfo) -> String {
    format!("{:?} (serial {})", info.label(), info.serial_number())
}

/// Checks the URI's `library-*` attributes against `C_GetInfo` (RFC 7512 §2.3).
fn check_library(module: &Module, uri: &Pkcs11Uri) -> Result<(), HsmError> {
    if uri.library_manufacturer.is_none()
        && uri.library_description.is_none()
        && uri.library_version.is_none()
    {
        return Ok(());
    }
    let info = module
        .pkcs11
        .get_library_info()
        .map_err(|e| HsmError::from_cryptoki(e, "reading the module information"))?;
    let mismatch = |attribute, wanted: String, found: String| HsmError::ModuleMismatch {
        path: module.path.clone(),
        attribute,
        wanted,
        found,
    };
    if let Some(wanted) = &uri.library_manufacturer
        && wanted != info.manufacturer_id()
    {
        return Err(mismatch(
            "library-manufacturer",
            wanted.clone(),
            info.manufacturer_id().to_owned(),
        ));
    }
    if let Some(wanted) = &uri.library_description
        && wanted != info.library_description()
    {
        return Err(mismatch(
            "library-description",
            wanted.clone(),
            info.library_description().to_owned(),
        ));
    }
    if let Some(wanted) = uri.library_version {
        let found = info.library_version();
        if wanted.major != found.major() || wanted.minor.is_some_and(|m| m != found.minor()) {
            return Err(mismatch(
                "library-version",
                match wanted.minor {
                    Some(minor) => format!("{}.{minor}", wanted.major),
                    None => wanted.major.to_string(),
                },
                format!("{}.{}", found.major(), found.minor()),
            ));
        }
    }
    Ok(())
}

/// The one initialised token matching the URI's token and slot attributes.
pub(crate) fn find(module: &Arc<Module>, uri: &Pkcs11Uri) -> Result<Token, HsmError> {
    check_library(module, uri)?;
    let slots = module
        .pkcs11
        .get_slots_with_token()
        .map_err(|e| HsmError::from_cryptoki(e, "listing the slots with a token"))?;
    let mut available = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        // A slot whose token cannot be read (CKR_TOKEN_NOT_RECOGNIZED, removed meanwhile) is
        // skipped rather than failing the whole search.
        let Ok(info) = module.pkcs11.get_token_info(slot) else {
            continue;
        };
        // SoftHSM always shows one uninitialised token to initialise next; it is not a choice.
        if !info.token_initialized() {
            continue;
        }
        let slot_info = module
            .pkcs11
            .get_slot_info(slot)
            .map_err(|e| HsmError::from_cryptoki(e, format!("reading slot {}", slot.id())))?;
        available.push(describe(&info));
        let wanted = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if wanted(&uri.token, info.label())
            && wanted(&uri.manufacturer, info.manufacturer_id())
            && wanted(&uri.model, info.model())
            && wanted(&uri.serial, info.serial_number())
            && wanted(&uri.slot_description, slot_info.slot_description())
            && wanted(&uri.slot_manufacturer, slot_info.manufacturer_id())
        {
            matching.push((slot, info, slot_info));
        }
    }
    match matching.len() {
        0 => Err(HsmError::TokenNotPresent {
            wanted: uri.describe_token(),
            module: module.path.clone(),
            available,
        }),
        1 => {
            let (slot, info, slot_info) = matching.remove(0);
            Ok(Token {
                module: Arc::clone(module),
                slot,
                info,
                slot_info,
            })
        }
        _ => Err(HsmError::AmbiguousToken {
            wanted: uri.describe_token(),
            matches: matching.iter().map(|(_, info, _)| describe(info)).collect(),
        }),
    }
}

/// Logs the application in to the token unless it already is (by this or any earlier open in the
/// process) or the token needs no login. At most one `C_Login` per call, never a retry: each
/// failed attempt counts against the token's lockout limit.
pub(crate) fn login(
    token: &Token,
    session: &Session,
    uri: &Pkcs11Uri,
    options: &OpenOptions<'_>,
) -> Result<(), HsmError> {
    let state = session
        .get_session_info()
        .map_err(|e| HsmError::from_cryptoki(e, "reading the session state"))?
        .session_state();
    // PKCS#11 v2.40 base §5.6: login is per application and token; all its sessions share it.
    if matches!(state, SessionState::RoUser | SessionState::RwUser) {
        return Ok(());
    }
    // Fresh flags: a lock may have happened since the token was found.
    let info = token
        .module
        .pkcs11
        .get_token_info(token.slot)
        .map_err(|e| HsmError::from_cryptoki(e, format!("reading token {:?}", token.label())))?;
    if !info.login_required() {
        return Ok(());
    }
    let label = info.label().to_owned();
    if info.user_pin_locked() {
        return Err(HsmError::PinLocked {
            token: label,
            detail: "token flag CKF_USER_PIN_LOCKED is set; no login was attempted",
        });
    }
    let pin = pin(uri, &label, info.protected_authentication_path(), options)?;
    match session.login(UserType::User, pin.as_ref()) {
        Ok(()) => Ok(()),
        Err(e) => match rv_of(&e) {
            Some(RvError::UserAlreadyLoggedIn) => Ok(()),
            Some(RvError::PinIncorrect) => Err(HsmError::PinIncorrect { token: label }),
            Some(RvError::PinLocked) => Err(HsmError::PinLocked {
                token: label,
                detail: "C_Login returned CKR_PIN_LOCKED",
            }),
            _ => Err(HsmError::from_cryptoki(
                e,
                format!("logging in to token {label:?}"),
            )),
        },
    }
}

/// The PIN, from the first source that has one. `None` means "use the token's PIN pad"
/// (CKF_PROTECTED_AUTHENTICATION_PATH, PKCS#11 v2.40 base §5.6 C_Login with a NULL PIN).
fn pin(
    uri: &Pkcs11Uri,
    label: &str,
    pin_pad: bool,
    options: &OpenOptions<'_>,
) -> Result<Option<SecretString>, HsmError> {
    pin_from(uri, label, pin_pad, options, std::env::var(PIN_ENV))
}

/// [`pin`] with the environment variable passed in, so tests do not depend on the environment.
fn pin_from(
    uri: &Pkcs11Uri,
    label: &str,
    pin_pad: bool,
    options: &OpenOptions<'_>,
    env: Result<String, std::env::VarError>,
) -> Result<Option<SecretString>, HsmError> {
    let unavailable = |reason: String| HsmError::PinUnavailable {
        token: label.to_owned(),
        reason,
    };
    if let Some(path) = uri.pin_source_file() {
        let bytes = read_pin_file(&path).map_err(|e| {
            unavailable(format!(
                "the pin-source file {} cannot be read: {e}",
                path.display()
            ))
        })?;
        let text = strip_one_newline(&bytes);
        let text = std::str::from_utf8(text).map_err(|_| {
            unavailable(format!(
                "the pin-source file {} is not UTF-8",
                path.display()
            ))
        })?;
        if text.is_empty() {
            return Err(unavailable(format!(
                "the pin-source file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(SecretString::from(text)));
    }
    match env {
        Ok(value) => {
            let value = Zeroizing::new(value);
            if value.is_empty() {
                return Err(unavailable(format!("{PIN_ENV} is set but empty")));
            }
            return Ok(Some(SecretString::from(value.as_str())));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(unavailable(format!("{PIN_ENV} is not valid UTF-8")));
        }
        Err(std::env::VarError::NotPresent) => {}
    }
    if pin_pad {
        return Ok(None);
    }
    match options.pin_prompt {
        Some(prompt) => prompt(label)
            .map(Some)
            .map_err(|reason| unavailable(format!("the PIN prompt failed: {reason}"))),
        None => Err(unavailable(format!(
            "the URI has no pin-source, {PIN_ENV} is not set, and no prompt is available"
        ))),
    }
}

/// Longest PIN file read: a PIN is a few dozen bytes.
pub const PIN_FILE_MAX: u64 = 1024;

/// Reads a PIN file: a regular file (never a FIFO or a device, which could block or stream
/// forever), at most [`PIN_FILE_MAX`] bytes, into a wiped buffer.
pub fn read_pin_file(path: &std::path::Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    // stat before open: opening a FIFO for reading would block until someone writes to it.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > PIN_FILE_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {PIN_FILE_MAX} bytes"
        )));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(PIN_FILE_MAX as usize + 1));
    file.take(PIN_FILE_MAX + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > PIN_FILE_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {PIN_FILE_MAX} bytes"
        )));
    }
    Ok(buf)
}

/// Removes one trailing `\n` (or `\r\n`): what `echo PIN > file` leaves.
fn strip_one_newline(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unset() -> Result<String, std::env::VarError> {
        Err(std::env::VarError::NotPresent)
    }

    #[test]
    fn environment_pin_comes_after_the_file_and_before_the_prompt() {
        let uri = Pkcs11Uri::parse("pkcs11:token=L").unwrap();
        let prompt =
            |_: &str| -> Result<SecretString, String> { panic!("prompt must not be asked") };
        let options = OpenOptions {
            pin_prompt: Some(&prompt),
            ..OpenOptions::default()
        };
        let got = pin_from(&uri, "L", false, &options, Ok("9876".into()))
            .unwrap()
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&got), "9876");
        let e = pin_from(&uri, "L", false, &options, Ok(String::new())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no PIN for token \"L\": TALVAULT_PKCS11_PIN is set but empty"
        );
    }

    #[test]
    fn exactly_one_trailing_newline_is_removed() {
        assert_eq!(strip_one_newline(b"1234\n"), b"1234");
        assert_eq!(strip_one_newline(b"1234\r\n"), b"1234");
        assert_eq!(strip_one_newline(b"1234\n\n"), b"1234\n");
        assert_eq!(strip_one_newline(b"1234"), b"1234");
        assert_eq!(strip_one_newline(b" 1234 "), b" 1234 ");
    }

    #[test]
    fn pin_file_errors_name_the_file_not_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let uri = Pkcs11Uri::parse(&format!("pkcs11:?pin-source={}", missing.display())).unwrap();
        let e = pin_from(&uri, "L", false, &OpenOptions::default(), unset()).unwrap_err();
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"\n").unwrap();
        let uri = Pkcs11Uri::parse(&format!("pkcs11:?pin-source={}", empty.display())).unwrap();
        let e = pin_from(&uri, "L", false, &OpenOptions::default(), unset()).unwrap_err();
        assert!(e.to_string().ends_with("is empty"), "{e}");

        let file = dir.path().join("pin");
        std::fs::write(&file, b"s3cret-PIN\n").unwrap();
        let uri =
            Pkcs11Uri::parse(&format!("pkcs11:?pin-source=file://{}", file.display())).unwrap();
        let got = pin_from(&uri, "L", false, &OpenOptions::default(), unset())
            .unwrap()
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&got), "s3cret-PIN");
        // The secret type's Debug does not show it.
        assert!(!format!("{got:?}").contains("s3cret"));
    }

    #[test]
    fn prompt_is_asked_with_the_token_label_when_nothing_else_gives_a_pin() {
        let uri = Pkcs11Uri::parse("pkcs11:token=L").unwrap();
        let asked = std::cell::Cell::new(0);
        let prompt = |label: &str| {
            asked.set(asked.get() + 1);
            assert_eq!(label, "L");
            Ok(SecretString::from("1234"))
        };
        let options = OpenOptions {
            pin_prompt: Some(&prompt),
            ..OpenOptions::default()
        };
        assert!(
            pin_from(&uri, "L", false, &options, unset())
                .unwrap()
                .is_some()
        );
        assert_eq!(asked.get(), 1);
        // A PIN pad wins over the prompt.
        assert!(
            pin_from(&uri, "L", true, &options, unset())
                .unwrap()
                .is_none()
        );
        assert_eq!(asked.get(), 1);
        let refuse = |_: &str| Err("not a terminal".to_owned());
        let options = OpenOptions {
            pin_prompt: Some(&refuse),
            ..OpenOptions::default()
        };
        let e = pin_from(&uri, "L", false, &options, unset()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no PIN for token \"L\": the PIN prompt failed: not a terminal"
        );
        let e = pin_from(&uri, "L", false, &OpenOptions::default(), unset()).unwrap_err();
        assert!(e.to_string().contains("no prompt is available"), "{e}");
    }
}
