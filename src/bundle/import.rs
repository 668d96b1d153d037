//! PURE: building a bundle from existing material (Kubernetes PKI, control-plane config).
