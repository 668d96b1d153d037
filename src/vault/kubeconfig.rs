//! Issuing kubeconfigs (`kubeconfig` and `break-glass --kubernetes`), mirroring `issue`'s
//! typestate: `prepare_kubeconfig` loads the environment, authenticates its chain, applies the
//! Kubernetes policy, checks the CSR, picks the signer (the active Kubernetes issuer, else the
//! bundle's Kubernetes CA) and refuses whatever it can before anything is signed; the caller
//! then opens its destination knowing the entry names; `PreparedKubeconfig::issue` signs, seals
//! the kubeconfig to its registered holder when asked (before anything is recorded), records
//! the certificate and stages the one MACed event (which, for break-glass, taints the
//! environment), in one transaction. The leaf key is returned (or sealed to the holder), never
//! stored. It imports no other room.

use super::delivery::{Delivery, Sealed, seal_kubeconfig, seal_target};
use super::records::{Issuer, signing_issuer};
use super::signer::CaSigner;
use super::{Context, Env, Vault, VaultError, plain_text, rfc3339};
use crate::audit::Action;
use crate::holder::{HolderName, KeySource};
use crate::keys::PrivateKey;
use crate::kubeconfig::{EntryNames, NewEntry, valid_server};
use crate::model::{Api, CertRecord, K8S_CA, SignedBy};
use crate::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, verify_csr};
use crate::pki::kube_policy::{KubeGrant, KubeGroup, KubeRequest, KubeUser};
use crate::pki::kubernetes::{check_csr, issue_client_certificate};
use crate::pki::ttl::Ttl;
use crate::secret::SecretBytes;
use crate::store::age::Recipient;
use crate::store::txn::Transaction;
use crate::store::{self, Mode};

/// The namespace a context gets unless told otherwise (as `talosctl kubeconfig` writes it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// What `kubeconfig` / `break-glass --kubernetes` is asked for, parsed but before policy.
#[derive(Default)]
pub struct KubeconfigRequest {
    /// The environment.
    pub env: String,
    /// The Kubernetes user (CN).
    pub user: Option<KubeUser>,
    /// The groups (O); for break-glass, none means `system:masters`.
    pub groups: Vec<KubeGroup>,
    /// TTL; `None` takes the policy default.
    pub ttl: Option<Ttl>,
    /// The context's namespace (default `default`).
    pub namespace: Option<String>,
    /// The API server URL (default: the environment's Kubernetes endpoint).
    pub server: Option<String>,
    /// A PKCS#10 request (PEM or DER).
    pub csr: Option<SecretBytes>,
    /// `Some(reason)` for break-glass.
    pub break_glass: Option<String>,
    /// Sign with the bundle's Kubernetes CA even when a Kubernetes issuer is active.
    pub direct: bool,
    /// A registered holder (must be registered): a CSR-only holder's key is never generated,
    /// and a sealed delivery goes to their recipients.
    pub holder: Option<HolderName>,
    /// As a kubeconfig, or sealed to the holder's recipients.
    pub delivery: Delivery,
}

/// A kubeconfig issuance that passed every check that needs no secret.
pub struct PreparedKubeconfig<'v> {
    vault: &'v Vault,
    env: Env,
    grant: KubeGrant,
    subject_key: SubjectKey,
    csr: bool,
    issuer: Option<Issuer>,
    names: EntryNames,
    namespace: String,
    /// Sealed to these recipients, armored or not.
    seal_to: Option<(Vec<Recipient>, bool)>,
}

/// How the kubeconfig leaves the vault.
pub enum DeliveredKubeconfig {
    /// The cluster, user and context entries (the key in the clear, for a 0600 file or merge).
    Kubeconfig(NewEntry),
    /// A kubeconfig of those entries sealed to the holder.
    Sealed(Sealed),
}

/// A signed Kubernetes client certificate and its kubeconfig entries.
pub struct IssuedKubeconfig {
    /// The leaf (its key, if generated, is in the kubeconfig or sealed; never kept).
    pub leaf: IssuedLeaf,
    /// The entries' names.
    pub names: EntryNames,
    /// The kubeconfig, or the sealed file.
    pub delivered: DeliveredKubeconfig,
    /// `k8s` (direct) or the issuer id that signed it.
    pub signed_by: String,
    /// The signature was made inside a PKCS#11 token.
    pub in_token: bool,
    /// The user.
    pub user: String,
    /// The groups.
    pub groups: Vec<String>,
}

/// A Kubernetes namespace name: a DNS-1123 label (kubernetes/apimachinery validation
/// `IsDNS1123Label`: 1–63 of a-z, 0-9, '-', starting and ending alphanumeric).
fn valid_namespace(ns: &str) -> bool {
    let b = ns.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl Vault {
    /// Checks a kubeconfig issuance before anything is signed: environment, server, namespace,
    /// then (with the audit chain authenticated, which opens the audit keys) policy, CSR and
    /// signer.
    pub fn prepare_kubeconfig(
        &self,
        req: KubeconfigRequest,
        ctx: &Context,
    ) -> Result<PreparedKubeconfig<'_>, VaultError> {
        let env = self.env(&req.env)?;
        plain_text("server", req.server.as_deref())?;
        plain_text("namespace", req.namespace.as_deref())?;
        let server = match req.server {
            Some(s) => s,
            None => env
                .meta
                .kubernetes_server()
                .ok_or_else(|| VaultError::NoKubernetesServer {
                    env: env.as_str().into(),
                })?,
        };
        if !valid_server(&server) {
            return Err(VaultError::KubernetesServer { server });
        }
        let namespace = req.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !valid_namespace(&namespace) {
            return Err(VaultError::Namespace { namespace });
        }
        // Policy, issuers and the taint rest on the chain: authenticated (the audit keys open)
        // before any of them is read.
        self.authenticate(&env, ctx)?;
        let registered = match &req.holder {
            None => None,
            Some(name) => Some(
                self.registered_holder(&env, Some(name.holder()))?
                    .ok_or_else(|| VaultError::UnknownHolder {
                        env: env.as_str().into(),
                        holder: name.to_string(),
                    })?,
            ),
        };
        let seal_to = seal_target(
            &env,
            req.delivery,
            registered.as_ref(),
            req.holder.as_ref().map(HolderName::as_str),
        )?;
        if let Some((name, record)) = &registered
            && record.key == KeySource::Csr
            && req.csr.is_none()
        {
            return Err(VaultError::HolderNeedsCsr {
                holder: name.to_string(),
            });
        }
        let policy = self.read_policy(&env)?.kubernetes;
        let grant = policy.grant(&KubeRequest {
            user: req.user,
            groups: req.groups,
            ttl: req.ttl,
            break_glass: req.break_glass,
        })?;
        let csr = req.csr.is_some();
        let subject_key = match &req.csr {
            Some(bytes) => {
                let verified = verify_csr(bytes.expose())?;
                check_csr(&verified)?;
                SubjectKey::FromCsr(verified)
            }
            None => SubjectKey::Generate,
        };
        let issuers = self.load_issuers(&env)?;
        let active = signing_issuer(&issuers, Api::Kubernetes).cloned();
        let issuer = if req.direct { None } else { active.clone() };
        if issuer.is_none() && !policy.allows_direct(active.is_some()) {
            return Err(VaultError::KubernetesDirectForbidden {
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
        // talosctl kubeconfig: cluster = the cluster name; user and context `<user>@<cluster>`.
        let cluster = env.meta.cluster_name.clone();
        let principal = format!("{}@{cluster}", grant.user());
        let names = EntryNames {
            cluster,
            server,
            ca_pem: env.meta.certificates.k8s.as_bytes().to_vec(),
            user: principal.clone(),
            context: principal,
        };
        Ok(PreparedKubeconfig {
            vault: self,
            env,
            grant,
            subject_key,
            csr,
            issuer,
            names,
            namespace,
            seal_to,
        })
    }
}

impl PreparedKubeconfig<'_> {
    /// The entries the kubeconfig will get.
    pub fn names(&self) -> &EntryNames {
        &self.names
    }

    /// Whether the bundle's Kubernetes CA signs (no active Kubernetes issuer, or `--direct`).
    pub fn direct(&self) -> bool {
        self.issuer.is_none()
    }

    /// Signs the leaf (opening the issuer key or the bundle), records it, and audits it.
    pub fn issue(self, ctx: &Context) -> Result<IssuedKubeconfig, VaultError> {
        let PreparedKubeconfig {
            vault,
            env,
            grant,
            subject_key,
            csr,
            issuer,
            names,
            namespace,
            seal_to,
        } = self;
        let rng = ring::rand::SystemRandom::new();
        let time = IssueTime::new(ctx.now);
        let (mut leaf, signed_by, opened_by, in_token) = match &issuer {
            Some(issuer) => {
                let (signer, opened_by) = vault.issuer_signer(&env, issuer, ctx)?;
                let leaf = issue_client_certificate(
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
                let k8s = bundle
                    .certs
                    .as_ref()
                    .and_then(|c| c.k8s.as_ref())
                    .ok_or_else(|| bad("certs.k8s is missing".into()))?;
                let ca_key = PrivateKey::from_talos_pem(k8s.key.expose())
                    .map_err(|e| bad(format!("certs.k8s.key: {e}")))?;
                let signer = ca_key
                    .key_pair()
                    .map_err(|e| bad(format!("certs.k8s.key: {e}")))?;
                let leaf =
                    issue_client_certificate(&k8s.crt, &signer, &grant, subject_key, time, &rng)?;
                let by = SignedBy {
                    ca: K8S_CA.into(),
                    fingerprint: env.meta.pins.k8s.0.clone(),
                };
                (leaf, by, opened_by, false)
            }
        };
        let mode = if signed_by.ca == K8S_CA {
            "direct"
        } else {
            "issuer"
        };
        let user = grant.user().as_str().to_owned();
        let groups: Vec<String> = grant
            .groups()
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect();
        let reason = grant.break_glass_reason().map(str::to_owned);
        let record = CertRecord {
            serial: leaf.serial_hex.clone(),
            fingerprint: format!("sha256:{}", leaf.fingerprint_sha256),
            roles: groups.clone(),
            holder: Some(user.clone()),
            not_before: rfc3339(leaf.not_before),
            not_after: rfc3339(leaf.not_after),
            ttl: grant.ttl().to_string(),
            signed_by: signed_by.clone(),
            mode: mode.into(),
            key: if csr { "csr" } else { "generated" }.into(),
            actor: ctx.actor.clone(),
            issued: rfc3339(ctx.now),
            break_glass: reason.is_some(),
            reason: reason.clone(),
            certificate: String::from_utf8_lossy(&leaf.cert_pem).into_owned(),
            api: Api::Kubernetes,
        };
        let entry = NewEntry {
            cluster: names.cluster.clone(),
            server: names.server.clone(),
            ca_pem: names.ca_pem.clone(),
            user: names.user.clone(),
            client_certificate_pem: leaf.cert_pem.clone(),
            client_key_pem: leaf.key_pem.take(),
            context: names.context.clone(),
            namespace,
        };
        // Sealed before anything is recorded: a recipient that cannot be sealed to (a plugin
        // that is not installed) leaves no certificate behind.
        let delivered = match seal_to {
            None => DeliveredKubeconfig::Kubeconfig(entry),
            Some((recipients, armor)) => {
                DeliveredKubeconfig::Sealed(seal_kubeconfig(&entry, &recipients, armor)?)
            }
        };
        let dir = env.dir();
        let mut t = Transaction::new(&vault.root);
        t.create(
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
            ttl,
            not_after,
            key,
            ..
        } = record;
        let action = match reason {
            Some(reason) => Action::KubernetesBreakGlass {
                serial,
                fingerprint,
                user: user.clone(),
                groups: groups.clone(),
                ttl,
                not_after,
                mode: mode.into(),
                signed_by: signed_by.ca.clone(),
                key,
                reason,
            },
            None => Action::Kubeconfig {
                serial,
                fingerprint,
                user: user.clone(),
                groups: groups.clone(),
                ttl,
                not_after,
                mode: mode.into(),
                signed_by: signed_by.ca.clone(),
                key,
            },
        };
        vault.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        vault.commit(t)?;
        Ok(IssuedKubeconfig {
            leaf,
            names,
            delivered,
            signed_by: signed_by.ca,
            in_token,
            user,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["default", "kube-system", "a", "a1-b2"] {
            assert!(valid_namespace(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }
}
