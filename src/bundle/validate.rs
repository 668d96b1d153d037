//! PURE: bundle validation: Talos's exact checks and messages, then the deeper checks Talos skips.
//!
//! `talos_errors` reproduces `Bundle.Validate` (siderolabs/talos:
//! pkg/machinery/config/generate/secrets/bundle.go, utils.go `validatePEMEncodedCertificateAndKey`)
//! message for message and in order, and `format_multierror` prints them as
//! hashicorp/go-multierror does. `deep_findings` adds what Talos does not check: key matches
//! certificate, CA flags and validity at a given time, token and secret formats and sizes, and
//! contract fit. Neither ever quotes a secret value.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{CaName, CertAndKey, SecretsBundle, VersionContract};
use crate::keys::{self, KeyAlgorithm, PrivateKey};

/// Talos's `GetKey` then `GetCert` on a certificate-and-key entry.
fn check_cert_and_key(entry: &CertAndKey) -> Result<(), String> {
    PrivateKey::from_talos_pem(entry.key.expose()).map_err(|e| e.to_string())?;
    parse_cert(&entry.crt)?;
    Ok(())
}

/// Go's `GetCert`: first PEM block, parsed as an X.509 certificate. Returns the DER.
pub fn parse_cert(pem: &[u8]) -> Result<Vec<u8>, String> {
    let block = keys::pem_decode_first(pem).ok_or("failed to parse PEM block")?;
    let der = block.der.to_vec();
    X509Certificate::from_der(&der)
        .map_err(|e| format!("failed to parse certificate: {e}"))
        .and_then(|(rest, _)| {
            if rest.is_empty() {
                Ok(())
            } else {
                Err("failed to parse certificate: x509: trailing data".to_owned())
            }
        })?;
    Ok(der)
}

/// The errors `Bundle.Validate` returns, flattened, in Talos's order.
pub fn talos_errors(b: &SecretsBundle) -> Vec<String> {
    let mut errs = Vec::new();
    match &b.cluster {
        None => errs.push("cluster is required".to_owned()),
        Some(c) => {
            if c.id.is_empty() {
                errs.push("cluster.id is required".to_owned());
            }
            if c.secret.is_empty() {
                errs.push("cluster.secret is required".to_owned());
            }
        }
    }
    match &b.secrets {
        None => errs.push("secrets is required".to_owned()),
        Some(s) => {
            if s.bootstrap_token.is_empty() {
                errs.push("secrets.bootstraptoken is required".to_owned());
            }
            let (aes, sb) = (
                !s.aescbc_encryption_secret.is_empty(),
                !s.secretbox_encryption_secret.is_empty(),
            );
            if !aes && !sb {
                errs.push("one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is required".to_owned());
            }
            if aes && sb {
                errs.push("only one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is allowed".to_owned());
            }
        }
    }
    match &b.trustd_info {
        None => errs.push("trustdinfo is required".to_owned()),
        Some(t) if t.token.is_empty() => errs.push("trustdinfo.token is required".to_owned()),
        Some(_) => {}
    }
    let Some(certs) = &b.certs else {
        errs.push("certs is required".to_owned());
        return errs;
    };
    // validateCerts order: etcd, k8s, k8saggregator, os, then k8sserviceaccount.
    for ca in CaName::ALL {
        match certs.ca(ca) {
            None => errs.push(format!("certs.{} is required", ca.key())),
            Some(entry) => {
                if let Err(e) = check_cert_and_key(entry) {
                    errs.push(format!("certs.{} is invalid: {e}", ca.key()));
                }
            }
        }
    }
    match &certs.k8s_service_account {
        None => errs.push("certs.k8sserviceaccount is required".to_owned()),
        Some(k) => {
            if let Err(e) = PrivateKey::from_talos_pem(k.key.expose()) {
                errs.push(format!("certs.k8sserviceaccount.key is invalid: {e}"));
            }
        }
    }
    errs
}

/// Formats errors as hashicorp/go-multierror's default `ListFormatFunc` does.
pub fn format_multierror(errs: &[String]) -> String {
    if errs.len() == 1 {
        return format!("1 error occurred:\n\t* {}\n\n", errs[0]);
    }
    let mut out = format!("{} errors occurred:\n", errs.len());
    for e in errs {
        out.push_str("\t* ");
        out.push_str(e);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// How serious a deeper finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The bundle will not work as expected.
    Error,
    /// Works, but is unusual or will stop working.
    Warning,
}

/// One deeper check result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The YAML path it concerns.
    pub field: String,
    /// What is wrong (no secret values).
    pub message: String,
    /// The bundle does not fit the version contract (another `--talos-version` may fit it).
    #[serde(skip)]
    pub contract_fit: bool,
}

fn finding(severity: Severity, field: &str, message: impl Into<String>) -> Finding {
    Finding {
        severity,
        field: field.to_owned(),
        message: message.into(),
        contract_fit: false,
    }
}

/// A finding about the bundle's fit to the version contract.
fn contract_finding(severity: Severity, field: &str, message: impl Into<String>) -> Finding {
    Finding {
        contract_fit: true,
        ..finding(severity, field, message)
    }
}

fn is_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 23
        && b[6] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 6 || c.is_ascii_digit() || c.is_ascii_lowercase())
}

fn decodes_to_32(engine: &impl base64::Engine, s: &str) -> bool {
    engine.decode(s).map(|v| v.len() == 32).unwrap_or(false)
}

/// The checks Talos skips, against `contract` and time `now`. Only entries that Talos's own
/// validation accepted are examined further.
pub fn deep_findings(
    b: &SecretsBundle,
    contract: VersionContract,
    now: OffsetDateTime,
) -> Vec<Finding> {
    use Severity::{Error, Warning};
    let mut out = Vec::new();
    if let Some(c) = &b.cluster {
        if !c.id.is_empty() && !decodes_to_32(&STANDARD, &c.id) && !decodes_to_32(&URL_SAFE, &c.id)
        {
            out.push(finding(
                Warning,
                "cluster.id",
                "is not base64 of 32 bytes (either alphabet)",
            ));
        }
        if !c.secret.is_empty() && !decodes_to_32(&STANDARD, c.secret.expose()) {
            // Talos decodes it with std base64 as the discovery AES-256 key (ValidateBase64WithLen).
            out.push(finding(
                Error,
                "cluster.secret",
                "is not standard base64 of exactly 32 bytes",
            ));
        }
    }
    if let Some(s) = &b.secrets {
        if !s.bootstrap_token.is_empty() && !is_token(s.bootstrap_token.expose()) {
            out.push(finding(
                Error,
                "secrets.bootstraptoken",
                "does not match [a-z0-9]{6}.[a-z0-9]{16}",
            ));
        }
        for (field, v) in [
            (
                "secrets.aescbcencryptionsecret",
                &s.aescbc_encryption_secret,
            ),
            (
                "secrets.secretboxencryptionsecret",
                &s.secretbox_encryption_secret,
            ),
        ] {
            if !v.is_empty() && !decodes_to_32(&STANDARD, v.expose()) {
                out.push(finding(
                    Error,
                    field,
                    "is not standard base64 of exactly 32 bytes",
                ));
            }
        }
        // Machine-config generation picks the field by contract (init.go), so the other one
        // yields an empty encryption secret (reference/talos-formats.md §8.6).
        if contract.uses_secretbox()
            && s.secretbox_encryption_secret.is_empty()
            && !s.aescbc_encryption_secret.is_empty()
        {
            out.push(contract_finding(Error, "secrets", format!("contract {contract} uses secretboxencryptionsecret, but the bundle only has aescbcencryptionsecret")));
        }
        if !contract.uses_secretbox()
            && s.aescbc_encryption_secret.is_empty()
            && !s.secretbox_encryption_secret.is_empty()
        {
            out.push(contract_finding(Error, "secrets", format!("contract {contract} uses aescbcencryptionsecret, but the bundle only has secretboxencryptionsecret")));
        }
    }
    if let Some(t) = &b.trustd_info
        && !t.token.is_empty()
        && !is_token(t.token.expose())
    {
        out.push(finding(
            Error,
            "trustdinfo.token",
            "does not match [a-z0-9]{6}.[a-z0-9]{16}",
        ));
    }
    let Some(certs) = &b.certs else { return out };
    for ca in CaName::ALL {
        let Some(entry) = certs.ca(ca) else { continue };
        if check_cert_and_key(entry).is_err() {
            continue;
        }
        let field = format!("certs.{}", ca.key());
        out.extend(ca_findings(&field, entry, now));
        if ca == CaName::Os
            && let Ok(key) = PrivateKey::from_talos_pem(entry.key.expose())
            && key.algorithm() == KeyAlgorithm::Rsa
        {
            out.push(finding(
                Warning,
                &field,
                "RSA OS CA: talosconfig keys will be RSA-4096 (slow); Talos generates Ed25519",
            ));
        }
    }
    if let Some(sa) = &certs.k8s_service_account
        && let Ok(key) = PrivateKey::from_talos_pem(sa.key.expose())
    {
        {
            let expected = if contract.uses_rsa_service_account_key() {
                KeyAlgorithm::Rsa
            } else {
                KeyAlgorithm::EcdsaP256
            };
            if key.algorithm() != expected {
                out.push(contract_finding(
                    Warning,
                    "certs.k8sserviceaccount.key",
                    format!(
                        "is {}, contract {contract} generates {expected}",
                        key.algorithm()
                    ),
                ));
            }
        }
    }
    out
}

fn ca_findings(field: &str, entry: &CertAndKey, now: OffsetDateTime) -> Vec<Finding> {
    use Severity::{Error, Warning};
    let mut out = Vec::new();
    let Ok(der) = parse_cert(&entry.crt) else {
        return out;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return out;
    };
    if let Ok(key) = PrivateKey::from_talos_pem(entry.key.expose()) {
        match key.public_key_info() {
            Ok(spki) if spki == cert.tbs_certificate.subject_pki.raw => {}
            _ => out.push(finding(
                Error,
                field,
                "private key does not match the certificate",
            )),
        }
    }
    if !cert.is_ca() {
        out.push(finding(
            Error,
            field,
            "certificate is not a CA (BasicConstraints CA:FALSE or absent)",
        ));
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            out.push(finding(Error, field, "KeyUsage lacks keyCertSign"))
        }
        _ => {}
    }
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    let t = now.unix_timestamp();
    if t < nb {
        out.push(finding(
            Error,
            field,
            format!("not valid yet (notBefore {})", cert.validity().not_before),
        ));
    } else if t > na {
        out.push(finding(
            Error,
            field,
            format!("expired (notAfter {})", cert.validity().not_after),
        ));
    } else if na - t < 30 * 86_400 {
        out.push(finding(
            Warning,
            field,
            format!(
                "expires within 30 days (notAfter {})",
                cert.validity().not_after
            ),
        ));
    }
    if cert.verify_signature(None).is_err() && cert.subject().as_raw() == cert.issuer().as_raw() {
        out.push(finding(
            Warning,
            field,
            "self-signature does not verify (or uses an algorithm talvault cannot check)",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multierror_format() {
        assert_eq!(
            format_multierror(&["a".into()]),
            "1 error occurred:\n\t* a\n\n"
        );
        assert_eq!(
            format_multierror(&["a".into(), "b".into()]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }

    #[test]
    fn token_shape() {
        assert!(is_token("2psnp2.lry8e9gycdix3bpa"));
        assert!(!is_token("2psnp2.lry8e9gycdix3bp"));
        assert!(!is_token("2PSNP2.lry8e9gycdix3bpa"));
        assert!(!is_token("2psnp2-lry8e9gycdix3bpa"));
    }
}
