//! Issuers, the environment's client-issuing CAs: create one (pending; its key sealed in the
//! vault or held in a PKCS#11 token), activate it, retire it (cutting off all it signed once
//! nodes drop it), list them, and give the certificates `machine.acceptedCAs` must hold.

use super::records::{ISSUER_KEY_FILE, IssuerView, find_issuer, issuer_views, live_of};
use super::signer::CaSigner;
use super::{Context, LiveCert, Vault, VaultError, rfc3339};
use crate::audit::Action;
use crate::keys::PrivateKey;
use crate::model::{Api, FORMAT_VERSION, IssuerKey, IssuerMeta, IssuerState};
use crate::patch::{AcceptedCa, KubernetesCas, KubernetesForm, accepted_cas_patch_for};
use crate::pki::issuer::{
    IssuerAlgorithm, IssuerSpec, create_issuer_certificate, lifetime_in_bounds,
    read_issuer_certificate,
};
use crate::pki::ttl::Ttl;
use crate::pki::verify::{certificate_der, leaf_facts};
use crate::store::Mode;
use crate::store::age::OpenedBy;
use crate::store::txn::Transaction;

pub use crate::pki::issuer::{
    DEFAULT_LIFETIME as DEFAULT_ISSUER_LIFETIME, MAX_LIFETIME_HOURS as MAX_ISSUER_LIFETIME_HOURS,
};

/// What `issuer create` / `issuer rotate` is asked for.
pub struct NewIssuer {
    /// The environment.
    pub env: String,
    /// Key algorithm; `None`: the signing issuer's when rotating, else Ed25519 for a new key,
    /// the key's own for an existing token key.
    pub algorithm: Option<IssuerAlgorithm>,
    /// Where the key comes from.
    pub key: NewIssuerKey,
    /// Lifetime (the CLI's default is [`DEFAULT_ISSUER_LIFETIME`]).
    pub lifetime: Ttl,
    /// Rotation: the next issuer after the one that signs now (keeps its algorithm unless told).
    pub rotate: bool,
    /// The API it issues for: `talos` (talosconfigs, `machine.acceptedCAs`) or `kubernetes`
    /// (kubeconfigs, the kube-apiserver's accepted CAs).
    pub api: Api,
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

/// The outcome of `create`, `activate` and `retire`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerChange {
    /// The issuer after the change.
    pub issuer: IssuerView,
    /// The issuer that signed before (create, rotate: the one to retire later).
    pub previous: Option<IssuerView>,
    /// What the user should know (an environment whose nodes lack acceptedCAs).
    pub warnings: Vec<String>,
    /// Live certificates that stop working once nodes drop it (retire only).
    pub cut_off: Vec<LiveCert>,
    /// Whether the environment's break-glass taint was cleared (retire only).
    pub untainted: bool,
}

fn to_hsm(a: IssuerAlgorithm) -> talvault_hsm::KeyAlgorithm {
    match a {
        IssuerAlgorithm::Ed25519 => talvault_hsm::KeyAlgorithm::Ed25519,
        IssuerAlgorithm::EcdsaP256 => talvault_hsm::KeyAlgorithm::EcdsaP256,
    }
}

impl Vault {
    /// `issuer list`.
    pub fn issuer_list(&self, env: &str, ctx: &Context) -> Result<Vec<IssuerView>, VaultError> {
        let env = self.env_for(env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let trusted = self.trusted(&env)?;
        let views = issuer_views(
            &issuers,
            &trusted.certs,
            &trusted.revoked_serials(),
            ctx.now.unix_timestamp(),
        );
        Ok(self.finish(views))
    }

    /// `issuer create` (and `issuer rotate`): a new self-signed client-issuing CA, pending,
    /// with its key sealed to the environment's recipients or held in a token, audited, in one
    /// transaction.
    pub fn issuer_create(
        &self,
        req: &NewIssuer,
        ctx: &Context,
    ) -> Result<IssuerChange, VaultError> {
        if !lifetime_in_bounds(req.lifetime) {
            return Err(VaultError::IssuerLifetime {
                lifetime: req.lifetime,
                max_hours: MAX_ISSUER_LIFETIME_HOURS,
            });
        }
        let env = self.env_for(&req.env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let signing = super::records::signing_issuer(&issuers, req.api);
        let previous_id = signing.map(|i| i.meta.id.clone());
        // A Kubernetes issuer is ECDSA P-256 unless told otherwise (reference/kubernetes.md
        // §6.1: what the kube-apiserver, client-go and tokens all handle).
        let default_algorithm = match req.api {
            Api::Talos => IssuerAlgorithm::Ed25519,
            Api::Kubernetes => IssuerAlgorithm::EcdsaP256,
        };
        // rotate keeps the algorithm of the issuer that signs now, unless told otherwise; an
        // existing token key has its own.
        let wanted = match (req.algorithm, signing, &req.key) {
            (Some(a), _, _) => Some(a),
            (None, Some(s), _) if req.rotate && s.meta.algorithm == "ecdsa-p256" => {
                Some(IssuerAlgorithm::EcdsaP256)
            }
            (
                None,
                _,
                NewIssuerKey::Pkcs11 {
                    generate: false, ..
                },
            ) => None,
            (None, Some(s), _) if req.rotate && s.meta.algorithm == "ed25519" => {
                Some(IssuerAlgorithm::Ed25519)
            }
            _ => Some(default_algorithm),
        };
        let rng = ring::rand::SystemRandom::new();
        // The signer, and what the environment keeps of its key: a sealed copy, or a URI.
        let (signer, sealed_key) = match &req.key {
            NewIssuerKey::Sealed => {
                let generated = match wanted.unwrap_or(default_algorithm) {
                    IssuerAlgorithm::Ed25519 => PrivateKey::generate_ed25519(&rng),
                    IssuerAlgorithm::EcdsaP256 => PrivateKey::generate_p256(&rng),
                };
                let fail =
                    |e: &dyn std::fmt::Display| VaultError::Generate(format!("issuer key: {e}"));
                let key = generated.map_err(|e| fail(&e))?;
                let pair = key.key_pair().map_err(|e| fail(&e))?;
                let pem = key.to_talos_pem().map_err(|e| fail(&e))?;
                (
                    CaSigner::Memory(pair),
                    Some(self.seal_for(&env, pem.expose(), ctx)?),
                )
            }
            NewIssuerKey::Pkcs11 {
                uri,
                generate,
                allow_extractable,
            } => {
                // The URI comes from the operator's command line; a module it does not name is
                // the operator's configured one.
                let uri = talvault_hsm::Pkcs11Uri::parse(uri)?;
                let uri = match (&ctx.pkcs11.module, uri.module_path(), uri.module_name()) {
                    (Some(module), None, None) => uri.with_module_path(module),
                    _ => uri,
                };
                let options = talvault_hsm::OpenOptions {
                    pin_prompt: ctx.pin_prompt.as_deref(),
                    allow_extractable: *allow_extractable || ctx.pkcs11.danger_allow_extractable,
                    ..talvault_hsm::OpenOptions::default()
                };
                let key = if *generate {
                    talvault_hsm::HsmKey::generate(
                        &uri,
                        to_hsm(wanted.unwrap_or(default_algorithm)),
                        &options,
                    )?
                } else {
                    talvault_hsm::HsmKey::open(&uri, &options)?
                };
                if let Some(w) = wanted.map(to_hsm)
                    && w != key.algorithm()
                {
                    return Err(VaultError::TokenKeyAlgorithm {
                        wanted: w.as_str(),
                        found: key.algorithm().as_str(),
                    });
                }
                (CaSigner::Token(key), None)
            }
        };
        let algorithm = match &signer {
            CaSigner::Token(k) => k.algorithm().as_str(),
            CaSigner::Memory(_) => wanted.unwrap_or(default_algorithm).as_str(),
        };
        // Epochs count per API; Kubernetes issuer ids start with `k`, Talos ones with `e`.
        let epoch = issuers
            .iter()
            .filter(|i| i.meta.api == req.api)
            .map(|i| i.meta.epoch)
            .max()
            .unwrap_or(0)
            + 1;
        let (prefix, kind) = match req.api {
            Api::Talos => ("e", "issuer"),
            Api::Kubernetes => ("k", "kubernetes issuer"),
        };
        let mut suffix = [0u8; 2];
        ring::rand::SecureRandom::fill(&rng, &mut suffix)
            .map_err(|_| VaultError::Generate("no randomness".into()))?;
        let id = format!("{prefix}{epoch}-{}", crate::hex::encode(&suffix));
        let now = ctx.now.to_offset(time::UtcOffset::UTC);
        let common_name = format!(
            "{} {kind} {prefix}{epoch} {:04}-{:02}",
            env.as_str(),
            now.year(),
            u8::from(now.month())
        );
        let cert = create_issuer_certificate(
            signer.key(),
            &IssuerSpec {
                common_name: &common_name,
                // The same clock-skew allowance as leaves get.
                not_before: now - crate::pki::issue::DEFAULT_BACKDATE,
                not_after: now + req.lifetime.as_duration(),
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
                public_key: crate::hex::encode(k.public_key_der()),
                danger_allow_extractable: matches!(
                    req.key,
                    NewIssuerKey::Pkcs11 {
                        allow_extractable: true,
                        ..
                    }
                ),
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
            subject_key_id: crate::hex::encode(&facts.subject_key_id),
            not_before: rfc3339(facts.not_before),
            not_after: rfc3339(facts.not_after),
            created: rfc3339(ctx.now),
            activated: None,
            retired: None,
            key: key_record,
            certificate: cert.pem.clone(),
            api: req.api,
        };
        let dir = Self::issuers_dir(&env).join(&id);
        let mut t = Transaction::new(&self.root);
        if let Some(sealed) = &sealed_key {
            t.create(dir.join(ISSUER_KEY_FILE), sealed, Mode::Secret);
        }
        t.create(
            dir.join("issuer.yaml"),
            issuer.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        let (key_store, pkcs11_uri, danger_allow_extractable, opened_by) = match &issuer.key {
            IssuerKey::Age { .. } => ("age", None, None, None),
            IssuerKey::Pkcs11 {
                uri,
                danger_allow_extractable,
                ..
            } => (
                "pkcs11",
                Some(uri.clone()),
                danger_allow_extractable.then_some(true),
                Some(OpenedBy::Pkcs11(uri.clone())),
            ),
        };
        let action = Action::IssuerCreate {
            issuer: id.clone(),
            epoch,
            algorithm: issuer.algorithm.clone(),
            fingerprint: issuer.fingerprint.clone(),
            not_after: issuer.not_after.clone(),
            key_store: key_store.into(),
            pkcs11_uri,
            danger_allow_extractable,
            api: (req.api == Api::Kubernetes).then(|| req.api.as_str().to_owned()),
        };
        self.stage_event(&mut t, &env, ctx, opened_by.as_ref(), &action)?;
        self.commit(t)?;
        let mut warnings = Vec::new();
        let contract = env.meta.contract();
        if !contract.has_accepted_cas() {
            warnings.push(match req.api {
                Api::Talos => format!(
                    "environment {} follows Talos contract {contract}: nodes before Talos 1.7 have no machine.acceptedCAs and refuse every certificate this issuer signs; `issuer activate` needs --force",
                    env.as_str()
                ),
                Api::Kubernetes => format!(
                    "environment {} follows Talos contract {contract}: control planes before Talos 1.7 have no cluster.acceptedCAs and their kube-apiserver refuses every certificate this issuer signs; `issuer activate` needs --force",
                    env.as_str()
                ),
            });
        }
        let previous = match previous_id {
            Some(p) => Some(self.issuer_view(&env, &p, ctx.now)?),
            None => None,
        };
        Ok(IssuerChange {
            issuer: self.issuer_view(&env, &id, ctx.now)?,
            previous,
            cut_off: Vec::new(),
            untainted: false,
            warnings,
        })
    }

    /// `issuer activate`: a pending issuer starts signing (the previously signing one stays
    /// active, and accepted, until it is retired).
    pub fn issuer_activate(
        &self,
        env: &str,
        id: &str,
        force: bool,
        ctx: &Context,
    ) -> Result<IssuerChange, VaultError> {
        let env = self.env_for(env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let issuer = find_issuer(&env, &issuers, id)?;
        if issuer.meta.state != IssuerState::Pending {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: issuer.meta.state.as_str(),
                operation: "activate",
                needed: "pending",
            });
        }
        if issuer.facts.not_after.unix_timestamp() <= ctx.now.unix_timestamp() {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: "expired",
                operation: "activate",
                needed: "valid",
            });
        }
        let contract = env.meta.contract();
        if !contract.has_accepted_cas() && !force {
            let (env, contract, id) = (env.as_str().into(), contract.to_string(), id.into());
            return Err(match issuer.meta.api {
                Api::Talos => VaultError::NoAcceptedCas { env, contract, id },
                Api::Kubernetes => VaultError::NoKubernetesAcceptedCas { env, contract, id },
            });
        }
        // The state is the chain's: the event alone activates it (issuer.yaml stays as created,
        // so two clones never edit the same file).
        let mut t = Transaction::new(&self.root);
        let previously_signing =
            super::records::signing_issuer(&issuers, issuer.meta.api).map(|i| i.meta.id.clone());
        let action = Action::IssuerActivate {
            issuer: id.into(),
            previously_signing,
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(IssuerChange {
            issuer: self.issuer_view(&env, id, ctx.now)?,
            previous: None,
            cut_off: Vec::new(),
            untainted: false,
            warnings: Vec::new(),
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
        let env = self.env_for(env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let issuer = find_issuer(&env, &issuers, id)?;
        if issuer.meta.state == IssuerState::Retired {
            return Err(VaultError::IssuerState {
                id: id.into(),
                state: "retired",
                operation: "retire",
                needed: "pending or active",
            });
        }
        let trusted = self.trusted(&env)?;
        let certs = &trusted.certs;
        let cut_off = live_of(
            certs,
            &trusted.revoked_serials(),
            id,
            None,
            ctx.now.unix_timestamp(),
        );
        let other_active = issuers.iter().any(|i| {
            i.meta.id != id && i.meta.state == IssuerState::Active && i.meta.api == issuer.meta.api
        });
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
        // The event alone retires it; a break-glass certificate signed by this issuer dies
        // with it, which clears the taint (the event says so).
        let mut t = Transaction::new(&self.root);
        let untainted = self
            .taint(&env)?
            .and_then(|t| t.serial)
            .is_some_and(|s| certs.iter().any(|c| c.serial == s && c.ca == id));
        let action = Action::IssuerRetire {
            issuer: id.into(),
            forced: force,
            cut_off: cut_off.len(),
            untainted,
        };
        self.stage_event(&mut t, &env, ctx, None, &action)?;
        self.commit(t)?;
        Ok(IssuerChange {
            issuer: self.issuer_view(&env, id, ctx.now)?,
            previous: None,
            cut_off,
            untainted,
            warnings: Vec::new(),
        })
    }

    /// `patch accepted-cas`: the machine-config patch setting `machine.acceptedCAs` (the Talos
    /// API) and the Kubernetes API's accepted CAs to every pending and active issuer of that API
    /// (epoch order, each labelled), plus the CAs to keep accepting (each checked to be one
    /// certificate), in the form of the environment's contract unless told otherwise. The
    /// issuers' states come from the authenticated chain.
    pub fn accepted_cas_patch(
        &self,
        req: PatchRequest,
        ctx: &Context,
    ) -> Result<PatchOutput, VaultError> {
        // The CAs to keep are checked before anything is opened.
        let kept = |api: Api, keep: Vec<(String, Vec<u8>)>| -> Result<_, VaultError> {
            let mut cas = Vec::with_capacity(keep.len());
            for (label, pem) in keep {
                certificate_der(&pem)
                    .and_then(|der| leaf_facts(&der).map(|_| ()))
                    .map_err(|reason| VaultError::BadKeptCa {
                        label: label.clone(),
                        kubernetes: api == Api::Kubernetes,
                        reason,
                    })?;
                cas.push(AcceptedCa {
                    label: format!("kept: {label}"),
                    certificate_pem: String::from_utf8_lossy(&pem).into_owned(),
                });
            }
            Ok(cas)
        };
        let keep_talos = kept(Api::Talos, req.keep)?;
        let asked_kubernetes = !req.keep_kubernetes.is_empty();
        let keep_kubernetes = kept(Api::Kubernetes, req.keep_kubernetes)?;
        let env = self.env_for(&req.env, ctx)?;
        let issuers = self.load_issuers(&env)?;
        let listed = |api: Api, keep: Vec<AcceptedCa>| -> Vec<AcceptedCa> {
            let mut cas: Vec<AcceptedCa> = issuers
                .iter()
                .filter(|i| i.meta.api == api && i.meta.state.accepted())
                .map(|i| AcceptedCa {
                    label: format!(
                        "talvault {}issuer {} ({}, {}, until {})",
                        if api == Api::Kubernetes {
                            "kubernetes "
                        } else {
                            ""
                        },
                        i.meta.id,
                        i.meta.state.as_str(),
                        i.meta.algorithm,
                        i.meta.not_after
                    ),
                    certificate_pem: i.meta.certificate.clone(),
                })
                .collect();
            cas.extend(keep);
            cas
        };
        let talos = match req.api {
            Some(Api::Kubernetes) => None,
            _ => Some(listed(Api::Talos, keep_talos)),
        };
        // The Kubernetes part once the environment has (had) a Kubernetes issuer, or when asked.
        let has_kubernetes =
            issuers.iter().any(|i| i.meta.api == Api::Kubernetes) || asked_kubernetes;
        let kubernetes = match req.api {
            Some(Api::Talos) => None,
            Some(Api::Kubernetes) => Some(listed(Api::Kubernetes, keep_kubernetes)),
            None if has_kubernetes => Some(listed(Api::Kubernetes, keep_kubernetes)),
            None => None,
        };
        // pkg/machinery/config/contract.go MultidocKubernetesConfigSupported: contract > 1.13.
        let form = req
            .kubernetes_form
            .unwrap_or(if env.meta.contract().greater(1, 13) {
                KubernetesForm::Document
            } else {
                KubernetesForm::Cluster
            });
        let kube = kubernetes.as_ref().map(|cas| KubernetesCas {
            form,
            cluster_ca: AcceptedCa {
                label: format!(
                    "the cluster's Kubernetes CA (certs.k8s of environment {}), kept first: workers' kubelets need it",
                    env.as_str()
                ),
                certificate_pem: env.meta.certificates.k8s.clone(),
            },
            cas,
        });
        let patch = accepted_cas_patch_for(talos.as_deref(), kube.as_ref())?;
        Ok(self.finish(PatchOutput {
            patch,
            talos: talos.as_ref().map(Vec::len),
            kubernetes: kubernetes.as_ref().map(Vec::len),
            form: kube.map(|k| k.form),
        }))
    }
}

/// What `patch accepted-cas` is asked for.
#[derive(Debug, Default)]
pub struct PatchRequest {
    /// The environment.
    pub env: String,
    /// Only this API's part; `None`: the Talos part, and the Kubernetes part once the
    /// environment has a Kubernetes issuer (or CAs to keep for it).
    pub api: Option<Api>,
    /// CA certificates to keep in `machine.acceptedCAs`: `(label, PEM)`.
    pub keep: Vec<(String, Vec<u8>)>,
    /// CA certificates to keep in the Kubernetes accepted CAs: `(label, PEM)`.
    pub keep_kubernetes: Vec<(String, Vec<u8>)>,
    /// The form of the Kubernetes part; `None`: from the environment's contract.
    pub kubernetes_form: Option<KubernetesForm>,
}

/// The patch and what it sets.
#[derive(Debug)]
pub struct PatchOutput {
    /// The patch text.
    pub patch: String,
    /// CAs in `machine.acceptedCAs`, when the patch sets it.
    pub talos: Option<usize>,
    /// CAs in the Kubernetes accepted CAs besides the cluster's own, when the patch sets them.
    pub kubernetes: Option<usize>,
    /// The form of the Kubernetes part, when there is one.
    pub form: Option<KubernetesForm>,
}
