//! PURE: the machine-config patch that sets `machine.acceptedCAs` to exactly a given list of CA
//! certificates, for `talosctl patch machineconfig --patch @FILE`, `talosctl gen config
//! --config-patch @FILE` and `talosctl machineconfig patch FILE --patch @PATCH`, on control-plane
//! and worker nodes alike. No I/O: the caller writes the text where it wants.
//!
//! # Why this form (upstream evidence, siderolabs/talos at the snapshot of talos-formats.md)
//!
//! - A plain strategic-merge patch would **append**: pkg/machinery/config/merge/merge.go merges a
//!   slice by concatenating right to left unless the struct field carries `merge:"replace"`, and
//!   `MachineConfig.MachineAcceptedCAs` (pkg/machinery/config/types/v1alpha1/v1alpha1_types.go,
//!   `[]*x509.PEMEncodedCertificate` with tag `yaml:"acceptedCAs,omitempty"`) has no merge tag.
//!   Re-running such a patch, or retiring an issuer, would never remove a CA.
//! - A JSON 6902 patch (`op: add`/`replace` on `/machine/acceptedCAs`) would replace, but
//!   pkg/machinery/config/configpatcher/json6902.go refuses any config with more than one YAML
//!   document ("JSON6902 patches are not supported for multi-document machine configuration"),
//!   and the configs `talosctl gen config` writes are multi-document (HostnameConfig from 1.12,
//!   many documents from the 1.14 contract; tests/data/talos/stability-v1.1{3,4}-*.yaml).
//! - Kubernetes' `$patch: replace` does not exist in Talos; `$patch: delete` does
//!   (pkg/machinery/config/configloader/internal/decoder/delete.go; documented from the v1.8
//!   "Configuration Patches" guide). A `$patch: delete` under a mapping key becomes a delete
//!   selector for that path and is cut out of the patch document; a document left empty is
//!   dropped, so it decodes to no v1alpha1 document and cannot collide with the next one.
//!   `selector.go` `deleteForPath` zeroes the struct field (`acceptedCAs` → nil; no error when it
//!   was already absent, as long as `machine` exists).
//! - Order: `Container.Documents()` (pkg/machinery/config/container/container.go) returns the
//!   v1alpha1 delete selectors **first**, then the v1alpha1 document, then the rest, and
//!   `StrategicMerge` (pkg/machinery/config/configpatcher/strategic.go) applies them in that
//!   order: selectors via `ApplyTo`, documents via `merge.Merge`. So the list is emptied, then
//!   merged with ours: exactly ours. Upstream's own test `TestPatchMixed`
//!   (configpatcher/testdata/patchmixed) uses the same delete-then-set shape to replace a list.
//!
//! Hence the patch is two YAML documents: `machine: {acceptedCAs: {$patch: delete}}`, then
//! `machine: {acceptedCAs: [{crt: …}, …]}`. It works on single- and multi-document configs,
//! because strategic merge handles both (configpatcher/apply.go). It needs a talosctl that knows
//! `$patch: delete`; an older one refuses the file (the `$patch` key does not decode into
//! `[]*PEMEncodedCertificate`) instead of appending.
//!
//! # An empty list
//!
//! Allowed, and then the patch only deletes. Upstream validation
//! (pkg/machinery/config/types/v1alpha1/v1alpha1_validation.go) requires `machine.ca` with its key
//! on control-plane nodes, and `machine.ca.crt` or a non-empty `acceptedCAs` on workers; configs
//! made by `talosctl gen config` always carry `machine.ca.crt`, so a config without
//! `acceptedCAs` is valid. Retiring the last issuer is a legitimate operation (it cuts off every
//! issuer-signed talosconfig); talosctl validates the result before applying it.
//!
//! Each entry is `{crt: <base64 of the PEM>}`, the `x509.PEMEncodedCertificate` form
//! (talos-formats.md §0.1, §6.2), preceded by a comment naming the CA.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::digest::Fingerprint;
use crate::keys;

/// One CA to accept, with the text that names it in the patch (e.g.
/// `issuer prod-e3 (active, notAfter 2027-11-01)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedCa {
    /// One line naming the CA for the reader of the patch.
    pub label: String,
    /// The CA certificate, one PEM `CERTIFICATE` block.
    pub certificate_pem: String,
}

/// Why no patch was written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatchError {
    /// A label that would not stay inside its YAML comment.
    #[error("the label {label:?} must be one line without control characters")]
    LabelNotOneLine {
        /// The label given.
        label: String,
    },
    /// The certificate is not exactly one PEM `CERTIFICATE` block.
    #[error("the certificate for {label:?} is not exactly one PEM CERTIFICATE block")]
    NotOnePemCertificate {
        /// The CA's label.
        label: String,
    },
    /// The certificate does not parse.
    #[error("the certificate for {label:?} does not parse: {reason}")]
    CertificateParse {
        /// The CA's label.
        label: String,
        /// The parser's message.
        reason: String,
    },
    /// Not a CA certificate (BasicConstraints CA:TRUE): it cannot anchor client chains, and as
    /// a pool member it would pin itself.
    #[error("the certificate for {label:?} ({subject}) is not a CA certificate")]
    NotACa {
        /// The CA's label.
        label: String,
        /// The certificate's subject.
        subject: String,
    },
    /// The same certificate listed twice.
    #[error("the certificate for {label:?} is listed twice ({fingerprint})")]
    DuplicateCertificate {
        /// The label of the second occurrence.
        label: String,
        /// The certificate's SHA-256 fingerprint.
        fingerprint: String,
    },
}

/// The two-document strategic-merge patch that sets `machine.acceptedCAs` to exactly `cas`, in
/// this order (see the module documentation for the form and its upstream evidence).
pub fn accepted_cas_patch(cas: &[AcceptedCa]) -> Result<String, PatchError> {
    let mut entries = String::new();
    let mut seen: Vec<Fingerprint> = Vec::with_capacity(cas.len());
    for (n, ca) in cas.iter().enumerate() {
        if ca.label.chars().any(char::is_control) {
            return Err(PatchError::LabelNotOneLine {
                label: ca.label.clone(),
            });
        }
        let der = one_certificate(ca)?;
        let (rest, cert) =
            X509Certificate::from_der(&der).map_err(|e| PatchError::CertificateParse {
                label: ca.label.clone(),
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(PatchError::CertificateParse {
                label: ca.label.clone(),
                reason: "trailing data after the certificate".into(),
            });
        }
        if !cert.is_ca() {
            return Err(PatchError::NotACa {
                label: ca.label.clone(),
                subject: cert.subject().to_string(),
            });
        }
        let fingerprint = Fingerprint::of(&der);
        if seen.contains(&fingerprint) {
            return Err(PatchError::DuplicateCertificate {
                label: ca.label.clone(),
                fingerprint: fingerprint.0,
            });
        }
        // Go-style PEM (64-column lines, LF), whatever line endings the stored copy has; the
        // value is the base64 of the whole PEM text (talos-formats.md §0.1).
        let pem = keys::pem_encode(keys::LABEL_CERTIFICATE, &der);
        let not_after = cert.validity().not_after.to_datetime();
        let _ = writeln!(entries, "        # {}. {}", n + 1, ca.label.trim());
        let _ = writeln!(
            entries,
            "        #    {}, notAfter {:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z, {}",
            one_line(&cert.subject().to_string()),
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day(),
            not_after.hour(),
            not_after.minute(),
            not_after.second(),
            fingerprint.0
        );
        let _ = writeln!(
            entries,
            "        - crt: {}",
            STANDARD.encode(pem.as_slice())
        );
        seen.push(fingerprint);
    }

    let mut out = String::with_capacity(entries.len() + 1024);
    out.push_str(
        "# talvault: sets machine.acceptedCAs to exactly the CA certificates listed below,\n\
         # replacing whatever list the machine config holds. Apply it to control-plane and worker\n\
         # nodes alike (Talos >= 1.7; talosctl must know `$patch: delete`), e.g.:\n\
         #   talosctl patch machineconfig --nodes NODES --patch @THIS_FILE\n\
         #   talosctl machineconfig patch CONFIG.yaml --patch @THIS_FILE -o CONFIG.yaml\n\
         #   talosctl gen config ... --config-patch @THIS_FILE\n\
         # The first document deletes the current list, the second sets the new one (Talos\n\
         # applies v1alpha1 deletes before merging). A merge-only patch would append instead.\n",
    );
    out.push_str("machine:\n    acceptedCAs:\n        $patch: delete\n");
    if cas.is_empty() {
        out.push_str(
            "# No CA is accepted besides machine.ca: every issuer-signed talosconfig is cut off.\n",
        );
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "---\n# {} accepted CA certificate{}:\nmachine:\n    acceptedCAs:",
        cas.len(),
        if cas.len() == 1 { "" } else { "s" }
    );
    out.push_str(&entries);
    Ok(out)
}

/// `text` with control characters replaced, so that it cannot end the YAML comment it is put in
/// (a certificate's subject is attacker-chosen text when the certificate comes from outside).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// The DER of the single PEM `CERTIFICATE` block in `ca.certificate_pem`.
fn one_certificate(ca: &AcceptedCa) -> Result<Vec<u8>, PatchError> {
    let not_one = || PatchError::NotOnePemCertificate {
        label: ca.label.clone(),
    };
    if ca.certificate_pem.matches("-----BEGIN ").count() != 1 {
        return Err(not_one());
    }
    let block = keys::pem_decode_first(ca.certificate_pem.as_bytes()).ok_or_else(not_one)?;
    if block.label != keys::LABEL_CERTIFICATE {
        return Err(not_one());
    }
    Ok(block.der.to_vec())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests draw real randomness")]
mod tests {
    use super::*;
    use crate::bundle::CaName;
    use crate::bundle::generate::new_ca;
    use crate::pki::issuer::{IssuerSpec, create_issuer_certificate};
    use ring::rand::SystemRandom;
    use time::macros::datetime;

    fn issuer_pem(name: &str) -> String {
        let rng = SystemRandom::new();
        let key = crate::keys::PrivateKey::generate_ed25519(&rng).unwrap();
        let spec = IssuerSpec {
            common_name: name,
            not_before: datetime!(2026-01-01 0:00 UTC),
            not_after: datetime!(2027-11-01 0:00 UTC),
        };
        create_issuer_certificate(&key.key_pair().unwrap(), &spec, &rng)
            .unwrap()
            .pem
    }

    fn ca(label: &str, pem: &str) -> AcceptedCa {
        AcceptedCa {
            label: label.into(),
            certificate_pem: pem.into(),
        }
    }

    fn documents(patch: &str) -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(patch)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn two_documents_delete_then_set() {
        let a = issuer_pem("prod issuer e3 2026-11");
        let b = issuer_pem("prod issuer e4 2027-05");
        let patch = accepted_cas_patch(&[
            ca("issuer prod-e3 (active)", &a),
            ca("issuer prod-e4 (pending)", &b),
        ])
        .unwrap();
        let docs = documents(&patch);
        assert_eq!(docs.len(), 2, "{patch}");
        let delete: serde_yaml::Value =
            serde_yaml::from_str("machine: {acceptedCAs: {$patch: delete}}").unwrap();
        assert_eq!(docs[0], delete);
        let list = docs[1]["machine"]["acceptedCAs"].as_sequence().unwrap();
        let pems: Vec<String> = list
            .iter()
            .map(|e| {
                assert_eq!(e.as_mapping().unwrap().len(), 1, "only crt");
                let b64 = e["crt"].as_str().unwrap();
                String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
            })
            .collect();
        assert_eq!(pems, [a, b]);
        assert!(
            patch.contains("\n        # 1. issuer prod-e3 (active)\n"),
            "{patch}"
        );
        assert!(
            patch.contains("\n        # 2. issuer prod-e4 (pending)\n"),
            "{patch}"
        );
        assert!(
            patch.contains(
                "O=talvault, CN=prod issuer e4 2027-05, notAfter 2027-11-01T00:00:00Z, sha256:"
            ),
            "{patch}"
        );
        assert!(patch.ends_with('\n') && !patch.contains('\r'));
    }

    #[test]
    fn comments_stay_comments() {
        assert_eq!(one_line("CN=a\nmachine: {}"), "CN=a\u{fffd}machine: {}");
        assert_eq!(one_line("O=talvault, CN=é"), "O=talvault, CN=é");
    }

    #[test]
    fn crlf_and_surrounding_text_are_normalised() {
        let a = issuer_pem("x");
        let crlf = format!("stored by hand\r\n{}", a.replace('\n', "\r\n"));
        let patch = accepted_cas_patch(&[ca("x", &crlf)]).unwrap();
        let docs = documents(&patch);
        let b64 = docs[1]["machine"]["acceptedCAs"][0]["crt"]
            .as_str()
            .unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap(), a.as_bytes());
    }

    #[test]
    fn empty_list_only_deletes() {
        let patch = accepted_cas_patch(&[]).unwrap();
        let docs = documents(&patch);
        assert_eq!(docs.len(), 1, "{patch}");
        assert!(docs[0]["machine"]["acceptedCAs"]["$patch"] == "delete");
    }

    #[test]
    fn refusals() {
        let a = issuer_pem("x");
        assert!(matches!(
            accepted_cas_patch(&[ca("two\nlines", &a)]),
            Err(PatchError::LabelNotOneLine { .. })
        ));
        let two = format!("{a}{a}");
        assert!(matches!(
            accepted_cas_patch(&[ca("x", &two)]),
            Err(PatchError::NotOnePemCertificate { .. })
        ));
        assert!(matches!(
            accepted_cas_patch(&[ca("x", "not pem")]),
            Err(PatchError::NotOnePemCertificate { .. })
        ));
        let key = crate::keys::PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let key_pem = String::from_utf8(key.to_talos_pem().unwrap().expose().to_vec()).unwrap();
        assert!(matches!(
            accepted_cas_patch(&[ca("x", &key_pem)]),
            Err(PatchError::NotOnePemCertificate { .. })
        ));
        let junk =
            String::from_utf8(crate::keys::pem_encode("CERTIFICATE", b"junk").to_vec()).unwrap();
        assert!(matches!(
            accepted_cas_patch(&[ca("x", &junk)]),
            Err(PatchError::CertificateParse { .. })
        ));
        let err = accepted_cas_patch(&[ca("first", &a), ca("again", &a)]).unwrap_err();
        assert!(
            matches!(&err, PatchError::DuplicateCertificate { label, .. } if label == "again"),
            "{err}"
        );
        // A talosconfig leaf is not a CA.
        let os = new_ca(
            CaName::Os,
            datetime!(2026-01-01 0:00 UTC),
            &SystemRandom::new(),
        )
        .unwrap();
        let os_key = crate::keys::PrivateKey::from_talos_pem(os.key.expose()).unwrap();
        let grant = crate::pki::policy::Policy::default()
            .grant(&crate::pki::policy::Request {
                roles: crate::pki::role::Role::parse_set(["os:reader"]).unwrap(),
                ..Default::default()
            })
            .unwrap();
        let leaf = crate::pki::issue::issue_leaf(
            &os.crt,
            &os_key.key_pair().unwrap(),
            &grant,
            crate::pki::issue::SubjectKey::Generate,
            crate::pki::issue::IssueTime::new(datetime!(2026-02-01 0:00 UTC)),
            &SystemRandom::new(),
        )
        .unwrap();
        let leaf_pem = String::from_utf8(leaf.cert_pem).unwrap();
        assert!(matches!(
            accepted_cas_patch(&[ca("leaf", &leaf_pem)]),
            Err(PatchError::NotACa { .. })
        ));
        // The OS CA itself is a CA and may be listed (rotate-ca does exactly that).
        let os_pem = String::from_utf8(os.crt.clone()).unwrap();
        accepted_cas_patch(&[ca("old OS CA", &os_pem)]).unwrap();
    }
}
