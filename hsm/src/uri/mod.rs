//! `pkcs11:` URIs (RFC 7512): a strict parser and a canonical serialiser that never holds a PIN.
//!
//! # Rules talvault applies
//!
//! The grammar is RFC 7512 §2.3. On top of it, where the RFC leaves room, talvault decides:
//!
//! - **Path attributes** accepted: `token`, `manufacturer`, `model`, `serial` (match
//!   `C_GetTokenInfo`), `slot-description`, `slot-manufacturer` (match `C_GetSlotInfo`),
//!   `library-manufacturer`, `library-description`, `library-version` (match `C_GetInfo`),
//!   `object` (CKA_LABEL), `id` (CKA_ID, any bytes) and `type` (`private`, `public`, `cert`,
//!   `secret-key`, `data`; only `private`/`public` make sense for a signing key).
//! - **Query attributes** accepted: `module-path` (an absolute path to the module),
//!   `module-name` (a module name as p11-kit registers it, e.g. `softhsm2`), `pin-source` (a file
//!   path or a `file:` URI, RFC 8089; the PIN is the file's content minus one trailing newline).
//! - **`pin-value` is refused**, wherever it appears and whatever its value (the value is never
//!   echoed): a PIN in a URI ends up in shell history, process lists and logs (RFC 7512 §6 warns
//!   about exactly this). Use `pin-source` or `TALVAULT_PKCS11_PIN`.
//! - **`slot-id` is refused**: slot ids are not stable (SoftHSM reassigns them when a token is
//!   initialised), so a URI holding one can silently point at another token later. Use `token=` or
//!   `serial=`.
//! - **Vendor-specific and unknown attributes are refused**, in the path and in the query. RFC 7512
//!   §2.3 lets consumers decide what to do with vendor attributes; ignoring a path attribute would
//!   widen the match (and could select a different key), and ignoring a query attribute could drop
//!   an access setting the author relied on. The error names the attribute.
//! - **Every attribute at most once.** RFC 7512 §2.3 forbids duplicate path attributes; talvault
//!   also refuses duplicate query attributes (which module, which PIN file?).
//! - Attribute names match case-insensitively (ABNF literals are case-insensitive, RFC 5234 §2.3)
//!   and are written in lower case. The scheme matches case-insensitively (RFC 3986 §3.1).
//! - Values are percent-decoded per RFC 3986 §2.1. Characters outside `pk11-pchar` (path) or
//!   `pk11-qchar` (query) must be percent-encoded; a fragment (`#`), spaces or line breaks are
//!   refused. Text values must be UTF-8 after decoding (PKCS#11 labels are CK_UTF8CHAR).
//! - Values are compared exactly, with PKCS#11's blank padding already removed from token fields
//!   (RFC 7512 §2.5). An empty value (`serial=`) matches only an empty field.
//!
//! [`Display`](std::fmt::Display) writes a canonical form: path attributes in a fixed order, then
//! the query; every byte of `id` percent-encoded (RFC 7512 §2.3 recommends it), other values
//! percent-encoded except RFC 3986 unreserved characters (and `/` and `:` in the query, which
//! `pk11-qchar` allows). Parsing the output gives the same URI back. It cannot hold a PIN because
//! the parser refuses one.

//!
//! The parser and [`UriError`] are in `parse.rs`, the canonical form and the descriptions used
//! in messages in `display.rs`; this file holds the type and its accessors.

use std::fmt;

mod display;
mod parse;

pub use parse::UriError;

/// A parsed `pkcs11:` URI. See the module documentation for the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub(crate) token: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) slot_description: Option<String>,
    pub(crate) slot_manufacturer: Option<String>,
    pub(crate) library_manufacturer: Option<String>,
    pub(crate) library_description: Option<String>,
    pub(crate) library_version: Option<LibraryVersion>,
    pub(crate) object: Option<String>,
    pub(crate) object_type: Option<ObjectType>,
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) module_name: Option<String>,
    pub(crate) module_path: Option<String>,
    pub(crate) pin_source: Option<String>,
}

/// `library-version` (RFC 7512 §2.3: `1*DIGIT [ "." 1*DIGIT ]`), compared with `C_GetInfo`'s
/// `libraryVersion`. A missing minor matches any minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LibraryVersion {
    pub(crate) major: u8,
    pub(crate) minor: Option<u8>,
}

/// `type` (RFC 7512 §2.3): the object class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectType {
    Public,
    Private,
    Cert,
    SecretKey,
    Data,
}

impl ObjectType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

/// The two components of a `pkcs11:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Before `?`: attributes that select the module, slot, token and object.
    Path,
    /// After `?`: attributes that say how to access them.
    Query,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Path => "path",
            Self::Query => "query",
        })
    }
}

impl Pkcs11Uri {
    /// The token label (`token=`), if the URI names one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The object label (`object=`, CKA_LABEL), if the URI names one.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// The object id (`id=`, CKA_ID, percent-decoded), if the URI names one.
    pub fn id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// `module-path`, if present.
    pub fn module_path(&self) -> Option<&str> {
        self.module_path.as_deref()
    }

    /// `module-name`, if present.
    pub fn module_name(&self) -> Option<&str> {
        self.module_name.as_deref()
    }

    /// The same URI without `module-path`, `module-name` and `pin-source`: the identity of a
    /// token and key, with nothing that says which code to load or which file to read. A
    /// URI read from a file someone else could write is used only in this form.
    pub fn identity_only(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            module_name: None,
            module_path: None,
            pin_source: None,
            ..self.clone()
        }
    }

    /// The same URI with the module set by whoever runs talvault (an absolute path).
    pub fn with_module_path(&self, path: &str) -> Pkcs11Uri {
        Pkcs11Uri {
            module_name: None,
            module_path: Some(path.to_owned()),
            ..self.clone()
        }
    }

    /// Whether the URI names an object (by `object=` or `id=`).
    pub(crate) fn names_object(&self) -> bool {
        self.object.is_some() || self.id.is_some()
    }
}

/// RFC 3986 §2.3 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}
