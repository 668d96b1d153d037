//! Issuing talosconfigs (`issue` and `break-glass`) as one typestate: `prepare_issue` loads the
//! environment, applies the policy, checks the CSR, picks the signer and refuses whatever it
//! can before anything is opened; the caller can then check its destination against the
//! context name; `PreparedIssue::issue` signs, seals the talosconfig to its holder when asked,
//! records the certificate, taints the environment for break-glass, and audits, in one
//! transaction. The leaf key is returned (or sealed to the holder), never stored. The signing
//! and recording steps are the kernel's (`signer`: `leaf_signer`, `stage_certificate`), shared
//! with `renew`.

use super::delivery::{Delivery, Sealed, seal_talosconfig, seal_target};
use super::records::{Issuer, signing_issuer};
use super::signer::cert_record;
use super::{Context, Env, Vault, VaultError, plain_text, rfc3339};
use crate::holder::KeySource;
use crate::model::Api;
use crate::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, verify_csr};
use crate::pki::policy::{Grant, Holder, Request};
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::secret::SecretBytes;
use crate::store::age::Recipient;
use crate::store::txn::Transaction;
use crate::talosconfig;

/// What `issue` / `break-glass` is asked for, parsed but before policy.
#[derive(Default)]
pub struct IssueRequest {
    /// The environment.
    pub env: String,
    /// Roles (for break-glass, none means `os:admin`).
    pub roles: Vec<Role>,
    /// TTL; `None` takes the policy default.
    pub ttl: Option<Ttl>,
    /// Holder.
    pub holder: Option<Holder>,
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
    /// As a talosconfig, or sealed to the holder's recipients (the holder must be registered).
    pub delivery: Delivery,
}

/// An issuance that passed every check that needs no secret: what `issue` consumes.
pub struct PreparedIssue<'v> {
    vault: &'v Vault,
    env: Env,
    grant: Grant,
    subject_key: SubjectKey,
    csr: bool,
    /// The signing issuer, or `None` for direct signing by the OS CA.
    issuer: Option<Issuer>,
    context: String,
    endpoints: Vec<String>,
    nodes: Vec<String>,
    /// Sealed to these recipients, armored or not.
    seal_to: Option<(Vec<Recipient>, bool)>,
}

/// How an issued talosconfig is handed over.
pub enum Delivered {
    /// The talosconfig context, to write or merge.
    Talosconfig(talosconfig::Context),
    /// The talosconfig sealed to the holder.
    Sealed(Sealed),
}

/// A signed leaf and its talosconfig context.
pub struct Issued {
    /// The talosconfig context name.
    pub context_name: String,
    /// The leaf (its key, if generated, is in the talosconfig or sealed; never kept).
    pub leaf: IssuedLeaf,
    /// The talosconfig, or the sealed file.
    pub delivered: Delivered,
    /// `os` (direct) or the issuer id that signed it.
    pub signed_by: String,
    /// The signature was made inside a PKCS#11 token.
    pub in_token: bool,
}

impl Vault {
    /// Checks an issuance before anything is signed: environment, endpoints, then (with the
    /// audit chain authenticated, which opens the audit keys) policy, CSR and signer. `now`
    /// bounds the leaf by its issuer's lifetime.
    pub fn prepare_issue(
        &self,
        req: IssueRequest,
        ctx: &Context,
    ) -> Result<PreparedIssue<'_>, VaultError> {
        let env = self.env(&req.env)?;
        plain_text("context", req.context.as_deref())?;
        plain_text("endpoint", req.endpoints.iter().map(String::as_str))?;
        plain_text("node", req.nodes.iter().map(String::as_str))?;
        let roles = if req.break_glass.is_some() && req.roles.is_empty() {
            Role::known(Role::ADMIN).into_iter().collect()
        } else {
            req.roles
        };
        let endpoints = if req.endpoints.is_empty() {
            env.meta.endpoints.clone()
        } else {
            req.endpoints
        };
        if endpoints.is_empty() {
            return Err(VaultError::NoEndpoints {
                env: env.as_str().into(),
            });
        }
        self.authenticate(&env, ctx)?;
        // A registered holder: their standing grant fills in what the request leaves out, a
        // CSR-only holder's key is never generated, and a sealed delivery goes to their
        // recipients.
        let registered = self.registered_holder(&env, req.holder.as_ref())?;
        let seal_to = seal_target(
            &env,
            req.delivery,
            registered.as_ref(),
            req.holder.as_ref().map(Holder::as_str),
        )?;
        let (mut roles, mut ttl) = (roles, req.ttl);
        if let Some((name, record)) = &registered {
            if record.key == KeySource::Csr && req.csr.is_none() {
                return Err(VaultError::HolderNeedsCsr {
                    holder: name.to_string(),
                });
            }
            if let Some(grant) = record.grant.as_ref().filter(|_| roles.is_empty()) {
                roles = grant.roles.clone();
                ttl = ttl.or(Some(grant.ttl));
            }
        }
        let nodes = if req.nodes.is_empty() {
            env.meta.nodes.clone()
        } else {
            req.nodes
        };
        let context = req
            .context
            .unwrap_or_else(|| talosconfig::context_name(&roles, &env.meta.cluster_name));
        let policy = self.read_policy(&env)?;
        let grant = policy.grant(&Request {
            roles,
            ttl,
            holder: req.holder,
            break_glass: req.break_glass,
        })?;
        let csr = req.csr.is_some();
        let subject_key = match &req.csr {
            Some(bytes) => SubjectKey::FromCsr(verify_csr(bytes.expose())?),
            None => SubjectKey::Generate,
        };
        let issuers = self.load_issuers(&env)?;
        // Issuer mode when an issuer is active, unless --direct; direct mode needs the policy
        // (and, beside an active issuer, its explicit opt-in).
        let active = signing_issuer(&issuers, Api::Talos).cloned();
        let issuer = if req.direct { None } else { active.clone() };
        if issuer.is_none() && !policy.allows_direct(active.is_some()) {
            return Err(VaultError::DirectForbidden {
                env: env.as_str().into(),
                beside_issuer: policy.allow_direct,
            });
        }
        if let Some(issuer) = &issuer {
            let end = issuer.facts.not_after;
            if end <= ctx.now {
                return Err(VaultError::IssuerExpired {
                    id: issuer.meta.id.clone(),
                    not_after: rfc3339(end),
                });
            }
            if ctx.now + grant.ttl().as_duration() > end {
                return Err(VaultError::LeafOutlivesIssuer {
                    issuer: issuer.meta.id.clone(),
                    not_after: rfc3339(end),
                    ttl: grant.ttl().to_string(),
                });
            }
        }
        Ok(PreparedIssue {
            vault: self,
            env,
            grant,
            subject_key,
            csr,
            issuer,
            context,
            endpoints,
            nodes,
            seal_to,
        })
    }
}

impl PreparedIssue<'_> {
    /// The talosconfig context the certificate will be written under.
    pub fn context_name(&self) -> &str {
        &self.context
    }

    /// Signs the leaf (opening the issuer key or the bundle), seals the talosconfig to the
    /// holder when asked, records the certificate, and audits it.
    pub fn issue(self, ctx: &Context) -> Result<Issued, VaultError> {
        let PreparedIssue {
            vault,
            env,
            grant,
            subject_key,
            csr,
            issuer,
            context,
            endpoints,
            nodes,
            seal_to,
        } = self;
        let rng = ring::rand::SystemRandom::new();
        let signer = vault.leaf_signer(&env, issuer.as_ref(), ctx)?;
        let leaf = signer.sign(&grant, subject_key, IssueTime::new(ctx.now), &rng)?;
        let record = cert_record(&leaf, &grant, &signer, csr, ctx);
        // `ca` is always the OS CA: it verifies apid's server certificate, whoever signed the leaf.
        let context_entry = talosconfig::Context::issued(
            env.meta.certificates.os.as_bytes(),
            &leaf.cert_pem,
            leaf.key_pem.as_ref(),
            endpoints,
            nodes,
        );
        // Sealed before anything is recorded: a recipient that cannot be sealed to (a plugin
        // that is not installed) leaves no certificate behind.
        let delivered = match seal_to {
            None => Delivered::Talosconfig(context_entry),
            Some((recipients, armor)) => Delivered::Sealed(seal_talosconfig(
                &context,
                context_entry,
                &recipients,
                armor,
            )?),
        };
        let mut t = Transaction::new(&vault.root);
        vault.stage_certificate(&mut t, &env, ctx, &signer.opened_by, record, None)?;
        vault.commit(t)?;
        Ok(Issued {
            context_name: context,
            leaf,
            delivered,
            signed_by: signer.signed_by.ca.clone(),
            in_token: signer.in_token(),
        })
    }
}
