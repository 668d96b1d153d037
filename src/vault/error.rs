//! The service's error: one typed condition per way a vault operation fails, with the context
//! a message needs. Messages never contain secret material and name no command-line flags;
//! hints and flag names are the CLI's (`cli::error`).

use std::path::PathBuf;

use thiserror::Error;

use crate::audit::AuditError;
use crate::backup::{ContentsProblem, Mismatch, TextProblem};
use crate::model::{MetaError, VAULT_FILE};
use crate::pki::issue::{CsrError, IssueError};
use crate::pki::kube_policy::KubePolicyError;
use crate::pki::policy::{PolicyError, PolicyFileError};
use crate::pki::ttl::Ttl;
use crate::store::age::AgeError;
use crate::store::{LockError, NameError, StoreError};

/// A vault operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
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
    /// An invalid environment name or path component.
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
    /// The bundle does not fit the version contract asked for.
    #[error("{what}: {message}")]
    ContractMismatch {
        /// Which bundle.
        what: String,
        /// What does not fit.
        message: String,
    },
    /// The material given for `env import` is not a usable bundle.
    #[error("{kind}: {message}")]
    BadImport {
        /// Its kind: `secrets`, `kubernetes-pki` or `controlplane-config`.
        kind: &'static str,
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
    /// Building the bundle or a key failed.
    #[error("{0}")]
    Generate(String),
    /// Writing the audit event failed.
    #[error("audit event: {0}")]
    Audit(#[from] AuditError),
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
    /// Free text that is stored or printed holds a control character (a newline could forge
    /// a line of a report).
    #[error("{field} must not contain control characters")]
    ControlCharacter {
        /// Which field: `cluster_name`, `endpoint`, `node`, `context`, `reason`.
        field: &'static str,
    },
    /// A reason (untaint) is empty.
    #[error("a reason is required")]
    EmptyReason,
    /// The CSR is unusable.
    #[error("{0}")]
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
        "the policy of environment {env:?} forbids signing with the Talos OS CA ({})",
        if *beside_issuer { "an issuer is active and direct_beside_issuers is false" } else { "allow_direct: false" }
    )]
    DirectForbidden {
        /// The environment.
        env: String,
        /// Refused only because an issuer is active (`direct_beside_issuers` is off).
        beside_issuer: bool,
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
    /// An issuer past its notAfter cannot sign.
    #[error("issuer {id} expired at {not_after}")]
    IssuerExpired {
        /// The issuer.
        id: String,
        /// Its notAfter.
        not_after: String,
    },
    /// Activating an issuer on a contract whose nodes have no `machine.acceptedCAs`.
    #[error(
        "environment {env:?} follows Talos contract {contract}, whose nodes have no machine.acceptedCAs (Talos 1.7 and later): they would refuse every certificate issuer {id} signs"
    )]
    NoAcceptedCas {
        /// The environment.
        env: String,
        /// Its contract.
        contract: String,
        /// The issuer.
        id: String,
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
    /// An issuer's lifetime outside the bounds.
    #[error("an issuer lives between 1h and {max_hours}h, not {lifetime}")]
    IssuerLifetime {
        /// What was asked.
        lifetime: Ttl,
        /// The longest allowed, in hours.
        max_hours: u64,
    },
    /// A token key of another algorithm than the one asked for.
    #[error("the token's key is {found}, not {wanted}")]
    TokenKeyAlgorithm {
        /// Asked for.
        wanted: &'static str,
        /// What the token holds.
        found: &'static str,
    },
    /// A CA certificate given to keep accepting is not one.
    #[error("{label}: {reason}")]
    BadKeptCa {
        /// How the caller named it (its file).
        label: String,
        /// Kept for the Kubernetes API rather than the Talos API.
        kubernetes: bool,
        /// Why.
        reason: String,
    },
    /// The acceptedCAs patch cannot be written.
    #[error(transparent)]
    Patch(#[from] crate::patch::PatchError),
    /// An issuer's files do not hold together (tampered or corrupt).
    #[error("{file}: {problem}")]
    BadIssuer {
        /// The issuer.yaml.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// The key the token holds at an issuer's URI is not the key its certificate names: the
    /// token's contents changed (the sealed issuer.yaml did not).
    #[error("{file}: the token's key at {uri} does not match the issuer certificate")]
    TokenKeyMismatch {
        /// The issuer.yaml.
        file: String,
        /// The stored key URI.
        uri: String,
        /// The issuer id.
        issuer: String,
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
    /// A certificate given to `verify` or `revoke` cannot be read.
    #[error("{part}: {reason}")]
    Unreadable {
        /// Which part of the talosconfig (`crt`, `ca`).
        part: &'static str,
        /// Why.
        reason: String,
    },
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
    #[error("no identity to open {}", file.as_deref().map_or_else(|| format!("environment {env:?}"), str::to_owned))]
    NoIdentity {
        /// The environment.
        env: String,
        /// The sealed file, when it is not the environment's bundle.
        file: Option<String>,
    },
    /// The audit key file cannot be used.
    #[error("{file}: {message}")]
    AuditKeys {
        /// The file.
        file: String,
        /// What is wrong (no key material).
        message: String,
    },
    /// A backup-only identity (it opens the backup lane's keys, not `audit.age`) tried to
    /// record something other than a backup.
    #[error(
        "the identity given opens only environment {env:?}'s backup lane keys, which record backups only, not {action}"
    )]
    BackupOnlyIdentity {
        /// The environment.
        env: String,
        /// The action it tried to record.
        action: String,
    },
    /// A file the audit trail accounts for differs from it (format 2): it is not used.
    #[error("{file}: {message}")]
    Disagrees {
        /// The file.
        file: String,
        /// What the trail says.
        message: String,
    },
    /// `policy.yaml` changed but the change was not accepted into the trail.
    #[error("envs/{env}/policy.yaml differs from the policy the audit trail accepted")]
    PolicyNotAccepted {
        /// The environment.
        env: String,
    },
    /// The vault is already of the newest format.
    #[error("the vault is already format {format}")]
    AlreadyUpgraded {
        /// Its format.
        format: u32,
    },
    /// The passphrase could not be had (the caller's source said why).
    #[error("{0}")]
    Unlock(Box<dyn std::error::Error + Send + Sync>),
    /// The Kubernetes policy refuses the request.
    #[error(transparent)]
    KubePolicy(#[from] KubePolicyError),
    /// No Kubernetes API server URL for a kubeconfig.
    #[error(
        "environment {env:?} has no Kubernetes endpoint and no Talos endpoint to derive one from"
    )]
    NoKubernetesServer {
        /// The environment.
        env: String,
    },
    /// A Kubernetes API server URL a kubeconfig cannot use.
    #[error("Kubernetes endpoint {server:?} is not an https:// URL")]
    KubernetesServer {
        /// What was given.
        server: String,
    },
    /// A namespace that is not a DNS-1123 label.
    #[error(
        "namespace {namespace:?} is not a Kubernetes namespace name (1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )]
    Namespace {
        /// What was given.
        namespace: String,
    },
    /// Direct signing by the bundle's Kubernetes CA is forbidden by policy.
    #[error(
        "the policy of environment {env:?} forbids signing kubeconfigs with the Kubernetes CA ({})",
        if *beside_issuer { "a Kubernetes issuer is active and kubernetes.direct_beside_issuers is false" } else { "kubernetes.allow_direct: false" }
    )]
    KubernetesDirectForbidden {
        /// The environment.
        env: String,
        /// Refused only because a Kubernetes issuer is active.
        beside_issuer: bool,
    },
    /// Activating a Kubernetes issuer on a contract without Kubernetes accepted CAs.
    #[error(
        "environment {env:?} follows Talos contract {contract}, whose control planes have no cluster.acceptedCAs (Talos 1.7 and later): the kube-apiserver would refuse every certificate issuer {id} signs"
    )]
    NoKubernetesAcceptedCas {
        /// The environment.
        env: String,
        /// Its contract.
        contract: String,
        /// The issuer.
        id: String,
    },
    /// A kubeconfig that belongs to another cluster or CA.
    #[error("{what}")]
    ForeignKubeconfig {
        /// What does not match.
        what: String,
    },
    /// A PKCS#11 token or module failed (the function and return code are in the message).
    #[error(transparent)]
    Hsm(#[from] talvault_hsm::HsmError),
    /// A malformed `pkcs11:` URI.
    #[error("{0}")]
    HsmUri(#[from] talvault_hsm::UriError),
    /// `holder add` of a holder the environment already has.
    #[error("environment {env:?} already has a holder {holder:?}")]
    HolderExists {
        /// The environment.
        env: String,
        /// The holder.
        holder: String,
    },
    /// A holder the environment does not have (never added, or removed).
    #[error("environment {env:?} has no holder {holder:?}")]
    UnknownHolder {
        /// The environment.
        env: String,
        /// The holder.
        holder: String,
    },
    /// A holder without a recipient: nothing could be sealed to them.
    #[error("holder {holder:?} needs at least one recipient to seal deliveries to")]
    NoHolderRecipients {
        /// The holder.
        holder: String,
    },
    /// A key generated for a holder who registered as CSR-only.
    #[error(
        "holder {holder:?} is CSR-only: their key never passes through the vault, so every certificate is signed from their CSR"
    )]
    HolderNeedsCsr {
        /// The holder.
        holder: String,
    },
    /// No identity given opens a sealed talosconfig.
    #[error(
        "{file}: none of the {tried} identities given opens it (it is sealed to its holder's recipients only)"
    )]
    NotYourDelivery {
        /// The file.
        file: String,
        /// How many identities were tried.
        tried: usize,
    },
    /// A sealed talosconfig that does not open to a usable talosconfig.
    #[error("{file}: {problem}")]
    BadDelivery {
        /// The file.
        file: String,
        /// What is wrong (never a value from inside it).
        problem: String,
    },
    /// A backup stream could not be read or written.
    #[error("{what}: {source}")]
    BackupIo {
        /// What was being read or written.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The input of `backup seal` is not what it looks like (a damaged etcd snapshot, say).
    #[error("{input}: {problem}")]
    BackupContents {
        /// The input (a path, or `stdin`).
        input: String,
        /// What is wrong.
        problem: Box<ContentsProblem>,
    },
    /// A label, location or reason that cannot be recorded.
    #[error("{what}: {problem}")]
    BackupText {
        /// `label`, `location` or `reason`.
        what: &'static str,
        /// What is wrong.
        problem: TextProblem,
    },
    /// Neither recipients nor backup-only recipients to seal a backup to.
    #[error("environment {env:?} has no recipients a backup can be sealed to")]
    NoBackupRecipients {
        /// The environment.
        env: String,
    },
    /// A file that is not one of the environment's recorded backups.
    #[error("{file} is not a backup recorded for environment {env:?}")]
    UnknownBackup {
        /// The environment.
        env: String,
        /// The file.
        file: String,
    },
    /// A sealed backup that does not match its record, or holds a damaged snapshot.
    #[error("{file} (backup {id}): {problem}")]
    BackupMismatch {
        /// The file.
        file: String,
        /// Its record.
        id: String,
        /// How it differs.
        problem: Box<Mismatch>,
    },
    /// A sealed backup that age cannot decrypt to its end (a changed byte, a cut).
    #[error("{file} (backup {id}) is damaged: {detail}, after {plaintext} bytes of plaintext")]
    BackupDamaged {
        /// The file.
        file: String,
        /// Its record.
        id: String,
        /// What age found.
        detail: String,
        /// Plaintext bytes decrypted before the damage.
        plaintext: u64,
    },
    /// The policy asks for a reason and none was given.
    #[error("the policy of environment {env:?} requires a reason to open a backup")]
    ReasonRequired {
        /// The environment.
        env: String,
    },
    /// `backup prune` asked to keep nothing.
    #[error("pruning must keep at least the newest backup")]
    KeepNothing,
    /// A backup-only recipient that already opens the environment.
    #[error("{recipient} is already a recipient of environment {env:?} (recipients.txt)")]
    AlreadyARecipient {
        /// The environment.
        env: String,
        /// The recipient.
        recipient: String,
    },
    /// A backup-only recipient to remove that is not one.
    #[error("{recipient} is not a backup-only recipient of environment {env:?}")]
    NotABackupRecipient {
        /// The environment.
        env: String,
        /// The recipient.
        recipient: String,
    },
    /// The machine config given to `env check` is not a control-plane config.
    #[error("{0}")]
    BadMachineConfig(String),
}
