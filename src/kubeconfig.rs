//! PURE: the kubeconfig file (client-go `clientcmdapi.Config`, apiVersion v1, kind Config): the
//! entries talvault adds, the layout kubectl writes, a merge that never renames, and reading a
//! context's credentials back for `verify` and `revoke`. No I/O.
//!
//! Layout (reference/kubernetes.md §3): client-go writes a kubeconfig as JSON turned into YAML by
//! sigs.k8s.io/yaml, i.e. go-yaml v2 over maps, so keys are sorted at every level, mappings are
//! indented by 2 and sequences sit at their key's column (`clusters:\n- cluster:`). Names follow
//! `talosctl kubeconfig` (siderolabs/talos pkg/kubeconfig/generate.go `Generate`): the cluster
//! entry is the cluster name, the user and context entries are `<user>@<cluster>` (never
//! `admin@<cluster>`, which `talosctl kubeconfig --merge` would overwrite or rename), the context
//! has `namespace: default` unless told otherwise, and becomes `current-context`.
//! `certificate-authority-data` is the cluster's Kubernetes CA only: issuer CAs must never be
//! trusted for the API server's certificate (reference §6.3). `preferences` is not written
//! (client-go ≥ v0.34 omits the empty value, as Talos ≥ 1.11 does).
//!
//! Merging ([`Kubeconfig::merge`]) parses the existing file as YAML values, so entries talvault
//! did not write are kept whole (`exec` users, `extensions`, anything newer), and writes them back
//! in the same layout, each new entry placed where kubectl's name order puts it: a file kubectl
//! wrote keeps its bytes except for the added entries and `current-context`, and is what kubectl
//! itself would write. Comments are not kept (kubectl drops them too). A name that is already
//! taken by a different entry is refused unless replacing is asked for; an identical cluster
//! entry is shared, as go-kubeconfig does (siderolabs/go-kubeconfig merge.go: no conflict when
//! `reflect.DeepEqual`). Nothing is ever renamed.
//!
//! Secrets: the added key is written through zeroizing buffers, and every string value of a
//! parsed file (other users' keys and tokens) is wiped when the [`Kubeconfig`] is dropped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_yaml::{Mapping, Value};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::goyaml::{Writer, scalar};
use crate::secret::{SecretBytes, SecretText};

mod delivery;

/// The top-level keys of a kubeconfig (client-go api/v1 `Config`).
const KNOWN_KEYS: [&str; 8] = [
    "apiVersion",
    "clusters",
    "contexts",
    "current-context",
    "extensions",
    "kind",
    "preferences",
    "users",
];

/// A kubeconfig that could not be read, or is not a kubeconfig. Never carries a value.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KubeconfigError {
    /// Not YAML (or JSON).
    #[error("not valid YAML{}", location.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
    Syntax {
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },
    /// YAML, but not a kubeconfig.
    #[error("not a kubeconfig ({what})")]
    NotKubeconfig {
        /// What is wrong.
        what: String,
    },
    /// No such context (or no current context).
    #[error("{}", match name { Some(n) => format!("no context {n:?}"), None => "no current context".to_owned() })]
    NoContext {
        /// The context asked for; `None`: the current one, which is unset.
        name: Option<String>,
    },
    /// A context whose user has no embedded client certificate.
    #[error("context {context:?}: {what}")]
    NoCertificate {
        /// The context.
        context: String,
        /// What is missing.
        what: String,
    },
}

/// Why an entry could not be merged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KubeMergeError {
    /// The name is taken by a different entry and replacing was not asked for.
    #[error("{kind} {name:?} already exists in the kubeconfig with other contents")]
    Clash {
        /// `cluster`, `user` or `context`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

/// The entries one issued certificate adds: a cluster, a user and a context.
pub struct NewEntry {
    /// The cluster entry's name (the cluster name).
    pub cluster: String,
    /// `server`: the Kubernetes API URL.
    pub server: String,
    /// `certificate-authority-data`: the PEM of the cluster's Kubernetes CA.
    pub ca_pem: Vec<u8>,
    /// The user entry's name.
    pub user: String,
    /// `client-certificate-data`: the leaf PEM.
    pub client_certificate_pem: Vec<u8>,
    /// `client-key-data`: the leaf key PEM; `None` when the holder kept the key (CSR).
    pub client_key_pem: Option<SecretBytes>,
    /// The context entry's name.
    pub context: String,
    /// The context's namespace.
    pub namespace: String,
}

impl fmt::Debug for NewEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEntry")
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The names a new entry will take, known before anything is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryNames {
    /// The cluster entry.
    pub cluster: String,
    /// Its `server`.
    pub server: String,
    /// Its CA PEM.
    pub ca_pem: Vec<u8>,
    /// The user entry.
    pub user: String,
    /// The context entry.
    pub context: String,
}

impl NewEntry {
    /// Its names and cluster contents.
    pub fn names(&self) -> EntryNames {
        EntryNames {
            cluster: self.cluster.clone(),
            server: self.server.clone(),
            ca_pem: self.ca_pem.clone(),
            user: self.user.clone(),
            context: self.context.clone(),
        }
    }
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn cluster_body(server: &str, ca_pem: &[u8]) -> Value {
    let mut m = Mapping::new();
    m.insert(s("certificate-authority-data"), s(&STANDARD.encode(ca_pem)));
    m.insert(s("server"), s(server));
    Value::Mapping(m)
}

fn named(body_key: &str, body: Value, name: &str) -> Value {
    // Sorted as client-go writes them: `cluster`/`context` before `name` before `user`.
    let mut m = Mapping::new();
    if body_key == "user" {
        m.insert(s("name"), s(name));
        m.insert(s(body_key), body);
    } else {
        m.insert(s(body_key), body);
        m.insert(s("name"), s(name));
    }
    Value::Mapping(m)
}

impl NewEntry {
    fn cluster_item(&self) -> Value {
        named(
            "cluster",
            cluster_body(&self.server, &self.ca_pem),
            &self.cluster,
        )
    }

    fn user_item(&self) -> Value {
        let mut m = Mapping::new();
        m.insert(
            s("client-certificate-data"),
            s(&STANDARD.encode(&self.client_certificate_pem)),
        );
        if let Some(key) = &self.client_key_pem {
            // Wiped when the Kubeconfig holding it is dropped.
            m.insert(
                s("client-key-data"),
                Value::String(STANDARD.encode(key.expose())),
            );
        }
        named("user", Value::Mapping(m), &self.user)
    }

    fn context_item(&self) -> Value {
        let mut m = Mapping::new();
        m.insert(s("cluster"), s(&self.cluster));
        m.insert(s("namespace"), s(&self.namespace));
        m.insert(s("user"), s(&self.user));
        named("context", Value::Mapping(m), &self.context)
    }
}

/// A kubeconfig: its top-level mapping, in file order.
pub struct Kubeconfig {
    doc: Mapping,
}

impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("contexts", &self.names("contexts"))
            .finish_non_exhaustive()
    }
}

impl Drop for Kubeconfig {
    fn drop(&mut self) {
        for v in self.doc.values_mut() {
            wipe(v);
        }
    }
}

/// Overwrites every string in `v` before it is freed (other users' keys and tokens).
fn wipe(v: &mut Value) {
    match v {
        Value::String(text) => drop(Zeroizing::new(std::mem::take(text))),
        Value::Sequence(items) => items.iter_mut().for_each(wipe),
        Value::Mapping(m) => m.values_mut().for_each(wipe),
        Value::Tagged(t) => wipe(&mut t.value),
        _ => {}
    }
}

fn not_one(what: impl Into<String>) -> KubeconfigError {
    KubeconfigError::NotKubeconfig { what: what.into() }
}

/// Checks a named list (`clusters`, `users`, `contexts`): a sequence of mappings, each with a
/// string `name` used once.
fn check_list(key: &str, value: &Value) -> Result<(), KubeconfigError> {
    let items = match value {
        Value::Null => return Ok(()),
        Value::Sequence(items) => items,
        _ => return Err(not_one(format!("{key} is not a list"))),
    };
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        let Value::Mapping(m) = item else {
            return Err(not_one(format!("an entry of {key} is not a mapping")));
        };
        let Some(Value::String(name)) = m.get("name") else {
            return Err(not_one(format!("an entry of {key} has no name")));
        };
        if seen.contains(&name.as_str()) {
            return Err(not_one(format!("{key} lists {name:?} twice")));
        }
        seen.push(name);
    }
    Ok(())
}

/// Refuses YAML a kubeconfig never holds: tags and collections as keys.
fn check_plain(v: &Value) -> Result<(), KubeconfigError> {
    match v {
        Value::Tagged(_) => Err(not_one("it uses YAML tags")),
        Value::Sequence(items) => items.iter().try_for_each(check_plain),
        Value::Mapping(m) => {
            for (k, v) in m {
                if !matches!(
                    k,
                    Value::String(_) | Value::Bool(_) | Value::Number(_) | Value::Null
                ) {
                    return Err(not_one("a key is not a scalar"));
                }
                check_plain(v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The credentials of one context, for `verify` and `revoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextCredentials {
    /// The context's name.
    pub context: String,
    /// Its cluster's `certificate-authority-data`, decoded (empty when absent).
    pub server_ca: Vec<u8>,
    /// Its user's `client-certificate-data`, decoded.
    pub certificate: Vec<u8>,
}

impl Kubeconfig {
    /// Reads a kubeconfig (YAML or JSON). An empty document is an empty kubeconfig.
    pub fn from_yaml(input: &[u8]) -> Result<Self, KubeconfigError> {
        crate::nesting::check(input, 4 << 20).map_err(|e| not_one(e.to_string()))?;
        let value: Value = serde_yaml::from_slice(input).map_err(|e| KubeconfigError::Syntax {
            location: e.location().map(|l| (l.line(), l.column())),
        })?;
        let doc = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            mut other => {
                wipe(&mut other);
                return Err(not_one("not a mapping"));
            }
        };
        // Wiped on drop from here on, whatever the verdict.
        let config = Kubeconfig { doc };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), KubeconfigError> {
        let unknown: Vec<String> = self
            .doc
            .keys()
            .filter(|k| !k.as_str().is_some_and(|k| KNOWN_KEYS.contains(&k)))
            .map(|k| match k {
                Value::String(s) => format!("{s:?}"),
                _ => "a non-string key".to_owned(),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(not_one(format!(
                "unknown top-level keys: {}",
                unknown.join(", ")
            )));
        }
        match self.doc.get("kind") {
            None | Some(Value::Null) => {}
            Some(Value::String(k)) if k == "Config" => {}
            Some(_) => return Err(not_one("kind is not Config")),
        }
        match self.doc.get("apiVersion") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v == "v1" => {}
            Some(_) => return Err(not_one("apiVersion is not v1")),
        }
        match self.doc.get("current-context") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(not_one("current-context is not a string")),
        }
        for v in self.doc.values() {
            check_plain(v)?;
        }
        for key in ["clusters", "users", "contexts"] {
            if let Some(v) = self.doc.get(key) {
                check_list(key, v)?;
            }
        }
        Ok(())
    }

    /// A kubeconfig holding just `entry`, current.
    pub fn single(entry: &NewEntry) -> Self {
        let mut doc = Mapping::new();
        doc.insert(s("apiVersion"), s("v1"));
        doc.insert(s("clusters"), Value::Sequence(vec![entry.cluster_item()]));
        doc.insert(s("contexts"), Value::Sequence(vec![entry.context_item()]));
        doc.insert(s("current-context"), s(&entry.context));
        doc.insert(s("kind"), s("Config"));
        doc.insert(s("users"), Value::Sequence(vec![entry.user_item()]));
        Kubeconfig { doc }
    }

    /// The names in list `key`.
    fn names(&self, key: &str) -> Vec<String> {
        match self.doc.get(key) {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn item(&self, key: &str, name: &str) -> Option<&Value> {
        match self.doc.get(key) {
            Some(Value::Sequence(items)) => items
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(name)),
            _ => None,
        }
    }

    /// The entries `names` would clash with (kind and name), before anything is signed: a user
    /// or context of the same name, or a cluster of the same name with other contents.
    pub fn clashes(&self, names: &EntryNames) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(existing) = self.item("clusters", &names.cluster)
            && existing.get("cluster") != Some(&cluster_body(&names.server, &names.ca_pem))
        {
            out.push(("cluster", names.cluster.clone()));
        }
        if self.item("users", &names.user).is_some() {
            out.push(("user", names.user.clone()));
        }
        if self.item("contexts", &names.context).is_some() {
            out.push(("context", names.context.clone()));
        }
        out
    }

    /// Adds `entry` and makes its context current. Every other entry is kept as it was; a
    /// clash ([`Kubeconfig::clashes`]) is refused unless `replace`, which replaces the clashing
    /// entries in place. Nothing is ever renamed.
    pub fn merge(mut self, entry: &NewEntry, replace: bool) -> Result<Self, KubeMergeError> {
        if !replace && let Some((kind, name)) = self.clashes(&entry.names()).into_iter().next() {
            return Err(KubeMergeError::Clash { kind, name });
        }
        self.ensure("apiVersion", s("v1"));
        self.ensure("kind", s("Config"));
        for (key, name, item) in [
            ("clusters", &entry.cluster, entry.cluster_item()),
            ("contexts", &entry.context, entry.context_item()),
            ("users", &entry.user, entry.user_item()),
        ] {
            self.ensure(key, Value::Sequence(Vec::new()));
            if let Some(v @ Value::Null) = self.doc.get_mut(key) {
                *v = Value::Sequence(Vec::new());
            }
            if let Some(Value::Sequence(items)) = self.doc.get_mut(key) {
                match items
                    .iter_mut()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(name.as_str()))
                {
                    Some(existing) => {
                        if *existing != item {
                            wipe(existing);
                            *existing = item;
                        }
                    }
                    // kubectl writes each list sorted by name (client-go keeps them in maps):
                    // a new entry goes before the first one that sorts after it, so a file
                    // kubectl wrote stays as kubectl would write it.
                    None => {
                        let at = items
                            .iter()
                            .position(|i| {
                                i.get("name")
                                    .and_then(Value::as_str)
                                    .is_some_and(|n| n > name.as_str())
                            })
                            .unwrap_or(items.len());
                        items.insert(at, item);
                    }
                }
            }
        }
        self.ensure("current-context", Value::Null);
        if let Some(current) = self.doc.get_mut("current-context") {
            *current = s(&entry.context);
        }
        Ok(self)
    }

    /// Adds `key` with `value` when it is missing, at its place in client-go's sorted order
    /// among the keys already there (which keep their order).
    fn ensure(&mut self, key: &str, value: Value) {
        if self.doc.contains_key(key) {
            return;
        }
        let old = std::mem::take(&mut self.doc);
        let mut placed = false;
        for (k, v) in old {
            if !placed && k.as_str().is_some_and(|k| k > key) {
                self.doc.insert(s(key), value.clone());
                placed = true;
            }
            self.doc.insert(k, v);
        }
        if !placed {
            self.doc.insert(s(key), value);
        }
    }

    /// The credentials of context `name` (default: the current context).
    pub fn context_credentials(
        &self,
        name: Option<&str>,
    ) -> Result<ContextCredentials, KubeconfigError> {
        let no_context = || KubeconfigError::NoContext {
            name: name.map(str::to_owned),
        };
        let context = match name {
            Some(n) => n.to_owned(),
            None => self
                .doc
                .get("current-context")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .ok_or_else(no_context)?
                .to_owned(),
        };
        let ctx = self
            .item("contexts", &context)
            .and_then(|c| c.get("context"))
            .ok_or_else(|| KubeconfigError::NoContext {
                name: Some(context.clone()),
            })?;
        let missing = |what: &str| KubeconfigError::NoCertificate {
            context: context.clone(),
            what: what.to_owned(),
        };
        let user_name = ctx
            .get("user")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("it names no user"))?;
        let user = self
            .item("users", user_name)
            .and_then(|u| u.get("user"))
            .ok_or_else(|| missing(&format!("its user {user_name:?} is not in the file")))?;
        let certificate = match user.get("client-certificate-data").and_then(Value::as_str) {
            Some(b64) => decode(&context, "client-certificate-data", b64)?,
            None if user.get("client-certificate").is_some() => {
                return Err(missing(
                    "its user names a certificate file (client-certificate) instead of embedding it",
                ));
            }
            None => return Err(missing("its user has no client certificate")),
        };
        let server_ca = match ctx
            .get("cluster")
            .and_then(Value::as_str)
            .and_then(|c| self.item("clusters", c))
            .and_then(|c| c.get("cluster"))
            .and_then(|c| c.get("certificate-authority-data"))
            .and_then(Value::as_str)
        {
            Some(b64) => decode(&context, "certificate-authority-data", b64)?,
            None => Vec::new(),
        };
        Ok(ContextCredentials {
            context,
            server_ca,
            certificate,
        })
    }

    /// The context names, in file order.
    pub fn contexts(&self) -> Vec<String> {
        self.names("contexts")
    }

    /// Writes the kubeconfig in client-go's layout (module documentation).
    pub fn to_yaml(&self) -> SecretText {
        let mut w = Writer::with_capacity(4096);
        write_mapping(&mut w, 0, &self.doc, false);
        w.finish()
    }
}

/// Whether a client configuration file is a kubeconfig rather than a talosconfig: a mapping
/// with a top-level key only kubeconfigs have (`apiVersion`, `kind`, `clusters`, `users`,
/// `current-context`); a talosconfig has `context` and `contexts`.
pub fn looks_like_kubeconfig(input: &[u8]) -> bool {
    if crate::nesting::check(input, 4 << 20).is_err() {
        return false;
    }
    let Ok(mut value) = serde_yaml::from_slice::<Value>(input) else {
        return false;
    };
    let found = value.as_mapping().is_some_and(|m| {
        ["apiVersion", "kind", "clusters", "users", "current-context"]
            .iter()
            .any(|k| m.contains_key(*k))
    });
    wipe(&mut value);
    found
}

fn decode(context: &str, field: &str, b64: &str) -> Result<Vec<u8>, KubeconfigError> {
    crate::bundle::yaml::decode_go_base64(b64)
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|offset| KubeconfigError::NoCertificate {
            context: context.to_owned(),
            what: format!("{field}: illegal base64 data at input byte {offset}"),
        })
}

// ---------------------------------------------------------------------------------------------
// Writing: go-yaml v2 block style (sigs.k8s.io/yaml), over the shared quoting of src/goyaml.rs.

fn scalar_text(v: &Value) -> Zeroizing<String> {
    Zeroizing::new(match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(text) => scalar(text).into_owned(),
        Value::Sequence(_) => "[]".to_owned(),
        Value::Mapping(_) => "{}".to_owned(),
        // Refused when reading; never made here.
        Value::Tagged(_) => "null".to_owned(),
    })
}

fn write_mapping(w: &mut Writer, col: usize, map: &Mapping, inline_first: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if !(inline_first && i == 0) {
            w.indent(col);
        }
        w.put_key(col, &scalar_text(key));
        match value {
            Value::Mapping(m) if !m.is_empty() => {
                w.put("\n");
                write_mapping(w, col + 2, m, false);
            }
            // go-yaml v2 writes a sequence under a mapping key without indenting it.
            Value::Sequence(items) if !items.is_empty() => {
                w.put("\n");
                write_sequence(w, col, items, false);
            }
            other => {
                w.put(" ");
                w.put(&scalar_text(other));
                w.put("\n");
            }
        }
    }
}

fn write_sequence(w: &mut Writer, col: usize, items: &[Value], inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if !(inline_first && i == 0) {
            w.indent(col);
        }
        w.put("- ");
        match item {
            Value::Mapping(m) if !m.is_empty() => write_mapping(w, col + 2, m, true),
            Value::Sequence(inner) if !inner.is_empty() => {
                write_sequence(w, col + 2, inner, true);
            }
            other => {
                w.put(&scalar_text(other));
                w.put("\n");
            }
        }
    }
}

/// Whether `server` is an `https://` URL with a host and nothing a kubeconfig cannot hold
/// (`env create --kubernetes-endpoint`, `kubeconfig --server`).
pub fn valid_server(server: &str) -> bool {
    server
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !server.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
    const CRT: &[u8] = b"-----BEGIN CERTIFICATE-----\nQ1JU\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] = b"-----BEGIN EC PRIVATE KEY-----\nS0VZ\n-----END EC PRIVATE KEY-----\n";

    fn entry(user: &str, with_key: bool) -> NewEntry {
        NewEntry {
            cluster: "prod".into(),
            server: "https://10.0.0.1:6443".into(),
            ca_pem: CA.to_vec(),
            user: format!("{user}@prod"),
            client_certificate_pem: CRT.to_vec(),
            client_key_pem: with_key.then(|| SecretBytes::copy_from(KEY)),
            context: format!("{user}@prod"),
            namespace: "default".into(),
        }
    }

    #[test]
    fn a_delivery_gives_back_its_one_entry() {
        for with_key in [true, false] {
            let sent = entry("alice", with_key);
            let yaml = Kubeconfig::single(&sent).to_yaml();
            let got = Kubeconfig::from_yaml(yaml.expose().as_bytes())
                .unwrap()
                .delivered_entry()
                .unwrap();
            assert_eq!(got.names(), sent.names());
            assert_eq!(got.namespace, "default");
            assert_eq!(got.client_certificate_pem, CRT);
            assert_eq!(
                got.client_key_pem.as_ref().map(|k| k.expose().to_vec()),
                with_key.then(|| KEY.to_vec())
            );
        }
        let two = Kubeconfig::single(&entry("alice", true))
            .merge(&entry("bob", true), false)
            .unwrap();
        let err = two.delivered_entry().unwrap_err().to_string();
        assert!(err.contains("it has 2 users"), "{err}");
        let token = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://x:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: u\n  user:\n    token: hunter2\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n";
        let err = Kubeconfig::from_yaml(token.as_bytes())
            .unwrap()
            .delivered_entry()
            .unwrap_err()
            .to_string();
        assert!(err.contains("the user has \"token\""), "{err}");
        assert!(!err.contains("hunter2"));
        let elsewhere = token
            .replace("    token: hunter2", "    client-certificate-data: Q1JU")
            .replace("    cluster: c\n", "    cluster: d\n");
        let err = Kubeconfig::from_yaml(elsewhere.as_bytes())
            .unwrap()
            .delivered_entry()
            .unwrap_err()
            .to_string();
        assert!(err.contains("names another cluster or user"), "{err}");
        assert!(
            Kubeconfig::from_yaml(b"")
                .unwrap()
                .delivered_entry()
                .is_err()
        );
    }

    #[test]
    fn servers() {
        assert!(valid_server("https://10.0.0.1:6443"));
        assert!(valid_server("https://[fd00::1]:6443"));
        for bad in [
            "http://x:6443",
            "https://",
            "10.0.0.1:6443",
            "https://a b",
            "https:///x",
        ] {
            assert!(!valid_server(bad), "{bad}");
        }
    }

    #[test]
    fn a_new_kubeconfig_is_laid_out_as_client_go_writes_it() {
        let yaml = Kubeconfig::single(&entry("alice", true)).to_yaml();
        let expected = format!(
            "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://10.0.0.1:6443
  name: prod
contexts:
- context:
    cluster: prod
    namespace: default
    user: alice@prod
  name: alice@prod
current-context: alice@prod
kind: Config
users:
- name: alice@prod
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
",
            ca = STANDARD.encode(CA),
            crt = STANDARD.encode(CRT),
            key = STANDARD.encode(KEY)
        );
        assert_eq!(yaml.expose(), expected);
        // Read back: the same bytes, and the credentials.
        let again = Kubeconfig::from_yaml(expected.as_bytes()).unwrap();
        assert_eq!(again.to_yaml().expose(), expected);
        let c = again.context_credentials(None).unwrap();
        assert_eq!(
            (c.context.as_str(), &c.server_ca[..], &c.certificate[..]),
            ("alice@prod", CA, CRT)
        );
    }

    /// A file as kubectl 1.32 writes it (`kubectl config set-…`), with an exec user.
    const KUBECTL: &str = r#"apiVersion: v1
clusters:
- cluster:
    insecure-skip-tls-verify: true
    server: https://dev.example.com:6443
  name: dev
contexts:
- context:
    cluster: dev
    user: bob
  name: dev
current-context: dev
kind: Config
preferences: {}
users:
- name: bob
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      args:
      - get-token
      - --cluster
      - dev
      command: aws
      env: null
      interactiveMode: IfAvailable
      provideClusterInfo: false
- name: carol
  user:
    token: "12345"
"#;

    #[test]
    fn merge_keeps_every_other_entry_byte_for_byte() {
        let base = Kubeconfig::from_yaml(KUBECTL.as_bytes()).unwrap();
        // Round trip first: nothing merged, nothing changed.
        assert_eq!(base.to_yaml().expose(), KUBECTL);
        let merged = base.merge(&entry("alice", true), false).unwrap();
        let text = merged.to_yaml();
        let text = text.expose();
        // The original text with the three entries added at their places in name order and the
        // current context switched: nothing else moved or changed.
        let cluster = format!(
            "- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: prod\n",
            STANDARD.encode(CA)
        );
        let context = "- context:\n    cluster: prod\n    namespace: default\n    user: alice@prod\n  name: alice@prod\n";
        let user = format!(
            "- name: alice@prod\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(CRT),
            STANDARD.encode(KEY)
        );
        let expected = KUBECTL
            .replace(
                "  name: dev\ncontexts:\n",
                &format!("  name: dev\n{cluster}contexts:\n{context}"),
            )
            .replace("current-context: dev\n", "current-context: alice@prod\n")
            .replace("users:\n", &format!("users:\n{user}"));
        assert_eq!(text, expected);
        let again = Kubeconfig::from_yaml(text.as_bytes()).unwrap();
        assert_eq!(again.contexts(), ["alice@prod", "dev"]);
        assert_eq!(again.names("clusters"), ["dev", "prod"]);
        assert_eq!(again.names("users"), ["alice@prod", "bob", "carol"]);
    }

    #[test]
    fn clashes_are_refused_unless_replacing_and_nothing_is_renamed() {
        let one = Kubeconfig::single(&entry("alice", true));
        // Another user of the same cluster: the identical cluster entry is shared.
        let two = one.merge(&entry("bob", true), false).unwrap();
        assert_eq!(two.names("clusters"), ["prod"]);
        assert_eq!(two.contexts(), ["alice@prod", "bob@prod"]);
        // The same user again: refused, then replaced in place.
        let err = Kubeconfig::from_yaml(two.to_yaml().expose().as_bytes())
            .unwrap()
            .merge(&entry("alice", false), false)
            .unwrap_err();
        assert_eq!(
            err,
            KubeMergeError::Clash {
                kind: "user",
                name: "alice@prod".into()
            }
        );
        let replaced = two.merge(&entry("alice", false), true).unwrap();
        assert_eq!(replaced.names("users"), ["alice@prod", "bob@prod"]);
        assert!(
            replaced
                .item("users", "alice@prod")
                .unwrap()
                .get("user")
                .unwrap()
                .get("client-key-data")
                .is_none()
        );
        // A cluster of the same name elsewhere is a clash.
        let mut other = entry("carol", true);
        other.server = "https://elsewhere:6443".into();
        assert_eq!(
            replaced.clashes(&other.names()),
            [("cluster", "prod".to_owned())]
        );
    }

    #[test]
    fn merging_into_an_empty_file_makes_a_whole_kubeconfig() {
        let empty = Kubeconfig::from_yaml(b"").unwrap();
        let merged = empty.merge(&entry("alice", true), false).unwrap();
        assert_eq!(
            merged.to_yaml().expose(),
            Kubeconfig::single(&entry("alice", true)).to_yaml().expose()
        );
    }

    #[test]
    fn what_is_not_a_kubeconfig() {
        let talosconfig = "context: a\ncontexts:\n    a:\n        endpoints: []\n";
        for (input, what) in [
            (talosconfig, "unknown top-level keys: \"context\""),
            ("contexts: {}\n", "contexts is not a list"),
            ("kind: Pod\n", "kind is not Config"),
            ("apiVersion: v2\n", "apiVersion is not v1"),
            ("users:\n- user: {}\n", "an entry of users has no name"),
            ("users:\n- name: a\n- name: a\n", "users lists \"a\" twice"),
            ("- a\n", "not a mapping"),
            ("users: !x [1]\n", "it uses YAML tags"),
            ("current-context: [1]\n", "current-context is not a string"),
        ] {
            let err = Kubeconfig::from_yaml(input.as_bytes()).unwrap_err();
            assert_eq!(
                err,
                KubeconfigError::NotKubeconfig { what: what.into() },
                "{input:?}"
            );
        }
        assert!(matches!(
            Kubeconfig::from_yaml(b"a: [\n"),
            Err(KubeconfigError::Syntax { .. })
        ));
        // JSON is YAML.
        Kubeconfig::from_yaml(br#"{"apiVersion":"v1","kind":"Config","clusters":[]}"#).unwrap();
    }

    #[test]
    fn context_credentials_say_what_is_missing() {
        let k = Kubeconfig::from_yaml(KUBECTL.as_bytes()).unwrap();
        let err = k.context_credentials(None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "context \"dev\": its user has no client certificate"
        );
        assert_eq!(
            k.context_credentials(Some("nope")).unwrap_err().to_string(),
            "no context \"nope\""
        );
        let k = Kubeconfig::from_yaml(b"users: []\n").unwrap();
        assert_eq!(
            k.context_credentials(None).unwrap_err().to_string(),
            "no current context"
        );
    }

    /// The writer against arbitrary values: whatever a merged file holds (other users' exec
    /// configs, extensions, odd names) must read back as the same values. A fixed-seed
    /// generator, so a failure reproduces.
    #[test]
    fn the_writer_round_trips_arbitrary_values() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
        }
        const PIECES: [&str; 24] = [
            "a",
            "name",
            ": ",
            "- ",
            "#",
            " #x",
            "'",
            "\"",
            "\n",
            "\t",
            "é",
            "\u{1f600}",
            "",
            "null",
            "~",
            "123",
            "0x1F",
            "yes",
            "1.5",
            "-",
            "? ",
            "[]",
            "{x}",
            "&a",
        ];
        fn string(r: &mut Rng) -> String {
            let n = r.below(4) as usize;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES[r.below(PIECES.len() as u64) as usize]);
            }
            if r.below(30) == 0 {
                s.push_str(&"k".repeat(1100));
            }
            s
        }
        fn value(r: &mut Rng, depth: u32) -> Value {
            match r.below(if depth > 3 { 4 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(r.below(2) == 0),
                2 => Value::Number((r.below(1000) as i64 - 500).into()),
                3 => Value::String(string(r)),
                4 | 5 => {
                    let mut m = Mapping::new();
                    for _ in 0..r.below(4) {
                        let key = match r.below(5) {
                            0 => Value::Number((r.below(9) as i64).into()),
                            1 => Value::Bool(true),
                            _ => Value::String(string(r)),
                        };
                        m.insert(key, value(r, depth + 1));
                    }
                    Value::Mapping(m)
                }
                _ => Value::Sequence((0..r.below(4)).map(|_| value(r, depth + 1)).collect()),
            }
        }
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let Value::Mapping(doc) = value(&mut r, 0) else {
                continue;
            };
            let mut w = Writer::with_capacity(256);
            write_mapping(&mut w, 0, &doc, false);
            let text = w.finish();
            let back: Value = serde_yaml::from_str(text.expose())
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", text.expose()));
            let expected = if doc.is_empty() {
                Value::Null
            } else {
                Value::Mapping(doc)
            };
            assert_eq!(back, expected, "round {round}:\n{}", text.expose());
        }
    }
}
