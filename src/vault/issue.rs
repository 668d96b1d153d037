//! Issuing talosconfigs (`issue` and `break-glass`) as one typestate: `prepare_issue` loads the
//! environment, applies the policy, checks the CSR, picks the signer and refuses whatever it
//! can before anything is opened; the caller can then check its destination against the
//! context name; `PreparedIssue::issue` signs, records the certificate, taints the environment
//! for break-glass, and audits, in one transaction. The leaf key is returned, never stored.

use super::records::{Issuer, signing_issuer};
use super::signer::CaSigner;
use super::{Context, Env, Vault, VaultError, plain_text, rfc3339};
use crate::audit::Action;
use crate::keys::PrivateKey;
use crate::model::{Api, CertRecord, OS_CA, SignedBy};
use crate::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, issue_leaf, verify_csr};
use crate::pki::policy::{Grant, Holder, Request};
use crate::pki::role::Role;
use crate::pki::ttl::Ttl;
use crate::secret::SecretBytes;
use crate::store::txn::Transaction;
use crate::store::{self, Mode};
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
}

/// A signed leaf and its talosconfig context.
pub struct Issued {
    /// The talosconfig context name.
    pub context_name: String,
    /// The leaf (with its key unless CSR-issued).
    pub leaf: IssuedLeaf,
    /// The talosconfig context for it.
    pub context: talosconfig::Context,
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
            ttl: req.ttl,
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
        })
    }
}

impl PreparedIssue<'_> {
    /// The talosconfig context the certificate will be written under.
    pub fn context_name(&self) -> &str {
        &self.context
    }

    /// Signs the leaf (opening the issuer key or the bundle), records it, and audits it.
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
        } = self;
        let rng = ring::rand::SystemRandom::new();
        let time = IssueTime::new(ctx.now);
        let (leaf, signed_by, opened_by, in_token) = match &issuer {
            Some(issuer) => {
                let (signer, opened_by) = vault.issuer_signer(&env, issuer, ctx)?;
                let leaf = issue_leaf(
                    issuer.meta.certificate.as_bytes(),
                    signer.key(),
                    &grant,
                    subject_key,
                    time,
                    &rng,
                )
                .map_err(|e| signer.explain(e.into()))?;
                let by = SignedBy {
                    ca: issuer.meta.id.clone(),
                    fingerprint: issuer.meta.fingerprint.clone(),
                };
                (leaf, by, opened_by, matches!(signer, CaSigner::Token(_)))
            }
            None => {
                let (_, bundle, opened_by) = vault.open_bundle(&env, ctx)?;
                let bad = |message: String| VaultError::BadBundle {
                    what: "bundle.age".into(),
                    message,
                };
                let os = bundle
                    .certs
                    .as_ref()
                    .and_then(|c| c.os.as_ref())
                    .ok_or_else(|| bad("certs.os is missing".into()))?;
                let ca_key = PrivateKey::from_talos_pem(os.key.expose())
                    .map_err(|e| bad(format!("certs.os.key: {e}")))?;
                let signer = ca_key
                    .key_pair()
                    .map_err(|e| bad(format!("certs.os.key: {e}")))?;
                let leaf = issue_leaf(&os.crt, &signer, &grant, subject_key, time, &rng)?;
                let by = SignedBy {
                    ca: OS_CA.into(),
                    fingerprint: env.meta.pins.os.0.clone(),
                };
                (leaf, by, opened_by, false)
            }
        };
        let mode = if signed_by.ca == OS_CA {
            "direct"
        } else {
            "issuer"
        };
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
            key: if csr { "csr" } else { "generated" }.into(),
            actor: ctx.actor.clone(),
            issued: rfc3339(ctx.now),
            break_glass: grant.break_glass_reason().is_some(),
            reason: grant.break_glass_reason().map(str::to_owned),
            certificate: String::from_utf8_lossy(&leaf.cert_pem).into_owned(),
            api: Api::Talos,
        };
        let dir = env.dir();
        let mut t = Transaction::new(&vault.root);
        t.create(
            // The serial becomes a file name: checked like every name used in a path.
            dir.join("certs").join(format!(
                "{}.yaml",
                store::name::check_hex("serial", &leaf.serial_hex, 40)?
            )),
            record.to_yaml()?.as_bytes(),
            Mode::Public,
        );
        // A break-glass event taints the environment by itself (the chain says so until an
        // untaint or the retirement of its issuer); env.yaml is never rewritten.
        let CertRecord {
            serial,
            fingerprint,
            roles,
            holder,
            ttl,
            not_after,
            signed_by,
            key,
            reason,
            break_glass,
            ..
        } = record;
        let (mode, signed_by_ca) = (mode.to_owned(), signed_by.ca);
        let action = if break_glass {
            Action::BreakGlass {
                serial,
                fingerprint,
                roles,
                holder,
                ttl,
                not_after,
                mode,
                signed_by: signed_by_ca.clone(),
                key,
                reason,
            }
        } else {
            Action::Issue {
                serial,
                fingerprint,
                roles,
                holder,
                ttl,
                not_after,
                mode,
                signed_by: signed_by_ca.clone(),
                key,
                reason,
            }
        };
        vault.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        vault.commit(t)?;
        // `ca` is always the OS CA: it verifies apid's server certificate, whoever signed the leaf.
        let context_entry = talosconfig::Context::issued(
            env.meta.certificates.os.as_bytes(),
            &leaf.cert_pem,
            leaf.key_pem.as_ref(),
            endpoints,
            nodes,
        );
        Ok(Issued {
            context_name: context,
            leaf,
            context: context_entry,
            signed_by: signed_by_ca,
            in_token,
        })
    }
}
