//! PURE: reading and writing `secrets.yaml` byte for byte as talosctl does.
//!
//! talosctl writes with go-yaml (`yaml.Marshal`, v3 defaults): 4-space indentation, struct field
//! order, `null` for nil sections, `""` for empty strings, values double-base64 (std alphabet,
//! padded) of the PEM text (reference/talos-formats.md §0.1, §1.1, §1.5). serde's emitters
//! indent by 2, so this fixed schema is written through talvault's go-yaml emitter
//! (src/goyaml.rs, shared with the talosconfig writer). Reading goes through serde with unknown
//! fields refused; errors keep only line, column and field names, never a value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use thiserror::Error;
use zeroize::Zeroizing;

use super::{CertAndKey, Certs, Cluster, KeyOnly, REDACTED, Secrets, SecretsBundle, TrustdInfo};
use crate::goyaml::Writer;
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

    /// Writes the bundle exactly as `talosctl gen secrets` does, through the shared go-yaml
    /// emitter (src/goyaml.rs): 4 spaces per level, strings quoted as go-yaml quotes them.
    pub fn to_yaml(&self) -> SecretText {
        let mut w = Writer::with_capacity(8192);
        match &self.cluster {
            None => w.raw_entry(0, "cluster", "null"),
            Some(c) => {
                w.key_line(0, "cluster");
                w.scalar_entry(4, "id", &c.id);
                w.scalar_entry(4, "secret", c.secret.expose());
            }
        }
        match &self.secrets {
            None => w.raw_entry(0, "secrets", "null"),
            Some(s) => {
                w.key_line(0, "secrets");
                w.scalar_entry(4, "bootstraptoken", s.bootstrap_token.expose());
                // `yaml:",omitempty"` on both encryption secrets.
                if !s.aescbc_encryption_secret.is_empty() {
                    w.scalar_entry(
                        4,
                        "aescbcencryptionsecret",
                        s.aescbc_encryption_secret.expose(),
                    );
                }
                if !s.secretbox_encryption_secret.is_empty() {
                    w.scalar_entry(
                        4,
                        "secretboxencryptionsecret",
                        s.secretbox_encryption_secret.expose(),
                    );
                }
            }
        }
        match &self.trustd_info {
            None => w.raw_entry(0, "trustdinfo", "null"),
            Some(t) => {
                w.key_line(0, "trustdinfo");
                w.scalar_entry(4, "token", t.token.expose());
            }
        }
        match &self.certs {
            None => w.raw_entry(0, "certs", "null"),
            Some(c) => {
                w.key_line(0, "certs");
                write_cert_and_key(&mut w, "etcd", c.etcd.as_ref());
                write_cert_and_key(&mut w, "k8s", c.k8s.as_ref());
                write_cert_and_key(&mut w, "k8saggregator", c.k8s_aggregator.as_ref());
                match &c.k8s_service_account {
                    None => w.raw_entry(4, "k8sserviceaccount", "null"),
                    Some(k) => {
                        w.key_line(4, "k8sserviceaccount");
                        write_key(&mut w, 8, &k.key);
                    }
                }
                write_cert_and_key(&mut w, "os", c.os.as_ref());
            }
        }
        w.finish()
    }
}

/// `key:`, the double-base64 PEM (or the redaction marker as it stands).
fn write_key(w: &mut Writer, col: usize, key: &SecretBytes) {
    if key.expose() == REDACTED.as_bytes() {
        w.scalar_entry(col, "key", REDACTED);
    } else {
        let b64 = Zeroizing::new(STANDARD.encode(key.expose()));
        w.scalar_entry(col, "key", &b64);
    }
}

/// `certs.<name>`: `crt` and `key`, or `null`.
fn write_cert_and_key(w: &mut Writer, name: &str, entry: Option<&CertAndKey>) {
    match entry {
        None => w.raw_entry(4, name, "null"),
        Some(e) => {
            w.key_line(4, name);
            w.scalar_entry(8, "crt", &STANDARD.encode(&e.crt));
            write_key(w, 8, &e.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values a bundle can hold are quoted where go-yaml quotes them (the shared emitter's
    /// rules; src/goyaml.rs has the full table) and left plain where it does not.
    #[test]
    fn quoting_follows_go_yaml() {
        let needs_quotes = |s: &str| crate::goyaml::scalar(s) != s;
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
