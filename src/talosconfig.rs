//! PURE: the talosconfig file (`clientconfig.Config`): model, talosctl-exact render, and merge.
//!
//! Follows siderolabs/talos: pkg/machinery/client/config/config.go and reference/talos-formats.md
//! §4: `context`, `contexts` (keys in go-yaml's natural order), per context `endpoints` (always
//! written, `[]` when empty), `nodes`, `ca`, `crt`, `key`, `auth`, `cluster` (omitempty) and
//! `proxy-url`; 4-space indentation as go-yaml writes. Reading accepts any indentation, folds the
//! deprecated `target` into `endpoints` as talosctl does, and keeps fields this model does not know
//! so that contexts talvault did not write survive a merge intact. Unlike `talosctl config merge`,
//! [`merge`] never renames: a duplicate name is refused unless replacing is asked for. The client
//! key and basic-auth password are secret types; no I/O here.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_yaml::{Mapping, Value};
use thiserror::Error;
use zeroize::Zeroizing;

pub use crate::goyaml::natural_order;
use crate::goyaml::{Writer, is_scalar, scalar_text};
use crate::pki::role::Role;
use crate::secret::{SecretBytes, SecretText};

/// A talosconfig that could not be read. Never carries a field value.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TalosconfigError {
    /// Not YAML, or YAML of the wrong shape.
    #[error("not a valid talosconfig: {what}{}", location.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
    Syntax {
        /// A value-free description.
        what: String,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },
    /// A `ca`/`crt`/`key` value that is not standard base64.
    #[error("context {context:?}: {field}: illegal base64 data at input byte {offset}")]
    Base64 {
        /// The context name.
        context: String,
        /// `ca`, `crt` or `key`.
        field: &'static str,
        /// Byte offset of the first bad character.
        offset: usize,
    },
}

/// Why a context could not be merged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MergeError {
    /// The name is taken and replacing was not asked for (talosctl would rename to `NAME-1`).
    #[error(
        "context {name:?} already exists in the talosconfig; choose another --context name or replace it explicitly"
    )]
    ContextExists {
        /// The name.
        name: String,
    },
    /// An empty context name.
    #[error("empty context name")]
    EmptyName,
}

/// Fields this model does not know, kept in file order. `Debug` shows only their names.
#[derive(Default, Clone, PartialEq)]
pub struct Extra(Mapping);

impl Extra {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The field names, as text.
    pub fn names(&self) -> Vec<String> {
        self.0.keys().map(scalar_text).collect()
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// The whole file (Go `clientconfig.Config`).
#[derive(Debug, Default)]
pub struct Config {
    /// `context`: the current context name.
    pub context: String,
    /// `contexts`, by name.
    pub contexts: BTreeMap<String, Context>,
    /// Top-level fields unknown to talosctl, kept as read.
    pub extra: Extra,
}

/// One context (Go `clientconfig.Context`). `ca`, `crt` and `key` hold the file's text, i.e.
/// standard base64 of the PEM, so contexts talvault did not write are kept byte for byte.
#[derive(Debug, Default)]
pub struct Context {
    /// `endpoints` (a deprecated `target` is appended on read, as talosctl's `upgrade` does).
    pub endpoints: Vec<String>,
    /// `nodes`.
    pub nodes: Vec<String>,
    /// `ca`: base64 of the PEM of the CA that signs apid's server certificates (`machine.ca`).
    pub ca: String,
    /// `crt`: base64 of the client certificate PEM.
    pub crt: String,
    /// `key`: base64 of the client key PEM; empty when the holder keeps the key (CSR).
    pub key: SecretText,
    /// `auth`.
    pub auth: Auth,
    /// `cluster`.
    pub cluster: String,
    /// `proxy-url`.
    pub proxy_url: String,
    /// Fields unknown to this model, kept as read.
    pub extra: Extra,
}

/// `auth` (omitted when both methods are absent).
#[derive(Debug, Default)]
pub struct Auth {
    /// `basic`.
    pub basic: Option<BasicAuth>,
    /// `siderov1`.
    pub siderov1: Option<SideroV1>,
    /// Fields unknown to this model.
    pub extra: Extra,
}

/// `auth.basic`.
#[derive(Debug, Default)]
pub struct BasicAuth {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: SecretText,
}

/// `auth.siderov1`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SideroV1 {
    /// `identity`.
    pub identity: String,
}

impl Auth {
    fn is_zero(&self) -> bool {
        self.basic.is_none() && self.siderov1.is_none() && self.extra.is_empty()
    }
}

impl Context {
    /// A context for a freshly issued certificate, as `clientconfig.NewConfig` fills it:
    /// `ca` = the server-verifying CA (the Talos OS CA, `machine.ca`), `crt` = the leaf, `key` =
    /// its key, or none when the leaf was issued for a CSR.
    pub fn issued(
        ca_pem: &[u8],
        crt_pem: &[u8],
        key_pem: Option<&SecretBytes>,
        endpoints: Vec<String>,
        nodes: Vec<String>,
    ) -> Context {
        Context {
            endpoints,
            nodes,
            ca: STANDARD.encode(ca_pem),
            crt: STANDARD.encode(crt_pem),
            key: key_pem
                .map(|k| SecretText::new(STANDARD.encode(k.expose())))
                .unwrap_or_default(),
            ..Context::default()
        }
    }

    /// The CA PEM (decoded `ca`).
    pub fn ca_pem(&self, name: &str) -> Result<Vec<u8>, TalosconfigError> {
        decode(name, "ca", &self.ca)
    }

    /// The client certificate PEM (decoded `crt`).
    pub fn crt_pem(&self, name: &str) -> Result<Vec<u8>, TalosconfigError> {
        decode(name, "crt", &self.crt)
    }

    /// The client key PEM (decoded `key`), if the context has one.
    pub fn key_pem(&self, name: &str) -> Result<Option<SecretBytes>, TalosconfigError> {
        if self.key.is_empty() {
            return Ok(None);
        }
        Ok(Some(SecretBytes::new(decode(
            name,
            "key",
            self.key.expose(),
        )?)))
    }
}

fn decode(context: &str, field: &'static str, value: &str) -> Result<Vec<u8>, TalosconfigError> {
    crate::bundle::yaml::decode_go_base64(value)
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|offset| TalosconfigError::Base64 {
            context: shown_name(context),
            field,
            offset,
        })
}

/// A context name as errors show it: names are public, but a mangled file can put anything in
/// the name position (the fuzzer moved a base64 key line there), so long ones are cut short.
fn shown_name(name: &str) -> String {
    const SHOWN_CHARS: usize = 24;
    if name.chars().count() <= 40 {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(SHOWN_CHARS).collect();
    short.push('…');
    short
}

/// The context name `talosctl config new` picks: `<role without os:>@<cluster>` for exactly one
/// role, else the cluster name (siderolabs/talos: v1alpha1_server.go GenerateClientConfiguration).
pub fn context_name(roles: &[Role], cluster: &str) -> String {
    let mut unique: Vec<&Role> = roles.iter().collect();
    unique.sort();
    unique.dedup();
    match unique.as_slice() {
        [only] => format!("{}@{cluster}", only.short_name()),
        _ => cluster.to_owned(),
    }
}

/// Adds `context` as `name` and makes it current. Other contexts are untouched. An existing
/// `name` is refused unless `replace`; nothing is ever renamed.
pub fn merge(
    mut existing: Config,
    name: &str,
    context: Context,
    replace: bool,
) -> Result<Config, MergeError> {
    if name.is_empty() {
        return Err(MergeError::EmptyName);
    }
    if existing.contexts.contains_key(name) && !replace {
        return Err(MergeError::ContextExists {
            name: name.to_owned(),
        });
    }
    existing.contexts.insert(name.to_owned(), context);
    existing.context = name.to_owned();
    Ok(existing)
}

impl Config {
    /// A config with one context, current (`clientconfig.NewConfig`).
    pub fn single(name: &str, context: Context) -> Config {
        let mut contexts = BTreeMap::new();
        contexts.insert(name.to_owned(), context);
        Config {
            context: name.to_owned(),
            contexts,
            extra: Extra::default(),
        }
    }

    /// Reads a talosconfig of any indentation. An empty document is an empty config.
    pub fn from_yaml(input: &[u8]) -> Result<Config, TalosconfigError> {
        crate::nesting::check(input, 4 << 20).map_err(|e| TalosconfigError::Syntax {
            what: e.to_string(),
            location: None,
        })?;
        let config: Option<Config> = serde_yaml::from_slice(input).map_err(|e| sanitize(&e))?;
        Ok(config.unwrap_or_default())
    }

    /// Writes the config as talosctl's `yaml.Marshal` does (reference/talos-formats.md §1.5,
    /// §4.1). Unknown fields kept from reading follow the known ones.
    pub fn to_yaml(&self) -> SecretText {
        let mut w = Writer::with_capacity(4096);
        w.scalar_entry(0, "context", &self.context);
        if self.contexts.is_empty() {
            w.raw_entry(0, "contexts", "{}");
        } else {
            w.key_line(0, "contexts");
            let mut names: Vec<&String> = self.contexts.keys().collect();
            names.sort_by(|a, b| natural_order(a, b));
            for name in names {
                if let Some(ctx) = self.contexts.get(name) {
                    w.key_line(4, name);
                    write_context(&mut w, 8, ctx);
                }
            }
        }
        write_extra(&mut w, 0, &self.extra);
        w.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading. Hand-written visitors: known fields go straight into secret types (no intermediate
// copy of the key in a plain `Value`), unknown fields are collected, duplicate keys refused as
// go-yaml refuses them ("mapping key … already defined").

fn take_secret(z: Option<Zeroizing<String>>) -> SecretText {
    match z {
        Some(mut z) => SecretText::new(std::mem::take(&mut *z)),
        None => SecretText::default(),
    }
}

fn check_duplicate<E: de::Error>(seen: &mut Vec<Value>, key: &Value) -> Result<(), E> {
    if seen.contains(key) {
        return Err(E::custom(format!(
            "{}duplicate key `{}`",
            own_marker(),
            shown_name(&scalar_text(key))
        )));
    }
    seen.push(key.clone());
    Ok(())
}

fn unknown_entry<'de, A: MapAccess<'de>>(
    map: &mut A,
    key: Value,
    extra: &mut Extra,
) -> Result<(), A::Error> {
    if !is_scalar(&key) {
        return Err(de::Error::custom(format!(
            "{}non-scalar mapping key",
            own_marker()
        )));
    }
    let value: Value = map.next_value()?;
    extra.0.insert(key, value);
    Ok(())
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Config;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a talosconfig mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Config, A::Error> {
                let mut config = Config::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<Value>()? {
                    check_duplicate(&mut seen, &key)?;
                    match key.as_str() {
                        Some("context") => {
                            config.context = map.next_value::<Option<String>>()?.unwrap_or_default()
                        }
                        Some("contexts") => {
                            config.contexts =
                                map.next_value::<Option<Contexts>>()?.unwrap_or_default().0
                        }
                        _ => unknown_entry(&mut map, key, &mut config.extra)?,
                    }
                }
                Ok(config)
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[derive(Default)]
struct Contexts(BTreeMap<String, Context>);

impl<'de> Deserialize<'de> for Contexts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Contexts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of context names to contexts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Contexts, A::Error> {
                let mut contexts = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    if contexts.contains_key(&name) {
                        return Err(de::Error::custom(format!(
                            "{}duplicate context `{}`",
                            own_marker(),
                            shown_name(&name)
                        )));
                    }
                    // Go decodes `name: null` as a nil *Context; an empty context is the
                    // closest value that renders usefully.
                    let ctx = map.next_value::<Option<Context>>()?.unwrap_or_default();
                    contexts.insert(name, ctx);
                }
                Ok(Contexts(contexts))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Context;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a talosconfig context mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Context, A::Error> {
                let mut ctx = Context::default();
                let mut target = String::new();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<Value>()? {
                    check_duplicate(&mut seen, &key)?;
                    let text = |m: &mut A| -> Result<String, A::Error> {
                        Ok(m.next_value::<Option<String>>()?.unwrap_or_default())
                    };
                    let list = |m: &mut A| -> Result<Vec<String>, A::Error> {
                        Ok(m.next_value::<Option<Vec<String>>>()?.unwrap_or_default())
                    };
                    match key.as_str() {
                        Some("target") => target = text(&mut map)?,
                        Some("endpoints") => ctx.endpoints = list(&mut map)?,
                        Some("nodes") => ctx.nodes = list(&mut map)?,
                        Some("ca") => ctx.ca = text(&mut map)?,
                        Some("crt") => ctx.crt = text(&mut map)?,
                        Some("key") => {
                            ctx.key = take_secret(map.next_value::<Option<Zeroizing<String>>>()?)
                        }
                        Some("auth") => {
                            ctx.auth = map.next_value::<Option<Auth>>()?.unwrap_or_default()
                        }
                        Some("cluster") => ctx.cluster = text(&mut map)?,
                        Some("proxy-url") => ctx.proxy_url = text(&mut map)?,
                        _ => unknown_entry(&mut map, key, &mut ctx.extra)?,
                    }
                }
                // siderolabs/talos: client/config/config.go (*Context).upgrade.
                if !target.is_empty() {
                    ctx.endpoints.push(target);
                }
                Ok(ctx)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Auth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Auth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a talosconfig auth mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Auth, A::Error> {
                let mut auth = Auth::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<Value>()? {
                    check_duplicate(&mut seen, &key)?;
                    match key.as_str() {
                        Some("basic") => auth.basic = map.next_value::<Option<BasicAuth>>()?,
                        Some("siderov1") => auth.siderov1 = map.next_value::<Option<SideroV1>>()?,
                        _ => unknown_entry(&mut map, key, &mut auth.extra)?,
                    }
                }
                Ok(auth)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for BasicAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BasicAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a basic auth mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BasicAuth, A::Error> {
                let mut basic = BasicAuth::default();
                let mut seen = Vec::new();
                while let Some(key) = map.next_key::<Value>()? {
                    check_duplicate(&mut seen, &key)?;
                    match key.as_str() {
                        Some("username") => {
                            basic.username = map.next_value::<Option<String>>()?.unwrap_or_default()
                        }
                        Some("password") => {
                            basic.password =
                                take_secret(map.next_value::<Option<Zeroizing<String>>>()?)
                        }
                        // Go's struct has no other fields; unknown ones are skipped as Go does
                        // (a secret-bearing section is not kept in plain values).
                        _ => {
                            let _ignored: de::IgnoredAny = map.next_value()?;
                        }
                    }
                }
                Ok(basic)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for SideroV1 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            identity: Option<String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Ok(SideroV1 {
            identity: raw.identity.unwrap_or_default(),
        })
    }
}

/// The prefix of talvault's own deserialisation errors, unique to this process: serde quotes
/// input in its messages, so a fixed prefix could be spoofed by a value that contains it (fuzz
/// finding 11: a value holding `talosconfig: ` and a key made [`sanitize`] pass serde's
/// value-echoing "invalid type" message through as if it were ours).
fn own_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        use std::hash::{BuildHasher as _, Hasher as _};
        // RandomState is seeded from the OS once per process: unguessable, not a secret.
        let nonce = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        format!("talvault-own-{nonce:016x}: ")
    })
}

/// Reduces a serde error to a value-free message: serde echoes offending values, and a
/// talosconfig value may be a key.
fn sanitize(err: &serde_yaml::Error) -> TalosconfigError {
    let location = err.location().map(|l| (l.line(), l.column()));
    let full = err.to_string();
    let what = if let Some(pos) = full.find(own_marker()) {
        // Our own messages name only keys and context names, already cut short where they are
        // made (`shown_name`): a name can be anything a mangled file put in a key position (fuzz:
        // a 90-character key; a name with backticks, finding 12, which a split on backticks
        // here had cut in the wrong place).
        let own = &full[pos + own_marker().len()..];
        own.split(" at line ").next().unwrap_or(own).to_owned()
    } else if full.contains("invalid type") || full.contains("invalid value") {
        // `invalid type: <the input>, expected <ours>`: only what follows the last ", expected "
        // is talvault's text (the input may itself contain ", expected ").
        match full.rsplit_once(", expected ") {
            Some((_, expected)) => {
                let expected = expected.split(" at line ").next().unwrap_or(expected);
                format!("wrong type, expected {expected}")
            }
            None => "wrong type".to_owned(),
        }
    } else if full.contains("duplicate") {
        "duplicate key".to_owned()
    } else {
        "not valid YAML".to_owned()
    };
    TalosconfigError::Syntax { what, location }
}

// ---------------------------------------------------------------------------------------------
// Writing: the talosconfig schema on top of the shared go-yaml emitter (src/goyaml.rs).

fn write_context(w: &mut Writer, col: usize, ctx: &Context) {
    // Field order and omitempty as in clientconfig.Context; `target` is folded on read.
    w.list_entry(col, "endpoints", &ctx.endpoints);
    if !ctx.nodes.is_empty() {
        w.list_entry(col, "nodes", &ctx.nodes);
    }
    for (key, value) in [
        ("ca", ctx.ca.as_str()),
        ("crt", ctx.crt.as_str()),
        ("key", ctx.key.expose()),
    ] {
        if !value.is_empty() {
            w.scalar_entry(col, key, value);
        }
    }
    if !ctx.auth.is_zero() {
        w.key_line(col, "auth");
        if let Some(basic) = &ctx.auth.basic {
            w.key_line(col + 4, "basic");
            w.scalar_entry(col + 8, "username", &basic.username);
            w.scalar_entry(col + 8, "password", basic.password.expose());
        }
        if let Some(sv1) = &ctx.auth.siderov1 {
            w.key_line(col + 4, "siderov1");
            w.scalar_entry(col + 8, "identity", &sv1.identity);
        }
        write_extra(w, col + 4, &ctx.auth.extra);
    }
    if !ctx.cluster.is_empty() {
        w.scalar_entry(col, "cluster", &ctx.cluster);
    }
    if !ctx.proxy_url.is_empty() {
        w.scalar_entry(col, "proxy-url", &ctx.proxy_url);
    }
    write_extra(w, col, &ctx.extra);
}

fn write_extra(w: &mut Writer, col: usize, extra: &Extra) {
    w.mapping(col, &extra.0, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
    const CRT: &[u8] = b"-----BEGIN CERTIFICATE-----\nQ1JU\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] =
        b"-----BEGIN ED25519 PRIVATE KEY-----\nS0VZ\n-----END ED25519 PRIVATE KEY-----\n";

    fn issued(endpoints: &[&str], nodes: &[&str], with_key: bool) -> Context {
        let key = SecretBytes::copy_from(KEY);
        Context::issued(
            CA,
            CRT,
            with_key.then_some(&key),
            endpoints.iter().map(|s| s.to_string()).collect(),
            nodes.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn render_is_pinned_byte_for_byte() {
        let mut config = Config::single("reader@prod", issued(&[], &[], true));
        config = merge(
            config,
            "prod",
            issued(&["10.0.0.1", "cp.example.com:50000"], &["10.0.0.2"], false),
            false,
        )
        .unwrap();
        config = merge(
            config,
            "prod-10",
            issued(&["[fd00::1]:50000"], &[], true),
            false,
        )
        .unwrap();
        config = merge(config, "prod-2", issued(&[], &[], true), false).unwrap();
        let expected = "\
context: prod-2
contexts:
    prod:
        endpoints:
            - 10.0.0.1
            - cp.example.com:50000
        nodes:
            - 10.0.0.2
        ca: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClExSlUKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    prod-2:
        endpoints: []
        ca: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClExSlUKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KUzBWWgotLS0tLUVORCBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K
    prod-10:
        endpoints:
            - '[fd00::1]:50000'
        ca: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClExSlUKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KUzBWWgotLS0tLUVORCBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K
    reader@prod:
        endpoints: []
        ca: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClEwRT0KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tClExSlUKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
        key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KUzBWWgotLS0tLUVORCBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K
";
        assert_eq!(config.to_yaml().expose(), expected);
        // Reading our own output gives the same bytes again.
        let again = Config::from_yaml(expected.as_bytes()).unwrap();
        assert_eq!(again.to_yaml().expose(), expected);
        assert_eq!(again.contexts["prod"].ca_pem("prod").unwrap(), CA);
        assert_eq!(again.contexts["prod"].key_pem("prod").unwrap(), None);
        assert_eq!(
            again.contexts["reader@prod"]
                .key_pem("reader@prod")
                .unwrap()
                .unwrap()
                .expose(),
            KEY
        );
    }

    #[test]
    fn empty_and_minimal_documents() {
        assert_eq!(
            Config::from_yaml(b"").unwrap().to_yaml().expose(),
            "context: \"\"\ncontexts: {}\n"
        );
        // What `talosctl` writes for a fresh file (config.go `ensure`).
        let fresh = Config::from_yaml(b"context: \"\"\ncontexts: {}\n").unwrap();
        assert!(fresh.contexts.is_empty());
        let null_fields =
            Config::from_yaml(b"context:\ncontexts:\n  a:\n    endpoints:\n").unwrap();
        assert_eq!(
            null_fields.to_yaml().expose(),
            "context: \"\"\ncontexts:\n    a:\n        endpoints: []\n"
        );
    }

    #[test]
    fn target_is_folded_into_endpoints() {
        let c = Config::from_yaml(
            b"context: a\ncontexts:\n  a:\n    target: 10.0.0.9\n    endpoints: [10.0.0.1]\n",
        )
        .unwrap();
        assert_eq!(c.contexts["a"].endpoints, ["10.0.0.1", "10.0.0.9"]);
        assert!(!c.to_yaml().expose().contains("target"));
    }

    #[test]
    fn unknown_fields_and_auth_survive() {
        let input = "\
context: omni
contexts:
  omni:
    endpoints:
      - https://omni.example.com
    auth:
      siderov1:
        identity: ops@example.com
      future: {a: 1}
    cluster: prod
    future-field:
      - name: x
        value: 1
      - plain
      - - nested
        - seq
    flag: true
  proxied:
    endpoints: []
    auth:
      basic:
        username: u
        password: hunter2
    proxy-url: socks5://localhost:1080
top-level: keep
";
        let c = Config::from_yaml(input.as_bytes()).unwrap();
        let out = c.to_yaml();
        let expected = "\
context: omni
contexts:
    omni:
        endpoints:
            - https://omni.example.com
        auth:
            siderov1:
                identity: ops@example.com
            future:
                a: 1
        cluster: prod
        future-field:
            - name: x
              value: 1
            - plain
            - - nested
              - seq
        flag: true
    proxied:
        endpoints: []
        auth:
            basic:
                username: u
                password: hunter2
        proxy-url: socks5://localhost:1080
top-level: keep
";
        assert_eq!(out.expose(), expected);
        // Same data as the input, read independently.
        let a: Value = serde_yaml::from_str(input).unwrap();
        let b: Value = serde_yaml::from_str(out.expose()).unwrap();
        assert_eq!(a, b);
        // Debug never shows the key or the password.
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("future-field"), "{shown}");
    }

    #[test]
    fn errors_never_echo_values() {
        for doc in [
            "context: a\ncontexts:\n  a:\n    key: [secretvalue]\n",
            "context: a\ncontexts:\n  a:\n    endpoints: secretvalue\n",
            "context: a\ncontexts:\n  a:\n    auth:\n      basic: secretvalue\n",
            "contexts: secretvalue\n",
            "context: {secretvalue\n",
        ] {
            let err = Config::from_yaml(doc.as_bytes()).unwrap_err().to_string();
            assert!(!err.contains("secretvalue"), "{err}");
        }
        let err = Config::from_yaml(b"contexts:\n  a: {}\n  a: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate"), "{err}");
        let err = Config::from_yaml(b"contexts:\n  a:\n    key: x\n    key: y\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key `key`"), "{err}");
        let c = Config::from_yaml(b"contexts:\n  a:\n    crt: '!!!'\n").unwrap();
        assert_eq!(
            c.contexts["a"].crt_pem("a"),
            Err(TalosconfigError::Base64 {
                context: "a".into(),
                field: "crt",
                offset: 0
            })
        );
    }

    #[test]
    fn merge_never_renames() {
        let base = Config::single("admin@prod", issued(&["1.2.3.4"], &[], true));
        let err = merge(base, "admin@prod", issued(&[], &[], true), false).unwrap_err();
        assert_eq!(
            err,
            MergeError::ContextExists {
                name: "admin@prod".into()
            }
        );
        assert!(err.to_string().contains("already exists"));

        let base = Config::single("admin@prod", issued(&["1.2.3.4"], &[], true));
        let merged = merge(base, "admin@prod", issued(&["5.6.7.8"], &[], false), true).unwrap();
        assert_eq!(merged.contexts.len(), 1);
        assert_eq!(merged.contexts["admin@prod"].endpoints, ["5.6.7.8"]);
        assert!(merged.contexts["admin@prod"].key.is_empty());

        let mut base = Config::single("old", issued(&[], &[], true));
        base.context = "old".into();
        let merged = merge(base, "new", issued(&[], &[], true), false).unwrap();
        assert_eq!(merged.context, "new");
        assert_eq!(merged.contexts.keys().collect::<Vec<_>>(), ["new", "old"]);
        assert!(!merged.contexts.contains_key("new-1"));
        let err = merge(Config::default(), "", issued(&[], &[], true), false).unwrap_err();
        assert_eq!(err, MergeError::EmptyName);
    }

    #[test]
    fn context_names_like_config_new() {
        let roles = |names: &[&str]| Role::parse_set(names.iter().copied()).unwrap();
        assert_eq!(context_name(&roles(&["os:reader"]), "prod"), "reader@prod");
        assert_eq!(
            context_name(&roles(&["os:etcd:backup"]), "prod"),
            "etcd:backup@prod"
        );
        assert_eq!(
            context_name(&roles(&["os:reader", "os:operator"]), "prod"),
            "prod"
        );
        assert_eq!(context_name(&roles(&[]), "prod"), "prod");
    }

    #[test]
    fn scalars_quote_like_go_yaml() {
        for (input, want) in [
            ("", "\"\""),
            ("prod", "prod"),
            ("reader@prod", "reader@prod"),
            ("@prod", "'@prod'"),
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.1:50000", "10.0.0.1:50000"),
            ("https://1.2.3.4:6443", "https://1.2.3.4:6443"),
            ("fd00::1", "fd00::1"),
            ("[fd00::1]:50000", "'[fd00::1]:50000'"),
            ("123", "\"123\""),
            ("1_000", "\"1_000\""),
            ("0x1F", "\"0x1F\""),
            ("0xZZ", "0xZZ"),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            (".5", "\".5\""),
            ("10:30", "\"10:30\""),
            ("2021-07-05", "\"2021-07-05\""),
            ("2021-07-05T22:06:42Z", "\"2021-07-05T22:06:42Z\""),
            ("2021-13-05", "2021-13-05"),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("-", "'-'"),
            ("-x", "-x"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("a#b", "a#b"),
            (" lead", "' lead'"),
            ("it's", "it's"),
            ("'q", "'''q'"),
            ("tab\there", "\"tab\\there\""),
            ("two\nlines", "\"two\\nlines\""),
            ("ünïcode", "ünïcode"),
            ("emoji \u{1f600}", "\"emoji \\U0001F600\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("LS0tLS1CRUdJTiBDRVJU+/=", "LS0tLS1CRUdJTiBDRVJU+/="),
        ] {
            assert_eq!(crate::goyaml::scalar(input), want, "{input:?}");
            // Whatever the style, it reads back as the same string.
            let back: String = serde_yaml::from_str(&crate::goyaml::scalar(input)).unwrap();
            assert_eq!(back, input, "{input:?}");
        }
    }

    #[test]
    fn natural_order_like_go_yaml() {
        let mut names = vec![
            "a-10", "a-2", "a-1", "b", "a", "a-02", "A", "a_b", "ab", "1", "10", "9",
        ];
        names.sort_by(|a, b| natural_order(a, b));
        // Checked against yaml.v3's keyList.Less run under Go 1.19.
        assert_eq!(
            names,
            [
                "1", "9", "10", "A", "a", "a-1", "a-2", "a-02", "a-10", "a_b", "ab", "b"
            ]
        );
    }
}
