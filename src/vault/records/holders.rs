//! The holder records on the read side: registered by the chain, agreeing with it, and which
//! certificates count as cut off for renewal and holder reports.

use super::*;

/// Where holder `name`'s record lives: `envs/<env>/holders/<name>.yaml`.
pub(in crate::vault) fn holder_path(env: &Env, name: &HolderName) -> std::path::PathBuf {
    env.dir().join(HOLDERS_DIR).join(name.file_name())
}

impl Vault {
    /// The registered holder a request names, if any (a `--holder` that is no holder name, or
    /// that no audit event registered, is just a CN).
    pub(in crate::vault) fn registered_holder(
        &self,
        env: &Env,
        holder: Option<&crate::pki::policy::Holder>,
    ) -> Result<Option<(HolderName, HolderRecord)>, VaultError> {
        let Some(name) = holder.and_then(|h| HolderName::parse(h.as_str()).ok()) else {
            return Ok(None);
        };
        if !self.chain(env)?.holders.contains(name.as_str()) {
            return Ok(None);
        }
        let record = self.holder(env, &name)?;
        Ok(Some((name, record)))
    }

    /// The serials that no longer give access, as renewal and holder reports count them:
    /// revoked, or signed by a retired issuer (nodes refuse those once the patch is rolled out).
    pub(in crate::vault) fn cut_off(
        &self,
        env: &Env,
        certs: &[CertEntry],
        revoked: &[inventory::RevokedEntry],
    ) -> Result<std::collections::HashSet<String>, VaultError> {
        let retired: std::collections::HashSet<String> = self
            .load_issuers(env)?
            .into_iter()
            .filter(|i| i.meta.state == crate::model::IssuerState::Retired)
            .map(|i| i.meta.id)
            .collect();
        Ok(revoked
            .iter()
            .map(|r| r.serial.clone())
            .chain(
                certs
                    .iter()
                    .filter(|c| retired.contains(&c.ca))
                    .map(|c| c.serial.clone()),
            )
            .collect())
    }

    /// The record of holder `name`: registered by the chain, agreeing with it.
    pub(in crate::vault) fn holder(
        &self,
        env: &Env,
        name: &HolderName,
    ) -> Result<HolderRecord, VaultError> {
        let unknown = || VaultError::UnknownHolder {
            env: env.as_str().into(),
            holder: name.to_string(),
        };
        if !self.chain(env)?.holders.contains(name.as_str()) {
            return Err(unknown());
        }
        let rel = holder_path(env, name);
        let bytes = match self.read(&rel, META_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => {
                return Err(VaultError::Disagrees {
                    file: rel.display().to_string(),
                    message: "it is missing, but the audit trail registered the holder".into(),
                });
            }
            other => other?,
        };
        self.agrees(
            env,
            &format!("{HOLDERS_DIR}/{}", name.file_name()),
            &crate::digest::sha256_hex(&bytes),
        )?;
        Ok(HolderRecord::from_yaml(
            &rel.display().to_string(),
            &bytes,
            name,
        )?)
    }

    /// Every holder the environment can rely on, by name; what is left out says why.
    pub(in crate::vault) fn holders(&self, env: &Env) -> Result<Holders, VaultError> {
        let chain = self.chain(env)?;
        let dir = env.dir().join(HOLDERS_DIR);
        let entries = match store::fs::list_dir(&self.root, &dir) {
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        let mut out = Holders {
            records: Vec::new(),
            problems: Vec::new(),
        };
        let shown = |name: &str| format!("{}/{name}", dir.display());
        let mut seen = std::collections::BTreeSet::new();
        for e in entries {
            if e.name.starts_with('.') {
                continue;
            }
            let parsed = e
                .name
                .strip_suffix(".yaml")
                .and_then(|stem| HolderName::parse(stem).ok())
                .filter(|n| n.file_name() == e.name);
            let Some(name) = parsed else {
                out.problems.push(format!(
                    "{} is not a holder record; not counted",
                    shown(&e.name)
                ));
                continue;
            };
            seen.insert(name.to_string());
            if !chain.holders.contains(name.as_str()) {
                out.problems.push(format!(
                    "{}: no audit event registered this holder; not counted",
                    shown(&e.name)
                ));
                continue;
            }
            match self.holder(env, &name) {
                Ok(record) => out.records.push((name, record)),
                Err(
                    e @ (VaultError::Disagrees { .. } | VaultError::Meta(_) | VaultError::Store(_)),
                ) => out.problems.push(format!("{e}; not counted")),
                Err(e) => return Err(e),
            }
        }
        for name in chain.holders.iter().filter(|n| !seen.contains(*n)) {
            out.problems.push(format!(
                "{}: missing, but the audit trail registered holder {name:?}; not counted",
                shown(&format!("{name}.yaml"))
            ));
        }
        Ok(out)
    }
}

/// The holder's live talosconfig certificates (not in `revoked`: revoked or cut off), soonest
/// expiry first.
pub(in crate::vault) fn live_of_holder(
    certs: &[CertEntry],
    revoked: &std::collections::HashSet<&str>,
    holder: &str,
    now: i64,
) -> Vec<LiveCert> {
    let mut out: Vec<&CertEntry> = certs
        .iter()
        .filter(|c| {
            c.holder.as_deref() == Some(holder)
                && c.api == Api::Talos
                && c.live_at(now)
                && !revoked.contains(c.serial.as_str())
        })
        .collect();
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
    out.into_iter().map(LiveCert::of).collect()
}
