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
use crate::bundle::inspect::{Fingerprint, hex};
use crate::bundle::validate::{Severity, deep_findings, talos_errors};
use crate::bundle::{SecretsBundle, VersionContract, generate, import};
use crate::inventory::{self, CertEntry, RevokedEntry};
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::model::{
    CaCertificates, EnvMeta, FORMAT_VERSION, IssuerKey, IssuerMeta, IssuerState, MetaError, OS_CA,
    Pins, RevocationRecord, Sealing, Taint, VaultConfig, contract_label,
};
use crate::pki::crl::{CrlParams, RevocationReason, RevokedCertificate, sign_crl};
use crate::pki::issue::{
    CsrError, IssueError, IssueTime, IssuedLeaf, SubjectKey, issue_leaf, verify_csr,
};
use crate::pki::issuer::{
    IssuerFacts, IssuerSpec, create_issuer_certificate, read_issuer_certificate,
};
use crate::pki::policy::{Holder, Policy, PolicyError, PolicyFileError, Request};
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::pki::verify::{
    self, certificate_der, crl_number, leaf_facts, signed_by as signed_by_ca,
};
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
    /// No issuer with that id.
    #[error("environment {env:?} has no issuer {id:?}")]
    NoSuchIssuer {
        /// The environment.
        env: String,
        /// The id asked for.
        id: String,
    },
    /// An issuer is not in the state the operation needs.
    #[error("issuer {id} is {state}; {operation} needs a {needed} issuer")]
    IssuerState {
        /// The issuer.
        id: String,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        operation: &'static str,
        /// The state needed.
        needed: &'static str,
    },
    /// Retiring the only active issuer would strand live certificates.
    #[error(
        "issuer {id} is the only active issuer and {live} certificate(s) it signed are still live"
    )]
    RetireStrands {
        /// The issuer.
        id: String,
        /// Live certificates it signed.
        live: usize,
    },
    /// An issuer's files do not hold together (tampered or corrupt).
    #[error("{file}: {problem}")]
    BadIssuer {
        /// The issuer.yaml.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// The leaf would outlive the issuer that signs it.
    #[error("a {ttl} certificate would expire after issuer {issuer} does ({not_after})")]
    LeafOutlivesIssuer {
        /// The issuer.
        issuer: String,
        /// Its notAfter.
        not_after: String,
        /// The requested TTL.
        ttl: String,
    },
    /// `revoke` of a serial the environment never issued.
    #[error("environment {env:?} has no certificate with serial {serial}")]
    UnknownSerial {
        /// The environment.
        env: String,
        /// The serial as normalised.
        serial: String,
    },
    /// A talosconfig that belongs to another cluster or CA.
    #[error("{what}")]
    ForeignTalosconfig {
        /// What does not match.
        what: String,
    },
    /// A talosconfig that cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// There is no issuer to sign a CRL.
    #[error("environment {env:?} has no active issuer to sign a CRL")]
    NoCrlIssuer {
        /// The environment.
        env: String,
    },
    /// Building or signing a CRL or an issuer certificate failed.
    #[error("{0}")]
    Sign(String),
    /// A sealed file must be opened but no identity was given.
    #[error("no identity to open {file}")]
    NoIdentity {
        /// The sealed file.
        file: String,
    },
    /// A PKCS#11 token or module failed (the function and return code are in the message).
    #[error(transparent)]
    Hsm(#[from] talvault_hsm::HsmError),
    /// A malformed `pkcs11:` URI.
    #[error("--pkcs11: {0}")]
    HsmUri(#[from] talvault_hsm::UriError),
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
            VaultError::Hsm(e) => return e.hint(),
            VaultError::NoIdentity { .. } => {
                "pass -i KEYFILE, or set TALVAULT_IDENTITY or SOPS_AGE_KEY_FILE".into()
            }
            VaultError::HsmUri(e) => return e.hint().map(str::to_owned),
            VaultError::NoSuchIssuer { .. } => "list them with `talvault issuer list ENV`".into(),
            VaultError::IssuerState { operation: "retire", .. } => "a retired issuer stays retired; create a new one with `talvault issuer rotate ENV`".into(),
            VaultError::IssuerState { .. } => "see the states with `talvault issuer list ENV`".into(),
            VaultError::RetireStrands { .. } => "activate the next issuer first (`talvault issuer rotate ENV`, then `issuer activate`), or pass --force to cut those certificates off".into(),
            VaultError::BadIssuer { .. } => "restore the issuer directory from git history and investigate who changed it".into(),
            VaultError::LeafOutlivesIssuer { .. } => "ask for a shorter --ttl, or rotate to a newer issuer with `talvault issuer rotate ENV`".into(),
            VaultError::UnknownSerial { .. } => "list issued serials with `talvault status ENV -o json`".into(),
            VaultError::ForeignTalosconfig { .. } => "check the environment name; `talvault env list` shows them all".into(),
            VaultError::NoCrlIssuer { .. } => "create one with `talvault issuer create ENV`; direct-mode revocations are listed by `talvault crl ENV --format json`".into(),
            VaultError::DirectForbidden { .. } => "activate an issuer (`talvault issuer create ENV`, then `issuer activate`), or set allow_direct: true in policy.yaml through review".into(),
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
    /// Asks for a PKCS#11 token's PIN (given its label) when the URI's `pin-source` and
    /// `TALVAULT_PKCS11_PIN` do not give one.
    pub pin_prompt: Option<PinPrompt>,
}

/// Given a token label, the PIN, or why it cannot be had.
pub type PinPrompt = Box<dyn Fn(&str) -> Result<secrecy::SecretString, String>>;

/// A CA key ready to sign: in memory (an unsealed issuer key) or in a PKCS#11 token.
enum CaSigner {
    Memory(rcgen::KeyPair),
    Token(talvault_hsm::HsmKey),
}

impl CaSigner {
    fn key(&self) -> &dyn rcgen::SigningKey {
        match self {
            CaSigner::Memory(k) => k,
            CaSigner::Token(k) => k,
        }
    }

    /// A signing failure as the token reported it (rcgen's `RemoteKeyError` carries nothing),
    /// else `fallback`.
    fn explain(&self, fallback: VaultError) -> VaultError {
        match self {
            CaSigner::Token(k) => k.last_error().map_or(fallback, VaultError::Hsm),
            CaSigner::Memory(_) => fallback,
        }
    }
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
    /// Sign with the Talos OS CA even when an issuer is active (`--direct`).
    pub direct: bool,
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
    /// `os` (direct) or the issuer id that signed it.
    pub signed_by: String,
    /// The signature was made inside a PKCS#11 token.
    pub in_token: bool,
}

pub use crate::model::{CertRecord, SignedBy};

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
    /// Record caches rebuilt by this command, saved by [`Vault::save_caches`] once it succeeded.
    caches: std::cell::RefCell<Vec<store::index::CacheUpdate>>,
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
        txn::DIRTY.to_owned(),
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
            caches: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// The vault directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves the record caches this command rebuilt (`.cache/`, git-ignored). Called after a
    /// command succeeded, so that a refused command changes nothing in the vault directory.
    pub fn save_caches(&self) {
        for update in self.caches.borrow_mut().drain(..) {
            store::index::save(&self.root, &update);
        }
    }

    /// Commits a transaction, then saves the caches this command rebuilt on the way (they
    /// describe what was read before the commit, which the cache's own checks allow for).
    fn commit(&self, t: Transaction) -> Result<(), VaultError> {
        t.commit()?;
        self.save_caches();
        Ok(())
    }

    fn keep_cache<T>(&self, (out, update): (Vec<T>, Option<store::index::CacheUpdate>)) -> Vec<T> {
        if let Some(u) = update {
            self.caches.borrow_mut().push(u);
        }
        out
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
            certificates: CaCertificates::of(&bundle).ok_or_else(|| VaultError::BadBundle {
                what: source.into(),
                message: "a CA certificate is missing".into(),
            })?,
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
        self.commit(t)?;
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
        let links = self.audit_links(name)?;
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

    /// The id and parents every event of the environment states: all that is needed to find the
    /// heads a new event names (`audit verify` checks the rest). Read month by month through the
    /// record cache (`store::index`), so only events added since the cache was built are read;
    /// before, every command read every event file (27 µs each).
    fn audit_links(
        &self,
        name: &EnvName,
    ) -> Result<Vec<(audit::EventId, Vec<audit::EventId>)>, VaultError> {
        let dir = env_dir(name);
        let months = match audit_dir::months(&self.root, &dir) {
            // A new environment's directory does not exist yet: no events.
            Err(StoreError::NotFound { .. }) => Vec::new(),
            other => other?,
        };
        let mut links = Vec::new();
        for (year, month) in months {
            let scanned = store::index::scan(
                &self.root,
                &dir.join(audit_dir::AUDIT_DIR).join(&year).join(&month),
                &format!("{}/audit-{year}-{month}", name.as_str()),
                audit_dir::EVENT_RECORDS,
                |_, bytes| Ok::<_, VaultError>(audit::StatedLinks::read(bytes)),
            )?;
            links.extend(self.keep_cache(scanned).into_iter().filter_map(|l| l.0));
        }
        Ok(links)
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
        let (plain, opened_by) = self.open_sealed(&meta, &rel, ctx)?;
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
        self.commit(t)?;
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
        self.commit(t)?;
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
        // Every other secret of the environment too: the issuers' sealed keys.
        let mut resealed = vec!["bundle.age".to_owned()];
        for issuer in self.load_issuers(&name)? {
            if let IssuerKey::Age { .. } = issuer.meta.key {
                let rel = Self::issuers_dir(&name)
                    .join(&issuer.meta.id)
                    .join(ISSUER_KEY_FILE);
                let (key, _) = self.open_sealed(&meta, &rel, ctx)?;
                t.write(&rel, &agestore::seal(key.expose(), &next)?, Mode::Secret);
                resealed.push(format!("issuers/{}/{ISSUER_KEY_FILE}", issuer.meta.id));
            }
        }
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
        data.insert("resealed".into(), json!(resealed));
        let action = if remove.is_empty() {
            "recipients.add"
        } else {
            "recipients.remove"
        };
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), action, data)?;
        self.commit(t)?;
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
        let subject_key = match &req.csr {
            Some(bytes) => SubjectKey::FromCsr(verify_csr(bytes.expose())?),
            None => SubjectKey::Generate,
        };
        let rng = ring::rand::SystemRandom::new();
        let issuers = self.load_issuers(&name)?;
        // Issuer mode when an issuer is active, unless --direct; direct mode needs the policy.
        let issuer = if req.direct {
            None
        } else {
            Self::signing_issuer(&issuers)
        };
        if issuer.is_none() && !policy.allow_direct {
            return Err(VaultError::DirectForbidden {
                env: req.env.clone(),
            });
        }
        let mut in_token = false;
        let (mut meta, leaf, signed_by, opened_by) = match issuer {
            Some(issuer) => {
                let meta = self.env_meta(&name)?;
                let end = issuer.facts.not_after;
                if ctx.now + grant.ttl().as_duration() > end {
                    return Err(VaultError::LeafOutlivesIssuer {
                        issuer: issuer.meta.id.clone(),
                        not_after: rfc3339(end),
                        ttl: grant.ttl().to_string(),
                    });
                }
                let (signer, opened_by) = self.issuer_signer(&name, &meta, issuer, ctx)?;
                in_token = matches!(signer, CaSigner::Token(_));
                let leaf = issue_leaf(
                    issuer.meta.certificate.as_bytes(),
                    signer.key(),
                    &grant,
                    subject_key,
                    IssueTime::new(ctx.now),
                    &rng,
                )
                .map_err(|e| signer.explain(e.into()))?;
                let by = SignedBy {
                    ca: issuer.meta.id.clone(),
                    fingerprint: issuer.meta.fingerprint.clone(),
                };
                (meta, leaf, by, opened_by)
            }
            None => {
                let (meta, _, bundle, opened_by) = self.open_bundle(&name, ctx)?;
                let os = bundle
                    .certs
                    .as_ref()
                    .and_then(|c| c.os.as_ref())
                    .ok_or_else(|| VaultError::BadBundle {
                        what: "bundle.age".into(),
                        message: "certs.os is missing".into(),
                    })?;
                let ca_key = PrivateKey::from_talos_pem(os.key.expose()).map_err(|e| {
                    VaultError::BadBundle {
                        what: "bundle.age".into(),
                        message: format!("certs.os.key: {e}"),
                    }
                })?;
                let signer = ca_key.key_pair().map_err(|e| VaultError::BadBundle {
                    what: "bundle.age".into(),
                    message: format!("certs.os.key: {e}"),
                })?;
                let leaf = issue_leaf(
                    &os.crt,
                    &signer,
                    &grant,
                    subject_key,
                    IssueTime::new(ctx.now),
                    &rng,
                )?;
                let by = SignedBy {
                    ca: OS_CA.into(),
                    fingerprint: meta.pins.os.0.clone(),
                };
                (meta, leaf, by, opened_by)
            }
        };
        let mode = if signed_by.ca == OS_CA {
            "direct"
        } else {
            "issuer"
        };

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
            signed_by,
            mode: mode.into(),
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
        let record_yaml = record.to_yaml()?;
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
        data.insert("mode".into(), json!(mode));
        data.insert("signed_by".into(), json!(record.signed_by.ca));
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
        self.commit(t)?;
        // `ca` is always the OS CA: it verifies apid's server certificate, whoever signed the leaf.
        let context = talosconfig::Context::issued(
            meta.certificates.os.as_bytes(),
            &leaf.cert_pem,
            leaf.key_pem.as_ref(),
            plan.endpoints.clone(),
            plan.nodes.clone(),
        );
        Ok(Issued {
            plan,
            leaf,
            context,
            signed_by: record.signed_by.ca,
            in_token,
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
        self.commit(t)?;
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

/// Default issuer lifetime: a year, rotated well before it ends.
pub const DEFAULT_ISSUER_LIFETIME: &str = "8760h";
/// Longest issuer lifetime accepted (10 years, as Talos' own CAs).
const MAX_ISSUER_LIFETIME_HOURS: u64 = 87600;
/// The sealed key file of an age-sealed issuer.
const ISSUER_KEY_FILE: &str = "key.age";

/// An issuer as loaded: its metadata, checked against its certificate.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// issuer.yaml.
    pub meta: IssuerMeta,
    /// The certificate's checked facts.
    pub facts: IssuerFacts,
}

/// What `issuer create` / `issuer rotate` is asked for.
pub struct NewIssuer {
    /// The environment.
    pub env: String,
    /// Key algorithm (Ed25519 or ECDSA P-256); `None`: Ed25519 for a new key, the key's own
    /// for an existing token key.
    pub algorithm: Option<KeyAlgorithm>,
    /// Where the key comes from.
    pub key: NewIssuerKey,
    /// Lifetime (the CLI's default is [`DEFAULT_ISSUER_LIFETIME`]).
    pub lifetime: Ttl,
}

/// Where a new issuer's key comes from.
pub enum NewIssuerKey {
    /// Generated in memory and sealed with age to the environment's recipients.
    Sealed,
    /// In a PKCS#11 token: generated there (`generate`) or an existing key, by URI.
    Pkcs11 {
        /// The `pkcs11:` URI (`pin-source` allowed, `pin-value` refused).
        uri: String,
        /// Generate the key pair in the token.
        generate: bool,
        /// Accept a key that may leave the token (`--danger-allow-extractable`).
        allow_extractable: bool,
    },
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
}

/// The outcome of a state change (`activate`, `retire`).
#[derive(Debug, Clone, Serialize)]
pub struct IssuerChange {
    /// The issuer after the change.
    pub issuer: IssuerView,
    /// Live certificates that stop working once nodes drop it (retire only).
    pub cut_off: Vec<LiveCert>,
    /// Whether the environment's break-glass taint was cleared (retire only).
    pub untainted: bool,
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
        }
    }
}

impl LiveCert {
    fn of(e: &CertEntry) -> Self {
        Self {
            serial: e.serial.clone(),
            holder: e.holder.clone(),
            roles: e.roles.clone(),
            issuer: e.ca.clone(),
            not_after: inventory::rfc3339(e.not_after),
            break_glass: e.break_glass,
        }
    }
}

/// What to revoke.
pub enum RevokeTarget {
    /// A serial as typed (hex, any case, colons allowed).
    Serial(String),
    /// The client certificate of a talosconfig context (PEM).
    Certificate {
        /// The talosconfig's `ca` (PEM), which must be this environment's OS CA.
        server_ca: Vec<u8>,
        /// The client certificate PEM.
        crt: Vec<u8>,
    },
}

/// What `revoke` did and what will actually cut access.
#[derive(Debug, Clone, Serialize)]
pub struct RevokeOutcome {
    /// The revoked certificate.
    pub certificate: LiveCert,
    /// Whether it was already revoked (nothing was written).
    pub already_revoked: bool,
    /// When it was revoked.
    pub revoked: String,
    /// The reason.
    pub reason: String,
    /// Seconds of validity left (0 if expired).
    pub remaining_seconds: i64,
    /// `direct` or `issuer`.
    pub mode: String,
    /// For an issuer-signed certificate: the issuer to retire, and its state.
    pub issuer: Option<IssuerView>,
    /// Other live, unrevoked certificates of that issuer, to re-issue before retiring it.
    pub reissue: Vec<LiveCert>,
    /// The CRL file written, if any.
    pub crl: Option<String>,
}

/// A CRL and where it was stored.
pub struct CrlOutput {
    /// The issuer that signed it.
    pub issuer: String,
    /// DER.
    pub der: Vec<u8>,
    /// CRL number.
    pub number: u64,
    /// Entries.
    pub entries: usize,
    /// The vault file it was stored in.
    pub stored: String,
    /// Signed inside a PKCS#11 token.
    pub in_token: bool,
}

/// One revoked certificate in the JSON denylist.
#[derive(Debug, Clone, Serialize)]
pub struct DenylistEntry {
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER.
    pub fingerprint: String,
    /// `os` or the issuer id.
    pub issuer: String,
    /// `direct` or `issuer`.
    pub mode: &'static str,
    /// RFC 5280 reason.
    pub reason: String,
    /// When revoked.
    pub revoked: String,
    /// The certificate's notAfter.
    pub not_after: String,
}

/// `crl --format json`: every revoked certificate of the environment, direct ones included.
#[derive(Debug, Clone, Serialize)]
pub struct Denylist {
    /// The environment.
    pub env: String,
    /// When it was made.
    pub generated: String,
    /// The entries, by serial.
    pub revoked: Vec<DenylistEntry>,
}

/// One check of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: &'static str,
    /// `pass`, `fail` or `warn`.
    pub result: &'static str,
    /// Details.
    pub detail: String,
}

/// `verify`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The environment.
    pub env: String,
    /// The talosconfig context checked.
    pub context: String,
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate.
    pub fingerprint: String,
    /// Roles (subject O).
    pub roles: Vec<String>,
    /// Holder (CN).
    pub holder: Option<String>,
    /// `os`, an issuer id, or none.
    pub signed_by: Option<String>,
    /// notAfter.
    pub not_after: String,
    /// Whether every check passed (warnings allowed).
    pub good: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

/// A CA certificate's expiry in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct CaExpiry {
    /// `etcd`, `k8s`, `k8saggregator` or `os`.
    pub ca: &'static str,
    /// notAfter.
    pub not_after: String,
}

/// Counts in `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Every recorded certificate.
    pub issued: usize,
    /// Valid now and not revoked.
    pub live: usize,
    /// Past notAfter.
    pub expired: usize,
    /// Revoked (any time).
    pub revoked: usize,
    /// Revoked but not yet expired: still usable where only expiry or a retired issuer cuts.
    pub revoked_unexpired: usize,
}

/// Something `status` grades.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `expiring` (grade 1), `expired` or `tainted` (grade 2).
    pub kind: &'static str,
    /// What.
    pub what: String,
}

/// `status` of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    /// The environment.
    pub env: String,
    /// Its cluster.
    pub cluster_name: String,
    /// Recipients.
    pub recipients: Vec<String>,
    /// The break-glass mark.
    pub tainted: Option<Taint>,
    /// Bundle CA expiry.
    pub cas: Vec<CaExpiry>,
    /// Issuers.
    pub issuers: Vec<IssuerView>,
    /// Counts.
    pub counts: Counts,
    /// Live certificates, soonest expiry first.
    pub live: Vec<LiveCert>,
    /// What raised the grade.
    pub findings: Vec<Finding>,
    /// 0 fine, 1 something expires within the window, 2 something expired or tainted.
    pub grade: u8,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// Normalises a serial as typed (any case, `:` separators, leading zeros) to the records' form:
/// lowercase hex of the significant bytes.
pub fn normalize_serial(text: &str) -> Result<String, VaultError> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = digits.trim_start_matches('0');
    let even = if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_owned()
    };
    store::name::check_hex("serial", &even, 40)
        .map_err(|e| VaultError::BadRequest(format!("SERIAL: {e}")))?;
    Ok(even)
}

impl Vault {
    fn issuers_dir(name: &EnvName) -> PathBuf {
        env_dir(name).join("issuers")
    }

    /// Every issuer of the environment, by epoch; each issuer.yaml is checked against its
    /// certificate (a self-signed talvault issuer whose fingerprint, SKI and validity match).
    pub fn issuers(&self, env: &str) -> Result<Vec<Issuer>, VaultError> {
        let name = EnvName::parse(env)?;
        self.env_meta(&name)?;
        self.load_issuers(&name)
    }

    fn load_issuers(&self, name: &EnvName) -> Result<Vec<Issuer>, VaultError> {
        let dir = Self::issuers_dir(name);
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
            let meta = IssuerMeta::from_yaml(&shown, &self.read(&rel, META_MAX)?)?;
            if meta.id != e.name {
                return Err(bad(format!(
                    "id {:?} does not match its directory",
                    meta.id
                )));
            }
            let facts = read_issuer_certificate(meta.certificate.as_bytes())
                .map_err(|x| bad(format!("certificate: {x}")))?;
            if facts.fingerprint.0 != meta.fingerprint
                || hex(&facts.subject_key_id) != meta.subject_key_id
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

    /// The issuer that signs new certificates: the most recently activated active one.
    fn signing_issuer(issuers: &[Issuer]) -> Option<&Issuer> {
        issuers
            .iter()
            .filter(|i| i.meta.state == IssuerState::Active)
            .max_by(|a, b| {
                a.meta
                    .activated
                    .cmp(&b.meta.activated)
                    .then(a.meta.epoch.cmp(&b.meta.epoch))
            })
    }

    fn find_issuer<'a>(
        env: &str,
        issuers: &'a [Issuer],
        id: &str,
    ) -> Result<&'a Issuer, VaultError> {
        issuers
            .iter()
            .find(|i| i.meta.id == id)
            .ok_or_else(|| VaultError::NoSuchIssuer {
                env: env.into(),
                id: id.into(),
            })
    }

    /// Seals a secret of the environment the way its bundle is sealed.
    fn seal_for(
        &self,
        name: &EnvName,
        meta: &EnvMeta,
        plaintext: &[u8],
        ctx: &Context,
    ) -> Result<Vec<u8>, VaultError> {
        Ok(match meta.sealing {
            Sealing::Recipients => agestore::seal(plaintext, &self.recipients(name)?)?,
            Sealing::Passphrase => agestore::seal_with_passphrase(
                plaintext,
                ctx.passphrase.as_ref().ok_or(AgeError::EmptyPassphrase)?,
            )?,
        })
    }

    /// Opens a sealed file of the environment.
    fn open_sealed(
        &self,
        meta: &EnvMeta,
        rel: &Path,
        ctx: &Context,
    ) -> Result<(SecretBytes, OpenedBy), VaultError> {
        let sealed = self.read(rel, SEALED_MAX)?;
        let shown = self.root.join(rel);
        if meta.sealing == Sealing::Recipients && ctx.identities.is_empty() {
            return Err(VaultError::NoIdentity {
                file: rel.display().to_string(),
            });
        }
        Ok(match meta.sealing {
            Sealing::Recipients => agestore::open(&shown, &sealed, &ctx.identities)?,
            Sealing::Passphrase => {
                let p = ctx.passphrase.as_ref().ok_or(AgeError::EmptyPassphrase)?;
                (
                    agestore::open_with_passphrase(&shown, &sealed, p)?,
                    OpenedBy::Passphrase,
                )
            }
        })
    }

    /// The issuer's signing key, checked against the issuer certificate: unsealed from
    /// `key.age`, or opened in its PKCS#11 token (logging in once per process).
    fn issuer_signer(
        &self,
        name: &EnvName,
        meta: &EnvMeta,
        issuer: &Issuer,
        ctx: &Context,
    ) -> Result<(CaSigner, OpenedBy), VaultError> {
        let dir = Self::issuers_dir(name).join(&issuer.meta.id);
        let bad = |file: &Path, problem: String| VaultError::BadIssuer {
            file: file.display().to_string(),
            problem,
        };
        match &issuer.meta.key {
            IssuerKey::Age { .. } => {
                let rel = dir.join(ISSUER_KEY_FILE);
                let (plain, opened_by) = self.open_sealed(meta, &rel, ctx)?;
                let key = PrivateKey::from_talos_pem(plain.expose())
                    .map_err(|e| bad(&rel, format!("not an issuer key: {e}")))?;
                let pair = key
                    .key_pair()
                    .map_err(|e| bad(&rel, format!("not an issuer key: {e}")))?;
                if rcgen::PublicKeyData::der_bytes(&pair) != issuer.facts.public_key.as_slice() {
                    return Err(bad(
                        &rel,
                        "the key does not match the issuer certificate".into(),
                    ));
                }
                Ok((CaSigner::Memory(pair), opened_by))
            }
            IssuerKey::Pkcs11 {
                uri,
                public_key,
                danger_allow_extractable,
            } => {
                let rel = dir.join("issuer.yaml");
                if *public_key != hex(&issuer.facts.public_key) {
                    return Err(bad(
                        &rel,
                        "key.public_key does not match the issuer certificate".into(),
                    ));
                }
                let parsed = talvault_hsm::Pkcs11Uri::parse(uri)
                    .map_err(|e| bad(&rel, format!("key.uri: {e}")))?;
                let key = talvault_hsm::HsmKey::open(
                    &parsed,
                    &talvault_hsm::OpenOptions {
                        pin_prompt: ctx.pin_prompt.as_deref(),
                        allow_extractable: *danger_allow_extractable,
                        ..talvault_hsm::OpenOptions::default()
                    },
                )?;
                // The token must hold the very key the certificate names.
                if key.public_key_der() != issuer.facts.public_key.as_slice() {
                    return Err(bad(
                        &rel,
                        format!("the token's key at {uri} does not match the issuer certificate"),
                    ));
                }
                Ok((CaSigner::Token(key), OpenedBy::Pkcs11(uri.clone())))
            }
        }
    }

    /// Summaries of every certificate record of the environment (cached, see `store::index`).
    fn cert_entries(&self, name: &EnvName) -> Result<Vec<CertEntry>, VaultError> {
        let scanned = store::index::scan(
            &self.root,
            &env_dir(name).join("certs"),
            &format!("{}/certs", name.as_str()),
            store::index::YAML_RECORDS,
            |file, bytes| -> Result<CertEntry, VaultError> {
                let record = CertRecord::from_yaml(file, bytes)?;
                let entry = CertEntry::from_record(&record).map_err(|e| MetaError::Malformed {
                    file: file.into(),
                    message: e.to_string(),
                })?;
                check_record_name(file, &entry.serial)?;
                Ok(entry)
            },
        )?;
        Ok(self.keep_cache(scanned))
    }

    /// Summaries of every revocation record of the environment (cached).
    fn revoked_entries(&self, name: &EnvName) -> Result<Vec<RevokedEntry>, VaultError> {
        let scanned = store::index::scan(
            &self.root,
            &env_dir(name).join("revocations"),
            &format!("{}/revocations", name.as_str()),
            store::index::YAML_RECORDS,
            |file, bytes| -> Result<RevokedEntry, VaultError> {
                let record = RevocationRecord::from_yaml(file, bytes)?;
                let entry =
                    RevokedEntry::from_record(&record).map_err(|e| MetaError::Malformed {
                        file: file.into(),
                        message: e.to_string(),
                    })?;
                check_record_name(file, &entry.serial)?;
                Ok(entry)
            },
        )?;
        Ok(self.keep_cache(scanned))
    }

    fn issuer_views(
        issuers: &[Issuer],
        certs: &[CertEntry],
        revoked: &std::collections::HashSet<&str>,
        now: i64,
    ) -> Vec<IssuerView> {
        let signing = Self::signing_issuer(issuers).map(|i| i.meta.id.clone());
        issuers
            .iter()
            .map(|i| {
                let mine = certs.iter().filter(|c| c.ca == i.meta.id);
                let (mut issued, mut live) = (0, 0);
                for c in mine {
                    issued += 1;
                    if c.live_at(now) && !revoked.contains(c.serial.as_str()) {
                        live += 1;
                    }
                }
                IssuerView {
                    id: i.meta.id.clone(),
                    epoch: i.meta.epoch,
                    state: i.meta.state,
                    signing: signing.as_deref() == Some(i.meta.id.as_str()),
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
                }
            })
            .collect()
    }

    /// `issuer list`.
    pub fn issuer_list(&self, env: &str, ctx: &Context) -> Result<Vec<IssuerView>, VaultError> {
        let name = EnvName::parse(env)?;
        self.env_meta(&name)?;
        let issuers = self.load_issuers(&name)?;
        let certs = self.cert_entries(&name)?;
        let revoked = self.revoked_entries(&name)?;
        let revoked: std::collections::HashSet<&str> =
            revoked.iter().map(|r| r.serial.as_str()).collect();
        Ok(Self::issuer_views(
            &issuers,
            &certs,
            &revoked,
            unix(ctx.now),
        ))
    }

    fn issuer_view(
        &self,
        name: &EnvName,
        id: &str,
        ctx: &Context,
    ) -> Result<IssuerView, VaultError> {
        self.issuer_list(name.as_str(), ctx)?
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| VaultError::NoSuchIssuer {
                env: name.as_str().into(),
                id: id.into(),
            })
    }

    /// `issuer create` (and `issuer rotate`): a new self-signed client-issuing CA, pending,
    /// with its key sealed to the environment's recipients, audited, in one transaction.
    pub fn issuer_create(&self, req: &NewIssuer, ctx: &Context) -> Result<IssuerView, VaultError> {
        let name = EnvName::parse(&req.env)?;
        let meta = self.env_meta(&name)?;
        let issuers = self.load_issuers(&name)?;
        let lifetime = req.lifetime;
        if lifetime.as_seconds() < 3600 || lifetime.as_seconds() > MAX_ISSUER_LIFETIME_HOURS * 3600
        {
            return Err(VaultError::BadRequest(format!(
                "--lifetime {lifetime}: an issuer lives between 1h and {MAX_ISSUER_LIFETIME_HOURS}h"
            )));
        }
        let rng = ring::rand::SystemRandom::new();
        // The signer, and what the environment keeps of its key: a sealed copy, or a URI.
        let (signer, sealed_key) = match &req.key {
            NewIssuerKey::Sealed => {
                let key = match req.algorithm.unwrap_or(KeyAlgorithm::Ed25519) {
                    KeyAlgorithm::Ed25519 => PrivateKey::generate_ed25519(&rng),
                    KeyAlgorithm::EcdsaP256 => PrivateKey::generate_p256(&rng),
                    KeyAlgorithm::Rsa => {
                        return Err(VaultError::BadRequest(
                            "--algorithm: issuers are ed25519 or ecdsa-p256".into(),
                        ));
                    }
                }
                .map_err(|e| VaultError::Generate(format!("issuer key: {e}")))?;
                let pair = key
                    .key_pair()
                    .map_err(|e| VaultError::Generate(format!("issuer key: {e}")))?;
                let pem = key
                    .to_talos_pem()
                    .map_err(|e| VaultError::Generate(format!("issuer key: {e}")))?;
                (
                    CaSigner::Memory(pair),
                    Some(self.seal_for(&name, &meta, pem.expose(), ctx)?),
                )
            }
            NewIssuerKey::Pkcs11 {
                uri,
                generate,
                allow_extractable,
            } => {
                let uri = talvault_hsm::Pkcs11Uri::parse(uri)?;
                let options = talvault_hsm::OpenOptions {
                    pin_prompt: ctx.pin_prompt.as_deref(),
                    allow_extractable: *allow_extractable,
                    ..talvault_hsm::OpenOptions::default()
                };
                let wanted = match req.algorithm {
                    Some(KeyAlgorithm::EcdsaP256) => Some(talvault_hsm::KeyAlgorithm::EcdsaP256),
                    Some(KeyAlgorithm::Ed25519) => Some(talvault_hsm::KeyAlgorithm::Ed25519),
                    Some(KeyAlgorithm::Rsa) => {
                        return Err(VaultError::BadRequest(
                            "--algorithm: issuers are ed25519 or ecdsa-p256".into(),
                        ));
                    }
                    None => None,
                };
                let key = if *generate {
                    talvault_hsm::HsmKey::generate(
                        &uri,
                        wanted.unwrap_or(talvault_hsm::KeyAlgorithm::Ed25519),
                        &options,
                    )?
                } else {
                    talvault_hsm::HsmKey::open(&uri, &options)?
                };
                if let Some(w) = wanted
                    && w != key.algorithm()
                {
                    return Err(VaultError::BadRequest(format!(
                        "--algorithm {}: the token's key is {}",
                        w.as_str(),
                        key.algorithm().as_str()
                    )));
                }
                (CaSigner::Token(key), None)
            }
        };
        let algorithm = match &signer {
            CaSigner::Token(k) => k.algorithm().as_str(),
            CaSigner::Memory(_) => algorithm_name(req.algorithm.unwrap_or(KeyAlgorithm::Ed25519)),
        };
        let epoch = issuers.iter().map(|i| i.meta.epoch).max().unwrap_or(0) + 1;
        let mut suffix = [0u8; 2];
        ring::rand::SecureRandom::fill(&rng, &mut suffix)
            .map_err(|_| VaultError::Generate("no randomness".into()))?;
        let id = format!("e{epoch}-{}", hex(&suffix));
        let now = ctx.now.to_offset(time::UtcOffset::UTC);
        let common_name = format!(
            "{} issuer e{epoch} {:04}-{:02}",
            name.as_str(),
            now.year(),
            u8::from(now.month())
        );
        let cert = create_issuer_certificate(
            signer.key(),
            &IssuerSpec {
                common_name: &common_name,
                // The same clock-skew allowance as leaves get.
                not_before: now - crate::pki::issue::DEFAULT_BACKDATE,
                not_after: now + lifetime.as_duration(),
            },
            &rng,
        )
        .map_err(|e| signer.explain(VaultError::Sign(format!("issuer certificate: {e}"))))?;
        let facts = read_issuer_certificate(cert.pem.as_bytes())
            .map_err(|e| VaultError::Sign(format!("issuer certificate: {e}")))?;
        let key_record = match &signer {
            CaSigner::Memory(_) => IssuerKey::Age {
                file: ISSUER_KEY_FILE.into(),
            },
            CaSigner::Token(k) => IssuerKey::Pkcs11 {
                uri: k.uri_without_pin().to_string(),
                public_key: hex(k.public_key_der()),
                danger_allow_extractable: match &req.key {
                    NewIssuerKey::Pkcs11 {
                        allow_extractable, ..
                    } => *allow_extractable,
                    NewIssuerKey::Sealed => false,
                },
            },
        };
        let issuer = IssuerMeta {
            format_version: FORMAT_VERSION,
            id: id.clone(),
            epoch,
            state: IssuerState::Pending,
            algorithm: algorithm.into(),
            subject: format!("O=talvault, CN={common_name}"),
            serial: facts.serial_hex.clone(),
            fingerprint: facts.fingerprint.0.clone(),
            subject_key_id: hex(&facts.subject_key_id),
            not_before: rfc3339(facts.not_before),
            not_after: rfc3339(facts.not_after),
            created: rfc3339(ctx.now),
            activated: None,
            retired: None,
            key: key_record,
            certificate: cert.pem.clone(),
        };
        let dir = Self::issuers_dir(&name).join(&id);
        let mut t = Transaction::new(&self.root);
        if let Some(sealed) = &sealed_key {
            t.create(dir.join(ISSUER_KEY_FILE), sealed, Mode::Secret);
        }
        t.create(
            dir.join("issuer.yaml"),
            issuer.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let mut data = Map::new();
        data.insert("issuer".into(), json!(id));
        data.insert("epoch".into(), json!(epoch));
        data.insert("algorithm".into(), json!(issuer.algorithm));
        data.insert("fingerprint".into(), json!(issuer.fingerprint));
        data.insert("not_after".into(), json!(issuer.not_after));
        let opened_by = match &issuer.key {
            IssuerKey::Age { .. } => {
                data.insert("key_store".into(), json!("age"));
                None
            }
            IssuerKey::Pkcs11 {
                uri,
                danger_allow_extractable,
                ..
            } => {
                data.insert("key_store".into(), json!("pkcs11"));
                data.insert("pkcs11_uri".into(), json!(uri));
                if *danger_allow_extractable {
                    data.insert("danger_allow_extractable".into(), json!(true));
                }
                Some(OpenedBy::Pkcs11(uri.clone()))
            }
        };
        self.stage_event(
            &mut t,
            &name,
            ctx,
            opened_by.as_ref(),
            "issuer.create",
            data,
        )?;
        self.commit(t)?;
        self.issuer_view(&name, &id, ctx)
    }

    /// `issuer activate`: a pending issuer starts signing (the previously signing one stays
    /// active, and accepted, until it is retired).
    pub fn issuer_activate(
        &self,
        env: &str,
        id: &str,
        ctx: &Context,
    ) -> Result<IssuerChange, VaultError> {
        let name = EnvName::parse(env)?;
        self.env_meta(&name)?;
        let issuers = self.load_issuers(&name)?;
        let issuer = Self::find_issuer(env, &issuers, id)?;
        if issuer.meta.state != IssuerState::Pending {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: issuer.meta.state.as_str(),
                operation: "activate",
                needed: "pending",
            });
        }
        if unix(issuer.facts.not_after) <= unix(ctx.now) {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: "expired",
                operation: "activate",
                needed: "valid",
            });
        }
        let mut meta = issuer.meta.clone();
        meta.state = IssuerState::Active;
        meta.activated = Some(rfc3339(ctx.now));
        let mut t = Transaction::new(&self.root);
        t.write(
            Self::issuers_dir(&name).join(id).join("issuer.yaml"),
            meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let mut data = Map::new();
        data.insert("issuer".into(), json!(id));
        data.insert(
            "previously_signing".into(),
            json!(Self::signing_issuer(&issuers).map(|i| i.meta.id.clone())),
        );
        self.stage_event(&mut t, &name, ctx, None, "issuer.activate", data)?;
        self.commit(t)?;
        Ok(IssuerChange {
            issuer: self.issuer_view(&name, id, ctx)?,
            cut_off: Vec::new(),
            untainted: false,
        })
    }

    /// `issuer retire`: the issuer leaves `acceptedCAs` at the next patch, which cuts off every
    /// certificate it signed. Refused for the only active issuer while it has live
    /// certificates, unless forced. Clears the taint of a break-glass certificate it signed.
    pub fn issuer_retire(
        &self,
        env: &str,
        id: &str,
        force: bool,
        ctx: &Context,
    ) -> Result<IssuerChange, VaultError> {
        let name = EnvName::parse(env)?;
        let mut env_meta = self.env_meta(&name)?;
        let issuers = self.load_issuers(&name)?;
        let issuer = Self::find_issuer(env, &issuers, id)?;
        if issuer.meta.state == IssuerState::Retired {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: "retired",
                operation: "retire",
                needed: "pending or active",
            });
        }
        let now = unix(ctx.now);
        let certs = self.cert_entries(&name)?;
        let revoked = self.revoked_entries(&name)?;
        let revoked: std::collections::HashSet<&str> =
            revoked.iter().map(|r| r.serial.as_str()).collect();
        let mut cut_off: Vec<LiveCert> = certs
            .iter()
            .filter(|c| c.ca == id && c.live_at(now) && !revoked.contains(c.serial.as_str()))
            .map(LiveCert::of)
            .collect();
        cut_off.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
        let other_active = issuers
            .iter()
            .any(|i| i.meta.id != id && i.meta.state == IssuerState::Active);
        if issuer.meta.state == IssuerState::Active
            && !other_active
            && !cut_off.is_empty()
            && !force
        {
            return Err(VaultError::RetireStrands {
                id: id.into(),
                live: cut_off.len(),
            });
        }
        let mut meta = issuer.meta.clone();
        meta.state = IssuerState::Retired;
        meta.retired = Some(rfc3339(ctx.now));
        let mut t = Transaction::new(&self.root);
        t.write(
            Self::issuers_dir(&name).join(id).join("issuer.yaml"),
            meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        // A break-glass certificate signed by this issuer dies with it: clear the taint.
        let untainted = env_meta
            .tainted
            .as_ref()
            .and_then(|t| t.serial.as_deref())
            .is_some_and(|s| certs.iter().any(|c| c.serial == s && c.ca == id));
        if untainted {
            env_meta.tainted = None;
            t.write(
                env_dir(&name).join("env.yaml"),
                env_meta.to_yaml()?.as_bytes(),
                Mode::Public,
            );
        }
        let mut data = Map::new();
        data.insert("issuer".into(), json!(id));
        data.insert("forced".into(), json!(force));
        data.insert("cut_off".into(), json!(cut_off.len()));
        data.insert("untainted".into(), json!(untainted));
        self.stage_event(&mut t, &name, ctx, None, "issuer.retire", data)?;
        self.commit(t)?;
        Ok(IssuerChange {
            issuer: self.issuer_view(&name, id, ctx)?,
            cut_off,
            untainted,
        })
    }

    /// The certificates `machine.acceptedCAs` must hold: every pending and active issuer, in
    /// epoch order, each with a label for the patch's comments.
    pub fn accepted_cas(&self, env: &str) -> Result<Vec<(String, String)>, VaultError> {
        Ok(self
            .issuers(env)?
            .into_iter()
            .filter(|i| i.meta.state.accepted())
            .map(|i| {
                (
                    format!(
                        "talvault issuer {} ({}, {}, until {})",
                        i.meta.id,
                        i.meta.state.as_str(),
                        i.meta.algorithm,
                        i.meta.not_after
                    ),
                    i.meta.certificate,
                )
            })
            .collect())
    }

    /// `revoke`: records the revocation and an audit event, regenerates the issuer's CRL (for
    /// an issuer that is still accepted), and reports what actually cuts access. Revoking
    /// twice changes nothing and is not an error.
    pub fn revoke(
        &self,
        env: &str,
        target: &RevokeTarget,
        reason: RevocationReason,
        ctx: &Context,
    ) -> Result<RevokeOutcome, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        let serial = match target {
            RevokeTarget::Serial(s) => normalize_serial(s)?,
            RevokeTarget::Certificate { server_ca, crt } => {
                self.check_server_ca(&meta, server_ca)?;
                let der = certificate_der(crt)
                    .map_err(|e| VaultError::Unreadable(format!("crt: {e}")))?;
                leaf_facts(&der)
                    .map_err(|e| VaultError::Unreadable(format!("crt: {e}")))?
                    .serial_hex
            }
        };
        let record = self.cert_record(&name, &serial)?;
        if let RevokeTarget::Certificate { crt, .. } = target {
            let der =
                certificate_der(crt).map_err(|e| VaultError::Unreadable(format!("crt: {e}")))?;
            if Fingerprint::of(&der).0 != record.fingerprint {
                return Err(VaultError::ForeignTalosconfig {
                    what: format!(
                        "the talosconfig's certificate has serial {serial} but is not the certificate environment {env:?} issued with it"
                    ),
                });
            }
        }
        let entry = CertEntry::from_record(&record).map_err(|e| MetaError::Malformed {
            file: format!("certs/{serial}.yaml"),
            message: e.to_string(),
        })?;
        let issuers = self.load_issuers(&name)?;
        let issuer = issuers.iter().find(|i| i.meta.id == record.signed_by.ca);
        let now = unix(ctx.now);
        let rel = env_dir(&name)
            .join("revocations")
            .join(format!("{serial}.yaml"));
        let existing = match self.read(&rel, META_MAX) {
            Ok(bytes) => Some(RevocationRecord::from_yaml(
                &rel.display().to_string(),
                &bytes,
            )?),
            Err(VaultError::Store(StoreError::NotFound { .. })) => None,
            Err(e) => return Err(e),
        };
        let already_revoked = existing.is_some();
        let revocation = existing.unwrap_or_else(|| RevocationRecord {
            serial: serial.clone(),
            fingerprint: record.fingerprint.clone(),
            signed_by: record.signed_by.clone(),
            reason: reason.as_str().to_owned(),
            revoked: rfc3339(ctx.now),
            actor: ctx.actor.clone(),
            holder: record.holder.clone(),
            roles: record.roles.clone(),
            not_after: record.not_after.clone(),
        });
        let mut crl = None;
        if !already_revoked {
            let mut t = Transaction::new(&self.root);
            t.create(&rel, revocation.to_yaml()?.as_bytes(), Mode::Public);
            let mut opened_by = None;
            if let Some(issuer) = issuer.filter(|i| i.meta.state.accepted()) {
                let mut entries = self.revoked_entries(&name)?;
                entries.push(RevokedEntry::from_record(&revocation).map_err(|e| {
                    MetaError::Malformed {
                        file: rel.display().to_string(),
                        message: e.to_string(),
                    }
                })?);
                let (out, by) = self.build_crl(&name, &meta, issuer, &entries, ctx)?;
                t.write(&out.stored, &out.der_pem(), Mode::Public);
                crl = Some(out.stored.clone());
                opened_by = Some(by);
            }
            let mut data = Map::new();
            data.insert("serial".into(), json!(serial));
            data.insert("fingerprint".into(), json!(record.fingerprint));
            data.insert("reason".into(), json!(reason.as_str()));
            data.insert("signed_by".into(), json!(record.signed_by.ca));
            data.insert("crl".into(), json!(crl));
            self.stage_event(&mut t, &name, ctx, opened_by.as_ref(), "revoke", data)?;
            self.commit(t)?;
        }
        let revoked_set: std::collections::HashSet<String> = self
            .revoked_entries(&name)?
            .into_iter()
            .map(|r| r.serial)
            .collect();
        let (issuer_view, reissue) = match issuer {
            Some(i) => {
                let certs = self.cert_entries(&name)?;
                let mut others: Vec<&CertEntry> = certs
                    .iter()
                    .filter(|c| {
                        c.ca == i.meta.id
                            && c.serial != serial
                            && c.live_at(now)
                            && !revoked_set.contains(&c.serial)
                    })
                    .collect();
                others.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.serial.cmp(&b.serial)));
                let others = others.into_iter().map(LiveCert::of).collect();
                (Some(self.issuer_view(&name, &i.meta.id, ctx)?), others)
            }
            None => (None, Vec::new()),
        };
        Ok(RevokeOutcome {
            certificate: LiveCert::of(&entry),
            already_revoked,
            revoked: revocation.revoked,
            reason: revocation.reason,
            remaining_seconds: (entry.not_after - now).max(0),
            mode: record.mode,
            issuer: issuer_view,
            reissue,
            crl,
        })
    }

    fn cert_record(&self, name: &EnvName, serial: &str) -> Result<CertRecord, VaultError> {
        let rel = env_dir(name).join("certs").join(format!("{serial}.yaml"));
        match self.read(&rel, META_MAX) {
            Ok(bytes) => {
                let record = CertRecord::from_yaml(&rel.display().to_string(), &bytes)?;
                check_record_name(&rel.display().to_string(), &record.serial)?;
                Ok(record)
            }
            Err(VaultError::Store(StoreError::NotFound { .. })) => Err(VaultError::UnknownSerial {
                env: name.as_str().into(),
                serial: serial.into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Refuses a talosconfig whose server CA is not this environment's Talos OS CA.
    fn check_server_ca(&self, meta: &EnvMeta, server_ca: &[u8]) -> Result<(), VaultError> {
        let der =
            certificate_der(server_ca).map_err(|e| VaultError::Unreadable(format!("ca: {e}")))?;
        if Fingerprint::of(&der) != meta.pins.os {
            return Err(VaultError::ForeignTalosconfig {
                what: format!(
                    "the talosconfig's CA is not the Talos OS CA of environment {:?} (cluster {:?})",
                    meta.name, meta.cluster_name
                ),
            });
        }
        Ok(())
    }

    /// Signs the CRL of `issuer` over its unexpired revocations among `entries`.
    fn build_crl(
        &self,
        name: &EnvName,
        meta: &EnvMeta,
        issuer: &Issuer,
        entries: &[RevokedEntry],
        ctx: &Context,
    ) -> Result<(CrlOutput, OpenedBy), VaultError> {
        let policy = self.read_policy(name)?;
        let now = ctx.now.to_offset(time::UtcOffset::UTC);
        let stored = env_dir(name)
            .join("crl")
            .join(format!("{}.crl.pem", issuer.meta.id));
        // CRL numbers must increase (RFC 5280 §5.2.3) across clones that never talk: use the
        // time in seconds, and one more than the stored CRL's number if that is not larger.
        let previous = match self.read(&stored, SEALED_MAX) {
            Ok(pem) => crate::keys::pem_decode_first(&pem).and_then(|b| crl_number(&b.der)),
            Err(_) => None,
        };
        let number = u64::try_from(unix(now))
            .unwrap_or(0)
            .max(previous.map_or(0, |p| p.saturating_add(1)));
        let mut revoked: Vec<RevokedCertificate> = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.ca == issuer.meta.id && e.not_after >= unix(now))
        {
            revoked.push(RevokedCertificate {
                serial: hex_decode(&e.serial).ok_or_else(|| {
                    VaultError::Sign(format!("revocation {}: bad serial", e.serial))
                })?,
                revoked_at: OffsetDateTime::from_unix_timestamp(e.revoked)
                    .map_err(|_| VaultError::Sign("revocation time out of range".into()))?,
                reason: e.reason.parse().unwrap_or(RevocationReason::Unspecified),
            });
        }
        let (signer, opened_by) = self.issuer_signer(name, meta, issuer, ctx)?;
        let crl = sign_crl(
            &certificate_der(issuer.meta.certificate.as_bytes()).map_err(VaultError::Sign)?,
            signer.key(),
            &CrlParams {
                this_update: now,
                next_update: now + policy.crl_validity.as_duration(),
                crl_number: number,
            },
            &revoked,
        )
        .map_err(|e| signer.explain(VaultError::Sign(format!("CRL: {e}"))))?;
        Ok((
            CrlOutput {
                in_token: matches!(signer, CaSigner::Token(_)),
                issuer: issuer.meta.id.clone(),
                number,
                entries: revoked.len(),
                der: crl.der,
                stored: stored.display().to_string(),
            },
            opened_by,
        ))
    }

    /// `crl`: signs a fresh CRL with the issuer (default: the signing issuer), stores it in
    /// `crl/<issuer>.crl.pem` and audits the use of the key.
    pub fn crl(
        &self,
        env: &str,
        issuer_id: Option<&str>,
        ctx: &Context,
    ) -> Result<CrlOutput, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        let issuers = self.load_issuers(&name)?;
        let issuer = match issuer_id {
            Some(id) => Self::find_issuer(env, &issuers, id)?,
            None => Self::signing_issuer(&issuers)
                .ok_or_else(|| VaultError::NoCrlIssuer { env: env.into() })?,
        };
        if !issuer.meta.state.accepted() {
            return Err(VaultError::IssuerState {
                id: issuer.meta.id.clone(),
                state: issuer.meta.state.as_str(),
                operation: "a CRL",
                needed: "pending or active",
            });
        }
        let entries = self.revoked_entries(&name)?;
        let (out, opened_by) = self.build_crl(&name, &meta, issuer, &entries, ctx)?;
        let mut t = Transaction::new(&self.root);
        t.write(&out.stored, &out.der_pem(), Mode::Public);
        let mut data = Map::new();
        data.insert("issuer".into(), json!(out.issuer));
        data.insert("crl_number".into(), json!(out.number));
        data.insert("entries".into(), json!(out.entries));
        self.stage_event(&mut t, &name, ctx, Some(&opened_by), "crl", data)?;
        self.commit(t)?;
        Ok(out)
    }

    /// `crl --format json`: every revocation of the environment (direct ones too); opens
    /// nothing and signs nothing.
    pub fn denylist(&self, env: &str, ctx: &Context) -> Result<Denylist, VaultError> {
        let name = EnvName::parse(env)?;
        self.env_meta(&name)?;
        let mut entries = self.revoked_entries(&name)?;
        entries.sort_by(|a, b| a.serial.cmp(&b.serial));
        let revoked = entries
            .into_iter()
            .map(|e| DenylistEntry {
                mode: if e.ca == OS_CA { "direct" } else { "issuer" },
                serial: e.serial,
                fingerprint: e.fingerprint,
                issuer: e.ca,
                reason: e.reason,
                revoked: inventory::rfc3339(e.revoked),
                not_after: inventory::rfc3339(e.not_after),
            })
            .collect();
        Ok(Denylist {
            env: env.into(),
            generated: rfc3339(ctx.now),
            revoked,
        })
    }

    /// `verify`: judges a talosconfig context's client certificate against the environment:
    /// server CA, chain, EKU, roles, validity, revocation, whether its CA is still accepted,
    /// and whether the policy would still issue it. `Err` only when it cannot be read.
    pub fn verify(
        &self,
        env: &str,
        context: &str,
        server_ca: &[u8],
        crt: &[u8],
        ctx: &Context,
    ) -> Result<Verification, VaultError> {
        let name = EnvName::parse(env)?;
        let meta = self.env_meta(&name)?;
        let der = certificate_der(crt).map_err(|e| VaultError::Unreadable(format!("crt: {e}")))?;
        let facts = leaf_facts(&der).map_err(|e| VaultError::Unreadable(format!("crt: {e}")))?;
        let now = ctx.now;
        let mut checks = Vec::new();
        let mut check = |check: &'static str, result: &'static str, detail: String| {
            checks.push(Check {
                check,
                result,
                detail,
            });
        };

        // 1. The server CA: the talosconfig must trust this cluster's apid.
        match self.check_server_ca(&meta, server_ca) {
            Ok(()) => check(
                "server-ca",
                "pass",
                format!("the Talos OS CA of cluster {:?}", meta.cluster_name),
            ),
            Err(e) => check("server-ca", "fail", e.to_string()),
        }

        // 2. The chain: signed by the OS CA or by one of the environment's issuers.
        let issuers = self.load_issuers(&name)?;
        let os_der = certificate_der(meta.certificates.os.as_bytes()).map_err(VaultError::Sign)?;
        let mut signed_by: Option<String> = None;
        let mut signer_not_after = None;
        if signed_by_ca(&der, &os_der) {
            signed_by = Some(OS_CA.into());
            signer_not_after = verify::not_after(meta.certificates.os.as_bytes()).ok();
        } else {
            for i in &issuers {
                let ca =
                    certificate_der(i.meta.certificate.as_bytes()).map_err(VaultError::Sign)?;
                if signed_by_ca(&der, &ca) {
                    signed_by = Some(i.meta.id.clone());
                    signer_not_after = Some(i.facts.not_after);
                    break;
                }
            }
        }
        match &signed_by {
            Some(ca) if ca == OS_CA => {
                check("chain", "pass", "signed by the Talos OS CA (direct)".into())
            }
            Some(ca) => check("chain", "pass", format!("signed by issuer {ca}")),
            None => check(
                "chain",
                "fail",
                "not signed by the Talos OS CA or any issuer of this environment".into(),
            ),
        }
        if let Some(end) = signer_not_after
            && end < now
        {
            check(
                "ca-validity",
                "fail",
                format!("the signing CA expired at {}", rfc3339(end)),
            );
        }

        // 3. EKU exactly [clientAuth] (apid, Talos ≥ 1.12 unconditionally).
        if facts.is_ca {
            check(
                "eku",
                "fail",
                "a CA certificate, not a client certificate".into(),
            );
        } else if facts.eku_is_client_auth_only() {
            check("eku", "pass", "exactly clientAuth".into());
        } else {
            check(
                "eku",
                "fail",
                format!(
                    "extended key usage {:?}; apid requires exactly clientAuth",
                    facts.extended_key_usage
                ),
            );
        }

        // 4. Roles.
        let roles = Role::parse_set(facts.organizations.iter().map(String::as_str));
        match &roles {
            Ok(r) if r.iter().all(Role::is_known) && !r.is_empty() => {
                check("roles", "pass", facts.organizations.join(", "))
            }
            Ok(r) if r.is_empty() => check("roles", "fail", "no roles: apid grants nothing".into()),
            _ => check(
                "roles",
                "warn",
                format!(
                    "{:?} includes a role Talos does not know",
                    facts.organizations
                ),
            ),
        }

        // 5. Validity now.
        if now < facts.not_before {
            check(
                "validity",
                "fail",
                format!("not valid before {}", rfc3339(facts.not_before)),
            );
        } else if now > facts.not_after {
            check(
                "validity",
                "fail",
                format!("expired at {}", rfc3339(facts.not_after)),
            );
        } else {
            let left = facts.not_after - now;
            check(
                "validity",
                "pass",
                format!(
                    "until {} ({}h{}m left)",
                    rfc3339(facts.not_after),
                    left.whole_hours(),
                    left.whole_minutes() % 60
                ),
            );
        }

        // 6. Revocation.
        let rel = env_dir(&name)
            .join("revocations")
            .join(format!("{}.yaml", facts.serial_hex));
        match self.read(&rel, META_MAX) {
            Ok(bytes) => {
                let r = RevocationRecord::from_yaml(&rel.display().to_string(), &bytes)?;
                if r.fingerprint == facts.fingerprint {
                    check(
                        "revocation",
                        "fail",
                        format!("revoked at {} ({})", r.revoked, r.reason),
                    );
                } else {
                    check("revocation", "pass", "not revoked".into());
                }
            }
            Err(VaultError::Store(StoreError::NotFound { .. })) => {
                check("revocation", "pass", "not revoked".into())
            }
            Err(e) => return Err(e),
        }

        // 7. Is its CA still accepted by the nodes?
        match signed_by.as_deref() {
            Some(OS_CA) => check(
                "accepted",
                "pass",
                "the OS CA is always accepted (only expiry or an OS CA rotation cuts it)".into(),
            ),
            Some(id) => {
                let state = issuers
                    .iter()
                    .find(|i| i.meta.id == id)
                    .map(|i| i.meta.state);
                match state {
                    Some(IssuerState::Retired) => check(
                        "accepted",
                        "fail",
                        format!("issuer {id} is retired (dropped from acceptedCAs)"),
                    ),
                    Some(s) => check("accepted", "pass", format!("issuer {id} is {}", s.as_str())),
                    None => {}
                }
            }
            None => {}
        }

        // 8. The record and the policy.
        let record = match self.cert_record(&name, &facts.serial_hex) {
            Ok(r) if r.fingerprint == facts.fingerprint => Some(r),
            Ok(_) | Err(VaultError::UnknownSerial { .. }) => None,
            Err(e) => return Err(e),
        };
        match &record {
            Some(r) => check(
                "recorded",
                "pass",
                format!("issued by {} at {}", r.actor, r.issued),
            ),
            None => check(
                "recorded",
                "warn",
                "not issued by talvault from this vault (no certificate record)".into(),
            ),
        }
        let policy = self.read_policy(&name)?;
        if let Ok(roles) = roles {
            let lifetime = facts.not_after - facts.not_before;
            // Leaves are backdated up to a minute for clock skew; the TTL is what is left.
            let backdate = crate::pki::issue::DEFAULT_BACKDATE.min(lifetime);
            let ttl = Ttl::from_seconds(
                u64::try_from((lifetime - backdate).whole_seconds()).unwrap_or(0),
            );
            let holder = facts
                .common_name
                .as_deref()
                .and_then(|h| Holder::parse(h).ok());
            let request = Request {
                roles,
                ttl,
                holder,
                break_glass: record.as_ref().and_then(|r| {
                    if r.break_glass {
                        Some(r.reason.clone().unwrap_or_else(|| "break-glass".into()))
                    } else {
                        None
                    }
                }),
            };
            let direct_ok = signed_by.as_deref() != Some(OS_CA) || policy.allow_direct;
            match (policy.grant(&request), direct_ok) {
                (Ok(_), true) => {
                    check("policy", "pass", "the current policy would issue it".into())
                }
                (Ok(_), false) => check(
                    "policy",
                    "fail",
                    "the policy no longer allows direct signing by the OS CA".into(),
                ),
                (Err(e), _) => check(
                    "policy",
                    "fail",
                    format!("the current policy would refuse it: {e}"),
                ),
            }
        }

        let good = checks.iter().all(|c| c.result != "fail");
        Ok(Verification {
            env: env.into(),
            context: context.into(),
            serial: facts.serial_hex,
            fingerprint: facts.fingerprint,
            roles: facts.organizations,
            holder: facts.common_name,
            signed_by,
            not_after: rfc3339(facts.not_after),
            good,
            checks,
        })
    }

    /// `status`: per environment, live certificates, counts, issuers, CA expiry, taint and
    /// recipients, graded against the `expiring` window. Opens nothing.
    pub fn status(
        &self,
        env: Option<&str>,
        expiring: time::Duration,
        ctx: &Context,
    ) -> Result<Vec<EnvStatus>, VaultError> {
        let now = unix(ctx.now);
        let horizon = now + expiring.whole_seconds();
        let mut out = Vec::new();
        for name in self.envs(env)? {
            let meta = self.env_meta(&name)?;
            let recipients = match meta.sealing {
                Sealing::Recipients => self
                    .recipients(&name)?
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                Sealing::Passphrase => vec!["(passphrase)".to_owned()],
            };
            let issuers = self.load_issuers(&name)?;
            let certs = self.cert_entries(&name)?;
            let revoked_entries = self.revoked_entries(&name)?;
            let revoked: std::collections::HashSet<&str> =
                revoked_entries.iter().map(|r| r.serial.as_str()).collect();
            let mut counts = Counts {
                issued: certs.len(),
                revoked: revoked_entries.len(),
                ..Counts::default()
            };
            let issuer_views = Self::issuer_views(&issuers, &certs, &revoked, now);
            let mut live_entries: Vec<CertEntry> = Vec::new();
            // Consumes the summaries: the live ones move into the report without copies.
            for c in certs {
                if c.not_after < now {
                    counts.expired += 1;
                } else if revoked.contains(c.serial.as_str()) {
                    counts.revoked_unexpired += 1;
                } else if c.live_at(now) {
                    live_entries.push(c);
                }
            }
            counts.live = live_entries.len();
            live_entries.sort_unstable_by(|a, b| {
                a.not_after
                    .cmp(&b.not_after)
                    .then_with(|| a.serial.cmp(&b.serial))
            });
            let mut findings = Vec::new();
            let mut cas = Vec::new();
            for (ca, pem) in meta.certificates.named() {
                let end = verify::not_after(pem.as_bytes()).map_err(|e| MetaError::Malformed {
                    file: format!("envs/{}/env.yaml", name.as_str()),
                    message: format!("certificates.{ca}: {e}"),
                })?;
                grade_expiry(&mut findings, &format!("CA {ca}"), unix(end), now, horizon);
                cas.push(CaExpiry {
                    ca,
                    not_after: rfc3339(end),
                });
            }
            for i in issuers.iter().filter(|i| i.meta.state.accepted()) {
                grade_expiry(
                    &mut findings,
                    &format!("issuer {} ({})", i.meta.id, i.meta.state.as_str()),
                    unix(i.facts.not_after),
                    now,
                    horizon,
                );
            }
            if let Some(t) = &meta.tainted {
                findings.push(Finding {
                    kind: "tainted",
                    what: format!("break-glass since {}: {}", t.since, t.reason),
                });
            }
            let grade = findings
                .iter()
                .map(|f| if f.kind == "expiring" { 1 } else { 2 })
                .max()
                .unwrap_or(0);
            out.push(EnvStatus {
                env: name.as_str().into(),
                cluster_name: meta.cluster_name.clone(),
                recipients,
                tainted: meta.tainted.clone(),
                cas,
                issuers: issuer_views,
                counts,
                live: live_entries.into_iter().map(LiveCert::from).collect(),
                findings,
                grade,
            });
        }
        Ok(out)
    }
}

fn grade_expiry(findings: &mut Vec<Finding>, what: &str, end: i64, now: i64, horizon: i64) {
    if end < now {
        findings.push(Finding {
            kind: "expired",
            what: format!("{what} expired at {}", inventory::rfc3339(end)),
        });
    } else if end <= horizon {
        findings.push(Finding {
            kind: "expiring",
            what: format!("{what} expires at {}", inventory::rfc3339(end)),
        });
    }
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

fn algorithm_name(a: KeyAlgorithm) -> &'static str {
    match a {
        KeyAlgorithm::Ed25519 => "ed25519",
        KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        KeyAlgorithm::Rsa => "rsa",
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl CrlOutput {
    /// The CRL as PEM (`X509 CRL`, LF line ends).
    pub fn der_pem(&self) -> Vec<u8> {
        crate::keys::pem_encode("X509 CRL", &self.der).to_vec()
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
