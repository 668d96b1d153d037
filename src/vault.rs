//! The application service: each vault command is one method here, readable top to bottom as
//! load → check → act → store → audit. It is the only place that joins the pure modules
//! (`bundle`, `model`, `audit`) with storage (`store`), and the only writer of audit events.
//! It must not print, prompt or parse arguments (that is `cli`), and it never returns secrets
//! except through the explicit `export`/`exec` paths.
#![expect(
    clippy::disallowed_methods,
    reason = "the application service draws randomness for generation and issuance"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use thiserror::Error;
use time::OffsetDateTime;

use crate::audit::{self, EventBody};
use crate::bundle::validate::{Severity, deep_findings, talos_errors};
use crate::bundle::{SecretsBundle, VersionContract, generate, import};
use crate::keys::PrivateKey;
use crate::model::{
    EnvMeta, FORMAT_VERSION, MetaError, Pins, Sealing, Taint, VaultConfig, contract_label,
};
use crate::pki::issue::{
    CsrError, IssueError, IssueTime, IssuedLeaf, SubjectKey, issue_leaf, verify_csr,
};
use crate::pki::policy::{Holder, Policy, PolicyError, PolicyFileError, Request};
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::secret::{SecretBytes, SecretText};
use crate::store::age::{self as agestore, AgeError, Identity, OpenedBy, Recipient};
use crate::store::txn::{self, Transaction};
use crate::store::{self, EnvName, LockError, Mode, NameError, StoreError, VaultLock, audit_dir};
use crate::talosconfig;

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
    #[error("no talvault vault found (looked for {VAULT_FILE} in {}{})", start.display(), if *parents { " and its parents" } else { "" })]
    NotFound {
        /// Where the search started.
        start: PathBuf,
        /// Whether parent directories were searched too.
        parents: bool,
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
    /// policy.yaml is malformed.
    #[error("{file}: {source}")]
    PolicyFile {
        /// The file.
        file: String,
        /// What is wrong.
        source: PolicyFileError,
    },
    /// The policy refuses the request.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A role, TTL or holder argument is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The CSR is unusable.
    #[error("--csr: {0}")]
    Csr(#[from] CsrError),
    /// Signing the leaf failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// No endpoints for the talosconfig.
    #[error("no endpoints for the talosconfig of environment {env:?}")]
    NoEndpoints {
        /// The environment.
        env: String,
    },
    /// Direct signing by the OS CA is forbidden by policy.
    #[error(
        "the policy of environment {env:?} forbids signing with the Talos OS CA (allow_direct: false)"
    )]
    DirectForbidden {
        /// The environment.
        env: String,
    },
    /// `env untaint` on an environment that is not tainted.
    #[error("environment {env:?} is not tainted")]
    NotTainted {
        /// The environment.
        env: String,
    },
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
            VaultError::Policy(PolicyError::TtlAbovePolicy { .. }) => {
                "ask for a shorter --ttl, or change envs/ENV/policy.yaml through review".into()
            }
            VaultError::Policy(_) | VaultError::PolicyFile { .. } => {
                "see the effective policy with `talvault policy show ENV`".into()
            }
            VaultError::BadRequest(m) if m.starts_with("--ttl") => {
                "a TTL is a Go duration such as 8h, 90m or 1h30m, or days/weeks such as 7d or 2w".into()
            }
            VaultError::NoEndpoints { .. } => {
                "pass --endpoint HOST (or record endpoints in env.yaml at `env create --endpoint`)".into()
            }
            VaultError::Csr(_) => {
                "make the request with an Ed25519 or P-256 key, e.g. `openssl req -new -key KEY -subj /CN=NAME -out req.csr`".into()
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

/// What `issue` / `break-glass` is asked for (raw, before policy).
#[derive(Default)]
pub struct IssueRequest {
    /// The environment.
    pub env: String,
    /// Role strings.
    pub roles: Vec<String>,
    /// TTL string.
    pub ttl: Option<String>,
    /// Holder name.
    pub holder: Option<String>,
    /// Context name override.
    pub context: Option<String>,
    /// Endpoints (default: env.yaml).
    pub endpoints: Vec<String>,
    /// Nodes (default: env.yaml).
    pub nodes: Vec<String>,
    /// A PKCS#10 request (PEM or DER).
    pub csr: Option<SecretBytes>,
    /// `Some(reason)` for break-glass.
    pub break_glass: Option<String>,
}

/// Where an issued certificate will go.
#[derive(Debug, Clone)]
pub struct IssuePlan {
    /// The talosconfig context name.
    pub context: String,
    /// Endpoints.
    pub endpoints: Vec<String>,
    /// Nodes.
    pub nodes: Vec<String>,
}

/// A signed leaf and its talosconfig context.
pub struct Issued {
    /// Context name, endpoints, nodes.
    pub plan: IssuePlan,
    /// The leaf (with its key unless CSR-issued).
    pub leaf: IssuedLeaf,
    /// The talosconfig context for it.
    pub context: talosconfig::Context,
}

/// `envs/ENV/certs/<serial>.yaml`: what was issued. Public; the key is never stored.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// Roles in the subject.
    pub roles: Vec<String>,
    /// Holder (CN).
    pub holder: Option<String>,
    /// NotBefore.
    pub not_before: String,
    /// NotAfter.
    pub not_after: String,
    /// The granted TTL.
    pub ttl: String,
    /// The signing CA.
    pub signed_by: SignedBy,
    /// `direct` (OS CA) or `issuer`.
    pub mode: String,
    /// `generated` or `csr`.
    pub key: String,
    /// Who issued it.
    pub actor: String,
    /// When.
    pub issued: String,
    /// Whether it is a break-glass certificate.
    pub break_glass: bool,
    /// The break-glass reason.
    pub reason: Option<String>,
    /// The certificate PEM.
    pub certificate: String,
}

/// Which CA signed a recorded certificate.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBy {
    /// `os` for the Talos OS CA, else the issuer id.
    pub ca: String,
    /// SHA-256 of the signing CA certificate.
    pub fingerprint: String,
}

fn parse_roles(req: &IssueRequest) -> Result<Vec<Role>, VaultError> {
    let texts: Vec<&str> = if req.break_glass.is_some() && req.roles.is_empty() {
        vec!["os:admin"]
    } else {
        req.roles.iter().map(String::as_str).collect()
    };
    Role::parse_set(texts).map_err(|e| VaultError::BadRequest(format!("--role: {e}")))
}

fn policy_file(p: &Policy) -> String {
    format!(
        "# Issuance policy of this environment: default and maximum TTL per role, holders,\n\
         # break-glass bounds. Changes go through review; see docs/issuing.md.\n{}",
        p.to_yaml()
    )
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
                parents: false,
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
        parents: true,
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
    // Keep an existing .gitignore (a vault may live in an existing repository): add our lines.
    let mut gitignore = match store::read_bounded(dir, Path::new(".gitignore"), META_MAX) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(StoreError::NotFound { .. }) => String::new(),
        Err(e) => return Err(e.into()),
    };
    for line in [
        ".lock".to_owned(),
        format!("{}*", store::fs::TEMP_PREFIX),
        txn::JOURNAL.to_owned(),
    ] {
        if !gitignore.lines().any(|l| l.trim() == line) {
            if !gitignore.is_empty() && !gitignore.ends_with('\n') {
                gitignore.push('\n');
            }
            gitignore.push_str(&line);
            gitignore.push('\n');
        }
    }
    t.write(".gitignore", gitignore.as_bytes(), Mode::Public);
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
            other => {
                let file = rel.display().to_string();
                let meta = EnvMeta::from_yaml(&file, &other?)?;
                // A directory copied or renamed by hand still names its original inside: refuse
                // rather than act on, and audit as, an environment under another name.
                if meta.name != name.as_str() {
                    return Err(VaultError::Meta(MetaError::Malformed {
                        file,
                        message: format!(
                            "names environment {:?}, but its directory is {:?}",
                            meta.name,
                            name.as_str()
                        ),
                    }));
                }
                Ok(meta)
            }
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
        let audit_events = audit_dir::load_all_below(&self.root, &env_dir(&name))?.len();
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
        t.write(
            dir.join("policy.yaml"),
            policy_file(&Policy::default()).as_bytes(),
            Mode::Public,
        );
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
        let files = match audit_dir::load_all_below(&self.root, &dir) {
            // A new environment's directory does not exist yet: no events.
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        // Only the stated links are needed to find the heads; `audit verify` checks the rest.
        let links: Vec<_> = files
            .iter()
            .filter_map(|(_, b)| audit::stated_links(b))
            .collect();
        let event = audit::new_event(
            audit::heads_of_links(&links),
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

    /// The environment's policy (`policy.yaml`).
    pub fn policy(&self, env: &str) -> Result<Policy, VaultError> {
        let name = EnvName::parse(env)?;
        self.env_meta(&name)?;
        self.read_policy(&name)
    }

    fn read_policy(&self, name: &EnvName) -> Result<Policy, VaultError> {
        let rel = env_dir(name).join("policy.yaml");
        let bytes = self.read(&rel, META_MAX)?;
        Policy::from_yaml(&bytes).map_err(|source| VaultError::PolicyFile {
            file: rel.display().to_string(),
            source,
        })
    }

    /// The talosconfig context name an issuance will use, and the endpoints/nodes it will carry,
    /// so the CLI can refuse a bad destination before anything is signed.
    pub fn issue_plan(&self, req: &IssueRequest) -> Result<IssuePlan, VaultError> {
        let name = EnvName::parse(&req.env)?;
        let meta = self.env_meta(&name)?;
        let roles = parse_roles(req)?;
        let endpoints = if req.endpoints.is_empty() {
            meta.endpoints.clone()
        } else {
            req.endpoints.clone()
        };
        if endpoints.is_empty() {
            return Err(VaultError::NoEndpoints {
                env: req.env.clone(),
            });
        }
        let nodes = if req.nodes.is_empty() {
            meta.nodes.clone()
        } else {
            req.nodes.clone()
        };
        let context = req
            .context
            .clone()
            .unwrap_or_else(|| talosconfig::context_name(&roles, &meta.cluster_name));
        Ok(IssuePlan {
            context,
            endpoints,
            nodes,
        })
    }

    /// `issue` and `break-glass`: applies the policy, signs a leaf with the Talos OS CA (direct
    /// mode), records it in `certs/<serial>.yaml`, marks the environment tainted for
    /// break-glass, and audits it, in one transaction. The leaf key is returned, never stored.
    pub fn issue(&self, req: &IssueRequest, ctx: &Context) -> Result<Issued, VaultError> {
        let name = EnvName::parse(&req.env)?;
        let plan = self.issue_plan(req)?;
        let policy = self.read_policy(&name)?;
        let roles = parse_roles(req)?;
        let ttl = req
            .ttl
            .as_deref()
            .map(Ttl::parse)
            .transpose()
            .map_err(|e| VaultError::BadRequest(format!("--ttl: {e}")))?;
        let holder = req
            .holder
            .as_deref()
            .map(Holder::parse)
            .transpose()
            .map_err(|e| VaultError::BadRequest(format!("--holder: {e}")))?;
        let grant = policy.grant(&Request {
            roles,
            ttl,
            holder,
            break_glass: req.break_glass.clone(),
        })?;
        if !policy.allow_direct {
            return Err(VaultError::DirectForbidden {
                env: req.env.clone(),
            });
        }
        let subject_key = match &req.csr {
            Some(bytes) => SubjectKey::FromCsr(verify_csr(bytes.expose())?),
            None => SubjectKey::Generate,
        };
        let (mut meta, _, bundle, opened_by) = self.open_bundle(&name, ctx)?;
        let os = bundle
            .certs
            .as_ref()
            .and_then(|c| c.os.as_ref())
            .ok_or_else(|| VaultError::BadBundle {
                what: "bundle.age".into(),
                message: "certs.os is missing".into(),
            })?;
        let ca_key =
            PrivateKey::from_talos_pem(os.key.expose()).map_err(|e| VaultError::BadBundle {
                what: "bundle.age".into(),
                message: format!("certs.os.key: {e}"),
            })?;
        let signer = ca_key.key_pair().map_err(|e| VaultError::BadBundle {
            what: "bundle.age".into(),
            message: format!("certs.os.key: {e}"),
        })?;
        let rng = ring::rand::SystemRandom::new();
        let leaf = issue_leaf(
            &os.crt,
            &signer,
            &grant,
            subject_key,
            IssueTime::new(ctx.now),
            &rng,
        )?;

        let dir = env_dir(&name);
        let mut t = Transaction::new(&self.root);
        let record = CertRecord {
            serial: leaf.serial_hex.clone(),
            fingerprint: format!("sha256:{}", leaf.fingerprint_sha256),
            roles: leaf.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            holder: grant.holder().map(|h| h.as_str().to_owned()),
            not_before: rfc3339(leaf.not_before),
            not_after: rfc3339(leaf.not_after),
            ttl: grant.ttl().to_string(),
            signed_by: SignedBy {
                ca: "os".into(),
                fingerprint: meta.pins.os.0.clone(),
            },
            mode: "direct".into(),
            key: if req.csr.is_some() {
                "csr".into()
            } else {
                "generated".into()
            },
            actor: ctx.actor.clone(),
            issued: rfc3339(ctx.now),
            break_glass: grant.break_glass_reason().is_some(),
            reason: grant.break_glass_reason().map(str::to_owned),
            certificate: String::from_utf8_lossy(&leaf.cert_pem).into_owned(),
        };
        let record_yaml = serde_yaml::to_string(&record)
            .map_err(|e| VaultError::Generate(format!("certificate record: {e}")))?;
        t.create(
            // The serial becomes a file name: checked like every name used in a path.
            dir.join("certs").join(format!(
                "{}.yaml",
                store::name::check_hex("serial", &leaf.serial_hex, 40)?
            )),
            record_yaml.as_bytes(),
            Mode::Public,
        );
        if let Some(reason) = grant.break_glass_reason() {
            meta.tainted = Some(Taint {
                since: rfc3339(ctx.now),
                reason: reason.to_owned(),
                serial: Some(leaf.serial_hex.clone()),
            });
            t.write(
                dir.join("env.yaml"),
                meta.to_yaml()?.as_bytes(),
                Mode::Public,
            );
        }
        let mut data = Map::new();
        data.insert("serial".into(), json!(record.serial));
        data.insert("fingerprint".into(), json!(record.fingerprint));
        data.insert("roles".into(), json!(record.roles));
        data.insert("holder".into(), json!(record.holder));
        data.insert("ttl".into(), json!(record.ttl));
        data.insert("not_after".into(), json!(record.not_after));
        data.insert("mode".into(), json!("direct"));
        data.insert("key".into(), json!(record.key));
        if let Some(r) = &record.reason {
            data.insert("reason".into(), json!(r));
        }
        let action = if record.break_glass {
            "break-glass"
        } else {
            "issue"
        };
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), action, data)?;
        t.commit()?;
        let context = talosconfig::Context::issued(
            &os.crt,
            &leaf.cert_pem,
            leaf.key_pem.as_ref(),
            plan.endpoints.clone(),
            plan.nodes.clone(),
        );
        Ok(Issued {
            plan,
            leaf,
            context,
        })
    }

    /// `env untaint`: clears the break-glass mark, with a reason, audited.
    pub fn untaint(&self, env: &str, reason: &str, ctx: &Context) -> Result<(), VaultError> {
        let name = EnvName::parse(env)?;
        let mut meta = self.env_meta(&name)?;
        let Some(old) = meta.tainted.take() else {
            return Err(VaultError::NotTainted { env: env.into() });
        };
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(VaultError::BadRequest("--reason must not be empty".into()));
        }
        let dir = env_dir(&name);
        let mut t = Transaction::new(&self.root);
        t.write(
            dir.join("env.yaml"),
            meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let mut data = Map::new();
        data.insert("reason".into(), json!(reason));
        data.insert("tainted_since".into(), json!(old.since));
        data.insert("break_glass_serial".into(), json!(old.serial));
        self.stage_event(&mut t, &name, ctx, None, "env.untaint", data)?;
        t.commit()?;
        Ok(())
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
            for (_, bytes) in audit_dir::load_all_below(&self.root, &env_dir(&name))? {
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
            let files = audit_dir::load_all_below(&self.root, &env_dir(&name))?;
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
