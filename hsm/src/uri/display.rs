//! Writing `pkcs11:` URIs: the canonical [`Display`](std::fmt::Display) form described in the
//! parent module's documentation (parsing it gives the same URI back), and the token and object
//! descriptions used in messages. It must not write anything the parser would refuse.

use std::fmt;

use super::{Pkcs11Uri, is_unreserved};

impl Pkcs11Uri {
    /// The token attributes, for messages: `token="L", serial="S"` or `any token`.
    pub(crate) fn describe_token(&self) -> String {
        let parts: Vec<String> = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v:?}")))
        .collect();
        if parts.is_empty() {
            "any token".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The object attributes, for messages: `object="ca", id=%01%02`.
    pub(crate) fn describe_object(&self) -> String {
        let mut parts = Vec::new();
        if let Some(label) = &self.object {
            parts.push(format!("object={label:?}"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", encode_all(id)));
        }
        if parts.is_empty() {
            "any object".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

fn encode(out: &mut String, value: &[u8], keep: impl Fn(u8) -> bool) {
    for &b in value {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn encode_all(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    encode(&mut out, value, |_| false);
    out
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("pkcs11:");
        let mut first = true;
        let mut path = |name: &str, value: &[u8], all: bool| {
            if !first {
                out.push(';');
            }
            first = false;
            out.push_str(name);
            out.push('=');
            encode(&mut out, value, |b| !all && is_unreserved(b));
        };
        for (name, value) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
        ] {
            if let Some(v) = value {
                path(name, v.as_bytes(), false);
            }
        }
        if let Some(v) = self.library_version {
            let text = match v.minor {
                Some(minor) => format!("{}.{minor}", v.major),
                None => v.major.to_string(),
            };
            path("library-version", text.as_bytes(), false);
        }
        if let Some(v) = &self.object {
            path("object", v.as_bytes(), false);
        }
        if let Some(v) = self.object_type {
            path("type", v.as_str().as_bytes(), false);
        }
        if let Some(v) = &self.id {
            path("id", v, true);
        }
        let mut separator = '?';
        for (name, value) in [
            ("module-name", &self.module_name),
            ("module-path", &self.module_path),
            ("pin-source", &self.pin_source),
        ] {
            if let Some(v) = value {
                out.push(separator);
                separator = '&';
                out.push_str(name);
                out.push('=');
                encode(&mut out, v.as_bytes(), |b| {
                    is_unreserved(b) || b == b'/' || b == b':'
                });
            }
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_and_scheme_are_case_insensitive_and_written_lower_case() {
        let u = parse("PKCS11:Token=a;OBJECT=b;Type=private?Module-Path=/x.so");
        assert_eq!(
            u.to_string(),
            "pkcs11:token=a;object=b;type=private?module-path=/x.so"
        );
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        let s = "pkcs11:id=%00%FFa;object=my%20key;serial=123;token=A%3BB;type=private;library-version=2\
                 ?pin-source=file:///run/pin&module-name=softhsm2";
        let u = parse(s);
        let shown = u.to_string();
        assert_eq!(
            shown,
            "pkcs11:token=A%3BB;serial=123;library-version=2;object=my%20key;type=private;id=%00%FF%61\
             ?module-name=softhsm2&pin-source=file:///run/pin"
        );
        assert_eq!(parse(&shown), u);
        // Every attribute at once.
        let all = "pkcs11:token=t;manufacturer=m;model=mo;serial=s;slot-description=sd;\
                   slot-manufacturer=sm;library-manufacturer=lm;library-description=ld;\
                   library-version=1.2;object=o;type=public;id=%01\
                   ?module-name=n&module-path=/p.so&pin-source=/pin";
        let u = parse(all);
        assert_eq!(u.to_string(), all);
        assert_eq!(parse(&u.to_string()), u);
    }

    #[test]
    fn descriptions_for_messages() {
        let u = parse("pkcs11:token=L;serial=S;object=ca;id=%01%AB");
        assert_eq!(u.describe_token(), "token=\"L\", serial=\"S\"");
        assert_eq!(u.describe_object(), "object=\"ca\", id=%01%AB");
        assert_eq!(parse("pkcs11:").describe_token(), "any token");
    }
}
