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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_yaml::{Mapping, Value};
use thiserror::Error;
use zeroize::Zeroizing;

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
        let mut w = Writer(Zeroizing::new(String::with_capacity(4096)));
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
                    w.context(8, ctx);
                }
            }
        }
        w.extra(0, &self.extra);
        SecretText::new(std::mem::take(&mut *w.0))
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
// Writing, in go-yaml's layout (yaml.v3 / go.yaml.in/yaml/v4 with v3 defaults): 4-space
// indentation, block sequences indented under their key, flow `[]`/`{}` for empty collections.

struct Writer(Zeroizing<String>);

/// The longest key written as an implicit key (`KEY: value`), in bytes: YAML's limit is 1024
/// characters, and a character is at least a byte.
const IMPLICIT_KEY_MAX: usize = 1000;

impl Writer {
    /// Every byte goes through here, so growing the buffer never leaves a secret behind.
    fn put(&mut self, text: &str) {
        crate::secret::push_zeroizing(&mut self.0, text);
    }
}

impl Writer {
    fn indent(&mut self, col: usize) {
        for _ in 0..col {
            self.put(" ");
        }
    }

    /// A mapping key as rendered, then `:`. YAML limits an implicit key to 1024 characters
    /// (libyaml's simple-key limit); a longer one is written as an explicit key, `? KEY` on its
    /// own line and `:` under it (fuzz finding 13: a key with tabs and astral characters grew
    /// past the limit once escaped, and the file no longer read).
    fn put_key(&mut self, col: usize, rendered: &str) {
        if rendered.len() > IMPLICIT_KEY_MAX {
            self.put_explicit_key(col, rendered);
        } else {
            self.put(rendered);
            self.put(":");
        }
    }

    /// `? KEY`, then `:` on the next line at column `col`.
    fn put_explicit_key(&mut self, col: usize, rendered: &str) {
        self.put("? ");
        self.put(rendered);
        self.put("\n");
        self.indent(col);
        self.put(":");
    }

    fn key_line(&mut self, col: usize, key: &str) {
        self.indent(col);
        self.put_key(col, &go_scalar(key));
        self.put("\n");
    }

    fn raw_entry(&mut self, col: usize, key: &str, value: &str) {
        self.indent(col);
        self.put_key(col, &go_scalar(key));
        self.put(" ");
        self.put(value);
        self.put("\n");
    }

    fn scalar_entry(&mut self, col: usize, key: &str, value: &str) {
        let rendered = Zeroizing::new(go_scalar(value).into_owned());
        self.raw_entry(col, key, &rendered);
    }

    fn list_entry(&mut self, col: usize, key: &str, items: &[String]) {
        if items.is_empty() {
            self.raw_entry(col, key, "[]");
            return;
        }
        self.key_line(col, key);
        for item in items {
            self.indent(col + 4);
            self.put("- ");
            self.put(&go_scalar(item));
            self.put("\n");
        }
    }

    fn context(&mut self, col: usize, ctx: &Context) {
        // Field order and omitempty as in clientconfig.Context; `target` is folded on read.
        self.list_entry(col, "endpoints", &ctx.endpoints);
        if !ctx.nodes.is_empty() {
            self.list_entry(col, "nodes", &ctx.nodes);
        }
        for (key, value) in [
            ("ca", ctx.ca.as_str()),
            ("crt", ctx.crt.as_str()),
            ("key", ctx.key.expose()),
        ] {
            if !value.is_empty() {
                self.scalar_entry(col, key, value);
            }
        }
        if !ctx.auth.is_zero() {
            self.key_line(col, "auth");
            if let Some(basic) = &ctx.auth.basic {
                self.key_line(col + 4, "basic");
                self.scalar_entry(col + 8, "username", &basic.username);
                self.scalar_entry(col + 8, "password", basic.password.expose());
            }
            if let Some(sv1) = &ctx.auth.siderov1 {
                self.key_line(col + 4, "siderov1");
                self.scalar_entry(col + 8, "identity", &sv1.identity);
            }
            self.extra(col + 4, &ctx.auth.extra);
        }
        if !ctx.cluster.is_empty() {
            self.scalar_entry(col, "cluster", &ctx.cluster);
        }
        if !ctx.proxy_url.is_empty() {
            self.scalar_entry(col, "proxy-url", &ctx.proxy_url);
        }
        self.extra(col, &ctx.extra);
    }

    fn extra(&mut self, col: usize, extra: &Extra) {
        self.mapping(col, &extra.0, false);
    }

    /// Entries of a block mapping at column `col`; with `inline_first` the first entry continues
    /// the current line (after a sequence's `- `).
    fn mapping(&mut self, col: usize, map: &Mapping, inline_first: bool) {
        for (i, (key, value)) in map.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.indent(col);
            }
            if is_complex_key(key) {
                // A collection as a key (`? - a`): written as an explicit key in flow form, as
                // `[]` it collided with the next such key (fuzz finding 9).
                let mut flow = Zeroizing::new(String::new());
                flow_node(&mut flow, key);
                self.put_explicit_key(col, &flow);
            } else {
                let rendered = Zeroizing::new(value_scalar(key).into_owned());
                self.put_key(col, &rendered);
            }
            self.entry_value(col, value);
        }
    }

    /// Items of a block sequence whose `- ` sits at column `col`.
    fn sequence(&mut self, col: usize, items: &[Value], inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if !(inline_first && i == 0) {
                self.indent(col);
            }
            self.put("- ");
            self.item_value(col + 2, item);
        }
    }

    /// The value of a mapping entry at column `col`, after its `key:`.
    fn entry_value(&mut self, col: usize, value: &Value) {
        match value {
            Value::Mapping(m) if !m.is_empty() => {
                self.put("\n");
                self.mapping(col + 4, m, false);
            }
            Value::Sequence(s) if !s.is_empty() => {
                self.put("\n");
                self.sequence(col + 4, s, false);
            }
            Value::Tagged(t) => {
                self.put(" ");
                self.put(&tag_text(&t.tag));
                self.entry_value(col, &t.value);
            }
            other => {
                self.put(" ");
                self.put(&value_scalar(other));
                self.put("\n");
            }
        }
    }

    /// The value of a sequence item whose content starts at column `col`.
    fn item_value(&mut self, col: usize, value: &Value) {
        match value {
            Value::Mapping(m) if !m.is_empty() => self.mapping(col, m, true),
            Value::Sequence(s) if !s.is_empty() => self.sequence(col, s, true),
            Value::Tagged(t) => {
                self.put(&tag_text(&t.tag));
                match &t.value {
                    Value::Mapping(m) if !m.is_empty() => {
                        self.put("\n");
                        self.mapping(col, m, false);
                    }
                    Value::Sequence(s) if !s.is_empty() => {
                        self.put("\n");
                        self.sequence(col, s, false);
                    }
                    other => {
                        self.put(" ");
                        self.item_value(col, other);
                    }
                }
            }
            other => {
                self.put(&value_scalar(other));
                self.put("\n");
            }
        }
    }
}

/// A tag as written back: plain (`!name`) when that reads back as the same tag, else in verbatim
/// form, `!<…>` with every character outside the safe URI set percent-escaped, which YAML
/// decodes back to the same tag. Fuzz findings: dropping tags that could not be written plainly
/// (the non-specific `!`, shown by serde_yaml_ng as `!!`; a `!` that came from `%21`; `(`, `'`)
/// made two keys that differed only in their tags collide, and writing them plainly did not
/// parse.
fn tag_text(tag: &serde_yaml::value::Tag) -> String {
    let text = tag.to_string();
    let body = text.trim_start_matches('!');
    let plain = !body.is_empty()
        && text.len() - body.len() <= 2
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c));
    if plain {
        return text;
    }
    let mut out = String::from("!<");
    for b in text.bytes() {
        // The characters libyaml takes literally in a tag (`yaml_parser_scan_tag_uri`), less
        // `,[]`, which would end a flow collection; everything else as %XX.
        if b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('>');
    out
}

/// A mapping key that is a non-empty collection (possibly tagged); it cannot be written as a
/// plain key.
fn is_complex_key(v: &Value) -> bool {
    match v {
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(t) => is_complex_key(&t.value),
        _ => false,
    }
}

/// A value in flow form on one line: strings double-quoted, collections as `[a, b]` and
/// `{? k : v}` (explicit keys, so a collection can be a key inside it too).
fn flow_node(out: &mut Zeroizing<String>, v: &Value) {
    match v {
        Value::String(s) => crate::secret::push_zeroizing(out, &double_quoted(s)),
        Value::Sequence(items) => {
            crate::secret::push_zeroizing(out, "[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    crate::secret::push_zeroizing(out, ", ");
                }
                flow_node(out, item);
            }
            crate::secret::push_zeroizing(out, "]");
        }
        Value::Mapping(map) => {
            crate::secret::push_zeroizing(out, "{");
            for (i, (key, value)) in map.iter().enumerate() {
                crate::secret::push_zeroizing(out, if i > 0 { ", ? " } else { "? " });
                flow_node(out, key);
                crate::secret::push_zeroizing(out, " : ");
                flow_node(out, value);
            }
            crate::secret::push_zeroizing(out, "}");
        }
        Value::Tagged(t) => {
            crate::secret::push_zeroizing(out, &tag_text(&t.tag));
            crate::secret::push_zeroizing(out, " ");
            flow_node(out, &t.value);
        }
        other => crate::secret::push_zeroizing(out, &scalar_text(other)),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "[]".to_owned(),
        Value::Mapping(_) => "{}".to_owned(),
        Value::Tagged(t) => t.tag.to_string(),
    }
}

fn value_scalar(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => go_scalar(s),
        // A tagged scalar (as a mapping key): the tag, then the value; a non-specific tag only
        // the value (fuzz finding: the key was written as its bare tag, losing the value).
        Value::Tagged(t) => Cow::Owned(format!("{} {}", tag_text(&t.tag), value_scalar(&t.value))),
        Value::Sequence(_) => Cow::Borrowed("[]"),
        Value::Mapping(_) => Cow::Borrowed("{}"),
        other => Cow::Owned(scalar_text(other)),
    }
}

/// A string as go-yaml writes it: plain when it would read back as the same string and the
/// emitter allows it, single-quoted when only the emitter objects, double-quoted when it would
/// resolve to another type (yaml.v3 encode.go `stringv`, emitterc.go `analyze_scalar`).
/// Multi-line strings are written double-quoted (go-yaml uses a literal block; same value).
fn go_scalar(s: &str) -> Cow<'_, str> {
    if s.is_empty() || resolves_to_non_string(s) || s.contains('\n') {
        return Cow::Owned(double_quoted(s));
    }
    match emitter_allows(s) {
        Allowed::Plain => Cow::Borrowed(s),
        Allowed::SingleQuoted => Cow::Owned(format!("'{}'", s.replace('\'', "''"))),
        Allowed::DoubleQuoted => Cow::Owned(double_quoted(s)),
    }
}

enum Allowed {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// libyaml `yaml_emitter_analyze_scalar` for a block-context scalar without line breaks.
fn emitter_allows(s: &str) -> Allowed {
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let mut special = false;
    let blank_or_end = |i: usize| chars.get(i).is_none_or(|c| *c == ' ' || *c == '\t');
    for (i, &c) in chars.iter().enumerate() {
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if blank_or_end(1) => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if blank_or_end(i + 1) => block_indicators = true,
                '#' if chars[i - 1] == ' ' || chars[i - 1] == '\t' => block_indicators = true,
                _ => {}
            }
        }
        if !printable(c) || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
            special = true;
        }
    }
    let leading_or_trailing_space = s.starts_with(' ') || s.ends_with(' ');
    if special {
        Allowed::DoubleQuoted
    } else if block_indicators || leading_or_trailing_space {
        Allowed::SingleQuoted
    } else {
        Allowed::Plain
    }
}

/// libyaml `is_printable` (on the UTF-8 encoding): LF, printable ASCII, and the BMP from U+00A0
/// except surrogates, the BOM and U+FFFE/U+FFFF. Characters beyond the BMP count as special.
fn printable(c: char) -> bool {
    c == '\n'
        || (' '..='~').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

/// libyaml `yaml_emitter_write_double_quoted_scalar` escapes.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) => out.push(c),
            c => {
                let v = u32::from(c);
                if v <= 0xff {
                    out.push_str(&format!("\\x{v:02X}"));
                } else if v <= 0xffff {
                    out.push_str(&format!("\\u{v:04X}"));
                } else {
                    out.push_str(&format!("\\U{v:08X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Whether go-yaml's resolver reads `s` unquoted as something other than a string, or quotes it
/// anyway (YAML 1.1 booleans, base-60 floats, the merge key `<<`): yaml.v3 resolve.go
/// `resolve`, go-yaml v4 representer.go `isOldBool`, `isBase60Float`, `looksLikeMerge`.
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".nan",
        ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
        "-.INF", "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO",
        "off", "Off", "OFF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => is_yaml_float(s) || go_parse_float_dot(s),
        b'0'..=b'9' | b'+' | b'-' => {
            is_timestamp(s) || is_base60_float(s) || {
                let plain: String = s.chars().filter(|&c| c != '_').collect();
                is_go_int(&plain) || is_yaml_float(&plain)
            }
        }
        _ => false,
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$` (yaml.v3 `yamlStyleFloat`).
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat` on a string starting with '.': decimal digits and an exponent.
fn go_parse_float_dot(s: &str) -> bool {
    is_yaml_float(s)
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeding, or the `0b`/`0o` forms
/// yaml.v3 adds. Decimal overflow still resolves (to a float), so only prefixed forms check range.
fn is_go_int(s: &str) -> bool {
    let (negative, signed, body) = match s.as_bytes().first() {
        Some(b'-') => (true, true, &s[1..]),
        Some(b'+') => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let (radix, digits) = match body.get(..2) {
        Some("0x" | "0X") => (16, &body[2..]),
        Some("0o" | "0O") => (8, &body[2..]),
        Some("0b" | "0B") => (2, &body[2..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    if radix == 10 {
        // Any decimal digits resolve: ParseInt, or else the float pattern.
        return true;
    }
    let Ok(magnitude) = u128::from_str_radix(digits, radix) else {
        return false;
    };
    if negative {
        magnitude <= 1u128 << 63
    } else if signed {
        magnitude <= i64::MAX as u128
    } else {
        magnitude <= u64::MAX as u128
    }
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (yaml.v3 encode.go `base60float`).
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) && i - start < 2 {
            i += 1;
        }
        match &b[start..i] {
            [d] if d.is_ascii_digit() => {}
            [d1, _] if (b'0'..=b'5').contains(d1) => {}
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// yaml.v3 `parseTimestamp`: `YYYY-M-D`, optionally followed by `[Tt ]h:m:s[.frac]` and, for the
/// `T`/`t` forms, `Z` or `±hh:mm`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let number = |i: &mut usize, max_len: usize| -> Option<u32> {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) && *i - start < max_len {
            *i += 1;
        }
        if *i == start {
            return None;
        }
        std::str::from_utf8(&b[start..*i]).ok()?.parse().ok()
    };
    let Some(month) = number(&mut i, 2) else {
        return false;
    };
    if b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = number(&mut i, 2) else {
        return false;
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let separator = b[i];
    if !matches!(separator, b'T' | b't' | b' ') {
        return false;
    }
    i += 1;
    for (n, max) in [(0, 23), (1, 59), (2, 59)] {
        if n > 0 {
            if b.get(i) != Some(&b':') {
                return false;
            }
            i += 1;
        }
        match number(&mut i, 2) {
            Some(v) if v <= max => {}
            _ => return false,
        }
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if separator == b' ' {
        return i == b.len();
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let zone = &b[i + 1..];
            zone.len() == 5
                && zone[0].is_ascii_digit()
                && zone[1].is_ascii_digit()
                && zone[2] == b':'
                && zone[3].is_ascii_digit()
                && zone[4].is_ascii_digit()
        }
        _ => false,
    }
}

/// go-yaml's map-key order (yaml.v3 sorter.go `keyList.Less`): rune by rune; letters before
/// non-letters; digit runs compared as numbers, so `a-2 < a-10`.
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if a == b {
        return Ordering::Equal;
    }
    if natural_less(a, b) {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn natural_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let is_digit = |c: char| c.is_numeric();
    let value = |c: char| i64::from(u32::from(c)) - i64::from(u32::from('0'));
    let mut digits = false;
    let n = ar.len().min(br.len());
    for i in 0..n {
        if ar[i] == br[i] {
            digits = is_digit(ar[i]);
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && is_digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && is_digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(value(ar[ai]));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && is_digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(value(br[bi]));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
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
            assert_eq!(go_scalar(input), want, "{input:?}");
            // Whatever the style, it reads back as the same string.
            let back: String = serde_yaml::from_str(&go_scalar(input)).unwrap();
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
