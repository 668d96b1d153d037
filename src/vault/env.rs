//! Environments: create or import one (build or read the bundle, check it, seal it, write the
//! environment and its first event), list and show them (opening nothing), show the policy, and
//! clear the break-glass mark.

use serde::Serialize;

use super::trail::{AUDIT_KEYS_FILE, new_audit_keys};
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
        let mut out = Vec::new();
        for env in self.env_list_loaded()? {
            let tainted = self.taint(&env)?;
            out.push(EnvMeta {
                tainted,
                ..env.meta
            });
        }
        Ok(self.finish(out))
    }

    /// Public facts of an environment; opens nothing but the audit keys (when `ctx` can).
    pub fn env_show(&self, env: &str, ctx: &Context) -> Result<EnvView, VaultError> {
        let env = self.env_for(env, ctx)?;
        let recipients = match env.meta.sealing {
            Sealing::Recipients => self
                .recipients(&env)?
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            Sealing::Passphrase => Vec::new(),
        };
        let audit_events = audit_dir::load_all_below(&self.root, &env.dir())?.len();
        let tainted = self.taint(&env)?;
        Ok(self.finish(EnvView {
            meta: EnvMeta {
                tainted,
                ..env.meta
            },
            recipients,
            audit_events,
        }))
    }

    /// The environment's policy (`policy.yaml`).
    pub fn policy(&self, env: &str, ctx: &Context) -> Result<Policy, VaultError> {
        self.read_policy(&self.env_for(env, ctx)?)
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
            && !crate::kubeconfig::valid_server(server)
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
        let meta_yaml = meta.to_yaml()?;
        let env = super::Env {
            name,
            meta,
            meta_sha256: crate::digest::sha256_hex(meta_yaml.as_bytes()),
        };
        let dir = env.dir();
        let mut t = Transaction::new(&self.root);
        if self.sealed() {
            // The audit keys (epoch 1), sealed like the bundle and bound to it.
            let keys = new_audit_keys(&rng, yaml.expose().as_bytes())?;
            let sealed_keys = match &req.seal_to {
                SealTo::Recipients(r) => agestore::seal(&keys.to_json(), r)?,
                SealTo::Passphrase(p) => agestore::seal_with_passphrase(&keys.to_json(), p)?,
            };
            t.write(dir.join(AUDIT_KEYS_FILE), &sealed_keys, Mode::Secret);
            self.use_audit_keys(&env, &keys)?;
            // The backup lane's keys (epoch 1), sealed to the recipients (a passphrase
            // environment has no lane).
            if let SealTo::Recipients(r) = &req.seal_to {
                self.stage_lane_keys(&mut t, &env, ctx, &keys.bundle_sha256, r, &[])?;
            }
        }
        t.write(dir.join("env.yaml"), meta_yaml.as_bytes(), Mode::Public);
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
        // The first event also accounts for the vault's own file, as it is.
        let mut files = t.file_hashes(&env.dir());
        let vault_file = self.read(std::path::Path::new(super::VAULT_FILE), super::META_MAX)?;
        files.insert(
            format!("/{}", super::VAULT_FILE),
            Some(crate::digest::sha256_hex(&vault_file)),
        );
        self.stage_event_naming(&mut t, &env, ctx, None, &action, files)?;
        self.commit(t)?;
        self.env_show(env.as_str(), ctx)
    }

    /// `policy accept`: records the reviewed `policy.yaml` as it is now in the audit trail, so
    /// that commands use it (until then they refuse a policy the trail does not name).
    pub fn policy_accept(
        &self,
        env: &str,
        reason: &str,
        ctx: &Context,
    ) -> Result<Policy, VaultError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(VaultError::EmptyReason);
        }
        plain_text("reason", [reason])?;
        let env = self.env_for(env, ctx)?;
        let rel = env.dir().join("policy.yaml");
        let bytes = self.read(&rel, super::META_MAX)?;
        let policy = Policy::from_yaml(&bytes).map_err(|source| VaultError::PolicyFile {
            file: rel.display().to_string(),
            source,
        })?;
        let mut t = Transaction::new(&self.root);
        let files = [(
            "policy.yaml".to_owned(),
            Some(crate::digest::sha256_hex(&bytes)),
        )]
        .into_iter()
        .collect();
        let action = Action::PolicyAccept {
            reason: reason.to_owned(),
        };
        self.stage_event_naming(&mut t, &env, ctx, None, &action, files)?;
        self.commit(t)?;
        Ok(policy)
    }

    /// `env untaint`: clears the break-glass mark, with a reason, audited.
    pub fn untaint(&self, env: &str, reason: &str, ctx: &Context) -> Result<(), VaultError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(VaultError::EmptyReason);
        }
        plain_text("reason", [reason])?;
        let env = self.env_for(env, ctx)?;
        // The taint is the chain's (a break-glass event not yet followed by an untaint): the
        // event alone clears it; env.yaml is never rewritten.
        let Some(old) = self.taint(&env)? else {
            return Err(VaultError::NotTainted {
                env: env.as_str().into(),
            });
        };
        let mut t = Transaction::new(&self.root);
        let action = Action::EnvUntaint {
            reason: reason.to_owned(),
            tainted_since: old.since,
            break_glass_serial: old.serial,
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)
    }
}
