//! The one entry of a kubeconfig delivered sealed (`talvault open`): what it must hold, and
//! nothing a merge would carry into the holder's kubeconfig besides it.

use serde_yaml::{Mapping, Value};
use zeroize::Zeroizing;

use super::{Kubeconfig, KubeconfigError, NewEntry, decode, not_one, valid_server, wipe};
use crate::secret::SecretBytes;

impl Kubeconfig {
    /// The one entry of a sealed delivery (`talvault open`): exactly one cluster, one user and
    /// one context, the context naming both, the cluster an `https://` server with an embedded
    /// CA, the user an embedded client certificate and (unless its holder kept the key) an
    /// embedded key and nothing else: no token, exec plugin or file path, which a delivery
    /// never holds and a merge would carry into the holder's kubeconfig.
    pub fn delivered_entry(&self) -> Result<NewEntry, KubeconfigError> {
        let one = |key: &str| -> Result<&Mapping, KubeconfigError> {
            match self.doc.get(key) {
                Some(Value::Sequence(items)) if items.len() == 1 => items[0]
                    .as_mapping()
                    .ok_or_else(|| not_one(format!("its {key} entry is not a mapping"))),
                Some(Value::Sequence(items)) => Err(not_one(format!(
                    "it has {} {key}; a delivery has exactly one",
                    items.len()
                ))),
                _ => Err(not_one(format!("it has no {key}"))),
            }
        };
        let text = |m: &Mapping, key: &str, what: &str| -> Result<String, KubeconfigError> {
            m.get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
                .map(str::to_owned)
                .ok_or_else(|| not_one(format!("{what} has no plain {key}")))
        };
        let body = |m: &Mapping, key: &str| -> Result<Mapping, KubeconfigError> {
            m.get(key)
                .and_then(Value::as_mapping)
                .cloned()
                .ok_or_else(|| not_one(format!("its {key} entry has no {key} mapping")))
        };
        let only = |m: &Mapping, allowed: &[&str], what: &str| -> Result<(), KubeconfigError> {
            match m
                .keys()
                .find(|k| !k.as_str().is_some_and(|k| allowed.contains(&k)))
            {
                Some(k) => Err(not_one(format!(
                    "{what} has {}, which a delivery never holds",
                    k.as_str()
                        .map_or_else(|| "a non-string key".to_owned(), |k| format!("{k:?}"))
                ))),
                None => Ok(()),
            }
        };
        let (cluster_item, user_item, context_item) =
            (one("clusters")?, one("users")?, one("contexts")?);
        let cluster = text(cluster_item, "name", "the cluster")?;
        let user = text(user_item, "name", "the user")?;
        let context = text(context_item, "name", "the context")?;
        let mut ctx = body(context_item, "context")?;
        only(&ctx, &["cluster", "user", "namespace"], "the context")?;
        if text(&ctx, "cluster", "the context")? != cluster
            || text(&ctx, "user", "the context")? != user
        {
            return Err(not_one("its context names another cluster or user"));
        }
        let namespace = match ctx.remove("namespace") {
            None => "default".to_owned(),
            Some(Value::String(ns)) if !ns.is_empty() && !ns.chars().any(char::is_control) => ns,
            Some(_) => return Err(not_one("the context's namespace is not plain text")),
        };
        let mut cl = body(cluster_item, "cluster")?;
        only(
            &cl,
            &["server", "certificate-authority-data"],
            "the cluster",
        )?;
        let server = text(&cl, "server", "the cluster")?;
        if !valid_server(&server) {
            return Err(not_one("the cluster's server is not an https:// URL"));
        }
        let b64 = |m: &mut Mapping, key: &str| -> Result<Option<Vec<u8>>, KubeconfigError> {
            match m.remove(key) {
                None => Ok(None),
                Some(Value::String(mut v)) => {
                    let decoded = decode(&context, key, &v);
                    drop(Zeroizing::new(std::mem::take(&mut v)));
                    decoded.map(Some)
                }
                Some(mut other) => {
                    wipe(&mut other);
                    Err(not_one(format!("{key} is not a string")))
                }
            }
        };
        let ca_pem = b64(&mut cl, "certificate-authority-data")?
            .ok_or_else(|| not_one("the cluster has no certificate-authority-data"))?;
        let mut us = body(user_item, "user")?;
        let checked = only(
            &us,
            &["client-certificate-data", "client-key-data"],
            "the user",
        );
        let certificate = checked.and_then(|()| b64(&mut us, "client-certificate-data"));
        // The key is wiped on every path out of here, the error ones included.
        let key = certificate
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| b64(&mut us, "client-key-data"))
            .map(|k| k.map(Zeroizing::new));
        wipe(&mut Value::Mapping(us));
        let client_certificate_pem =
            certificate?.ok_or_else(|| not_one("the user has no client-certificate-data"))?;
        let client_key_pem = key?.map(|mut k| SecretBytes::new(std::mem::take(&mut *k)));
        Ok(NewEntry {
            cluster,
            server,
            ca_pem,
            user,
            client_certificate_pem,
            client_key_pem,
            context,
            namespace,
        })
    }
}
