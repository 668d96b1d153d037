//! The kernel's signing half: an issuer's key made ready to sign (unsealed from `key.age`, or
//! opened in its PKCS#11 token and checked against the issuer certificate), and the CRL of an
//! issuer signed with it, which both `crl` and `revoke` write.

use std::path::PathBuf;

use time::OffsetDateTime;

use super::records::{ISSUER_KEY_FILE, Issuer};
use super::{Context, Env, Vault, VaultError};
use crate::inventory::RevokedEntry;
use crate::keys::PrivateKey;
use crate::model::IssuerKey;
use crate::pki::crl::{CrlParams, RevocationReason, RevokedCertificate, sign_crl};
use crate::pki::verify::certificate_der;
use crate::store::age::OpenedBy;

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
