//! Environments: create or import one (build or read the bundle, check it, seal it, write the
//! environment and its first event), list and show them (opening nothing), show the policy, and
//! clear the break-glass mark.

use serde::Serialize;

use super::{BUNDLE_FILE, Context, Vault, VaultError, plain_text, recipients_txt, rfc3339};
use crate::audit::Action;
use crate::bundle::validate::{Severity, deep_findings, talos_errors};
use crate::bundle::{SecretsBundle, VersionContract, generate, import};
use crate::model::{CaCertificates, EnvMeta, FORMAT_VERSION, Pins, Sealing, contract_label};
use crate::pki::policy::Policy;
use crate::secret::{SecretBytes, SecretText};
use crate::store::age::{self as agestore, Recipient};
use crate::store::txn::Transaction;
use crate::store::{EnvName, Mode, audit_dir};

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
    /// The Kubernetes API server URL for kubeconfigs (default: derived from the first endpoint).
    pub kubernetes_endpoint: Option<String>,
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

fn policy_file(p: &Policy) -> String {
    format!(
        "# Issuance policy of this environment: TTL bounds and holders per role (kubernetes: per\n\
         # group), break-glass bounds. Changes go through review; see docs/issuing.md.\n{}",
        p.to_yaml()
    )
}

/// Refuses a bundle Talos would refuse, or one whose deeper checks find an error.
fn check_bundle(
    bundle: &SecretsBundle,
    contract: VersionContract,
    now: time::OffsetDateTime,
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
        let message = format!("{} {}", f.field, f.message);
        return Err(if f.contract_fit {
            VaultError::ContractMismatch {
                what: source.into(),
                message,
            }
        } else {
            VaultError::BadBundle {
                what: source.into(),
                message,
            }
        });
    }
    Ok(())
}

impl Vault {
    /// The environments in the vault, by name.
    pub fn env_list(&self) -> Result<Vec<EnvMeta>, VaultError> {
        Ok(self
            .env_list_loaded()?
            .into_iter()
            .map(|e| e.meta)
            .collect())
    }

    /// Public facts of an environment; opens nothing.
    pub fn env_show(&self, env: &str) -> Result<EnvView, VaultError> {
        let env = self.env(env)?;
        let recipients = match env.meta.sealing {
            Sealing::Recipients => self
                .recipients(&env)?
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            Sealing::Passphrase => Vec::new(),
        };
        let audit_events = audit_dir::load_all_below(&self.root, &env.dir())?.len();
        Ok(EnvView {
            meta: env.meta,
            recipients,
            audit_events,
        })
    }

    /// The environment's policy (`policy.yaml`).
    pub fn policy(&self, env: &str) -> Result<Policy, VaultError> {
        self.read_policy(&self.env(env)?)
    }

    /// `env create` and `env import`: builds or imports the bundle, checks it, seals it, and
    /// writes the environment (env.yaml, recipients.txt, policy.yaml, bundle.age, the first
    /// audit event) in one transaction.
    pub fn env_create(&self, req: NewEnv, ctx: &Context) -> Result<EnvView, VaultError> {
        let name = EnvName::parse(&req.name)?;
        plain_text("cluster_name", req.cluster_name.as_deref())?;
        plain_text("endpoint", req.endpoints.iter().map(String::as_str))?;
        plain_text("node", req.nodes.iter().map(String::as_str))?;
        plain_text("kubernetes_endpoint", req.kubernetes_endpoint.as_deref())?;
        if let Some(server) = &req.kubernetes_endpoint
            && !super::kubeconfig::valid_server(server)
        {
            return Err(VaultError::KubernetesServer {
                server: server.clone(),
            });
        }
        match self.env_meta(&name) {
            Err(VaultError::NoSuchEnv { .. }) => {}
            Ok(_) => return Err(VaultError::EnvExists { env: req.name }),
            Err(other) => return Err(other),
        }
        let source = req.source.label();
        let bad = |message: String| VaultError::BadImport {
            kind: source,
            message,
        };
        let rng = ring::rand::SystemRandom::new();
        let bundle = match req.source {
            BundleSource::Generate => generate::generate(req.contract, ctx.now, &rng)
                .map_err(|e| VaultError::Generate(format!("cannot generate the bundle: {e}")))?,
            BundleSource::Secrets(bytes) => {
                SecretsBundle::from_yaml(bytes.expose()).map_err(|e| bad(e.to_string()))?
            }
            BundleSource::KubernetesPki(pki, token) => {
                import::from_kubernetes_pki(pki, token, req.contract, ctx.now, &rng)
                    .map_err(|e| bad(e.to_string()))?
            }
            BundleSource::ControlplaneConfig(bytes) => {
                import::from_controlplane_config(bytes.expose()).map_err(|e| bad(e.to_string()))?
            }
        };
        check_bundle(&bundle, req.contract, ctx.now, source)?;
        let missing = || VaultError::BadBundle {
            what: source.into(),
            message: "a CA certificate is missing".into(),
        };
        let pins = Pins::of(&bundle).ok_or_else(missing)?;
        let certificates = CaCertificates::of(&bundle).ok_or_else(missing)?;
        let yaml = bundle.to_yaml();
        let (sealed, sealing, recipients_txt, recipients_shown) = match &req.seal_to {
            SealTo::Recipients(r) => (
                agestore::seal(yaml.expose().as_bytes(), r)?,
                Sealing::Recipients,
                recipients_txt(r),
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
            kubernetes_endpoint: req.kubernetes_endpoint,
            source: source.to_owned(),
            sealing,
            created: rfc3339(ctx.now),
            pins: pins.clone(),
            certificates,
            tainted: None,
        };
        let env = super::Env { name, meta };
        let dir = env.dir();
        let mut t = Transaction::new(&self.root);
        t.write(
            dir.join("env.yaml"),
            env.meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        t.write(
            dir.join("recipients.txt"),
            recipients_txt.as_bytes(),
            Mode::Public,
        );
        t.write(dir.join(BUNDLE_FILE), &sealed, Mode::Secret);
        t.write(
            dir.join("policy.yaml"),
            policy_file(&Policy::default()).as_bytes(),
            Mode::Public,
        );
        let (source, talos_version) = (source.to_owned(), env.meta.talos_version.clone());
        let action = if source == "generated" {
            Action::EnvCreate {
                source,
                talos_version,
                sealing,
                recipients: recipients_shown,
                pins,
            }
        } else {
            Action::EnvImport {
                source,
                talos_version,
                sealing,
                recipients: recipients_shown,
                pins,
            }
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        self.env_show(env.as_str())
    }

    /// `env untaint`: clears the break-glass mark, with a reason, audited.
    pub fn untaint(&self, env: &str, reason: &str, ctx: &Context) -> Result<(), VaultError> {
        let mut env = self.env(env)?;
        let Some(old) = env.meta.tainted.take() else {
            return Err(VaultError::NotTainted {
                env: env.as_str().into(),
            });
        };
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(VaultError::EmptyReason);
        }
        plain_text("reason", [reason])?;
        let mut t = Transaction::new(&self.root);
        t.write(
            env.dir().join("env.yaml"),
            env.meta.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let action = Action::EnvUntaint {
            reason: reason.to_owned(),
            tainted_since: old.since,
            break_glass_serial: old.serial,
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)
    }
}
