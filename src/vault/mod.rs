//! The application service: the only place that joins the pure modules (`bundle`, `pki`,
//! `audit`, `model`) with storage (`store`), and the only writer of audit events. This file is
//! the kernel (find, init and open a vault, load an environment, open and seal its secrets,
//! stage an audit event, commit); each capability has its own room (`env`, `bundle`,
//! `recipients`, `holders`, `issue`, `kubeconfig`, `renew`, `issuers`, `revocation`, `crl`,
//! `verify`, `status`, `audit`, `upgrade`), read top to bottom as load → check → act → store →
//! audit, sharing only this kernel, the signing half of it (`signer`), sealing to a holder
//! (`delivery`) and the read side (`records`). It must not print, prompt or parse
//! arguments (that is `cli`), and it returns secrets only through the explicit
//! export/exec/issue paths.
#![expect(
    clippy::disallowed_methods,
    reason = "the application service draws randomness for generation and issuance"
)]

mod audit;
mod backup;
mod bundle;
mod check;
mod crl;
mod delivery;
mod env;
mod error;
mod holders;
mod issue;
mod issuers;
mod kubeconfig;
mod recipients;
mod records;
mod renew;
mod revocation;
mod signer;
mod status;
mod trail;
mod upgrade;
mod verify;

use std::cell::{OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

pub use self::audit::{AuditOutcome, GitChange};
pub use self::backup::{
    BackupStream, BackupView, Copied, OpenTo, PendingOpen, PendingReseal, PendingSeal, SealRequest,
    StaleBackup,
};
pub use self::bundle::ExportTo;
pub use self::check::{FieldCheck, MachineCheck};
pub use self::crl::{Denylist, DenylistEntry};
pub use self::delivery::{
    Delivery, DeliveryKind, Opened, OpenedDelivery, Sealed, open_delivery, sealed_file_name,
};
pub use self::env::{BundleSource, EnvView, NewEnv, SealTo};
pub use self::error::VaultError;
pub use self::holders::{HolderView, NewHolder};
pub use self::issue::{Delivered, IssueRequest, Issued, PreparedIssue};
pub use self::issuers::{
    DEFAULT_ISSUER_LIFETIME, IssuerChange, MAX_ISSUER_LIFETIME_HOURS, NewIssuer, NewIssuerKey,
    PatchOutput, PatchRequest,
};
pub use self::kubeconfig::{
    DEFAULT_NAMESPACE, DeliveredKubeconfig, IssuedKubeconfig, KubeconfigRequest, PreparedKubeconfig,
};
pub use self::recipients::RecipientChange;
pub use self::records::{Issuer, IssuerView, LiveCert};
pub use self::renew::{
    NotDue, PlannedRenewal, PreparedRenewal, RenewRequest, RenewWho, Renewed, RenewedCert,
    SkippedHolder,
};
pub use self::revocation::{RevokeOutcome, RevokeTarget};
pub use self::signer::CrlOutput;
pub use self::trail::BACKUP_RECIPIENTS_FILE;

pub use self::status::{ApiCounts, CaExpiry, Counts, EnvStatus, Finding};
pub use self::verify::Verification;
use crate::bundle::SecretsBundle;
pub use crate::model::{CertRecord, SignedBy};
use crate::model::{EnvMeta, MetaError, Pins, Sealing, VaultConfig};
use crate::secret::{SecretBytes, SecretText};
use crate::store::age::{self as agestore, AgeError, Identity, OpenedBy};
use crate::store::txn::{self, Transaction};
use crate::store::{self, EnvName, Mode, StoreError, VaultLock};

pub use crate::store::age::Recipient;

/// The identities to open sealed files with: the `-i` files, else `TALVAULT_IDENTITY`, else
/// `SOPS_AGE_KEY_FILE`; none when no source is set (a command that must open something then
/// says so). Encrypted identity files ask through `callbacks`.
pub fn load_identities<C: age::Callbacks>(
    explicit: &[PathBuf],
    talvault_identity: Option<&std::ffi::OsStr>,
    sops_age_key_file: Option<&std::ffi::OsStr>,
    callbacks: C,
) -> Result<Vec<Identity>, VaultError> {
    match agestore::resolve_identity_files(explicit, talvault_identity, sops_age_key_file) {
        Ok((_, files)) => Ok(agestore::load_identities(&files, callbacks)?),
        Err(AgeError::NoIdentitySource) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The recipients listed in a recipients file (`age -R` format) the user gave.
pub fn read_recipients_file(bytes: &[u8], path: &Path) -> Result<Vec<Recipient>, VaultError> {
    Ok(agestore::parse_recipients(
        &String::from_utf8_lossy(bytes),
        path,
    )?)
}

pub use crate::model::VAULT_FILE;
/// Largest metadata file read.
const META_MAX: u64 = 1 << 20;
/// Largest sealed file read.
const SEALED_MAX: u64 = 16 << 20;

/// Given a token label, the PIN, or why it cannot be had.
pub type PinPrompt = Box<dyn Fn(&str) -> Result<secrecy::SecretString, String>>;

/// Gives the passphrase of a passphrase-sealed environment, or says why it cannot.
pub type PassphraseSource =
    Box<dyn Fn() -> Result<SecretText, Box<dyn std::error::Error + Send + Sync>>>;

/// Who acts and when, and how sealed files are opened: identities, and a passphrase asked for
/// at most once, only when a passphrase-sealed environment is opened or sealed to.
pub struct Context {
    /// For audit events.
    pub actor: String,
    /// The current time.
    pub now: OffsetDateTime,
    /// Identities that may open sealed files.
    pub identities: Vec<Identity>,
    /// Where a passphrase comes from, when one is needed.
    pub passphrase: Option<PassphraseSource>,
    /// Asks for a PKCS#11 token's PIN (given its label) when the URI's `pin-source` and
    /// `TALVAULT_PKCS11_PIN` do not give one.
    pub pin_prompt: Option<PinPrompt>,
    /// How this operator reaches PKCS#11 tokens. Never read from the vault: a vault file must
    /// not decide which library is loaded.
    pub pkcs11: Pkcs11Setup,
    /// Whether the audit chain this command trusts must be authenticated.
    pub chain: ChainCheck,
    asked: OnceCell<SecretText>,
}

/// How a command authenticates the audit chain it trusts (format 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCheck {
    /// Structure only (commands that read nothing the chain decides).
    Structure,
    /// With the audit keys when the given identity opens them; structure otherwise, and the
    /// command's report says so.
    IfIdentity,
    /// The audit keys must open: commands that write events, sign or seal.
    Required,
}

/// The operator's own PKCS#11 settings (flag, environment or their config file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Setup {
    /// The module library to load; `None`: the system's usual places (p11-kit proxy,
    /// SoftHSM2's paths).
    pub module: Option<String>,
    /// Accept token keys that may leave the token (CKA_EXTRACTABLE or not sensitive).
    pub danger_allow_extractable: bool,
}

impl Context {
    /// A context for `actor` at `now`, with no way to open anything yet.
    pub fn new(actor: String, now: OffsetDateTime) -> Self {
        Context {
            actor,
            now,
            identities: Vec::new(),
            passphrase: None,
            pin_prompt: None,
            pkcs11: Pkcs11Setup::default(),
            chain: ChainCheck::IfIdentity,
            asked: OnceCell::new(),
        }
    }

    /// The passphrase, asked for the first time it is needed.
    fn passphrase(&self) -> Result<&SecretText, VaultError> {
        if let Some(p) = self.asked.get() {
            return Ok(p);
        }
        let source = self
            .passphrase
            .as_ref()
            .ok_or(VaultError::Age(AgeError::EmptyPassphrase))?;
        let p = source().map_err(VaultError::Unlock)?;
        Ok(self.asked.get_or_init(|| p))
    }
}

/// An opened vault, holding its lock for as long as it lives.
pub struct Vault {
    root: PathBuf,
    _lock: VaultLock,
    /// `talvault.yaml`, read under the lock.
    config: VaultConfig,
    /// Record caches rebuilt by this command, saved once it succeeded (`finish`, `commit`).
    caches: RefCell<Vec<store::index::CacheUpdate>>,
    /// Each environment's audit keys, once opened (format 2): they MAC the events this command
    /// writes and authenticate the events it trusts.
    audit_keys: RefCell<std::collections::HashMap<String, std::rc::Rc<crate::audit::Keyring>>>,
    /// Each environment's chain state, once derived (dropped at every commit).
    chains: RefCell<std::collections::HashMap<String, std::rc::Rc<crate::audit::ChainState>>>,
    /// The backup lane epoch a transaction being prepared makes current, per environment: the
    /// event it stages names it.
    lane_rotations: RefCell<std::collections::HashMap<String, u32>>,
    /// The events staged since the last commit (environment, file, summary): once committed,
    /// folded into the derived-state cache (`trail/cache.rs`).
    staged: RefCell<Vec<(String, PathBuf, crate::audit::EventSummary)>>,
    /// What shows that each environment's trail is still the one its chain state was derived
    /// from (`None`: nothing does, so it is not folded).
    chain_basis: RefCell<std::collections::HashMap<String, Option<Basis>>>,
    /// Each environment's trail entries when this command staged its first event there
    /// (`None`: changed since its state was derived, so nothing will be folded).
    fold_bases: RefCell<std::collections::HashMap<String, Option<Vec<String>>>>,
}

/// What shows that the trail is still the one a state was derived from, for folding: the
/// month directories' stamps when they had been still for two seconds by then (a later change
/// moves a stamp), or the digest of the entry names a listing matched.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Basis {
    /// The stamps line.
    Stamps(String),
    /// The names' digest.
    Names(String),
}

/// An environment as a command loads it once: its name and `env.yaml`.
struct Env {
    name: EnvName,
    meta: EnvMeta,
    /// SHA-256 of `env.yaml` as read (checked against the chain before use).
    meta_sha256: String,
}

impl Env {
    /// `envs/<name>`, relative to the vault root.
    fn dir(&self) -> PathBuf {
        env_dir(&self.name)
    }

    fn as_str(&self) -> &str {
        self.name.as_str()
    }
}

fn env_dir(name: &EnvName) -> PathBuf {
    PathBuf::from("envs").join(name.as_str())
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
    // An init killed half way left a journal: finish (or undo) it first. If that completed
    // the vault, init is done.
    txn::recover(dir)?;
    if dir.join(VAULT_FILE).exists() {
        return Ok(dir.to_path_buf());
    }
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
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| VaultError::Generate("no randomness".into()))?;
    t.create(
        VAULT_FILE,
        VaultConfig::new(crate::hex::encode(&id))
            .to_yaml()
            .as_bytes(),
        Mode::Public,
    );
    t.commit()?;
    Ok(dir.to_path_buf())
}

impl Vault {
    /// Opens the vault at `root`: checks its format, takes the lock (waiting up to
    /// `lock_timeout`) and finishes any interrupted commit.
    pub fn open(root: &Path, lock_timeout: Duration) -> Result<Self, VaultError> {
        let config = store::read_bounded(root, Path::new(VAULT_FILE), META_MAX)?;
        VaultConfig::from_yaml(&config)?;
        let lock = VaultLock::acquire(root, lock_timeout)?;
        txn::recover(root)?;
        // Again under the lock: recovery may have finished an upgrade that rewrote it.
        let config = store::read_bounded(root, Path::new(VAULT_FILE), META_MAX)?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
            config: VaultConfig::from_yaml(&config)?,
            caches: RefCell::new(Vec::new()),
            audit_keys: RefCell::new(std::collections::HashMap::new()),
            chains: RefCell::new(std::collections::HashMap::new()),
            lane_rotations: RefCell::new(std::collections::HashMap::new()),
            staged: RefCell::new(Vec::new()),
            chain_basis: RefCell::new(std::collections::HashMap::new()),
            fold_bases: RefCell::new(std::collections::HashMap::new()),
        })
    }

    /// The vault directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves the record caches this command rebuilt (`.cache/`, git-ignored). Called when a
    /// command has succeeded, so that a refused command changes nothing in the vault directory.
    fn save_caches(&self) {
        for update in self.caches.borrow_mut().drain(..) {
            store::index::save(&self.root, &update);
        }
    }

    /// The end of a command that wrote nothing: saves the caches it rebuilt, returns `value`.
    fn finish<T>(&self, value: T) -> T {
        self.save_caches();
        value
    }

    /// Commits a transaction, then saves the caches this command rebuilt on the way (they
    /// describe what was read before the commit, which the cache's own checks allow for).
    fn commit(&self, t: Transaction) -> Result<(), VaultError> {
        // Events staged by a transaction that was dropped are never folded: only those this
        // commit wrote.
        let staged = std::mem::take(&mut *self.staged.borrow_mut());
        let bases = std::mem::take(&mut *self.fold_bases.borrow_mut());
        let written = t.commit()?;
        self.fold_committed(staged, bases, &written);
        self.chains.borrow_mut().clear();
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

    /// Loads an environment by name: the name checked, `env.yaml` read once.
    fn env(&self, env: &str) -> Result<Env, VaultError> {
        let name = EnvName::parse(env)?;
        let (meta, meta_sha256) = self.env_meta(&name)?;
        Ok(Env {
            name,
            meta,
            meta_sha256,
        })
    }

    fn env_meta(&self, name: &EnvName) -> Result<(EnvMeta, String), VaultError> {
        let rel = env_dir(name).join("env.yaml");
        match self.read(&rel, META_MAX) {
            Err(VaultError::Store(StoreError::NotFound { .. })) => Err(VaultError::NoSuchEnv {
                env: name.as_str().to_owned(),
            }),
            other => {
                let file = rel.display().to_string();
                let bytes = other?;
                let meta = EnvMeta::from_yaml(&file, &bytes)?;
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
                Ok((meta, crate::digest::sha256_hex(&bytes)))
            }
        }
    }

    /// The environments to look at: the one named, or all (by name).
    fn envs(&self, env: Option<&str>) -> Result<Vec<Env>, VaultError> {
        match env {
            Some(e) => Ok(vec![self.env(e)?]),
            None => self.env_list_loaded(),
        }
    }

    /// Every environment of the vault, by name. A directory without env.yaml is an
    /// interrupted create, not an environment.
    fn env_list_loaded(&self) -> Result<Vec<Env>, VaultError> {
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
                Ok((meta, meta_sha256)) => out.push(Env {
                    name,
                    meta,
                    meta_sha256,
                }),
                Err(VaultError::NoSuchEnv { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(out)
    }

    fn recipients(&self, env: &Env) -> Result<Vec<Recipient>, VaultError> {
        let rel = env.dir().join("recipients.txt");
        let text = self.read(&rel, META_MAX)?;
        let parsed =
            agestore::parse_recipients(&String::from_utf8_lossy(&text), &self.root.join(rel))?;
        // A recipient slipped into the file would be sealed to at the next re-seal. (Parsed
        // first, so a damaged file gets the parser's precise message.)
        self.agrees(env, "recipients.txt", &crate::digest::sha256_hex(&text))?;
        Ok(parsed)
    }

    /// Seals a secret of the environment the way its bundle is sealed.
    fn seal_for(&self, env: &Env, plaintext: &[u8], ctx: &Context) -> Result<Vec<u8>, VaultError> {
        Ok(match env.meta.sealing {
            Sealing::Recipients => agestore::seal(plaintext, &self.recipients(env)?)?,
            Sealing::Passphrase => agestore::seal_with_passphrase(plaintext, ctx.passphrase()?)?,
        })
    }

    /// Opens a sealed file of the environment.
    fn open_sealed(
        &self,
        env: &Env,
        rel: &Path,
        ctx: &Context,
    ) -> Result<(SecretBytes, OpenedBy), VaultError> {
        let (plain, opened_by, sealed_sha256) = self.open_sealed_unchecked(env, rel, ctx)?;
        // The file must be the one the chain recorded (after opening, so that a damaged file
        // gets age's precise message).
        if let Ok(inside) = rel.strip_prefix(env.dir()) {
            self.agrees(env, &inside.display().to_string(), &sealed_sha256)?;
        }
        Ok((plain, opened_by))
    }

    /// [`Vault::open_sealed`] without the check against the chain, and the SHA-256 of the
    /// sealed bytes for the caller to check: only for loading the audit keys, which the chain
    /// needs before it can be trusted.
    fn open_sealed_unchecked(
        &self,
        env: &Env,
        rel: &Path,
        ctx: &Context,
    ) -> Result<(SecretBytes, OpenedBy, String), VaultError> {
        let sealed = self.read(rel, SEALED_MAX)?;
        if env.meta.sealing == Sealing::Recipients && ctx.identities.is_empty() {
            let bundle = rel == env.dir().join(BUNDLE_FILE);
            return Err(VaultError::NoIdentity {
                env: env.as_str().to_owned(),
                file: (!bundle).then(|| rel.display().to_string()),
            });
        }
        let shown = self.root.join(rel);
        let opened = match env.meta.sealing {
            Sealing::Recipients => agestore::open(&shown, &sealed, &ctx.identities)?,
            Sealing::Passphrase => (
                agestore::open_with_passphrase(&shown, &sealed, ctx.passphrase()?)?,
                OpenedBy::Passphrase,
            ),
        };
        Ok((opened.0, opened.1, crate::digest::sha256_hex(&sealed)))
    }

    /// Opens an environment's bundle and checks it against the pins. Every caller records an
    /// audit event for the use.
    fn open_bundle(
        &self,
        env: &Env,
        ctx: &Context,
    ) -> Result<(SecretBytes, SecretsBundle, OpenedBy), VaultError> {
        let rel = env.dir().join(BUNDLE_FILE);
        let (plain, opened_by, sealed_sha256) = self.open_sealed_unchecked(env, &rel, ctx)?;
        self.agrees(env, BUNDLE_FILE, &sealed_sha256)?;
        let bundle = self.pinned_bundle(env, &plain)?;
        Ok((plain, bundle, opened_by))
    }

    /// The opened bundle, parsed and checked against the pins in `env.yaml`.
    fn pinned_bundle(&self, env: &Env, plain: &SecretBytes) -> Result<SecretsBundle, VaultError> {
        let rel = env.dir().join(BUNDLE_FILE);
        let bundle =
            SecretsBundle::from_yaml(plain.expose()).map_err(|e| VaultError::BadBundle {
                what: rel.display().to_string(),
                message: e.to_string(),
            })?;
        let pins = Pins::of(&bundle).ok_or_else(|| VaultError::PinMismatch {
            file: rel.display().to_string(),
            cas: vec!["(missing CA)"],
        })?;
        let bad = env.meta.pins.mismatches(&pins);
        if !bad.is_empty() {
            return Err(VaultError::PinMismatch {
                file: rel.display().to_string(),
                cas: bad,
            });
        }
        Ok(bundle)
    }
}

/// Refuses control characters in free text that is stored in the vault or printed.
fn plain_text<'a>(
    field: &'static str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), VaultError> {
    if values.into_iter().any(|v| v.chars().any(char::is_control)) {
        return Err(VaultError::ControlCharacter { field });
    }
    Ok(())
}

/// `recipients.txt`: the public recipients, one per line, as `age -R` reads them.
fn recipients_txt(recipients: &[Recipient]) -> String {
    let mut s = String::from(
        "# age recipients that can open this environment (one per line; `age -R` format).\n",
    );
    for r in recipients {
        s.push_str(r.as_str());
        s.push('\n');
    }
    s
}

/// The sealed bundle's file name in an environment directory.
const BUNDLE_FILE: &str = "bundle.age";

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
