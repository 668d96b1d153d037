//! Generating a signing key pair inside a PKCS#11 token (`HsmKey::generate`): the private key
//! sensitive, not extractable and able only to sign. It must never shadow an existing object
//! (same label or id) and must not leave behind a key the token failed to protect.

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;

use super::lookup::{Connection, PrivateKeyFacts, hex};
use super::{HsmKey, key_uri_checks};
use crate::algorithm::KeyAlgorithm;
use crate::asn1::{ED25519_PARAMS_NAME, ED25519_PARAMS_OID, P256_PARAMS_OID};
use crate::error::{HsmError, rv_of};
use crate::module::lock;
use crate::options::{EdwardsParams, OpenOptions};
use crate::uri::Pkcs11Uri;

impl HsmKey {
    /// Generates a key pair in the token: the private key sensitive, not extractable, able to
    /// sign, labelled `object=` and identified by `id=` (16 random bytes when the URI has none).
    /// Refuses when any object on the token already has that label or id.
    pub fn generate(
        uri: &Pkcs11Uri,
        algorithm: KeyAlgorithm,
        options: &OpenOptions<'_>,
    ) -> Result<HsmKey, HsmError> {
        key_uri_checks(uri, "generate a key", true)?;
        let Some(label) = uri.object() else {
            return Err(HsmError::UriUnsuitable {
                uri: uri.to_string(),
                operation: "generate a key",
                reason: "it has no object= label for the new key".to_owned(),
            });
        };
        let connection = Connection::open(uri, options, true)?;
        connection.require_mechanisms(algorithm, &[0, 1])?;
        let token_label = connection.token.label().to_owned();
        let session = lock(&connection.session);

        // Refuse to shadow anything: a second key under the same label or id would make every
        // later open by URI ambiguous.
        let mut clashes = Vec::new();
        let label_taken = !session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| HsmError::from_cryptoki(e, "checking that the label is free"))?
            .is_empty();
        if label_taken {
            clashes.push(format!("label {label:?}"));
        }
        if let Some(id) = uri.id() {
            let id_taken = !session
                .find_objects(&[Attribute::Id(id.to_vec())])
                .map_err(|e| HsmError::from_cryptoki(e, "checking that the id is free"))?
                .is_empty();
            if id_taken {
                clashes.push(format!("id {}", hex(id)));
            }
        }
        if !clashes.is_empty() {
            return Err(HsmError::KeyExists {
                token: token_label,
                what: clashes.join(" and "),
            });
        }
        let id = match uri.id() {
            Some(id) => id.to_vec(),
            None => random_id()?,
        };

        let (private, _public) = generate_pair(&session, algorithm, label, &id, options)?;
        let facts = PrivateKeyFacts::read(&session, private)?;
        // Trust, but verify: a token that ignored the template must not leave a weak key behind.
        if !facts.protected() {
            let _ = session.destroy_object(private);
            let _ = session.destroy_object(_public);
            return Err(HsmError::KeyExtractable {
                token: token_label,
                wanted: format!("object={label:?}"),
                extractable: facts.extractable,
                sensitive: facts.sensitive,
            });
        }
        drop(session);
        HsmKey::assemble(&connection, uri, private, &facts, algorithm)
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "EDGE: a fresh CKA_ID for a new key comes from the OS RNG"
)]
fn random_id() -> Result<Vec<u8>, HsmError> {
    use ring::rand::SecureRandom as _;
    let mut id = vec![0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| HsmError::Pkcs11 {
            function: "getrandom (the OS RNG)".to_owned(),
            rv: "failure".into(),
            doing: "drawing a random CKA_ID".into(),
        })?;
    Ok(id)
}

/// C_GenerateKeyPair with talvault's templates (PKCS#11 v2.40 base §5.14; attributes §4.8/§4.9).
fn generate_pair(
    session: &Session,
    algorithm: KeyAlgorithm,
    label: &str,
    id: &[u8],
    options: &OpenOptions<'_>,
) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
    let attempt = |params: &[u8]| {
        // Only signing: SoftHSM otherwise defaults CKA_DECRYPT/CKA_UNWRAP (and CKA_ENCRYPT/CKA_WRAP
        // on the public half) to true, and CKA_DERIVE would allow ECDH with a CA key.
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::EcParams(params.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let mechanism = match algorithm {
            KeyAlgorithm::Ed25519 => Mechanism::EccEdwardsKeyPairGen,
            KeyAlgorithm::EcdsaP256 => Mechanism::EccKeyPairGen,
        };
        session
            .generate_key_pair(&mechanism, &public, &private)
            .map(|(public, private)| (private, public))
    };
    let doing = format!("generating a {algorithm} key labelled {label:?}");
    let result = match (algorithm, options.ed25519_params) {
        (KeyAlgorithm::EcdsaP256, _) => attempt(P256_PARAMS_OID),
        (KeyAlgorithm::Ed25519, EdwardsParams::Oid) => attempt(ED25519_PARAMS_OID),
        (KeyAlgorithm::Ed25519, EdwardsParams::CurveName) => attempt(ED25519_PARAMS_NAME),
        (KeyAlgorithm::Ed25519, EdwardsParams::Auto) => match attempt(ED25519_PARAMS_OID) {
            Err(e) if rv_of(&e).is_some_and(rejects_curve_encoding) => attempt(ED25519_PARAMS_NAME),
            other => other,
        },
    };
    result.map_err(|e| HsmError::from_cryptoki(e, doing))
}

/// Return codes with which a token turns down the OID form of CKA_EC_PARAMS for Ed25519, so the
/// PKCS#11 3.0 curve-name form is worth one more try.
fn rejects_curve_encoding(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::AttributeValueInvalid | RvError::DomainParamsInvalid | RvError::CurveNotSupported
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_curve_encoding_refusals_retry_with_the_curve_name() {
        assert!(rejects_curve_encoding(RvError::AttributeValueInvalid));
        assert!(rejects_curve_encoding(RvError::DomainParamsInvalid));
        assert!(rejects_curve_encoding(RvError::CurveNotSupported));
        // Anything else (a PIN problem, a full token, a missing mechanism) is reported as is.
        assert!(!rejects_curve_encoding(RvError::MechanismInvalid));
        assert!(!rejects_curve_encoding(RvError::UserNotLoggedIn));
        assert!(!rejects_curve_encoding(RvError::DeviceMemory));
    }
}
