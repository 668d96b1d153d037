//! The application service: each vault command is one method here, readable top to bottom as
//! load → check → act → store → audit. It is the only place that joins the pure modules
//! (`bundle`, `model`, `audit`) with storage (`store`), and the only writer of audit events.
//! It must not print, prompt or parse arguments (that is `cli`), and it never returns secrets
//! except through the explicit `export`/`exec` paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use thiserror::Error;
use time::OffsetDateTime;

use crate::audit::{self, EventBody};
use crate::bundle::validate::{Severity, deep_findings, talos_errors};
use crate::bundle::{SecretsBundle, VersionContract, generate, import};
use crate::model::{
    EnvMeta, FORMAT_VERSION, MetaError, Pins, Sealing, VaultConfig, contract_label,
};
use crate::secret::{SecretBytes, SecretText};
use crate::store::age::{self as agestore, AgeError, Identity, OpenedBy, Recipient};
use crate::store::txn::{self, Transaction};
use crate::store::{self, EnvName, LockError, Mode, NameError, StoreError, VaultLock, audit_dir};

/// The vault's marker file.
pub const VAULT_FILE: &str = "talvault.yaml";
/// Largest metadata file read.
const META_MAX: u64 = 1 << 20;
/// Largest sealed bundle read.
const SEALED_MAX: u64 = 16 << 20;

/// A vault operation failed. Messages never contain secret material.
#[derive(Debug, Error)]
pub enum VaultError {
    /// No vault was found.
    #[error("no talvault vault found (looked for {VAULT_FILE} in {} and its parents)", start.display())]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// `init` on a directory that already is a vault.
    #[error("{} is already a talvault vault", path.display())]
    AlreadyVault {
        /// The vault directory.
        path: PathBuf,
    },
    /// The named environment does not exist.
    #[error("environment {env:?} does not exist")]
    NoSuchEnv {
        /// Its name.
        env: String,
    },
    /// The environment already exists.
    #[error("environment {env:?} already exists")]
    EnvExists {
        /// Its name.
        env: String,
    },
    /// An invalid environment name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Age(#[from] AgeError),
    /// A metadata file is malformed or too new.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The decrypted bundle does not match the pinned CA certificates.
    #[error("{file}: the CA certificates do not match the pins in env.yaml ({})", cas.join(", "))]
    PinMismatch {
        /// The sealed file.
        file: String,
        /// Which CAs differ.
        cas: Vec<&'static str>,
    },
    /// The bundle inside a sealed file or given for import is not usable.
    #[error("{what}: {message}")]
    BadBundle {
        /// Which bundle.
        what: String,
        /// What is wrong (no secret values).
        message: String,
    },
    /// The operation needs recipients but the environment is passphrase-sealed, or vice versa.
    #[error("environment {env:?} is sealed with {sealing}; {operation} is not possible")]
    WrongSealing {
        /// The environment.
        env: String,
        /// How it is sealed.
        sealing: &'static str,
        /// What was attempted.
        operation: &'static str,
    },
    /// Removing recipients would leave none.
    #[error("removing {removed} recipient(s) would leave environment {env:?} with none")]
    NoRecipientsLeft {
        /// The environment.
        env: String,
        /// How many were to be removed.
        removed: usize,
    },
    /// A recipient to remove is not in the environment.
    #[error("{recipient} is not a recipient of environment {env:?}")]
    NotARecipient {
        /// The environment.
        env: String,
        /// The recipient.
        recipient: String,
    },
    /// Building the bundle failed.
    #[error("{0}")]
    Generate(String),
    /// Writing the audit event failed.
    #[error("audit event: {0}")]
    Audit(#[from] audit::AuditError),
}

impl VaultError {
    /// A suggestion for the user, when there is one.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            VaultError::NotFound { .. } => {
                "pass --vault DIR, set TALVAULT_VAULT, or create one with `talvault init DIR`".into()
            }
            VaultError::NoSuchEnv { .. } => "list environments with `talvault env list`".into(),
            VaultError::EnvExists { .. } => {
                "environments are never overwritten; pick another name".into()
            }
            VaultError::PinMismatch { .. } => "the sealed bundle was replaced or corrupted; restore envs/ENV/bundle.age from git history and investigate who changed it".into(),
            VaultError::Store(e) => return e.hint().map(str::to_owned),
            VaultError::Lock(e) => return e.hint().map(str::to_owned),
            VaultError::Age(e) => return e.hint(),
            VaultError::Meta(MetaError::NewerFormat { .. }) => "upgrade talvault".into(),
            VaultError::NoRecipientsLeft { .. } => "add the new recipient first".into(),
            VaultError::NotARecipient { .. } => {
                "list them with `talvault recipients list ENV`".into()
            }
            _ => return None,
        })
    }
}

/// Who acts and when; identities or a passphrase to open sealed files.
pub struct Context {
    /// For audit events.
    pub actor: String,
    /// The current time.
    pub now: OffsetDateTime,
    /// Identities that may open sealed files.
    pub identities: Vec<Identity>,
    /// The passphrase for passphrase-sealed environments.
    pub passphrase: Option<SecretText>,
}

/// Where a new environment's bundle comes from.
pub enum BundleSource {
    /// Generated for the contract.
    Generate,
    /// An existing secrets.yaml (its bytes).
    Secrets(SecretBytes),
    /// A Kubernetes PKI directory's files and an optional bootstrap token.
    KubernetesPki(import::KubernetesPki, Option<SecretText>),
    /// A control-plane machine config (its bytes).
    ControlplaneConfig(SecretBytes),
}

impl BundleSource {
    fn label(&self) -> &'static str {
        match self {
            BundleSource::Generate => "generated",
            BundleSource::Secrets(_) => "secrets",
            BundleSource::KubernetesPki(..) => "kubernetes-pki",
            BundleSource::ControlplaneConfig(_) => "controlplane-config",
        }
    }
}

/// What to seal an environment to.
pub enum SealTo {
    /// age recipients.
    Recipients(Vec<Recipient>),
    /// A passphrase (scrypt).
    Passphrase(SecretText),
}

/// `env create` / `env import` parameters.
pub struct NewEnv {
    /// The environment name.
    pub name: String,
    /// Where the bundle comes from.
    pub source: BundleSource,
    /// Who can open it.
    pub seal_to: SealTo,
    /// Version contract.
    pub contract: VersionContract,
    /// Cluster name (defaults to the environment name).
    pub cluster_name: Option<String>,
    /// Talos API endpoints.
    pub endpoints: Vec<String>,
    /// Nodes.
    pub nodes: Vec<String>,
}

/// Public view of an environment.
#[derive(Debug, Serialize)]
pub struct EnvView {
    /// env.yaml
    pub meta: EnvMeta,
    /// Recipients (public keys), empty for a passphrase environment.
    pub recipients: Vec<String>,
    /// Number of audit events.
    pub audit_events: usize,
}

/// An opened vault, holding its lock for as long as it lives.
pub struct Vault {
    root: PathBuf,
    _lock: VaultLock,
}

/// Finds the vault: `--vault`, then `TALVAULT_VAULT`, then the nearest parent of `cwd` holding
/// `talvault.yaml`.
pub fn discover(
    explicit: Option<&Path>,
    env_var: Option<&Path>,
    cwd: &Path,
) -> Result<PathBuf, VaultError> {
    if let Some(p) = explicit.or(env_var) {
        return if p.join(VAULT_FILE).is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(VaultError::NotFound {
                start: p.to_path_buf(),
            })
        };
    }
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        if d.join(VAULT_FILE).is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(VaultError::NotFound {
        start: cwd.to_path_buf(),
    })
}

/// Creates a vault in `dir` (created if missing).
pub fn init(dir: &Path) -> Result<PathBuf, VaultError> {
    if dir.join(VAULT_FILE).exists() {
        return Err(VaultError::AlreadyVault {
            path: dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| store::fs::io_err(dir, e))?;
    let _lock = VaultLock::acquire(dir, Duration::from_secs(10))?;
    let mut t = Transaction::new(dir);
    t.write(
        ".gitignore",
        format!(".lock\n{}*\n{}\n", store::fs::TEMP_PREFIX, txn::JOURNAL).as_bytes(),
        Mode::Public,
    );
    t.write(
        "envs/README.md",
        b"One directory per environment; see docs/vault-format.md.\n",
        Mode::Public,
    );
    // The marker last: a vault exists once talvault.yaml does.
    t.create(
        VAULT_FILE,
        VaultConfig::new().to_yaml().as_bytes(),
        Mode::Public,
    );
    t.commit()?;
    Ok(dir.to_path_buf())
}

fn env_dir(name: &EnvName) -> PathBuf {
    PathBuf::from("envs").join(name.as_str())
}

impl Vault {
    /// Opens the vault at `root`: checks its format, takes the lock (waiting up to
    /// `lock_timeout`) and finishes any interrupted commit.
    pub fn open(root: &Path, lock_timeout: Duration) -> Result<Self, VaultError> {
        let config = store::read_bounded(root, Path::new(VAULT_FILE), META_MAX)?;
        VaultConfig::from_yaml(&config)?;
        let lock = VaultLock::acquire(root, lock_timeout)?;
        txn::recover(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The vault directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self, rel: &Path, max: u64) -> Result<Vec<u8>, VaultError> {
        Ok(store::read_bounded(&self.root, rel, max)?)
    }

    fn env_meta(&self, name: &EnvName) -> Result<EnvMeta, VaultError> {
        let rel = env_dir(name).join("env.yaml");
        match self.read(&rel, META_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => Err(VaultError::NoSuchEnv {
                env: name.as_str().to_owned(),
            }),
            other => Ok(EnvMeta::from_yaml(&rel.display().to_string(), &other?)?),
        }
    }

    fn recipients(&self, name: &EnvName) -> Result<Vec<Recipient>, VaultError> {
        let rel = env_dir(name).join("recipients.txt");
        let text = self.read(&rel, META_MAX)?;
        Ok(agestore::parse_recipients(
            &String::from_utf8_lossy(&text),
            &self.root.join(rel),
        )?)
    }

    /// The environments in the vault, by name.
    pub fn env_list(&self) -> Result<Vec<EnvMeta>, VaultError> {
        let mut out = Vec::new();
        let entries = match store::fs::list_dir(&self.root, Path::new("envs")) {
            Err(StoreError::NotFound { .. }) => return Ok(out),
            other => other?,
        };
        for e in entries {
            if e.kind != store::fs::EntryKind::Dir {
                continue;
            }
            let Ok(name) = EnvName::parse(&e.name) else {
                continue;
            };
            match self.env_meta(&name) {
                Ok(m) => out.push(m),
                // A directory without env.yaml is an interrupted create, not an environment.
                Err(VaultError::NoSuchEnv { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(out)
    }

    /// How an environment is sealed. Reads env.yaml only (`env_show` also reads every audit
    /// event, which commands that are about to open the bundle do not need).
    pub fn env_sealing(&self, env: &str) -> Result<Sealing, VaultError> {
        Ok(self.env_meta(&EnvName::parse(env)?)?.sealing)
    }

    /// Public facts of an environment; opens nothing.
    pub fn env_show(&self, env: &str) -> Result<EnvView, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        let recipients = match meta.sealing {
            Sealing::Recipients => self
                .recipients(&name)?
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            Sealing::Passphrase => Vec::new(),
        };
        let audit_events = audit_dir::load_all(&self.root.join(env_dir(&name)))?.len();
        Ok(EnvView {
            meta,
            recipients,
            audit_events,
        })
    }

    /// `env create` and `env import`: builds or imports the bundle, checks it, seals it, and
    /// writes the environment (env.yaml, recipients.txt, policy.yaml, bundle.age, the first
    /// audit event) in one transaction.
    pub fn env_create(&self, req: NewEnv, ctx: &Context) -> Result<EnvView, VaultError> {
        let name = EnvName::parse(&req.name)?;
        match self.env_meta(&name) {
            Err(VaultError::NoSuchEnv { .. }) => {}
            Ok(_) => return Err(VaultError::EnvExists { env: req.name }),
            Err(other) => return Err(other),
        }
        let source = req.source.label();
        let rng = ring::rand::SystemRandom::new();
        let bundle = match req.source {
            BundleSource::Generate => generate::generate(req.contract, ctx.now, &rng)
                .map_err(|e| VaultError::Generate(format!("cannot generate the bundle: {e}")))?,
            BundleSource::Secrets(bytes) => {
                SecretsBundle::from_yaml(bytes.expose()).map_err(|e| VaultError::BadBundle {
                    what: "--from-secrets".into(),
                    message: e.to_string(),
                })?
            }
            BundleSource::KubernetesPki(pki, token) => {
                import::from_kubernetes_pki(pki, token, req.contract, ctx.now, &rng).map_err(
                    |e| VaultError::BadBundle {
                        what: "--from-kubernetes-pki".into(),
                        message: e.to_string(),
                    },
                )?
            }
            BundleSource::ControlplaneConfig(bytes) => {
                import::from_controlplane_config(bytes.expose()).map_err(|e| {
                    VaultError::BadBundle {
                        what: "--from-controlplane-config".into(),
                        message: e.to_string(),
                    }
                })?
            }
        };
        check_bundle(&bundle, req.contract, ctx.now, source)?;
        let pins = Pins::of(&bundle).ok_or_else(|| VaultError::BadBundle {
            what: source.into(),
            message: "a CA certificate is missing".into(),
        })?;
        let yaml = bundle.to_yaml();
        let (sealed, sealing, recipients_txt, recipients_shown) = match &req.seal_to {
            SealTo::Recipients(r) => (
                agestore::seal(yaml.expose().as_bytes(), r)?,
                Sealing::Recipients,
                recipients_file(r),
                r.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>(),
            ),
            SealTo::Passphrase(p) => (
                agestore::seal_with_passphrase(yaml.expose().as_bytes(), p)?,
                Sealing::Passphrase,
                "# This environment is sealed with a passphrase (age scrypt); it has no recipients.\n".to_owned(),
                Vec::new(),
            ),
        };
        let meta = EnvMeta {
            format_version: FORMAT_VERSION,
            name: name.as_str().to_owned(),
            cluster_name: req.cluster_name.unwrap_or_else(|| name.as_str().to_owned()),
            talos_version: contract_label(req.contract),
            endpoints: req.endpoints,
            nodes: req.nodes,
            source: source.to_owned(),
            sealing,
            created: rfc3339(ctx.now),
            pins: pins.clone(),
            tainted: None,
        };
        let dir = env_dir(&name);
        let mut t = Transaction::new(&self.root);
        t.write(
            dir.join("env.yaml"),
            meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        t.write(
            dir.join("recipients.txt"),
            recipients_txt.as_bytes(),
            Mode::Public,
        );
        t.write(dir.join("bundle.age"), &sealed, Mode::Secret);
        let mut data = Map::new();
        data.insert("source".into(), json!(source));
        data.insert("talos_version".into(), json!(meta.talos_version));
        data.insert("sealing".into(), json!(sealing));
        data.insert("recipients".into(), json!(recipients_shown));
        data.insert(
            "pins".into(),
            serde_json::to_value(&pins).unwrap_or(Value::Null),
        );
        let action = if source == "generated" {
            "env.create"
        } else {
            "env.import"
        };
        self.stage_event(&mut t, &name, ctx, None, action, data)?;
        t.commit()?;
        self.env_show(name.as_str())
    }

    /// Adds an audit event for `name` to the transaction, on top of the current heads.
    fn stage_event(
        &self,
        t: &mut Transaction,
        name: &EnvName,
        ctx: &Context,
        opened_by: Option<&OpenedBy>,
        action: &str,
        data: Map<String, Value>,
    ) -> Result<(), VaultError> {
        let dir = env_dir(name);
        let files = match audit_dir::load_all(&self.root.join(&dir)) {
            // A new environment's directory does not exist yet: no events.
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        let events: Vec<audit::Event> = files
            .iter()
            .filter_map(|(_, b)| audit::Event::from_json(b).ok())
            .collect();
        let event = audit::new_event(
            audit::heads(&events),
            EventBody {
                time: ctx.now,
                actor: ctx.actor.clone(),
                opened_by: opened_by.map(|o| o.to_string()),
                env: name.as_str().to_owned(),
                action: action.to_owned(),
                data,
            },
        )?;
        t.create(
            dir.join(audit_dir::AUDIT_DIR).join(event.relative_path()),
            &event.to_json(),
            Mode::Public,
        );
        Ok(())
    }

    /// Opens an environment's bundle and checks it against the pins. Internal: every caller
    /// records an audit event for the use.
    fn open_bundle(
        &self,
        name: &EnvName,
        ctx: &Context,
    ) -> Result<(EnvMeta, SecretBytes, SecretsBundle, OpenedBy), VaultError> {
        let meta = self.env_meta(name)?;
        let rel = env_dir(name).join("bundle.age");
        let sealed = self.read(&rel, SEALED_MAX)?;
        let shown = self.root.join(&rel);
        let (plain, opened_by) = match meta.sealing {
            Sealing::Recipients => agestore::open(&shown, &sealed, &ctx.identities)?,
            Sealing::Passphrase => {
                let p = ctx.passphrase.as_ref().ok_or(AgeError::EmptyPassphrase)?;
                (
                    agestore::open_with_passphrase(&shown, &sealed, p)?,
                    OpenedBy::Passphrase,
                )
            }
        };
        let bundle =
            SecretsBundle::from_yaml(plain.expose()).map_err(|e| VaultError::BadBundle {
                what: rel.display().to_string(),
                message: e.to_string(),
            })?;
        let pins = Pins::of(&bundle).ok_or_else(|| VaultError::PinMismatch {
            file: rel.display().to_string(),
            cas: vec!["(missing CA)"],
        })?;
        let bad = meta.pins.mismatches(&pins);
        if !bad.is_empty() {
            return Err(VaultError::PinMismatch {
                file: rel.display().to_string(),
                cas: bad,
            });
        }
        Ok((meta, plain, bundle, opened_by))
    }

    /// `bundle export`: the plaintext secrets.yaml, recorded in the audit trail first.
    pub fn bundle_export(
        &self,
        env: &str,
        destination: &str,
        ctx: &Context,
    ) -> Result<SecretBytes, VaultError> {
        let name = EnvName::parse(env)?;
        let (_, plain, _, opened_by) = self.open_bundle(&name, ctx)?;
        let mut t = Transaction::new(&self.root);
        let mut data = Map::new();
        data.insert("destination".into(), json!(destination));
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), "bundle.export", data)?;
        t.commit()?;
        Ok(plain)
    }

    /// `bundle exec`: the plaintext for a child process, recorded in the audit trail first.
    pub fn bundle_for_exec(
        &self,
        env: &str,
        program: &str,
        ctx: &Context,
    ) -> Result<SecretBytes, VaultError> {
        let name = EnvName::parse(env)?;
        let (_, plain, _, opened_by) = self.open_bundle(&name, ctx)?;
        let mut t = Transaction::new(&self.root);
        let mut data = Map::new();
        // Only the program name: its arguments are the user's and could hold anything.
        let program = Path::new(program)
            .file_name()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        data.insert("program".into(), json!(program));
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), "bundle.exec", data)?;
        t.commit()?;
        Ok(plain)
    }

    /// The recipients of an environment.
    pub fn recipients_list(&self, env: &str) -> Result<Vec<String>, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        if meta.sealing == Sealing::Passphrase {
            return Ok(Vec::new());
        }
        Ok(self
            .recipients(&name)?
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect())
    }

    /// `recipients add` / `recipients remove`: opens the bundle, re-seals every secret of the
    /// environment to the new set with a fresh file key, and records the change.
    pub fn recipients_change(
        &self,
        env: &str,
        add: &[Recipient],
        remove: &[Recipient],
        ctx: &Context,
    ) -> Result<Vec<String>, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        if meta.sealing == Sealing::Passphrase {
            return Err(VaultError::WrongSealing {
                env: env.into(),
                sealing: "a passphrase",
                operation: "changing recipients",
            });
        }
        let current = self.recipients(&name)?;
        for r in remove {
            if !current.iter().any(|c| c.as_str() == r.as_str()) {
                return Err(VaultError::NotARecipient {
                    env: env.into(),
                    recipient: r.as_str().to_owned(),
                });
            }
        }
        let mut next: Vec<Recipient> = current
            .iter()
            .filter(|c| !remove.iter().any(|r| r.as_str() == c.as_str()))
            .cloned()
            .collect();
        for r in add {
            if !next.iter().any(|c| c.as_str() == r.as_str()) {
                next.push(r.clone());
            }
        }
        if next.is_empty() {
            return Err(VaultError::NoRecipientsLeft {
                env: env.into(),
                removed: remove.len(),
            });
        }
        let (_, plain, _, opened_by) = self.open_bundle(&name, ctx)?;
        // age draws a fresh file key for every encryption, so the new ciphertext shares nothing
        // with the old one (which stays readable in git history by whoever could read it).
        let sealed = agestore::seal(plain.expose(), &next)?;
        let dir = env_dir(&name);
        let mut t = Transaction::new(&self.root);
        t.write(dir.join("bundle.age"), &sealed, Mode::Secret);
        t.write(
            dir.join("recipients.txt"),
            recipients_file(&next).as_bytes(),
            Mode::Public,
        );
        let mut data = Map::new();
        data.insert(
            "added".into(),
            json!(add.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
        data.insert(
            "removed".into(),
            json!(remove.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
        data.insert(
            "recipients".into(),
            json!(next.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
        data.insert("resealed".into(), json!(["bundle.age"]));
        let action = if remove.is_empty() {
            "recipients.add"
        } else {
            "recipients.remove"
        };
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), action, data)?;
        t.commit()?;
        Ok(next.iter().map(|r| r.as_str().to_owned()).collect())
    }

    /// The environments to look at: the one named, or all.
    fn envs(&self, env: Option<&str>) -> Result<Vec<EnvName>, VaultError> {
        match env {
            Some(e) => {
                let name = EnvName::parse(e)?;
                self.env_meta(&name)?;
                Ok(vec![name])
            }
            None => self
                .env_list()?
                .into_iter()
                .map(|m| Ok(EnvName::parse(&m.name)?))
                .collect(),
        }
    }

    /// `audit log`: every event of the environment(s), oldest first.
    pub fn audit_log(&self, env: Option<&str>) -> Result<Vec<audit::Event>, VaultError> {
        let mut out = Vec::new();
        for name in self.envs(env)? {
            for (_, bytes) in audit_dir::load_all(&self.root.join(env_dir(&name)))? {
                if let Ok(e) = audit::Event::from_json(&bytes) {
                    out.push(e);
                }
            }
        }
        Ok(causal_order(out))
    }

    /// `audit verify`: the report per environment.
    pub fn audit_verify(
        &self,
        env: Option<&str>,
    ) -> Result<Vec<(String, audit::Report)>, VaultError> {
        let mut out = Vec::new();
        for name in self.envs(env)? {
            let files = audit_dir::load_all(&self.root.join(env_dir(&name)))?;
            out.push((name.as_str().to_owned(), audit::verify(&files)));
        }
        Ok(out)
    }
}

/// Orders events so that every parent comes before its children (events within one second
/// share a timestamp), ties broken by time, then id.
fn causal_order(mut events: Vec<audit::Event>) -> Vec<audit::Event> {
    events.sort_by(|a, b| {
        a.time()
            .cmp(&b.time())
            .then_with(|| a.id().as_str().cmp(b.id().as_str()))
    });
    let mut done: std::collections::HashSet<String> = std::collections::HashSet::new();
    let ids: std::collections::HashSet<String> =
        events.iter().map(|e| e.id().as_str().to_owned()).collect();
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

/// Refuses a bundle Talos would refuse, or one whose deeper checks find an error.
fn check_bundle(
    bundle: &SecretsBundle,
    contract: VersionContract,
    now: OffsetDateTime,
    source: &str,
) -> Result<(), VaultError> {
    let errors = talos_errors(bundle);
    if let Some(first) = errors.first() {
        return Err(VaultError::BadBundle {
            what: source.into(),
            message: format!(
                "{first} ({} Talos validation error(s); see `talvault bundle validate`)",
                errors.len()
            ),
        });
    }
    if let Some(f) = deep_findings(bundle, contract, now)
        .into_iter()
        .find(|f| f.severity == Severity::Error)
    {
        return Err(VaultError::BadBundle {
            what: source.into(),
            message: format!("{} {}", f.field, f.message),
        });
    }
    Ok(())
}

fn recipients_file(recipients: &[Recipient]) -> String {
    let mut s = String::from(
        "# age recipients that can open this environment (one per line; `age -R` format).\n",
    );
    for r in recipients {
        s.push_str(r.as_str());
        s.push('\n');
    }
    s
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
