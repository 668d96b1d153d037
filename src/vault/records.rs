//! The read side the capability rooms share: issuers (checked against their certificates),
//! certificate and revocation records (through the record cache), the policy, and the views
//! reports are made of, and the holder records (registered by the chain, agreeing with it). It
//! reads and judges consistency; it never writes or signs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use super::{Env, META_MAX, Vault, VaultError, rfc3339};
use crate::digest::Fingerprint;
use crate::holder::{HOLDERS_DIR, HolderName, HolderRecord};
use crate::inventory::{self, CertEntry, RevokedEntry};
use crate::model::{
    Api, CertRecord, IssuerKey, IssuerMeta, IssuerState, MetaError, RevocationRecord,
};
use crate::pki::issuer::{IssuerFacts, read_issuer_certificate};
use crate::pki::policy::Policy;
use crate::pki::serial::Serial;
use crate::pki::verify::certificate_der;
use crate::store::{self, StoreError};

/// The sealed key file of an age-sealed issuer.
pub(super) const ISSUER_KEY_FILE: &str = "key.age";

/// An issuer as loaded: its metadata, checked against its certificate.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// issuer.yaml.
    pub meta: IssuerMeta,
    /// The certificate's checked facts.
    pub facts: IssuerFacts,
}

/// An issuer as `issuer list` and `status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct IssuerView {
    /// Issuer id.
    pub id: String,
    /// Epoch number.
    pub epoch: u32,
    /// `pending`, `active` or `retired`.
    pub state: IssuerState,
    /// Whether it signs new certificates now (the most recently activated active issuer).
    pub signing: bool,
    /// `ed25519` or `ecdsa-p256`.
    pub algorithm: String,
    /// `age` or `pkcs11`.
    pub key_store: &'static str,
    /// Certificate subject.
    pub subject: String,
    /// SHA-256 of the certificate.
    pub fingerprint: String,
    /// notBefore.
    pub not_before: String,
    /// notAfter.
    pub not_after: String,
    /// Activation time.
    pub activated: Option<String>,
    /// Retirement time.
    pub retired: Option<String>,
    /// Certificates it signed.
    pub issued: usize,
    /// Of those, still valid and not revoked.
    pub live: usize,
    /// `talos` (machine.acceptedCAs) or `kubernetes` (the kube-apiserver's accepted CAs).
    pub api: Api,
}

/// A live certificate, as reports list it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCert {
    /// Serial, hex.
    pub serial: String,
    /// Holder.
    pub holder: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// `os` or the issuer id.
    pub issuer: String,
    /// notAfter.
    pub not_after: String,
    /// Break-glass certificate.
    pub break_glass: bool,
    /// `talos` or `kubernetes`; for `kubernetes`, `holder` is the user and `roles` the groups.
    pub api: Api,
}

impl From<CertEntry> for LiveCert {
    fn from(e: CertEntry) -> Self {
        Self {
            not_after: inventory::rfc3339(e.not_after),
            serial: e.serial,
            holder: e.holder,
            roles: e.roles,
            issuer: e.ca,
            break_glass: e.break_glass,
            api: e.api,
        }
    }
}

impl LiveCert {
    pub(super) fn of(e: &CertEntry) -> Self {
        Self {
            serial: e.serial.clone(),
            holder: e.holder.clone(),
            roles: e.roles.clone(),
            issuer: e.ca.clone(),
            not_after: inventory::rfc3339(e.not_after),
            break_glass: e.break_glass,
            api: e.api,
        }
    }
}

/// The live, unrevoked certificates `ca` signed, except `except`, soonest expiry first.
pub(super) fn live_of(
    certs: &[CertEntry],
    revoked: &HashSet<&str>,
    ca: &str,
    except: Option<&str>,
    now: i64,
) -> Vec<LiveCert> {
    let mut out: Vec<&CertEntry> = certs
        .iter()
        .filter(|c| {
            c.ca == ca
                && Some(c.serial.as_str()) != except
                && c.live_at(now)
                && !revoked.contains(c.serial.as_str())
        })
        .collect();
    out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
    out.into_iter().map(LiveCert::of).collect()
}

/// The serials of revocation summaries, for membership tests.
pub(super) fn serials(revoked: &[RevokedEntry]) -> HashSet<&str> {
    revoked.iter().map(|r| r.serial.as_str()).collect()
}

/// The records an environment can rely on: those that agree with the audit chain (format 2;
/// before that, all of them), every revocation the chain records even when its file is gone,
/// and what was left out, and why.
pub(super) struct Trusted {
    /// Certificate records that agree with the chain.
    pub certs: Vec<CertEntry>,
    /// Revocation records that agree with the chain, and revocations only the chain still
    /// knows (their files missing).
    pub revoked: Vec<RevokedEntry>,
    /// What disagrees with the chain or is missing (one line each).
    pub problems: Vec<String>,
}

impl Trusted {
    /// The revoked serials.
    pub fn revoked_serials(&self) -> HashSet<&str> {
        serials(&self.revoked)
    }
}

/// The issuer that signs new certificates for `api`: its most recently activated active one.
pub(super) fn signing_issuer(issuers: &[Issuer], api: Api) -> Option<&Issuer> {
    issuers
        .iter()
        .filter(|i| i.meta.state == IssuerState::Active && i.meta.api == api)
        .max_by(|a, b| {
            a.meta
                .activated
                .cmp(&b.meta.activated)
                .then(a.meta.epoch.cmp(&b.meta.epoch))
        })
}

/// The issuer `id` of `env`.
pub(super) fn find_issuer<'a>(
    env: &Env,
    issuers: &'a [Issuer],
    id: &str,
) -> Result<&'a Issuer, VaultError> {
    issuers
        .iter()
        .find(|i| i.meta.id == id)
        .ok_or_else(|| VaultError::NoSuchIssuer {
            env: env.as_str().into(),
            id: id.into(),
        })
}

/// Views of `issuers` with their issued and live counts.
pub(super) fn issuer_views(
    issuers: &[Issuer],
    certs: &[CertEntry],
    revoked: &HashSet<&str>,
    now: i64,
) -> Vec<IssuerView> {
    let signing: Vec<String> = [Api::Talos, Api::Kubernetes]
        .into_iter()
        .filter_map(|api| signing_issuer(issuers, api).map(|i| i.meta.id.clone()))
        .collect();
    issuers
        .iter()
        .map(|i| {
            let (mut issued, mut live) = (0, 0);
            for c in certs.iter().filter(|c| c.ca == i.meta.id) {
                issued += 1;
                if c.live_at(now) && !revoked.contains(c.serial.as_str()) {
                    live += 1;
                }
            }
            IssuerView {
                id: i.meta.id.clone(),
                epoch: i.meta.epoch,
                state: i.meta.state,
                signing: signing.contains(&i.meta.id),
                algorithm: i.meta.algorithm.clone(),
                key_store: match i.meta.key {
                    IssuerKey::Age { .. } => "age",
                    IssuerKey::Pkcs11 { .. } => "pkcs11",
                },
                subject: i.meta.subject.clone(),
                fingerprint: i.meta.fingerprint.clone(),
                not_before: i.meta.not_before.clone(),
                not_after: i.meta.not_after.clone(),
                activated: i.meta.activated.clone(),
                retired: i.meta.retired.clone(),
                issued,
                live,
                api: i.meta.api,
            }
        })
        .collect()
}

/// A record's file name must be its serial: `certs/<serial>.yaml`.
fn check_record_name(file: &str, serial: &str) -> Result<(), VaultError> {
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != serial {
        return Err(MetaError::Malformed {
            file: file.into(),
            message: format!("serial {serial} does not match the file name"),
        }
        .into());
    }
    Ok(())
}

impl Vault {
    pub(super) fn issuers_dir(env: &Env) -> PathBuf {
        env.dir().join("issuers")
    }

    /// Every issuer of the environment, by epoch; each issuer.yaml is checked against its
    /// certificate (a self-signed talvault issuer whose fingerprint, SKI and validity match).
    pub(super) fn load_issuers(&self, env: &Env) -> Result<Vec<Issuer>, VaultError> {
        let chain = self.chain(env)?;
        let dir = Self::issuers_dir(env);
        let entries = match store::fs::list_dir(&self.root, &dir) {
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            other => other?,
        };
        let mut out = Vec::new();
        for e in entries {
            if e.name.starts_with('.') {
                continue;
            }
            let rel = dir.join(&e.name).join("issuer.yaml");
            let shown = rel.display().to_string();
            let bad = |problem: String| VaultError::BadIssuer {
                file: shown.clone(),
                problem,
            };
            if e.kind != store::fs::EntryKind::Dir {
                return Err(bad("not a directory (links are never followed)".into()));
            }
            store::name::check_id("issuer id", &e.name).map_err(|x| bad(x.to_string()))?;
            // The state is the chain's: an issuer no event created is not this environment's
            // (a planted directory must not reach acceptedCAs or sign anything).
            let Some(step) = chain.issuers.get(&e.name) else {
                continue;
            };
            let bytes = self.read(&rel, META_MAX)?;
            self.agrees(
                env,
                &format!("issuers/{}/issuer.yaml", e.name),
                &crate::digest::sha256_hex(&bytes),
            )?;
            let mut meta = IssuerMeta::from_yaml(&shown, &bytes)?;
            meta.state = match step.state {
                "active" => IssuerState::Active,
                "retired" => IssuerState::Retired,
                _ => IssuerState::Pending,
            };
            meta.activated = step.activated.map(crate::inventory::rfc3339);
            meta.retired = step.retired.map(crate::inventory::rfc3339);
            if meta.id != e.name {
                return Err(bad(format!(
                    "id {:?} does not match its directory",
                    meta.id
                )));
            }
            let facts = read_issuer_certificate(meta.certificate.as_bytes())
                .map_err(|x| bad(format!("certificate: {x}")))?;
            if facts.fingerprint.0 != meta.fingerprint
                || crate::hex::encode(&facts.subject_key_id) != meta.subject_key_id
                || rfc3339(facts.not_after) != meta.not_after
            {
                return Err(bad(
                    "fingerprint, subject_key_id or not_after does not match the certificate"
                        .into(),
                ));
            }
            if let IssuerKey::Age { file } = &meta.key
                && file != ISSUER_KEY_FILE
            {
                return Err(bad(format!("key.file must be {ISSUER_KEY_FILE}")));
            }
            out.push(Issuer { meta, facts });
        }
        out.sort_by_key(|i| i.meta.epoch);
        Ok(out)
    }

    /// The view of issuer `id`, counted against the current records.
    pub(super) fn issuer_view(
        &self,
        env: &Env,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<IssuerView, VaultError> {
        let issuers = self.load_issuers(env)?;
        let trusted = self.trusted(env)?;
        issuer_views(
            &issuers,
            &trusted.certs,
            &trusted.revoked_serials(),
            now.unix_timestamp(),
        )
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| VaultError::NoSuchIssuer {
            env: env.as_str().into(),
            id: id.into(),
        })
    }

    /// The certificate and revocation records checked against the chain ([`Trusted`]).
    pub(super) fn trusted(&self, env: &Env) -> Result<Trusted, VaultError> {
        let chain = self.chain(env)?;
        let mut problems = Vec::new();
        let agrees = |kind: &str, serial: &str, hash: &str| -> bool {
            if !chain.sealed {
                return true;
            }
            chain.accepts(&format!("{kind}/{serial}.yaml"), hash)
        };
        let mut certs = self.cert_entries(env)?;
        certs.retain(|c| {
            let ok = agrees("certs", &c.serial, &c.file_sha256);
            if !ok {
                problems.push(format!(
                    "envs/{}/certs/{}.yaml is not what the audit trail recorded; not counted",
                    env.as_str(),
                    c.serial
                ));
            }
            ok
        });
        let mut revoked = self.revoked_entries(env)?;
        revoked.retain(|r| {
            let ok = agrees("revocations", &r.serial, &r.file_sha256);
            if !ok {
                problems.push(format!(
                    "envs/{}/revocations/{}.yaml is not what the audit trail recorded; not counted",
                    env.as_str(),
                    r.serial
                ));
            }
            ok
        });
        // Revocations the chain records whose file is gone (or was not trusted): they count.
        let have: HashSet<String> = revoked.iter().map(|r| r.serial.clone()).collect();
        let by_serial: std::collections::HashMap<&str, &CertEntry> =
            certs.iter().map(|c| (c.serial.as_str(), c)).collect();
        for (serial, r) in &chain.revoked {
            if have.contains(serial) {
                continue;
            }
            problems.push(format!(
                "envs/{}/revocations/{serial}.yaml is missing; the audit trail records the revocation, which still counts",
                env.as_str()
            ));
            revoked.push(RevokedEntry {
                serial: serial.clone(),
                fingerprint: String::new(),
                ca: r
                    .issuer
                    .clone()
                    .unwrap_or_else(|| crate::model::OS_CA.into()),
                reason: r.reason.clone().unwrap_or_else(|| "unspecified".into()),
                revoked: r.time,
                // Unknown without the record: the certificate's, when its record is trusted.
                not_after: by_serial
                    .get(serial.as_str())
                    .map_or(i64::MAX, |c| c.not_after),
                file_sha256: String::new(),
            });
        }
        Ok(Trusted {
            certs,
            revoked,
            problems,
        })
    }

    /// Summaries of every certificate record of the environment (cached, see `store::index`).
    pub(super) fn cert_entries(&self, env: &Env) -> Result<Vec<CertEntry>, VaultError> {
        let scanned = store::index::scan(
            &self.root,
            &env.dir().join("certs"),
            &format!("{}/certs", env.as_str()),
            store::index::YAML_RECORDS,
            |file, bytes| -> Result<CertEntry, VaultError> {
                let record = CertRecord::from_yaml(file, bytes)?;
                let mut entry =
                    CertEntry::from_record(&record).map_err(|e| MetaError::Malformed {
                        file: file.into(),
                        message: e.to_string(),
                    })?;
                check_record_name(file, &entry.serial)?;
                entry.file_sha256 = crate::digest::sha256_hex(bytes);
                Ok(entry)
            },
        )?;
        Ok(self.keep_cache(scanned))
    }

    /// Summaries of every revocation record of the environment (cached).
    pub(super) fn revoked_entries(&self, env: &Env) -> Result<Vec<RevokedEntry>, VaultError> {
        let scanned = store::index::scan(
            &self.root,
            &env.dir().join("revocations"),
            &format!("{}/revocations", env.as_str()),
            store::index::YAML_RECORDS,
            |file, bytes| -> Result<RevokedEntry, VaultError> {
                let record = RevocationRecord::from_yaml(file, bytes)?;
                let mut entry =
                    RevokedEntry::from_record(&record).map_err(|e| MetaError::Malformed {
                        file: file.into(),
                        message: e.to_string(),
                    })?;
                check_record_name(file, &entry.serial)?;
                entry.file_sha256 = crate::digest::sha256_hex(bytes);
                Ok(entry)
            },
        )?;
        Ok(self.keep_cache(scanned))
    }

    /// The certificate record of `serial`; `UnknownSerial` when there is none.
    pub(super) fn cert_record(&self, env: &Env, serial: &Serial) -> Result<CertRecord, VaultError> {
        let rel = env.dir().join("certs").join(format!("{serial}.yaml"));
        match self.read(&rel, META_MAX) {
            Ok(bytes) => {
                let record = CertRecord::from_yaml(&rel.display().to_string(), &bytes)?;
                check_record_name(&rel.display().to_string(), &record.serial)?;
                self.agrees(
                    env,
                    &format!("certs/{serial}.yaml"),
                    &crate::digest::sha256_hex(&bytes),
                )?;
                Ok(record)
            }
            Err(VaultError::Store(StoreError::NotFound { .. })) => Err(VaultError::UnknownSerial {
                env: env.as_str().into(),
                serial: serial.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The revocation record of `serial`, if it was revoked.
    pub(super) fn revocation_record(
        &self,
        env: &Env,
        serial: &Serial,
    ) -> Result<Option<RevocationRecord>, VaultError> {
        let rel = Self::revocation_path(env, serial);
        match self.read(&rel, META_MAX) {
            Ok(bytes) => {
                self.agrees(
                    env,
                    &format!("revocations/{serial}.yaml"),
                    &crate::digest::sha256_hex(&bytes),
                )?;
                Ok(Some(RevocationRecord::from_yaml(
                    &rel.display().to_string(),
                    &bytes,
                )?))
            }
            Err(VaultError::Store(StoreError::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `revocations/<serial>.yaml`, relative to the vault root.
    pub(super) fn revocation_path(env: &Env, serial: &Serial) -> PathBuf {
        env.dir().join("revocations").join(format!("{serial}.yaml"))
    }

    /// Refuses a talosconfig whose server CA is not this environment's Talos OS CA.
    pub(super) fn check_server_ca(env: &Env, server_ca: &[u8]) -> Result<(), VaultError> {
        let der = certificate_der(server_ca)
            .map_err(|reason| VaultError::Unreadable { part: "ca", reason })?;
        if Fingerprint::of(&der) != env.meta.pins.os {
            return Err(VaultError::ForeignTalosconfig {
                what: format!(
                    "the talosconfig's CA is not the Talos OS CA of environment {:?} (cluster {:?})",
                    env.meta.name, env.meta.cluster_name
                ),
            });
        }
        Ok(())
    }

    /// Refuses a kubeconfig whose `certificate-authority-data` is not this environment's
    /// Kubernetes CA.
    pub(super) fn check_kubernetes_ca(env: &Env, server_ca: &[u8]) -> Result<(), VaultError> {
        let der = certificate_der(server_ca).map_err(|reason| VaultError::Unreadable {
            part: "certificate-authority-data",
            reason,
        })?;
        if Fingerprint::of(&der) != env.meta.pins.k8s {
            return Err(VaultError::ForeignKubeconfig {
                what: format!(
                    "the kubeconfig's certificate-authority-data is not the Kubernetes CA of environment {:?} (cluster {:?})",
                    env.meta.name, env.meta.cluster_name
                ),
            });
        }
        Ok(())
    }

    /// The environment's policy (`policy.yaml`).
    pub(super) fn read_policy(&self, env: &Env) -> Result<Policy, VaultError> {
        let rel = env.dir().join("policy.yaml");
        let bytes = self.read(&rel, META_MAX)?;
        // A reviewed change takes effect once accepted into the trail (`policy accept`).
        if let Err(VaultError::Disagrees { .. }) =
            self.agrees(env, "policy.yaml", &crate::digest::sha256_hex(&bytes))
        {
            return Err(VaultError::PolicyNotAccepted {
                env: env.as_str().into(),
            });
        }
        Policy::from_yaml(&bytes).map_err(|source| VaultError::PolicyFile {
            file: rel.display().to_string(),
            source,
        })
    }
}

/// The holders an environment can rely on, and the records left out (with why).
pub(super) struct Holders {
    /// Registered by the chain, their records agreeing with it.
    pub records: Vec<(HolderName, HolderRecord)>,
    /// What was left out, one line each.
    pub problems: Vec<String>,
}

mod holders;
pub(super) use holders::{holder_path, live_of_holder};
