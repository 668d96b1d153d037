//! Parsing `pkcs11:` URIs (RFC 7512 §2.3) by the rules in the parent module's documentation:
//! attribute names and components, percent-decoding, per-attribute values, `pin-source` paths,
//! and [`UriError`]. It must never put a `pin-value` into an error, and must not read the
//! `pin-source` file (only say which one it names).

use std::path::PathBuf;

use super::{Component, LibraryVersion, ObjectType, Pkcs11Uri, is_unreserved};

/// Why a `pkcs11:` URI was refused. Messages name the attribute (or its position) and never
/// contain a `pin-value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The text does not start with `pkcs11:`.
    #[error("it does not start with \"pkcs11:\"")]
    NotPkcs11,
    /// The text has a `#` fragment.
    #[error("a fragment ('#…') is not part of a pkcs11: URI (RFC 7512 §2.3)")]
    Fragment,
    /// Two separators in a row, or a trailing one.
    #[error("attribute #{position} of the {component} is empty (doubled or trailing separator)")]
    EmptyAttribute {
        /// Path or query.
        component: Component,
        /// 1-based position among the component's attributes.
        position: usize,
    },
    /// An attribute without `=`.
    #[error("attribute #{position} of the {component} has no \"=value\"")]
    MissingValue {
        /// Path or query.
        component: Component,
        /// 1-based position among the component's attributes.
        position: usize,
    },
    /// An attribute name with characters outside `ALPHA / DIGIT / "-" / "_"`.
    #[error(
        "attribute #{position} of the {component} has an invalid name (letters, digits, '-' and '_' only)"
    )]
    InvalidName {
        /// Path or query.
        component: Component,
        /// 1-based position among the component's attributes.
        position: usize,
    },
    /// The same attribute twice.
    #[error("{name} appears more than once")]
    Duplicate {
        /// The attribute.
        name: String,
    },
    /// An attribute talvault does not interpret (including vendor-specific ones).
    #[error(
        "unknown attribute {name:?} in the {component}; talvault refuses attributes it does not interpret"
    )]
    UnknownAttribute {
        /// The attribute.
        name: String,
        /// Where it appeared.
        component: Component,
    },
    /// A path attribute in the query or the reverse.
    #[error("{name} belongs in the {belongs} but appears in the {found}")]
    WrongComponent {
        /// The attribute.
        name: &'static str,
        /// Where RFC 7512 puts it.
        belongs: Component,
        /// Where it appeared.
        found: Component,
    },
    /// A character that must be percent-encoded.
    #[error("{name}: character {character:?} must be percent-encoded")]
    InvalidCharacter {
        /// The attribute.
        name: &'static str,
        /// The offending character.
        character: char,
    },
    /// A `%` not followed by two hex digits.
    #[error("{name}: '%' must be followed by two hex digits (RFC 3986 §2.1)")]
    BadPercentEncoding {
        /// The attribute.
        name: &'static str,
    },
    /// A text value that is not UTF-8 after percent-decoding.
    #[error("{name}: the value is not UTF-8 after percent-decoding")]
    NotUtf8 {
        /// The attribute.
        name: &'static str,
    },
    /// A value outside what the attribute allows.
    #[error("{name}: {reason}")]
    InvalidValue {
        /// The attribute.
        name: &'static str,
        /// What is allowed.
        reason: String,
    },
    /// `pin-value` (or a vendor variant of it) is present.
    #[error("pin-value is refused: a PIN must never appear in a URI")]
    PinValue,
    /// `slot-id` is present.
    #[error("slot-id is refused: slot ids are reassigned (SoftHSM does so on every token init)")]
    SlotId,
}

impl UriError {
    /// A second line for the CLI.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::NotPkcs11 => "write it like pkcs11:token=MyToken;object=my-key",
            Self::Fragment | Self::InvalidCharacter { .. } => {
                "percent-encode the character (space is %20, '#' is %23, ';' is %3B, '/' in the path is %2F)"
            }
            Self::PinValue => {
                "put the PIN in a file and add ?pin-source=/path/to/file, or set TALVAULT_PKCS11_PIN"
            }
            Self::SlotId => "name the token with token=LABEL (and serial= if labels repeat)",
            Self::UnknownAttribute { .. } => {
                "talvault understands token, manufacturer, model, serial, slot-description, slot-manufacturer, library-*, object, id, type and ?module-path, module-name, pin-source"
            }
            Self::WrongComponent { .. } => {
                "path attributes go between \"pkcs11:\" and '?', separated by ';'; query attributes after '?', separated by '&'"
            }
            _ => return None,
        })
    }
}

/// Attributes the parser knows, with where they belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Token,
    Manufacturer,
    Model,
    Serial,
    SlotDescription,
    SlotManufacturer,
    SlotId,
    LibraryManufacturer,
    LibraryDescription,
    LibraryVersion,
    Object,
    Type,
    Id,
    ModuleName,
    ModulePath,
    PinSource,
    PinValue,
}

impl Attr {
    const ALL: [Attr; 17] = [
        Attr::Token,
        Attr::Manufacturer,
        Attr::Model,
        Attr::Serial,
        Attr::SlotDescription,
        Attr::SlotManufacturer,
        Attr::SlotId,
        Attr::LibraryManufacturer,
        Attr::LibraryDescription,
        Attr::LibraryVersion,
        Attr::Object,
        Attr::Type,
        Attr::Id,
        Attr::ModuleName,
        Attr::ModulePath,
        Attr::PinSource,
        Attr::PinValue,
    ];

    fn name(self) -> &'static str {
        match self {
            Attr::Token => "token",
            Attr::Manufacturer => "manufacturer",
            Attr::Model => "model",
            Attr::Serial => "serial",
            Attr::SlotDescription => "slot-description",
            Attr::SlotManufacturer => "slot-manufacturer",
            Attr::SlotId => "slot-id",
            Attr::LibraryManufacturer => "library-manufacturer",
            Attr::LibraryDescription => "library-description",
            Attr::LibraryVersion => "library-version",
            Attr::Object => "object",
            Attr::Type => "type",
            Attr::Id => "id",
            Attr::ModuleName => "module-name",
            Attr::ModulePath => "module-path",
            Attr::PinSource => "pin-source",
            Attr::PinValue => "pin-value",
        }
    }

    fn component(self) -> Component {
        match self {
            Attr::ModuleName | Attr::ModulePath | Attr::PinSource | Attr::PinValue => {
                Component::Query
            }
            _ => Component::Path,
        }
    }

    fn lookup(name: &str) -> Option<Attr> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI strictly (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, UriError> {
        // RFC 3986 §3.1: schemes are case-insensitive.
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("pkcs11:") => &text[7..],
            _ => return Err(UriError::NotPkcs11),
        };
        // A PIN must be refused even if something else is wrong too, and before its value is
        // looked at, so scan the names first.
        for segment in rest.split(['?', ';', '&']) {
            let name = segment.split('=').next().unwrap_or_default();
            if name.eq_ignore_ascii_case("pin-value")
                || name.to_ascii_lowercase().ends_with("-pin-value")
            {
                return Err(UriError::PinValue);
            }
        }
        if rest.contains('#') {
            return Err(UriError::Fragment);
        }
        // pk11-pchar has no '?', so the first '?' ends the path (RFC 7512 §2.3).
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        let mut seen = Vec::new();
        uri.parse_component(path, ';', Component::Path, &mut seen)?;
        if let Some(query) = query {
            uri.parse_component(query, '&', Component::Query, &mut seen)?;
        }
        Ok(uri)
    }

    fn parse_component(
        &mut self,
        text: &str,
        separator: char,
        component: Component,
        seen: &mut Vec<Attr>,
    ) -> Result<(), UriError> {
        // RFC 7512 §2.3: the path and the query may each be empty.
        if text.is_empty() {
            return Ok(());
        }
        for (index, segment) in text.split(separator).enumerate() {
            let position = index + 1;
            if segment.is_empty() {
                return Err(UriError::EmptyAttribute {
                    component,
                    position,
                });
            }
            let Some((name, raw)) = segment.split_once('=') else {
                return Err(UriError::MissingValue {
                    component,
                    position,
                });
            };
            // pk11-v-attr-nm-char = ALPHA / DIGIT / "-" / "_"
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(UriError::InvalidName {
                    component,
                    position,
                });
            }
            let Some(attr) = Attr::lookup(name) else {
                return Err(UriError::UnknownAttribute {
                    name: name.to_owned(),
                    component,
                });
            };
            if attr == Attr::PinValue {
                return Err(UriError::PinValue);
            }
            if attr.component() != component {
                return Err(UriError::WrongComponent {
                    name: attr.name(),
                    belongs: attr.component(),
                    found: component,
                });
            }
            if attr == Attr::SlotId {
                return Err(UriError::SlotId);
            }
            if seen.contains(&attr) {
                return Err(UriError::Duplicate {
                    name: attr.name().to_owned(),
                });
            }
            seen.push(attr);
            let bytes = percent_decode(attr.name(), raw, component)?;
            self.set(attr, bytes)?;
        }
        Ok(())
    }

    fn set(&mut self, attr: Attr, bytes: Vec<u8>) -> Result<(), UriError> {
        let name = attr.name();
        let text =
            |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| UriError::NotUtf8 { name });
        let invalid = |reason: &str| UriError::InvalidValue {
            name,
            reason: reason.to_owned(),
        };
        match attr {
            Attr::Token => self.token = Some(text(bytes)?),
            Attr::Manufacturer => self.manufacturer = Some(text(bytes)?),
            Attr::Model => self.model = Some(text(bytes)?),
            Attr::Serial => self.serial = Some(text(bytes)?),
            Attr::SlotDescription => self.slot_description = Some(text(bytes)?),
            Attr::SlotManufacturer => self.slot_manufacturer = Some(text(bytes)?),
            Attr::LibraryManufacturer => self.library_manufacturer = Some(text(bytes)?),
            Attr::LibraryDescription => self.library_description = Some(text(bytes)?),
            Attr::Object => self.object = Some(text(bytes)?),
            Attr::Id => self.id = Some(bytes),
            Attr::LibraryVersion => {
                let value = text(bytes)?;
                let bad = || invalid("must be MAJOR or MAJOR.MINOR, each 0-255");
                let number = |s: &str| {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    s.parse::<u8>().map_err(|_| bad())
                };
                let (major, minor) = match value.split_once('.') {
                    Some((major, minor)) => (number(major)?, Some(number(minor)?)),
                    None => (number(&value)?, None),
                };
                self.library_version = Some(LibraryVersion { major, minor });
            }
            Attr::Type => {
                let value = text(bytes)?;
                let object_type = [
                    ObjectType::Public,
                    ObjectType::Private,
                    ObjectType::Cert,
                    ObjectType::SecretKey,
                    ObjectType::Data,
                ]
                .into_iter()
                .find(|t| t.as_str() == value)
                .ok_or_else(|| invalid("must be one of public, private, cert, secret-key, data"))?;
                self.object_type = Some(object_type);
            }
            Attr::ModuleName => {
                let value = text(bytes)?;
                if value.is_empty() || value.contains('/') {
                    return Err(invalid(
                        "must be a module name such as softhsm2 (no path; use module-path for a path)",
                    ));
                }
                self.module_name = Some(value);
            }
            Attr::ModulePath => {
                let value = text(bytes)?;
                if !value.starts_with('/') {
                    return Err(invalid("must be an absolute path to the module library"));
                }
                self.module_path = Some(value);
            }
            Attr::PinSource => {
                let value = text(bytes)?;
                pin_source_path(&value)
                    .map_err(|reason| UriError::InvalidValue { name, reason })?;
                self.pin_source = Some(value);
            }
            // Refused in parse_component before values are decoded; kept as errors, not panics.
            Attr::SlotId => return Err(UriError::SlotId),
            Attr::PinValue => return Err(UriError::PinValue),
        }
        Ok(())
    }

    /// The file named by `pin-source`, if present.
    pub(crate) fn pin_source_file(&self) -> Option<PathBuf> {
        self.pin_source
            .as_deref()
            .and_then(|s| pin_source_path(s).ok())
    }
}

/// The path a `pin-source` value names: a plain path, or a `file:` URI (RFC 8089 §2) with an
/// empty or `localhost` authority. Commands (`|cmd`, p11-kit/Solaris style) and other schemes
/// are refused.
fn pin_source_path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("must name a file holding the PIN".to_owned());
    }
    if value.starts_with('|') {
        return Err("running a command for the PIN is not supported; name a file".to_owned());
    }
    if let Some(rest) = strip_prefix_ignore_case(value, "file:") {
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (authority, path) = authority_and_path
                    .find('/')
                    .map(|i| authority_and_path.split_at(i))
                    .unwrap_or((authority_and_path, ""));
                if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                    return Err(format!(
                        "file: URIs on another host ({authority}) are not supported"
                    ));
                }
                path
            }
            None => rest,
        };
        if !path.starts_with('/') {
            return Err("a file: URI must hold an absolute path".to_owned());
        }
        // RFC 8089 §2: the path of a file: URI is itself percent-encoded (a second layer under
        // the pkcs11: URI's own encoding).
        let bytes = decode_file_uri_path(path)?;
        let path = String::from_utf8(bytes).map_err(|_| "the file path is not UTF-8".to_owned())?;
        return Ok(PathBuf::from(path));
    }
    // Any other "scheme:" prefix (RFC 3986 §3.1 scheme syntax) is refused.
    if let Some((scheme, _)) = value.split_once(':')
        && !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !value.starts_with('/')
    {
        return Err(format!(
            "only file paths and file: URIs are supported, not {scheme}:"
        ));
    }
    Ok(PathBuf::from(value))
}

fn decode_file_uri_path(path: &str) -> Result<Vec<u8>, String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err("bad percent-encoding in the file: URI".to_owned());
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    match value.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => Some(&value[prefix.len()..]),
        _ => None,
    }
}

/// RFC 7512 §2.3 `pk11-res-avail`.
fn is_res_avail(b: u8) -> bool {
    matches!(
        b,
        b':' | b'[' | b']' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}

/// `pk11-pchar` / `pk11-qchar` minus `pct-encoded`.
fn allowed(b: u8, component: Component) -> bool {
    is_unreserved(b)
        || is_res_avail(b)
        || match component {
            Component::Path => b == b'&',
            Component::Query => matches!(b, b'/' | b'?' | b'|'),
        }
}

fn percent_decode(
    name: &'static str,
    raw: &str,
    component: Component,
) -> Result<Vec<u8>, UriError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|&c| (c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(UriError::BadPercentEncoding { name }),
            }
            i += 3;
        } else if allowed(b, component) {
            out.push(b);
            i += 1;
        } else {
            let character = raw[i..].chars().next().unwrap_or('\u{fffd}');
            return Err(UriError::InvalidCharacter { name, character });
        }
    }
    Ok(out)
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> UriError {
        Pkcs11Uri::parse(s).expect_err(s)
    }

    /// RFC 7512 §3 examples (line breaks removed, as §3 says they are only for display), minus
    /// the ones using pin-value and vendor attributes, which talvault refuses on purpose (tested
    /// below).
    #[test]
    fn rfc7512_section3_examples_parse() {
        assert_eq!(parse("pkcs11:"), Pkcs11Uri::default());

        let u = parse("pkcs11:object=my-pubkey;type=public");
        assert_eq!(u.object(), Some("my-pubkey"));
        assert_eq!(u.object_type, Some(ObjectType::Public));

        let u = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(u.pin_source_file(), Some(PathBuf::from("/etc/token")));

        let u = parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
             model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
             ?pin-source=file:/etc/token_pin",
        );
        assert_eq!(u.token(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(u.model.as_deref(), Some("1.0"));
        assert_eq!(u.serial.as_deref(), Some(""));
        assert_eq!(
            u.id(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(u.object_type, Some(ObjectType::Cert));

        let u = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(u.module_name(), Some("mypkcs11"));

        let u = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(u.module_path(), Some("/mnt/libmypkcs11.so.1"));

        let u = parse("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(u.slot_description.as_deref(), Some("Sun Metaslot"));

        let u = parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23",
        );
        assert_eq!(
            u.library_version,
            Some(LibraryVersion {
                major: 1,
                minor: Some(23)
            })
        );

        let u = parse(
            "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
        );
        assert_eq!(u.token(), Some("My token% created by Joe"));
        assert_eq!(
            u.id(),
            Some(&[1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6][..])
        );

        let u = parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        );
        assert_eq!(u.token(), Some("A name with a substring %;"));

        let u = parse(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
        );
        assert_eq!(u.token(), Some("Name with a small A with acute: á"));
    }

    #[test]
    fn pin_value_is_refused_without_echoing_it() {
        for uri in [
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
            "pkcs11:token=t?PIN-VALUE=the-pin",
            "pkcs11:pin-value=the-pin",
            "pkcs11:token=t?x-pin-value=the-pin",
            "pkcs11:token=bad%zz?pin-value=the-pin",
            "pkcs11:token=t?pin-value=the%20pin#frag",
        ] {
            let e = err(uri);
            assert_eq!(e, UriError::PinValue, "{uri}");
            let shown = format!("{e} {} {e:?}", e.hint().unwrap_or_default());
            assert!(
                !shown.contains("the-pin") && !shown.contains("the%20pin"),
                "{shown}"
            );
            assert!(e.hint().unwrap().contains("pin-source"));
            assert!(e.hint().unwrap().contains("TALVAULT_PKCS11_PIN"));
        }
    }

    #[test]
    fn vendor_and_unknown_attributes_are_refused_by_name() {
        let e = err(
            "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
        );
        assert_eq!(
            e,
            UriError::UnknownAttribute {
                name: "vendor-aaa".into(),
                component: Component::Path
            }
        );
        assert!(!e.to_string().contains("value-a"));
        let e = err("pkcs11:token=t?x-foo=1");
        assert_eq!(
            e.to_string(),
            "unknown attribute \"x-foo\" in the query; talvault refuses attributes it does not interpret"
        );
    }

    #[test]
    fn slot_id_is_refused() {
        assert_eq!(err("pkcs11:slot-id=0"), UriError::SlotId);
        assert!(err("pkcs11:slot-id=0").hint().unwrap().contains("token="));
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            err("pkcs11:token=a;token=b"),
            UriError::Duplicate {
                name: "token".into()
            }
        );
        // Case folding does not let a duplicate through.
        assert_eq!(
            err("pkcs11:object=a;OBJECT=b"),
            UriError::Duplicate {
                name: "object".into()
            }
        );
        assert_eq!(
            err("pkcs11:token=a?module-path=/a.so&module-path=/b.so"),
            UriError::Duplicate {
                name: "module-path".into()
            }
        );
    }

    #[test]
    fn attributes_in_the_wrong_component_are_refused() {
        assert_eq!(
            err("pkcs11:module-path=/x.so"),
            UriError::WrongComponent {
                name: "module-path",
                belongs: Component::Query,
                found: Component::Path
            }
        );
        assert_eq!(
            err("pkcs11:?token=x").to_string(),
            "token belongs in the path but appears in the query"
        );
    }

    #[test]
    fn syntax_errors_name_the_attribute_or_its_position() {
        assert_eq!(err("pkcs12:token=a"), UriError::NotPkcs11);
        assert_eq!(err("token=a"), UriError::NotPkcs11);
        assert_eq!(err("pkcs11:token=a#b"), UriError::Fragment);
        assert_eq!(
            err("pkcs11:token=a;;object=b").to_string(),
            "attribute #2 of the path is empty (doubled or trailing separator)"
        );
        assert_eq!(
            err("pkcs11:token=a;"),
            UriError::EmptyAttribute {
                component: Component::Path,
                position: 2
            }
        );
        assert_eq!(
            err("pkcs11:token=a;1234").to_string(),
            "attribute #2 of the path has no \"=value\""
        );
        assert!(matches!(
            err("pkcs11:tok.en=a"),
            UriError::InvalidName { position: 1, .. }
        ));
        assert_eq!(
            err("pkcs11:token=my token").to_string(),
            "token: character ' ' must be percent-encoded"
        );
        assert_eq!(
            err("pkcs11:object=a/b"),
            UriError::InvalidCharacter {
                name: "object",
                character: '/'
            }
        );
        assert_eq!(
            err("pkcs11:object=é"),
            UriError::InvalidCharacter {
                name: "object",
                character: 'é'
            }
        );
        assert_eq!(
            err("pkcs11:object=a%2"),
            UriError::BadPercentEncoding { name: "object" }
        );
        assert_eq!(
            err("pkcs11:object=a%g0"),
            UriError::BadPercentEncoding { name: "object" }
        );
        assert_eq!(
            err("pkcs11:object=%FF"),
            UriError::NotUtf8 { name: "object" }
        );
        // '&' is fine in the path, '/' and '?' in the query.
        assert_eq!(parse("pkcs11:object=a&b").object(), Some("a&b"));
        assert_eq!(
            parse("pkcs11:token=t?pin-source=/run/pin?x").pin_source_file(),
            Some(PathBuf::from("/run/pin?x"))
        );
    }

    #[test]
    fn values_are_checked_per_attribute() {
        assert!(matches!(
            err("pkcs11:type=secret"),
            UriError::InvalidValue { name: "type", .. }
        ));
        assert!(matches!(
            err("pkcs11:type="),
            UriError::InvalidValue { name: "type", .. }
        ));
        for v in ["1.", ".1", "x", "256", "1.2.3", ""] {
            assert!(
                matches!(
                    err(&format!("pkcs11:library-version={v}")),
                    UriError::InvalidValue {
                        name: "library-version",
                        ..
                    }
                ),
                "{v}"
            );
        }
        assert!(matches!(
            err("pkcs11:token=t?module-path=lib/x.so"),
            UriError::InvalidValue {
                name: "module-path",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:token=t?module-name=/usr/lib/x.so"),
            UriError::InvalidValue {
                name: "module-name",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:token=t?pin-source=%7C/bin/echo%201234"),
            UriError::InvalidValue {
                name: "pin-source",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:token=t?pin-source=https://example.com/pin"),
            UriError::InvalidValue {
                name: "pin-source",
                ..
            }
        ));
        assert!(matches!(
            err("pkcs11:token=t?pin-source=file://otherhost/pin"),
            UriError::InvalidValue {
                name: "pin-source",
                ..
            }
        ));
    }

    #[test]
    fn pin_source_forms() {
        let file = |s: &str| parse(&format!("pkcs11:token=t?pin-source={s}")).pin_source_file();
        assert_eq!(file("/etc/pin"), Some("/etc/pin".into()));
        assert_eq!(file("relative/pin"), Some("relative/pin".into()));
        assert_eq!(file("file:/etc/pin"), Some("/etc/pin".into()));
        assert_eq!(file("file:///etc/pin"), Some("/etc/pin".into()));
        assert_eq!(file("FILE://localhost/etc/pin"), Some("/etc/pin".into()));
        assert_eq!(file("file:///etc/my%2520pin"), Some("/etc/my pin".into()));
    }
}
