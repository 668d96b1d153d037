//! EDGE: a failed command as the user sees it: one line, an optional `hint:` line, an exit
//! code. This is where the service's typed errors get their hints and the flag names the user
//! typed; nothing here prints a secret.

use std::fmt;
use std::io::Write as _;

use crate::backup::{ContentsProblem, etcd::Verdict};
use crate::model::MetaError;
use crate::pki::issue::CsrError;
use crate::pki::kube_policy::KubePolicyError;
use crate::pki::policy::PolicyError;
use crate::vault::VaultError;

/// A failed command: one line, an optional hint, and the process exit code.
#[derive(Debug)]
pub struct CliError {
    /// The one-line message.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Exit code (1 = failed/invalid, 2 = unreadable input or usage).
    pub code: u8,
}

impl CliError {
    /// An error with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            code: 1,
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(message).code(2)
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the hint when there is one.
    pub fn maybe_hint(mut self, hint: Option<impl Into<String>>) -> Self {
        self.hint = hint.map(Into::into);
        self
    }

    /// Sets the exit code.
    pub fn code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Prints `error: …` and `hint: …` to stderr.
pub fn report(e: &CliError) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", e.message);
    if let Some(h) = &e.hint {
        let _ = writeln!(err, "hint: {h}");
    }
}

/// The hint for a service error, when there is a useful one.
fn hint(e: &VaultError) -> Option<String> {
    Some(match e {
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
        VaultError::Meta(MetaError::Malformed { file, .. }) => format!(
            "fix or restore {file} from git history (`git log -p -- {file}`); vault files are written by talvault, edited only through review"
        ),
        VaultError::PolicyNotAccepted { env } => format!("review the change, then record it: talvault policy accept {env} --reason \"PR …\""),
        VaultError::Disagrees { .. } => "restore the file from git history (`git log -- FILE`), and run `talvault audit verify` to see what else changed".into(),
        VaultError::AlreadyUpgraded { .. } => "nothing to do".into(),
        VaultError::BackupOnlyIdentity { .. } => "pass the identity of one of the environment's recipients (recipients.txt) with -i".into(),
        VaultError::AuditKeys { .. } => "restore envs/ENV/audit.age and bundle.age from git history, then run `talvault audit verify ENV`".into(),
        VaultError::ContractMismatch { .. } => "pass --talos-version with the contract the bundle was made for; `talvault bundle inspect FILE` says which it looks like".into(),
        VaultError::WrongSealing { .. } => "a passphrase environment has no recipients to change; to share it, create a new environment sealed to recipients from the exported bundle (`talvault bundle export` | `talvault env import --from-secrets`)".into(),
        VaultError::NoRecipientsLeft { .. } => "add the new recipient first".into(),
        VaultError::NotARecipient { .. } => "list them with `talvault recipients list ENV`".into(),
        VaultError::Policy(PolicyError::TtlAbovePolicy { .. }) => {
            "ask for a shorter --ttl, or change envs/ENV/policy.yaml through review".into()
        }
        VaultError::Policy(_) | VaultError::PolicyFile { .. } => {
            "see the effective policy with `talvault policy show ENV`".into()
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
        VaultError::IssuerExpired { .. } => "rotate to a new issuer: `talvault issuer rotate ENV`, roll out `talvault patch accepted-cas ENV`, then `talvault issuer activate ENV NEW-ID`".into(),
        VaultError::NoAcceptedCas { .. } => "if the nodes run Talos 1.7 or later, pass --force; otherwise upgrade them first (issuer mode needs machine.acceptedCAs)".into(),
        VaultError::RetireStrands { .. } => "activate the next issuer first (`talvault issuer rotate ENV`, then `issuer activate`), or pass --force to cut those certificates off".into(),
        VaultError::BadIssuer { .. } => "restore the issuer directory from git history and investigate who changed it".into(),
        VaultError::TokenKeyMismatch { issuer, .. } => format!("another key answers at that URI in the token: find out who changed the token; until then nothing signs with it (cut access with `talvault issuer retire ENV {issuer}` once a new issuer is active)"),
        VaultError::LeafOutlivesIssuer { .. } => "ask for a shorter --ttl, or rotate to a newer issuer with `talvault issuer rotate ENV`".into(),
        VaultError::UnknownSerial { .. } => "list issued serials with `talvault status ENV -o json`".into(),
        VaultError::ForeignTalosconfig { .. } => "check the environment name; `talvault env list` shows them all".into(),
        VaultError::NoCrlIssuer { .. } => "create one with `talvault issuer create ENV`; direct-mode revocations are listed by `talvault crl ENV --format json`".into(),
        VaultError::DirectForbidden { beside_issuer: false, .. } => "activate an issuer (`talvault issuer create ENV`, then `issuer activate`), or set allow_direct: true in policy.yaml through review".into(),
        VaultError::DirectForbidden { beside_issuer: true, .. } => "leave out --direct to sign with the active issuer: a certificate the OS CA signs survives retiring every issuer; if you must, set direct_beside_issuers: true in policy.yaml through review".into(),
        VaultError::HolderExists { env, holder } => format!("to change a holder, remove and add them again: `talvault holder remove {env} {holder}`"),
        VaultError::UnknownHolder { env, .. } => format!("list them with `talvault holder list {env}`; add one with `talvault holder add {env} NAME -r RECIPIENT`"),
        VaultError::NoHolderRecipients { .. } => "pass the holder's public key: -r age1… or -r \"ssh-ed25519 …\"".into(),
        VaultError::HolderNeedsCsr { .. } => "pass --csr FILE with a certificate request the holder made with their own key".into(),
        VaultError::NotYourDelivery { .. } => "pass your own key with -i FILE (the one whose public key was given to `talvault holder add`; an ssh key works as -i ~/.ssh/id_ed25519)".into(),
        VaultError::BadDelivery { .. } => "open files made by `talvault issue --seal`, `kubeconfig --seal` or `renew`".into(),
        VaultError::BackupContents { problem, .. } => match problem.as_ref() {
            ContentsProblem::Etcd(Verdict::NoTrailer { .. } | Verdict::TrailingData { .. }) => {
                "if this is a copy of a data directory's member/snap/db, pass --db-copy; otherwise take a new snapshot (`talosctl etcd snapshot FILE`)".into()
            }
            ContentsProblem::Etcd(_) => "take a new snapshot (`talosctl etcd snapshot FILE`); this one would not restore".into(),
            ContentsProblem::NotADbCopy(_) => "--db-copy is for a whole copy of etcd's member/snap/db; drop it for other files".into(),
        },
        VaultError::NoBackupRecipients { .. } => "add one with `talvault recipients add ENV --backup-only -r age1…`".into(),
        VaultError::UnknownBackup { .. } => "`talvault backup list ENV` shows the recorded backups and their sizes; a damaged or truncated copy is not recognised either, and any backup opens without talvault with `age -d -i KEY FILE`".into(),
        VaultError::BackupMismatch { .. } | VaultError::BackupDamaged { .. } => "the file was changed, truncated or replaced since it was sealed; fetch another copy from where backups live, or use an older backup".into(),
        VaultError::ReasonRequired { .. } => "pass --reason TEXT (it goes into the audit trail)".into(),
        VaultError::KeepNothing => "keep at least 1: the records are the only index of where backups live".into(),
        VaultError::AlreadyARecipient { .. } => "it already opens the bundle and every backup; --backup-only is for a key that must not open the bundle".into(),
        VaultError::NotABackupRecipient { .. } => "list them with `talvault recipients list ENV --backup-only`".into(),
        VaultError::BadMachineConfig(_) => "give the control-plane machine config itself (controlplane.yaml from `talosctl gen config`), unredacted".into(),
        VaultError::Csr(CsrError::AsksForCa | CsrError::AsksForUsage { .. }) => {
            "make a plain request without extensions, e.g. `openssl req -new -key KEY -subj /CN=NAME -out req.csr`; talvault adds clientAuth itself".into()
        }
        VaultError::Csr(_) => {
            "make the request with an Ed25519 or P-256 key, e.g. `openssl req -new -key KEY -subj /CN=NAME -out req.csr`".into()
        }
        VaultError::KubePolicy(KubePolicyError::TtlAbovePolicy { .. }) => {
            "ask for a shorter --ttl, or change the kubernetes section of envs/ENV/policy.yaml through review".into()
        }
        VaultError::KubePolicy(KubePolicyError::PrivilegedGroup { .. }) => {
            "for an emergency: `talvault break-glass ENV --kubernetes --user NAME --reason TEXT` (audited, taints the environment); day to day, bind a talvault group to a ClusterRole instead".into()
        }
        VaultError::KubePolicy(
            KubePolicyError::BreakGlassReasonInvalid | KubePolicyError::BreakGlassReasonRequired,
        ) => "say why on one line of plain text, e.g. --reason \"INC-123: API unreachable\"".into(),
        VaultError::KubePolicy(KubePolicyError::BreakGlassGroup { .. }) => {
            "list the group under kubernetes.break_glass.groups in policy.yaml through review".into()
        }
        VaultError::KubePolicy(_) => {
            "see the effective policy (its kubernetes section) with `talvault policy show ENV`".into()
        }
        VaultError::NoKubernetesServer { .. } => {
            "pass --server https://HOST:6443 (or record one with `env create --kubernetes-endpoint`)".into()
        }
        VaultError::KubernetesServer { .. } => {
            "give the API server URL as `talosctl gen config` takes it, e.g. https://cp.example.com:6443".into()
        }
        VaultError::KubernetesDirectForbidden { beside_issuer: false, .. } => "activate a Kubernetes issuer (`talvault issuer create ENV --api kubernetes`, then `issuer activate`), or set kubernetes.allow_direct: true in policy.yaml through review".into(),
        VaultError::KubernetesDirectForbidden { beside_issuer: true, .. } => "leave out --direct to sign with the active Kubernetes issuer: a certificate the Kubernetes CA signs survives retiring every issuer".into(),
        VaultError::NoKubernetesAcceptedCas { .. } => "if the control planes run Talos 1.7 or later, pass --force; otherwise upgrade them first (Kubernetes issuers need cluster.acceptedCAs)".into(),
        VaultError::ForeignKubeconfig { .. } => "check the environment name; `talvault env list` shows them all".into(),
        _ => return None,
    })
}

impl From<VaultError> for CliError {
    fn from(e: VaultError) -> Self {
        // The passphrase source is ours: its error is already a CliError.
        let e = match e {
            VaultError::Unlock(inner) => match inner.downcast::<CliError>() {
                Ok(cli) => return *cli,
                Err(other) => VaultError::Unlock(other),
            },
            other => other,
        };
        let hint = hint(&e);
        // Conditions whose message names the option the user gave.
        let message = match &e {
            VaultError::Csr(inner) => format!("--csr: {inner}"),
            VaultError::HsmUri(inner) => format!("--pkcs11: {inner}"),
            VaultError::BadImport { kind, message } => format!("--from-{kind}: {message}"),
            VaultError::IssuerLifetime {
                lifetime,
                max_hours,
            } => format!("--lifetime {lifetime}: an issuer lives between 1h and {max_hours}h"),
            VaultError::TokenKeyAlgorithm { wanted, found } => {
                format!("--algorithm {wanted}: the token's key is {found}")
            }
            VaultError::EmptyReason => "--reason must not be empty".into(),
            VaultError::BackupText { what, problem } => format!("--{what}: {problem}"),
            VaultError::KeepNothing => format!("--keep 0: {e}"),
            VaultError::BadMachineConfig(m) => format!("--machine-config: {m}"),
            VaultError::ControlCharacter { field } => {
                let flag = match *field {
                    "cluster_name" => "--cluster-name",
                    "endpoint" => "--endpoint",
                    "node" => "--node",
                    "context" => "--context",
                    "reason" => "--reason",
                    "server" => "--server",
                    "namespace" => "--namespace",
                    "kubernetes_endpoint" => "--kubernetes-endpoint",
                    other => other,
                };
                return CliError::usage(format!("{flag} must not contain control characters"))
                    .hint("it is stored in the vault and printed by reports; give plain text");
            }
            VaultError::BadKeptCa {
                label,
                kubernetes,
                reason,
            } => {
                let flag = if *kubernetes {
                    "--keep-kubernetes-ca"
                } else {
                    "--keep-ca"
                };
                return CliError::usage(format!("{flag} {label}: {reason}"));
            }
            VaultError::Policy(PolicyError::NoRoles) => {
                "no role requested; name at least one with --role".into()
            }
            VaultError::Policy(p @ PolicyError::HolderRequired { .. }) => {
                format!("{p}; name one with --holder")
            }
            VaultError::KubePolicy(KubePolicyError::NoGroups) => {
                "no group requested; name at least one with --group".into()
            }
            VaultError::Namespace { namespace } => {
                return CliError::usage(format!(
                    "--namespace {namespace:?}: not a Kubernetes namespace name"
                ))
                .hint("1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit");
            }
            other => other.to_string(),
        };
        CliError::new(message).maybe_hint(hint)
    }
}
