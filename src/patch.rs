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
//!
//! # The Kubernetes accepted CAs (reference/kubernetes.md §1, §2, §6.4)
//!
//! [`accepted_cas_patch_for`] adds the kube-apiserver's accepted client CAs to the same patch,
//! in the form the environment's version contract gives its configs
//! (`MultidocKubernetesConfigSupported` = contract > 1.13, pkg/machinery/config/contract.go):
//!
//! - **v1alpha1 `cluster.acceptedCAs`** (Talos 1.7 to 1.13, and 1.14 configs that still hold
//!   `cluster.ca`): `ClusterAcceptedCAs []*x509.PEMEncodedCertificate` with `yaml:"acceptedCAs"`
//!   and no merge tag (types/v1alpha1/v1alpha1_types.go@v1.13.9), items `{crt: base64(PEM)}`.
//!   The deletes of both lists sit in the first document (two selectors, both v1alpha1), the
//!   lists in the second: the same delete-then-set as above.
//! - **`KubeAPIServerCAConfig`** (Talos ≥ 1.14.0-beta.0, commit `d0291bb0b`; configs generated
//!   for contract 1.14): `APIAcceptedCAs []string` with `yaml:"acceptedCAs,omitempty"`, no merge
//!   tag, items **raw PEM text** (types/k8s/apiserver_ca.go). Such a config ignores
//!   `cluster.acceptedCAs` (container.go `K8sAPIServerCAConfig`), so the form matters. The patch
//!   carries a delete document (`apiVersion`/`kind` + `acceptedCAs: {$patch: delete}`) and then
//!   the set document of the same kind; two documents of one kind in one patch are accepted from
//!   talosctl v1.14.0-beta.0 (commit `1a075383a`, `WithNoValidation` loading), which any talosctl
//!   that knows this kind is, and upstream's own `TestPatchMixed`
//!   (configpatcher/testdata/patchmixed) replaces a list with exactly this delete-then-set
//!   shape. Workers' documents hold the cluster's Kubernetes CA in `acceptedCAs` (their kubelet
//!   needs it: generate/worker.go, secrets/kubelet.go), so the set list always starts with
//!   `certs.k8s`; on control planes, where the issuing CA is added anyway, the repeat is
//!   harmless. Every PEM keeps its final newline (`|`, not `|-`): the kube-apiserver's
//!   `ca.crt` is the accepted PEMs joined with no separator
//!   (k8s/render_secrets_static_pod.go), and a missing newline would glue two blocks.
//!
//! The Kubernetes part belongs on **control-plane** nodes (only they run the kube-apiserver); on
//! workers it would only widen the kubelet's client trust (reference §1.2). The Talos part
//! belongs on every node.

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
    let entries = entries(&cas.iter().collect::<Vec<_>>(), 8, false)?;
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

/// Where a machine config keeps the kube-apiserver's accepted CAs (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesForm {
    /// v1alpha1 `cluster.acceptedCAs` (Talos 1.7 to 1.13 configs).
    Cluster,
    /// The `KubeAPIServerCAConfig` document (Talos ≥ 1.14 configs).
    Document,
}

/// The Kubernetes part of the patch.
#[derive(Debug, Clone)]
pub struct KubernetesCas<'a> {
    /// The form the nodes' configs use.
    pub form: KubernetesForm,
    /// The cluster's Kubernetes CA (`certs.k8s`), listed first in the document form.
    pub cluster_ca: AcceptedCa,
    /// The CAs to accept besides the issuing CA.
    pub cas: &'a [AcceptedCa],
}

/// Checks each CA (one PEM `CERTIFICATE`, a CA, listed once) and renders the entries of one
/// list: `- crt: <base64>` (v1alpha1) or `- |` literal PEM (document form), each after a comment
/// naming it, at `indent` spaces.
fn entries(cas: &[&AcceptedCa], indent: usize, literal: bool) -> Result<String, PatchError> {
    let pad = " ".repeat(indent);
    let mut out = String::new();
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
        let pem = keys::pem_encode(keys::LABEL_CERTIFICATE, &der);
        let not_after = cert.validity().not_after.to_datetime();
        let _ = writeln!(out, "{pad}# {}. {}", n + 1, ca.label.trim());
        let _ = writeln!(
            out,
            "{pad}#    {}, notAfter {:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z, {}",
            one_line(&cert.subject().to_string()),
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day(),
            not_after.hour(),
            not_after.minute(),
            not_after.second(),
            fingerprint.0
        );
        if literal {
            // Go-style PEM ends with a newline, which `|` keeps.
            let _ = writeln!(out, "{pad}- |");
            for line in String::from_utf8_lossy(&pem).lines() {
                let _ = writeln!(out, "{pad}  {line}");
            }
        } else {
            let _ = writeln!(out, "{pad}- crt: {}", STANDARD.encode(pem.as_slice()));
        }
        seen.push(fingerprint);
    }
    Ok(out)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The patch that sets the Talos API's accepted CAs (`talos`, as [`accepted_cas_patch`]) and/or
/// the Kubernetes API's (`kubernetes`) to exactly the given lists, in one file (see the module
/// documentation for the forms and their upstream evidence). With `talos` alone it is exactly
/// [`accepted_cas_patch`].
pub fn accepted_cas_patch_for(
    talos: Option<&[AcceptedCa]>,
    kubernetes: Option<&KubernetesCas<'_>>,
) -> Result<String, PatchError> {
    let Some(k) = kubernetes else {
        return accepted_cas_patch(talos.unwrap_or_default());
    };
    let machine = match talos {
        Some(cas) => Some((cas, entries(&cas.iter().collect::<Vec<_>>(), 8, false)?)),
        None => None,
    };
    let document = k.form == KubernetesForm::Document;
    let kube_list: Vec<&AcceptedCa> = if document {
        std::iter::once(&k.cluster_ca).chain(k.cas.iter()).collect()
    } else {
        k.cas.iter().collect()
    };
    let kube_entries = entries(&kube_list, if document { 4 } else { 8 }, document)?;
    let (kube_where, configs, talosctl) = if document {
        (
            "the KubeAPIServerCAConfig document's acceptedCAs",
            "configs generated for Talos >= 1.14",
            "talosctl >= 1.14",
        )
    } else {
        (
            "cluster.acceptedCAs",
            "configs generated for Talos 1.7 to 1.13",
            "talosctl >= 1.8",
        )
    };
    let mut out = String::with_capacity(kube_entries.len() + 2048);
    if machine.is_some() {
        let _ = writeln!(
            out,
            "# talvault: sets machine.acceptedCAs (the Talos API) and\n\
             # {kube_where} (the Kubernetes API in {configs})\n\
             # to exactly the CA certificates listed below, replacing the lists the machine config\n\
             # holds. Apply it to the control-plane nodes ({talosctl}, which knows `$patch: delete`):\n\
             #   talosctl patch machineconfig --nodes CONTROL-PLANES --patch @THIS_FILE\n\
             # Workers need only the Talos part (`talvault patch accepted-cas ENV --api talos`): there\n\
             # the Kubernetes part would only widen the kubelet's client trust.\n\
             # The delete documents come first; Talos applies them before merging the lists."
        );
    } else {
        let _ = writeln!(
            out,
            "# talvault: sets {kube_where}\n\
             # (the Kubernetes API in {configs})\n\
             # to exactly the CA certificates listed below, replacing the list the machine config\n\
             # holds. Apply it to the control-plane nodes ({talosctl}, which knows `$patch: delete`):\n\
             #   talosctl patch machineconfig --nodes CONTROL-PLANES --patch @THIS_FILE\n\
             # The delete document comes first; Talos applies it before merging the list."
        );
    }
    // The deletes.
    if machine.is_some() {
        out.push_str("machine:\n    acceptedCAs:\n        $patch: delete\n");
    }
    if document {
        if machine.is_some() {
            out.push_str("---\n");
        }
        out.push_str(
            "apiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\nacceptedCAs:\n    $patch: delete\n",
        );
    } else {
        out.push_str("cluster:\n    acceptedCAs:\n        $patch: delete\n");
    }
    // The lists.
    let mut v1alpha1_set = String::new();
    if let Some((cas, list)) = &machine {
        if cas.is_empty() {
            out.push_str(
                "# No CA is accepted besides machine.ca: every issuer-signed talosconfig is cut off.\n",
            );
        } else {
            let _ = writeln!(
                v1alpha1_set,
                "# {} accepted CA certificate{} for the Talos API:\nmachine:\n    acceptedCAs:",
                cas.len(),
                plural(cas.len())
            );
            v1alpha1_set.push_str(list);
        }
    }
    if document {
        if !v1alpha1_set.is_empty() {
            out.push_str("---\n");
            out.push_str(&v1alpha1_set);
        }
        let _ = writeln!(
            out,
            "---\n# The cluster's Kubernetes CA and {} accepted CA certificate{} for the Kubernetes API:\n\
             apiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\nacceptedCAs:",
            k.cas.len(),
            plural(k.cas.len())
        );
        out.push_str(&kube_entries);
    } else {
        if k.cas.is_empty() {
            out.push_str(
                "# No CA is accepted besides the cluster's Kubernetes CA: every issuer-signed kubeconfig is cut off.\n",
            );
        } else {
            let _ = writeln!(
                v1alpha1_set,
                "# {} accepted CA certificate{} for the Kubernetes API:\ncluster:\n    acceptedCAs:",
                k.cas.len(),
                plural(k.cas.len())
            );
            v1alpha1_set.push_str(&kube_entries);
        }
        if !v1alpha1_set.is_empty() {
            out.push_str("---\n");
            out.push_str(&v1alpha1_set);
        }
    }
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

    #[test]
    fn the_kubernetes_part_in_both_forms() {
        let t = issuer_pem("prod issuer e1");
        let k = issuer_pem("prod kubernetes issuer k1");
        let cluster_ca = issuer_pem("stand-in for certs.k8s");
        let talos = [ca("talos", &t)];
        let cas = [ca("kubernetes", &k)];
        // Without a Kubernetes part: exactly today's patch.
        assert_eq!(
            accepted_cas_patch_for(Some(&talos), None).unwrap(),
            accepted_cas_patch(&talos).unwrap()
        );
        let cluster = KubernetesCas {
            form: KubernetesForm::Cluster,
            cluster_ca: ca("cluster", &cluster_ca),
            cas: &cas,
        };
        let patch = accepted_cas_patch_for(Some(&talos), Some(&cluster)).unwrap();
        let docs = documents(&patch);
        assert_eq!(docs.len(), 2, "{patch}");
        let delete: serde_yaml::Value = serde_yaml::from_str(
            "{machine: {acceptedCAs: {$patch: delete}}, cluster: {acceptedCAs: {$patch: delete}}}",
        )
        .unwrap();
        assert_eq!(docs[0], delete);
        let b64 = |v: &serde_yaml::Value| {
            String::from_utf8(STANDARD.decode(v["crt"].as_str().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(b64(&docs[1]["machine"]["acceptedCAs"][0]), t);
        assert_eq!(b64(&docs[1]["cluster"]["acceptedCAs"][0]), k);
        assert_eq!(
            docs[1]["cluster"]["acceptedCAs"]
                .as_sequence()
                .unwrap()
                .len(),
            1
        );
        assert!(patch.contains("--nodes CONTROL-PLANES"), "{patch}");

        let document = KubernetesCas {
            form: KubernetesForm::Document,
            ..cluster.clone()
        };
        let patch = accepted_cas_patch_for(None, Some(&document)).unwrap();
        let docs = documents(&patch);
        assert_eq!(docs.len(), 2, "{patch}");
        assert_eq!(docs[0]["kind"], "KubeAPIServerCAConfig");
        assert_eq!(docs[0]["acceptedCAs"]["$patch"], "delete");
        assert!(!patch.contains("machine:"), "{patch}");
        let list: Vec<&str> = docs[1]["acceptedCAs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        // Raw PEM, newline kept, the cluster CA first.
        assert_eq!(list, [cluster_ca.as_str(), k.as_str()]);
        assert!(
            patch.contains("    - |\n      -----BEGIN CERTIFICATE-----\n"),
            "{patch}"
        );
        assert!(
            patch.ends_with("      -----END CERTIFICATE-----\n"),
            "{patch}"
        );

        // Both parts, nothing accepted: only deletes and the cluster CA.
        let none = KubernetesCas {
            cas: &[],
            ..document
        };
        let docs = documents(&accepted_cas_patch_for(Some(&[]), Some(&none)).unwrap());
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2]["acceptedCAs"].as_sequence().unwrap().len(), 1);
        let empty = KubernetesCas {
            cas: &[],
            ..cluster
        };
        let patch = accepted_cas_patch_for(None, Some(&empty)).unwrap();
        assert_eq!(documents(&patch).len(), 1, "{patch}");
        assert!(patch.contains("every issuer-signed kubeconfig is cut off"));

        // The checks of the Talos list hold for the Kubernetes one.
        let twice = [ca("a", &k), ca("b", &k)];
        let err = accepted_cas_patch_for(
            None,
            Some(&KubernetesCas {
                form: KubernetesForm::Cluster,
                cluster_ca: ca("cluster", &cluster_ca),
                cas: &twice,
            }),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::DuplicateCertificate { .. }),
            "{err}"
        );
        let same = [ca("again", &cluster_ca)];
        let err = accepted_cas_patch_for(
            None,
            Some(&KubernetesCas {
                form: KubernetesForm::Document,
                cluster_ca: ca("cluster", &cluster_ca),
                cas: &same,
            }),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::DuplicateCertificate { .. }),
            "{err}"
        );
    }
}
