//! The kernel's signing half: an issuer's key made ready to sign (unsealed from `key.age`, or
//! opened in its PKCS#11 token and checked against the issuer certificate), and the CRL of an
//! issuer signed with it, which both `crl` and `revoke` write; and the key that signs leaves
//! (`LeafSigner`: the active issuer's or the Talos OS CA's) with the staging of a certificate's
//! record and its event, which `issue`, `break-glass` and `renew` share.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::records::{ISSUER_KEY_FILE, Issuer};
use super::trail::EventPlace;
use super::{Context, Env, Vault, VaultError, rfc3339};
use crate::audit::{Action, EventId};
use crate::inventory::RevokedEntry;
use crate::keys::PrivateKey;
use crate::model::{Api, CertRecord, IssuerKey, OS_CA, SignedBy};
use crate::pki::crl::{CrlParams, RevocationReason, RevokedCertificate, sign_crl};
use crate::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, issue_leaf};
use crate::pki::policy::Grant;
use crate::pki::verify::certificate_der;
use crate::store::age::OpenedBy;
use crate::store::txn::Transaction;
use crate::store::{self, Mode};

/// A CA key ready to sign: in memory (an unsealed issuer key) or in a PKCS#11 token.
pub(super) enum CaSigner {
    Memory(rcgen::KeyPair),
    Token(talvault_hsm::HsmKey),
}

impl CaSigner {
    pub(super) fn key(&self) -> &dyn rcgen::SigningKey {
        match self {
            CaSigner::Memory(k) => k,
            CaSigner::Token(k) => k,
        }
    }

    /// Whether signatures are made inside a PKCS#11 token.
    pub(super) fn in_token(&self) -> bool {
        matches!(self, CaSigner::Token(_))
    }

    /// A signing failure as the token reported it (rcgen's `RemoteKeyError` carries nothing),
    /// else `fallback`.
    pub(super) fn explain(&self, fallback: VaultError) -> VaultError {
        match self {
            CaSigner::Token(k) => k.last_error().map_or(fallback, VaultError::Hsm),
            CaSigner::Memory(_) => fallback,
        }
    }
}

/// A freshly signed CRL (derived on demand; the vault keeps none).
pub struct CrlOutput {
    /// The issuer that signed it.
    pub issuer: String,
    /// DER.
    pub der: Vec<u8>,
    /// CRL number.
    pub number: u64,
    /// Entries.
    pub entries: usize,
    /// Signed inside a PKCS#11 token.
    pub in_token: bool,
}

impl CrlOutput {
    /// The CRL as PEM (`X509 CRL`, LF line ends).
    pub fn der_pem(&self) -> Vec<u8> {
        crate::keys::pem_encode("X509 CRL", &self.der).to_vec()
    }
}

impl Vault {
    /// The issuer's signing key, checked against the issuer certificate: unsealed from
    /// `key.age`, or opened in its PKCS#11 token (logging in once per process).
    pub(super) fn issuer_signer(
        &self,
        env: &Env,
        issuer: &Issuer,
        ctx: &Context,
    ) -> Result<(CaSigner, OpenedBy), VaultError> {
        let dir = Self::issuers_dir(env).join(&issuer.meta.id);
        let bad = |file: &PathBuf, problem: String| VaultError::BadIssuer {
            file: file.display().to_string(),
            problem,
        };
        match &issuer.meta.key {
            IssuerKey::Age { .. } => {
                let rel = dir.join(ISSUER_KEY_FILE);
                let (plain, opened_by) = self.open_sealed(env, &rel, ctx)?;
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
                uri, public_key, ..
            } => {
                let rel = dir.join("issuer.yaml");
                if *public_key != crate::hex::encode(&issuer.facts.public_key) {
                    return Err(bad(
                        &rel,
                        "key.public_key does not match the issuer certificate".into(),
                    ));
                }
                // Only the token and key identity come from the vault file; the module, the
                // PIN source and whether an extractable key is acceptable are the operator's.
                let parsed = talvault_hsm::Pkcs11Uri::parse(uri)
                    .map_err(|e| bad(&rel, format!("key.uri: {e}")))?
                    .identity_only();
                let parsed = match &ctx.pkcs11.module {
                    Some(module) => parsed.with_module_path(module),
                    None => parsed,
                };
                let key = talvault_hsm::HsmKey::open(
                    &parsed,
                    &talvault_hsm::OpenOptions {
                        pin_prompt: ctx.pin_prompt.as_deref(),
                        allow_extractable: ctx.pkcs11.danger_allow_extractable,
                        ..talvault_hsm::OpenOptions::default()
                    },
                )?;
                // The token must hold the very key the certificate names.
                if key.public_key_der() != issuer.facts.public_key.as_slice() {
                    return Err(VaultError::TokenKeyMismatch {
                        file: rel.display().to_string(),
                        uri: uri.clone(),
                        issuer: issuer.meta.id.clone(),
                    });
                }
                Ok((CaSigner::Token(key), OpenedBy::Pkcs11(uri.clone())))
            }
        }
    }

    /// Signs the CRL of `issuer` over its unexpired revocations among `entries`.
    pub(super) fn build_crl(
        &self,
        env: &Env,
        issuer: &Issuer,
        entries: &[RevokedEntry],
        ctx: &Context,
    ) -> Result<(CrlOutput, OpenedBy), VaultError> {
        let policy = self.read_policy(env)?;
        let now = ctx.now.to_offset(time::UtcOffset::UTC);
        let issuer_der =
            certificate_der(issuer.meta.certificate.as_bytes()).map_err(VaultError::Sign)?;
        // CRL numbers must increase (RFC 5280 §5.2.3) across clones that never talk: use the
        // time in seconds, and one more than the newest number the audit trail records for this
        // issuer if that is not smaller (no file decides it: CRLs are not stored).
        let previous = self.chain(env)?.crl_numbers.get(&issuer.meta.id).copied();
        let number = u64::try_from(now.unix_timestamp())
            .unwrap_or(0)
            .max(previous.map_or(0, |p| p.saturating_add(1)));
        let mut revoked: Vec<RevokedCertificate> = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.ca == issuer.meta.id && e.not_after >= now.unix_timestamp())
        {
            revoked.push(RevokedCertificate {
                serial: crate::hex::decode(&e.serial).ok_or_else(|| {
                    VaultError::Sign(format!("revocation {}: bad serial", e.serial))
                })?,
                revoked_at: OffsetDateTime::from_unix_timestamp(e.revoked)
                    .map_err(|_| VaultError::Sign("revocation time out of range".into()))?,
                reason: e.reason.parse().unwrap_or(RevocationReason::Unspecified),
            });
        }
        let (signer, opened_by) = self.issuer_signer(env, issuer, ctx)?;
        let crl = sign_crl(
            &issuer_der,
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
                in_token: signer.in_token(),
                issuer: issuer.meta.id.clone(),
                number,
                entries: revoked.len(),
                der: crl.der,
            },
            opened_by,
        ))
    }
}

/// A CA key ready to sign many leaves: the active issuer's (unsealed or in its token) or the
/// Talos OS CA's (from the bundle), opened once.
pub(super) struct LeafSigner {
    ca_pem: Vec<u8>,
    key: CaSigner,
    /// Who signs.
    pub signed_by: SignedBy,
    /// Whose identity opened the key (for the audit events).
    pub opened_by: OpenedBy,
}

impl LeafSigner {
    /// Signs one leaf under `grant`.
    pub(super) fn sign(
        &self,
        grant: &Grant,
        subject_key: SubjectKey,
        time: IssueTime,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Result<IssuedLeaf, VaultError> {
        issue_leaf(&self.ca_pem, self.key.key(), grant, subject_key, time, rng)
            .map_err(|e| self.key.explain(e.into()))
    }

    /// `direct` or `issuer`.
    pub(super) fn mode(&self) -> &'static str {
        if self.signed_by.ca == OS_CA {
            "direct"
        } else {
            "issuer"
        }
    }

    /// Whether signatures are made inside a PKCS#11 token.
    pub(super) fn in_token(&self) -> bool {
        self.key.in_token()
    }
}

impl Vault {
    /// Opens the key that signs leaves: `issuer`'s, or the Talos OS CA's when `None`.
    pub(super) fn leaf_signer(
        &self,
        env: &Env,
        issuer: Option<&Issuer>,
        ctx: &Context,
    ) -> Result<LeafSigner, VaultError> {
        match issuer {
            Some(issuer) => {
                let (key, opened_by) = self.issuer_signer(env, issuer, ctx)?;
                Ok(LeafSigner {
                    ca_pem: issuer.meta.certificate.as_bytes().to_vec(),
                    key,
                    signed_by: SignedBy {
                        ca: issuer.meta.id.clone(),
                        fingerprint: issuer.meta.fingerprint.clone(),
                    },
                    opened_by,
                })
            }
            None => {
                let (_, bundle, opened_by) = self.open_bundle(env, ctx)?;
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
                let key = ca_key
                    .key_pair()
                    .map_err(|e| bad(format!("certs.os.key: {e}")))?;
                Ok(LeafSigner {
                    ca_pem: os.crt.clone(),
                    key: CaSigner::Memory(key),
                    signed_by: SignedBy {
                        ca: OS_CA.into(),
                        fingerprint: env.meta.pins.os.0.clone(),
                    },
                    opened_by,
                })
            }
        }
    }

    /// Stages a certificate's record and its audit event (`issue` or `break-glass`) in `t`. The
    /// event names the record and, when `parents` is set, those parents instead of the current
    /// heads (the events of one renewal form a chain); it returns the event's id.
    pub(super) fn stage_certificate(
        &self,
        t: &mut Transaction,
        env: &Env,
        ctx: &Context,
        opened_by: &OpenedBy,
        record: CertRecord,
        parents: Option<Vec<EventId>>,
    ) -> Result<EventId, VaultError> {
        let mark = t.mark();
        t.create(
            // The serial becomes a file name: checked like every name used in a path.
            env.dir().join("certs").join(format!(
                "{}.yaml",
                store::name::check_hex("serial", &record.serial, 40)?
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
            mode,
            key,
            reason,
            break_glass,
            ..
        } = record;
        let signed_by = signed_by.ca;
        let action = if break_glass {
            Action::BreakGlass {
                serial,
                fingerprint,
                roles,
                holder,
                ttl,
                not_after,
                mode,
                signed_by,
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
                signed_by,
                key,
                reason,
            }
        };
        let files = t.file_hashes_since(&env.dir(), mark);
        self.stage_event_on(
            t,
            env,
            ctx,
            Some(opened_by),
            &action,
            EventPlace { files, parents },
        )
    }
}

/// The record of a freshly signed leaf.
pub(super) fn cert_record(
    leaf: &IssuedLeaf,
    grant: &Grant,
    signer: &LeafSigner,
    csr: bool,
    ctx: &Context,
) -> CertRecord {
    CertRecord {
        serial: leaf.serial_hex.clone(),
        fingerprint: format!("sha256:{}", leaf.fingerprint_sha256),
        roles: leaf.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        holder: grant.holder().map(|h| h.as_str().to_owned()),
        not_before: rfc3339(leaf.not_before),
        not_after: rfc3339(leaf.not_after),
        ttl: grant.ttl().to_string(),
        signed_by: signer.signed_by.clone(),
        mode: signer.mode().into(),
        key: if csr { "csr" } else { "generated" }.into(),
        actor: ctx.actor.clone(),
        issued: rfc3339(ctx.now),
        break_glass: grant.break_glass_reason().is_some(),
        reason: grant.break_glass_reason().map(str::to_owned),
        certificate: String::from_utf8_lossy(&leaf.cert_pem).into_owned(),
        api: Api::Talos,
    }
}
