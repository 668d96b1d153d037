//! A signing key that stays inside a PKCS#11 token, usable wherever rcgen takes a key
//! (`rcgen::SigningKey` + `rcgen::PublicKeyData`): open an existing one by URI or generate one.
//!
//! The private key is never read: talvault only asks the token to sign. Keys that could leave
//! the token (CKA_EXTRACTABLE true or CKA_SENSITIVE false) are refused unless the caller opts in.
//!
//! This file holds the key itself: open by URI, assemble with its public half, sign, and the
//! checks both open and generate apply. Finding the token, the session and the key objects is
//! in `lookup.rs`; generating a key pair in `generate.rs`.

use std::fmt;
use std::sync::{Arc, Mutex};

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::algorithm::KeyAlgorithm;
use crate::asn1::{ec_point_to_raw, raw_ecdsa_to_der};
use crate::error::HsmError;
use crate::module::lock;
use crate::options::OpenOptions;
use crate::uri::{ObjectType, Pkcs11Uri};

mod generate;
mod lookup;

pub(crate) use lookup::{Connection, PrivateKeyFacts, find_private_keys, hex};

/// A private key in a PKCS#11 token, signing through the token.
///
/// Cloning is not offered; share it behind `&` or `Arc` (it is `Send + Sync`: the process-wide
/// token session sits behind a `Mutex`).
pub struct HsmKey {
    session: Arc<Mutex<Session>>,
    handle: ObjectHandle,
    public_key: Vec<u8>,
    algorithm: KeyAlgorithm,
    uri: Pkcs11Uri,
    last_error: Mutex<Option<HsmError>>,
}

impl fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmKey")
            .field("uri", &self.uri.to_string())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HsmKey>();
};

impl HsmKey {
    /// Opens the private key the URI names (`object=` and/or `id=`; exactly one must match) in
    /// the token it names, logging in once per process.
    pub fn open(uri: &Pkcs11Uri, options: &OpenOptions<'_>) -> Result<HsmKey, HsmError> {
        key_uri_checks(uri, "open a signing key", false)?;
        let connection = Connection::open(uri, options, true)?;
        let session = lock(&connection.session);
        let label = connection.token.label().to_owned();
        let wanted = uri.describe_object();
        let handles = find_private_keys(&session, uri)?;
        let handle = match handles.as_slice() {
            [] => {
                return Err(HsmError::KeyNotFound {
                    token: label,
                    wanted,
                });
            }
            [one] => *one,
            many => {
                return Err(HsmError::AmbiguousKey {
                    token: label,
                    wanted,
                    count: many.len(),
                });
            }
        };
        let facts = PrivateKeyFacts::read(&session, handle)?;
        let unsuitable = |reason: String| HsmError::KeyUnsuitable {
            token: label.clone(),
            wanted: wanted.clone(),
            reason,
        };
        let algorithm = facts.algorithm().map_err(unsuitable)?;
        if !facts.protected() && !options.allow_extractable {
            return Err(HsmError::KeyExtractable {
                token: label,
                wanted,
                extractable: facts.extractable,
                sensitive: facts.sensitive,
            });
        }
        if facts.sign != Some(true) {
            return Err(unsuitable("CKA_SIGN is not true".to_owned()));
        }
        if facts.always_authenticate == Some(true) {
            return Err(unsuitable(
                "CKA_ALWAYS_AUTHENTICATE is set (a PIN per signature), which talvault does not support"
                    .to_owned(),
            ));
        }
        connection.require_mechanisms(algorithm, &[1])?;
        drop(session);
        HsmKey::assemble(&connection, uri, handle, &facts, algorithm)
    }

    /// Finds the public half and reads the public key. The pair is checked on every signature
    /// ([`HsmKey::try_sign`]).
    pub(crate) fn assemble(
        connection: &Connection,
        uri: &Pkcs11Uri,
        handle: ObjectHandle,
        facts: &PrivateKeyFacts,
        algorithm: KeyAlgorithm,
    ) -> Result<HsmKey, HsmError> {
        let token_label = connection.token.label().to_owned();
        let unsuitable = |reason: String| HsmError::KeyUnsuitable {
            token: token_label.clone(),
            wanted: uri.describe_object(),
            reason,
        };
        let session = lock(&connection.session);
        // The private key object holds no CKA_EC_POINT (PKCS#11 v2.40 base §4.9); the public key
        // object sharing its CKA_ID (else its CKA_LABEL) does.
        let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        match (&facts.id, &facts.label) {
            (Some(id), _) if !id.is_empty() => template.push(Attribute::Id(id.clone())),
            (_, Some(label)) if !label.is_empty() => template.push(Attribute::Label(label.clone())),
            _ => {
                return Err(unsuitable(
                    "it has neither CKA_ID nor CKA_LABEL, so its public key cannot be found".into(),
                ));
            }
        }
        let publics = session
            .find_objects(&template)
            .map_err(|e| HsmError::from_cryptoki(e, "searching for the public key"))?;
        let public = match publics.as_slice() {
            [one] => *one,
            [] => {
                return Err(unsuitable(
                    "no public key object shares its CKA_ID/CKA_LABEL (needed for CKA_EC_POINT)"
                        .into(),
                ));
            }
            many => {
                return Err(unsuitable(format!(
                    "{} public key objects share its CKA_ID/CKA_LABEL",
                    many.len()
                )));
            }
        };
        let attributes = session
            .get_attributes(public, &[AttributeType::KeyType, AttributeType::EcPoint])
            .map_err(|e| HsmError::from_cryptoki(e, "reading the public key"))?;
        let mut point = None;
        for attribute in attributes {
            match attribute {
                Attribute::EcPoint(v) => point = Some(v),
                Attribute::KeyType(t) if t != algorithm.key_type() => {
                    return Err(unsuitable(format!(
                        "its public key object has key type {t}, not {}",
                        algorithm.key_type()
                    )));
                }
                _ => {}
            }
        }
        let point = point.ok_or_else(|| HsmError::MalformedTokenData {
            function: "C_GetAttributeValue",
            reason: "the public key object does not disclose CKA_EC_POINT".into(),
        })?;
        let public_key = ec_point_to_raw(algorithm, &point)?;
        drop(session);

        Ok(HsmKey {
            session: Arc::clone(&connection.session),
            handle,
            public_key,
            algorithm,
            uri: stored_uri(uri, connection, facts),
            last_error: Mutex::new(None),
        })
    }

    /// Signs a fixed message, checked like every signature against the public key object (a
    /// mismatched pair gives [`HsmError::SignatureMismatch`]): for `hsm check`, which otherwise
    /// signs nothing.
    pub fn self_test(&self) -> Result<(), HsmError> {
        self.try_sign(b"talvault-hsm: test signature").map(drop)
    }

    /// Signs in the token, then verifies the signature with ring against the public key object
    /// before anyone sees it: catches a public key object that belongs to another key (a
    /// mismatched pair) and a token that returns bad signatures. Checking every signature costs
    /// 50-100 us in memory; a separate test signature at open cost a whole token signature.
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let signature = self.sign_in_token(message)?;
        let verifier: &dyn ring::signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::Ed25519 => &ring::signature::ED25519,
            KeyAlgorithm::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        };
        ring::signature::UnparsedPublicKey::new(verifier, &self.public_key)
            .verify(message, &signature)
            .map_err(|_| HsmError::SignatureMismatch {
                token: self.uri.token().unwrap_or_default().to_owned(),
                wanted: self.uri.describe_object(),
            })?;
        Ok(signature)
    }

    /// One C_Sign (for P-256 over the SHA-256 digest), as X.509 wants the signature.
    fn sign_in_token(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let session = lock(&self.session);
        let doing = || format!("signing with {}", self.uri.describe_object());
        match self.algorithm {
            KeyAlgorithm::Ed25519 => {
                // PureEdDSA: the whole message goes to the token (RFC 8032 §5.1.6).
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                let signature = session
                    .sign(&mechanism, self.handle, message)
                    .map_err(|e| HsmError::from_cryptoki(e, doing()))?;
                if signature.len() != 64 {
                    return Err(HsmError::MalformedTokenData {
                        function: "C_Sign",
                        reason: format!(
                            "an Ed25519 signature must be 64 bytes, got {}",
                            signature.len()
                        ),
                    });
                }
                Ok(signature)
            }
            KeyAlgorithm::EcdsaP256 => {
                // CKM_ECDSA signs the data as given (truncated to the order's length), so the
                // SHA-256 digest is made here (RFC 5758 §3.2 ecdsa-with-SHA256).
                let digest = ring::digest::digest(&ring::digest::SHA256, message);
                let raw = session
                    .sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
                    .map_err(|e| HsmError::from_cryptoki(e, doing()))?;
                if raw.len() != 64 {
                    return Err(HsmError::MalformedTokenData {
                        function: "C_Sign",
                        reason: format!(
                            "a raw P-256 signature (r ‖ s) must be 64 bytes, got {}",
                            raw.len()
                        ),
                    });
                }
                raw_ecdsa_to_der(&raw)
            }
        }
    }

    /// The URI to store for this key: the caller's token attributes, the key's actual label and
    /// id, `type=private`, and no `module-path`, `module-name` or `pin-source` (which module an
    /// operator loads and where they keep a PIN are not part of the key's identity).
    pub fn uri_without_pin(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// The raw public key, as rcgen's `PublicKeyData::der_bytes`: 32 bytes for Ed25519, the
    /// 65-byte uncompressed point for P-256.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key
    }

    /// The key's algorithm. (rcgen's `PublicKeyData::algorithm` gives the X.509 signature
    /// algorithm instead.)
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The last PKCS#11 failure, kept because rcgen reduces signing errors to an empty
    /// `rcgen::Error::RemoteKeyError`.
    pub fn last_error(&self) -> Option<HsmError> {
        lock(&self.last_error).clone()
    }
}

impl PublicKeyData for HsmKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.signature_algorithm()
    }
}

impl SigningKey for HsmKey {
    /// Signs through the token. On failure the PKCS#11 error is kept for [`HsmKey::last_error`].
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.try_sign(msg).map_err(|e| {
            *lock(&self.last_error) = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// Checks that apply to both open and generate.
fn key_uri_checks(
    uri: &Pkcs11Uri,
    operation: &'static str,
    generating: bool,
) -> Result<(), HsmError> {
    let unsuitable = |reason: &str| HsmError::UriUnsuitable {
        uri: uri.to_string(),
        operation,
        reason: reason.to_owned(),
    };
    if let Some(t @ (ObjectType::Cert | ObjectType::SecretKey | ObjectType::Data)) = uri.object_type
    {
        return Err(unsuitable(&format!(
            "type={} does not name a key pair (use type=private or leave type out)",
            match t {
                ObjectType::Cert => "cert",
                ObjectType::SecretKey => "secret-key",
                _ => "data",
            }
        )));
    }
    if !generating && !uri.names_object() {
        return Err(unsuitable("it names no key (add object=LABEL and/or id=…)"));
    }
    Ok(())
}

/// The URI a key is stored under: see [`HsmKey::uri_without_pin`].
fn stored_uri(uri: &Pkcs11Uri, connection: &Connection, facts: &PrivateKeyFacts) -> Pkcs11Uri {
    // Only the token and key identity: the module and the PIN source are the operator's
    // (a vault file must never decide which library is loaded or which file is read).
    let mut stored = uri.identity_only();
    stored.token = Some(connection.token.label().to_owned());
    stored.object_type = Some(ObjectType::Private);
    if let Some(label) = facts
        .label
        .as_ref()
        .and_then(|l| String::from_utf8(l.clone()).ok())
    {
        stored.object = Some(label);
    }
    if let Some(id) = facts.id.as_ref().filter(|id| !id.is_empty()) {
        stored.id = Some(id.clone());
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
            assert_eq!(a.as_str().parse::<KeyAlgorithm>().unwrap(), a);
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
        assert!("rsa".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn uri_checks_refuse_non_key_types_and_missing_names() {
        let uri = Pkcs11Uri::parse("pkcs11:token=L;object=x;type=cert").unwrap();
        let e = key_uri_checks(&uri, "open a signing key", false).unwrap_err();
        assert!(
            e.to_string().contains("type=cert does not name a key pair"),
            "{e}"
        );
        let uri = Pkcs11Uri::parse("pkcs11:token=L").unwrap();
        let e = key_uri_checks(&uri, "open a signing key", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the pkcs11: URI pkcs11:token=L cannot be used to open a signing key: it names no key (add object=LABEL and/or id=…)"
        );
        let uri = Pkcs11Uri::parse("pkcs11:token=L;object=x;type=public").unwrap();
        key_uri_checks(&uri, "open a signing key", false).unwrap();
    }

    #[test]
    fn options_debug_hides_the_prompt() {
        let prompt = |_: &str| Ok(secrecy::SecretString::from("1234"));
        let options = OpenOptions {
            pin_prompt: Some(&prompt),
            ..OpenOptions::default()
        };
        assert_eq!(
            format!("{options:?}"),
            "OpenOptions { pin_prompt: Some(\"<prompt>\"), allow_extractable: false, ed25519_params: Auto }"
        );
    }
}
