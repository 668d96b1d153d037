//! PURE: X.509 building blocks shared by the bundle CAs, talosconfig issuance, the environment
//! issuers and their CRLs.
//!
//! Certificates are assembled here field by field so that their DER matches what Go's
//! `crypto/x509` writes for Talos (extension order, string types, multi-valued RDNs), and are
//! signed through `rcgen::SigningKey`, so an HSM key plugs in unchanged. No I/O, no clock, no
//! randomness of its own: serials, key ids and times come in as arguments.

pub mod cert;
pub mod crl;
pub mod grant;
pub mod issue;
pub mod issuer;
pub mod judge;
pub mod kube_policy;
pub mod kubernetes;
pub mod name;
pub mod policy;
pub mod role;
pub mod serial;
pub mod ttl;
pub mod verify;
