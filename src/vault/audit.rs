//! The audit trail as commands read it: `audit log` (every event, parents before children) and
//! `audit verify` (the pure `audit::verify` over each environment's event files).

use std::collections::HashSet;

use super::{Vault, VaultError};
use crate::audit::{self, Event, Report};
use crate::store::audit_dir;

/// Orders events so that every parent comes before its children (events within one second
/// share a timestamp), ties broken by time, then id.
fn causal_order(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| {
        a.time()
            .cmp(&b.time())
            .then_with(|| a.id().as_str().cmp(b.id().as_str()))
    });
    let mut done: HashSet<String> = HashSet::new();
    let ids: HashSet<String> = events.iter().map(|e| e.id().as_str().to_owned()).collect();
    let mut out = Vec::with_capacity(events.len());
    while !events.is_empty() {
        let ready = events.iter().position(|e| {
            e.parents()
                .iter()
                .all(|p| done.contains(p.as_str()) || !ids.contains(p.as_str()))
        });
        // A cycle cannot occur with hash links; if the input is odd anyway, keep time order.
        let i = ready.unwrap_or(0);
        let e = events.remove(i);
        done.insert(e.id().as_str().to_owned());
        out.push(e);
    }
    out
}

impl Vault {
    /// `audit log`: every event of the environment(s), oldest first.
    pub fn audit_log(&self, env: Option<&str>) -> Result<Vec<Event>, VaultError> {
        let mut out = Vec::new();
        for env in self.envs(env)? {
            for (_, bytes) in audit_dir::load_all_below(&self.root, &env.dir())? {
                if let Ok(e) = Event::from_json(&bytes) {
                    out.push(e);
                }
            }
        }
        Ok(causal_order(out))
    }

    /// `audit verify`: the report per environment.
    pub fn audit_verify(&self, env: Option<&str>) -> Result<Vec<(String, Report)>, VaultError> {
        let mut out = Vec::new();
        for env in self.envs(env)? {
            let files = audit_dir::load_all_below(&self.root, &env.dir())?;
            out.push((env.as_str().to_owned(), audit::verify(&files)));
        }
        Ok(out)
    }
}
