//! The key algorithms a token key can have, with their PKCS#11 key types and mechanisms and the
//! X.509 signature algorithm rcgen writes for each. Plain data: no module, token or session.

use std::fmt;

use cryptoki::mechanism::MechanismType;
use cryptoki::object::KeyType;
use rcgen::SignatureAlgorithm;
use serde::Serialize;

/// The signature algorithms talvault can use with a token key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// Ed25519 (CKK_EC_EDWARDS, pure CKM_EDDSA; RFC 8032, RFC 8410).
    Ed25519,
    /// ECDSA on P-256 with SHA-256 (CKK_EC, CKM_ECDSA over a SHA-256 digest made locally).
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The name used in reports and on the command line: `ed25519`, `ecdsa-p256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "ecdsa-p256",
        }
    }

    /// The X.509 signature algorithm rcgen writes for it.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }

    pub(crate) fn key_type(self) -> KeyType {
        match self {
            Self::Ed25519 => KeyType::EC_EDWARDS,
            Self::EcdsaP256 => KeyType::EC,
        }
    }

    /// (key-pair generation, signing) mechanisms with their PKCS#11 names.
    pub(crate) fn mechanisms(self) -> [(MechanismType, &'static str); 2] {
        match self {
            // PKCS#11 3.0 Current Mechanisms §2.3: Edwards curves.
            Self::Ed25519 => [
                (
                    MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                    "CKM_EC_EDWARDS_KEY_PAIR_GEN",
                ),
                (MechanismType::EDDSA, "CKM_EDDSA"),
            ],
            // PKCS#11 v2.40 Current Mechanisms §2.3. CKM_ECDSA_SHA256 is not used: SoftHSM 2.6.1
            // lacks it, and hashing locally sends only 32 bytes to the token.
            Self::EcdsaP256 => [
                (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
                (MechanismType::ECDSA, "CKM_ECDSA"),
            ],
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Self::Ed25519),
            "ecdsa-p256" => Ok(Self::EcdsaP256),
            other => Err(format!(
                "unknown key algorithm {other:?} (expected ed25519 or ecdsa-p256)"
            )),
        }
    }
}
