//! PURE: reading and writing `secrets.yaml` byte for byte as talosctl does.
//!
//! talosctl writes with go-yaml (`yaml.Marshal`, v3 defaults): 4-space indentation, struct field
//! order, `null` for nil sections, `""` for empty strings, values double-base64 (std alphabet,
//! padded) of the PEM text (reference/talos-formats.md §0.1, §1.1, §1.5). serde's emitters
//! indent by 2, so this fixed schema has its own writer. Reading goes through serde with unknown
//! fields refused; errors keep only line, column and field names, never a value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use thiserror::Error;
use zeroize::Zeroizing;

use super::{CertAndKey, Certs, Cluster, KeyOnly, REDACTED, Secrets, SecretsBundle, TrustdInfo};
use crate::secret::{SecretBytes, SecretText};

/// `secrets.yaml` could not be read. Never carries a secret value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BundleReadError {
    /// Not YAML, or YAML of the wrong shape.
    #[error("not a valid secrets bundle: {what}{}", location.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
    Syntax {
        /// A value-free description.
        what: String,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },
    /// A `crt`/`key` value that is not standard base64.
    #[error("{field}: illegal base64 data at input byte {offset}")]
    Base64 {
        /// The YAML path of the field.
        field: String,
        /// Byte offset of the first bad character.
        offset: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    cluster: Option<RawCluster>,
    secrets: Option<RawSecrets>,
    trustdinfo: Option<RawTrustd>,
    certs: Option<RawCerts>,
}

type Text = Option<Zeroizing<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    id: Option<String>,
    secret: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    bootstraptoken: Text,
    aescbcencryptionsecret: Text,
    secretboxencryptionsecret: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustd {
    token: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCerts {
    etcd: Option<RawCertAndKey>,
    k8s: Option<RawCertAndKey>,
    k8saggregator: Option<RawCertAndKey>,
    k8sserviceaccount: Option<RawKey>,
    os: Option<RawCertAndKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertAndKey {
    crt: Option<String>,
    key: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key: Text,
}

fn text(t: Text) -> SecretText {
    match t {
        Some(mut z) => SecretText::new(std::mem::take(&mut *z)),
        None => SecretText::default(),
    }
}

/// Go's `base64.StdEncoding.DecodeString`: standard alphabet, padding required, CR and LF
/// skipped. On failure, the byte offset of the problem (never the data).
pub(crate) fn decode_go_base64(value: &str) -> Result<Zeroizing<Vec<u8>>, usize> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        value
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    STANDARD
        .decode(&*compact)
        .map(Zeroizing::new)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(o, _)
            | base64::DecodeError::InvalidLastSymbol(o, _)
            | base64::DecodeError::InvalidLength(o) => o,
            base64::DecodeError::InvalidPadding => compact.len(),
        })
}

fn decode(field: &str, value: &str) -> Result<Vec<u8>, BundleReadError> {
    decode_go_base64(value)
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|offset| BundleReadError::Base64 {
            field: field.to_owned(),
            offset,
        })
}

fn decode_key(field: &str, value: Text) -> Result<SecretBytes, BundleReadError> {
    let value = value.unwrap_or_default();
    if value.as_str() == REDACTED {
        return Ok(SecretBytes::copy_from(REDACTED.as_bytes()));
    }
    Ok(SecretBytes::new(decode(field, &value)?))
}

fn cert_and_key(name: &str, raw: RawCertAndKey) -> Result<CertAndKey, BundleReadError> {
    Ok(CertAndKey {
        crt: decode(
            &format!("certs.{name}.crt"),
            raw.crt.as_deref().unwrap_or(""),
        )?,
        key: decode_key(&format!("certs.{name}.key"), raw.key)?,
    })
}

/// Reduces a serde error to a value-free message (serde echoes offending values).
pub(crate) fn sanitize(err: &serde_yaml::Error) -> BundleReadError {
    let location = err.location().map(|l| (l.line(), l.column()));
    let full = err.to_string();
    // serde_yaml_ng prefixes the path of schema fields (`secrets.bootstraptoken: …`); keep it,
    // since it names only fields of our schema, never values.
    let (path, msg) = match full.split_once(": ") {
        Some((p, m))
            if !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.') =>
        {
            (Some(p), m.to_owned())
        }
        _ => (None, full.clone()),
    };
    let field_name = |prefix: &str| -> Option<String> {
        let rest = msg.strip_prefix(prefix)?;
        let name = rest.strip_prefix('`')?.split('`').next()?;
        let safe = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        Some(if safe {
            format!("`{name}`")
        } else {
            "(name not shown)".to_owned()
        })
    };
    let what = if let Some(f) = field_name("unknown field ") {
        format!("unknown field {f}")
    } else if let Some(f) = field_name("duplicate field ") {
        format!("duplicate field {f}")
    } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        // `invalid type: <the input>, expected <ours>`: only what follows the last ", expected "
        // is ours (the input may itself contain ", expected ").
        match msg.rsplit_once(", expected ") {
            Some((_, expected)) => {
                let expected = expected.split(" at line ").next().unwrap_or(expected);
                format!("wrong type, expected {expected}")
            }
            None => "wrong type".to_owned(),
        }
    } else if msg.contains("duplicate entry") || msg.contains("duplicate key") {
        "duplicate key".to_owned()
    } else {
        "not valid YAML".to_owned()
    };
    let what = match path {
        Some(p) => format!("{p}: {what}"),
        None => what,
    };
    BundleReadError::Syntax { what, location }
}

impl SecretsBundle {
    /// Reads `secrets.yaml` as Talos's `LoadBundle` does (absent sections stay absent, nothing is
    /// filled in), but refuses unknown fields so that nothing is silently dropped.
    pub fn from_yaml(input: &[u8]) -> Result<Self, BundleReadError> {
        crate::nesting::check(input, 4 << 20).map_err(|e| BundleReadError::Syntax {
            what: e.to_string(),
            location: None,
        })?;
        // An empty document is a bundle with every section nil, as in Go.
        let raw: Option<RawBundle> = serde_yaml::from_slice(input).map_err(|e| sanitize(&e))?;
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        let certs = match raw.certs {
            None => None,
            Some(c) => Some(Certs {
                etcd: c.etcd.map(|v| cert_and_key("etcd", v)).transpose()?,
                k8s: c.k8s.map(|v| cert_and_key("k8s", v)).transpose()?,
                k8s_aggregator: c
                    .k8saggregator
                    .map(|v| cert_and_key("k8saggregator", v))
                    .transpose()?,
                k8s_service_account: c
                    .k8sserviceaccount
                    .map(|v| {
                        Ok::<_, BundleReadError>(KeyOnly {
                            key: decode_key("certs.k8sserviceaccount.key", v.key)?,
                        })
                    })
                    .transpose()?,
                os: c.os.map(|v| cert_and_key("os", v)).transpose()?,
            }),
        };
        Ok(Self {
            cluster: raw.cluster.map(|c| Cluster {
                id: c.id.unwrap_or_default(),
                secret: text(c.secret),
            }),
            secrets: raw.secrets.map(|s| Secrets {
                bootstrap_token: text(s.bootstraptoken),
                aescbc_encryption_secret: text(s.aescbcencryptionsecret),
                secretbox_encryption_secret: text(s.secretboxencryptionsecret),
            }),
            trustd_info: raw.trustdinfo.map(|t| TrustdInfo {
                token: text(t.token),
            }),
            certs,
        })
    }

    /// Writes the bundle exactly as `talosctl gen secrets` does.
    pub fn to_yaml(&self) -> SecretText {
        let mut w = Writer(Zeroizing::new(String::with_capacity(8192)));
        match &self.cluster {
            None => w.line(0, "cluster", Some("null")),
            Some(c) => {
                w.line(0, "cluster", None);
                w.scalar(1, "id", &c.id);
                w.scalar(1, "secret", c.secret.expose());
            }
        }
        match &self.secrets {
            None => w.line(0, "secrets", Some("null")),
            Some(s) => {
                w.line(0, "secrets", None);
                w.scalar(1, "bootstraptoken", s.bootstrap_token.expose());
                // `yaml:",omitempty"` on both encryption secrets.
                if !s.aescbc_encryption_secret.is_empty() {
                    w.scalar(
                        1,
                        "aescbcencryptionsecret",
                        s.aescbc_encryption_secret.expose(),
                    );
                }
                if !s.secretbox_encryption_secret.is_empty() {
                    w.scalar(
                        1,
                        "secretboxencryptionsecret",
                        s.secretbox_encryption_secret.expose(),
                    );
                }
            }
        }
        match &self.trustd_info {
            None => w.line(0, "trustdinfo", Some("null")),
            Some(t) => {
                w.line(0, "trustdinfo", None);
                w.scalar(1, "token", t.token.expose());
            }
        }
        match &self.certs {
            None => w.line(0, "certs", Some("null")),
            Some(c) => {
                w.line(0, "certs", None);
                w.cert_and_key("etcd", c.etcd.as_ref());
                w.cert_and_key("k8s", c.k8s.as_ref());
                w.cert_and_key("k8saggregator", c.k8s_aggregator.as_ref());
                match &c.k8s_service_account {
                    None => w.line(1, "k8sserviceaccount", Some("null")),
                    Some(k) => {
                        w.line(1, "k8sserviceaccount", None);
                        w.key(2, &k.key);
                    }
                }
                w.cert_and_key("os", c.os.as_ref());
            }
        }
        SecretText::new(std::mem::take(&mut *w.0))
    }
}

struct Writer(Zeroizing<String>);

impl Writer {
    /// Every byte goes through here, so growing the buffer never leaves a secret behind.
    fn put(&mut self, text: &str) {
        crate::secret::push_zeroizing(&mut self.0, text);
    }
}

impl Writer {
    fn line(&mut self, depth: usize, key: &str, value: Option<&str>) {
        for _ in 0..depth {
            self.put("    ");
        }
        self.put(key);
        self.put(":");
        if let Some(v) = value {
            self.put(" ");
            self.put(v);
        }
        self.put("\n");
    }

    fn scalar(&mut self, depth: usize, key: &str, value: &str) {
        if needs_quotes(value) {
            let quoted = Zeroizing::new(double_quote(value));
            self.line(depth, key, Some(&quoted));
        } else {
            self.line(depth, key, Some(value));
        }
    }

    fn key(&mut self, depth: usize, key: &SecretBytes) {
        if key.expose() == REDACTED.as_bytes() {
            self.scalar(depth, "key", REDACTED);
        } else {
            let b64 = Zeroizing::new(STANDARD.encode(key.expose()));
            self.scalar(depth, "key", &b64);
        }
    }

    fn cert_and_key(&mut self, name: &str, entry: Option<&CertAndKey>) {
        match entry {
            None => self.line(1, name, Some("null")),
            Some(e) => {
                self.line(1, name, None);
                self.scalar(2, "crt", &STANDARD.encode(&e.crt));
                self.key(2, &e.key);
            }
        }
    }
}

/// Whether go-yaml would quote `s`: empty, resolving to a non-string (bool, null, number), or
/// not representable as a plain scalar.
fn needs_quotes(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    // YAML 1.1 booleans and nulls, which go-yaml quotes for compatibility.
    const SPECIAL: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf",
        "+.Inf", "+.INF",
    ];
    if SPECIAL.contains(&s) || looks_numeric(s) {
        return true;
    }
    let first = s.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) || first == b' ' {
        return true;
    }
    s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control() || !c.is_ascii())
}

fn looks_numeric(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    if t.is_empty() {
        return false;
    }
    let digits_dots = t.bytes().all(|b| {
        b.is_ascii_digit()
            || b == b'.'
            || b == b'_'
            || b == b'e'
            || b == b'E'
            || b == b'+'
            || b == b'-'
    });
    let has_digit = t.bytes().any(|b| b.is_ascii_digit());
    (digits_dots && has_digit && t.as_bytes()[0] != b'e' && t.as_bytes()[0] != b'E')
        || t.starts_with("0x")
        || t.starts_with("0o")
        || t.starts_with("0b")
}

fn double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_go_yaml() {
        for q in [
            "",
            "123456.1234567890123456",
            "true",
            "null",
            "1e3",
            "0x1F",
            "-",
            "* x",
        ] {
            assert!(needs_quotes(q), "{q:?}");
        }
        for plain in [
            "2psnp2.lry8e9gycdix3bpa",
            "6zWBpno849HlD5jeuTmGToFYP+z8lgkJa0fhHobv7mE=",
            "cgvhCbucls-WqkESDTRqykFgb4hROI4cBpgB0YJLLtM=",
            "+abc/def=",
        ] {
            assert!(!needs_quotes(plain), "{plain:?}");
        }
    }

    #[test]
    fn empty_document_is_all_nil() {
        let b = SecretsBundle::from_yaml(b"").unwrap();
        assert!(b.cluster.is_none() && b.certs.is_none());
        assert_eq!(
            b.to_yaml().expose(),
            "cluster: null\nsecrets: null\ntrustdinfo: null\ncerts: null\n"
        );
    }

    #[test]
    fn errors_never_echo_values() {
        let token = "zz9zz9.topsecretvalue123";
        for doc in [
            format!("cluster:\n    id: [{token}]\n"),
            format!("secrets: {token}\n"),
            format!("certs:\n    os:\n        key: \"{token}!\"\n"),
            format!("{token}: 1\n"),
            format!("cluster: {{id: {token}\n"),
            format!("secrets: \"x, expected {token}\"\n"),
            format!("certs: x, expected {token}\n"),
        ] {
            let err = SecretsBundle::from_yaml(doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(!err.contains("topsecret"), "{err}");
        }
    }
}
