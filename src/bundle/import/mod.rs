//! PURE: building a bundle from existing material (a Kubernetes PKI directory, a control-plane
//! machine config), as `talosctl gen secrets --from-kubernetes-pki` / `--from-controlplane-config`.
//!
//! Must not touch files, the environment or the clock: the CLI reads the files and passes bytes,
//! time and randomness in. Must never put a secret value into an error: errors name files, YAML
//! fields and document kinds only. Follows siderolabs/talos:
//! pkg/machinery/config/generate/secrets/bundle.go `NewBundleFromKubernetesPKI` and
//! `NewBundleFromConfig` (reference/talos-formats.md §1.6).
//!
//! The Kubernetes PKI directory import is in `kubernetes_pki.rs`, the control-plane machine
//! config import (v1alpha1 and the Talos 1.14 multi-document form) in `controlplane_config.rs`;
//! this file holds the error type both return.

use thiserror::Error;

use super::generate::GenerateError;
use super::yaml::BundleReadError;

mod controlplane_config;
mod kubernetes_pki;

pub use controlplane_config::from_controlplane_config;
pub use kubernetes_pki::{
    CA_CRT, CA_KEY, ETCD_CA_CRT, ETCD_CA_KEY, FRONT_PROXY_CA_CRT, FRONT_PROXY_CA_KEY,
    KUBERNETES_PKI_FILES, KubernetesPki, SA_KEY, from_kubernetes_pki,
};

/// An import failed. Messages name files, fields and document kinds, never a secret value.
#[derive(Debug, Error)]
pub enum ImportError {
    /// A PKI file that Talos's `GetKey`/`GetCert` would reject.
    #[error("{file}: {reason}")]
    PkiFile {
        /// The file, relative to the PKI directory (one of [`KUBERNETES_PKI_FILES`]).
        file: &'static str,
        /// Why it was rejected (Talos's wording where it has one).
        reason: String,
    },
    /// The given bootstrap token does not have the Kubernetes bootstrap-token shape.
    #[error(
        "the Kubernetes bootstrap token is malformed: expected [a-z0-9]{{6}}.[a-z0-9]{{16}} (value not shown)"
    )]
    BadBootstrapToken,
    /// Not YAML, or YAML of the wrong shape where a machine config has a fixed one.
    #[error("not a valid machine config: {what}{}", location.map(|(l, c)| format!(" at line {l} column {c}")).unwrap_or_default())]
    Syntax {
        /// A value-free description.
        what: String,
        /// 1-based line and column, when known.
        location: Option<(usize, usize)>,
    },
    /// A base64 (v1alpha1) certificate or key field that is not standard base64.
    #[error("{field}: illegal base64 data at input byte {offset}")]
    Base64 {
        /// The YAML path of the field.
        field: &'static str,
        /// Byte offset of the first bad character.
        offset: usize,
    },
    /// No `version: v1alpha1` document in the input.
    #[error("not a Talos machine config: no v1alpha1 document (one with `version: v1alpha1`)")]
    NoV1Alpha1,
    /// A document that may appear only once appears twice (Talos refuses such a config too).
    #[error("the machine config has more than one {0} document")]
    DuplicateDocument(&'static str),
    /// A legacy v1alpha1 field and its multi-document replacement are both set (Talos refuses
    /// such a config, so which one wins is not defined).
    #[error(
        "the machine config sets both {field} (v1alpha1) and a {kind} document; Talos refuses that combination"
    )]
    Conflict {
        /// The v1alpha1 field.
        field: &'static str,
        /// The document kind.
        kind: &'static str,
    },
    /// A worker config (or any config without the Talos CA key).
    #[error(
        "not a control-plane config: machine.ca has no key (a worker config carries only CA certificates; use the controlplane.yaml from `talosctl gen config` or a control-plane node's config)"
    )]
    NotControlPlane,
    /// A redacted config: the key is the `******` placeholder.
    #[error("{field} is redacted (`******`): import an unredacted copy of the machine config")]
    Redacted {
        /// The YAML path of the key.
        field: &'static str,
    },
    /// Filling in the rest of the bundle failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

impl From<BundleReadError> for ImportError {
    fn from(e: BundleReadError) -> Self {
        match e {
            BundleReadError::Syntax { what, location } => ImportError::Syntax { what, location },
            // sanitize only produces Syntax; keep the value-free wording if that ever changes.
            BundleReadError::Base64 { field, offset } => ImportError::Syntax {
                what: format!("{field}: illegal base64 data at input byte {offset}"),
                location: None,
            },
        }
    }
}
