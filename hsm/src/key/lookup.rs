//! Finding a key in a token: the connection (module, token, the process-wide session, login),
//! the private key objects a URI matches, and what talvault reads from them. It only reads:
//! nothing here creates, changes or signs, and no private key material is ever asked for.

use std::sync::{Arc, Mutex};

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::algorithm::KeyAlgorithm;
use crate::asn1::algorithm_for_params;
use crate::error::HsmError;
use crate::module::{self, Module, lock};
use crate::options::OpenOptions;
use crate::token::{self, Token};
use crate::uri::Pkcs11Uri;

/// A module, a token in it, and the process-wide session on that token (logged in if asked).
pub(crate) struct Connection {
    pub(crate) token: Token,
    pub(crate) session: Arc<Mutex<Session>>,
}

impl Connection {
    pub(crate) fn open(
        uri: &Pkcs11Uri,
        options: &OpenOptions<'_>,
        login: bool,
    ) -> Result<Self, HsmError> {
        let module = module::load(uri)?;
        let token = token::find(&module, uri)?;
        let session = module.session(token.slot)?;
        if login {
            token::login(&token, &lock(&session), uri, options)?;
        }
        Ok(Connection { token, session })
    }

    pub(crate) fn module(&self) -> &Module {
        &self.token.module
    }

    /// Fails unless `C_GetMechanismList` offers both mechanisms `algorithm` needs.
    pub(super) fn require_mechanisms(
        &self,
        algorithm: KeyAlgorithm,
        which: &[usize],
    ) -> Result<(), HsmError> {
        let offered = self
            .module()
            .pkcs11
            .get_mechanism_list(self.token.slot)
            .map_err(|e| HsmError::from_cryptoki(e, "listing the token's mechanisms"))?;
        let needed = algorithm.mechanisms();
        for &i in which {
            let (mechanism, name) = needed[i];
            if !offered.contains(&mechanism) {
                return Err(HsmError::MechanismUnsupported {
                    token: self.token.label().to_owned(),
                    mechanism: name,
                    algorithm,
                });
            }
        }
        Ok(())
    }
}

/// What talvault reads from a private key object (PKCS#11 v2.40 base §4.9, private key objects).
/// `None` where the token did not disclose the attribute: `C_GetAttributeValue` marks unreadable
/// attributes CK_UNAVAILABLE_INFORMATION and cryptoki's `get_attributes` drops them from the list.
#[derive(Debug, Default)]
pub(crate) struct PrivateKeyFacts {
    pub(crate) key_type: Option<KeyType>,
    pub(crate) ec_params: Option<Vec<u8>>,
    pub(crate) label: Option<Vec<u8>>,
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) sign: Option<bool>,
    pub(crate) sensitive: Option<bool>,
    pub(crate) extractable: Option<bool>,
    pub(crate) always_sensitive: Option<bool>,
    pub(crate) never_extractable: Option<bool>,
    pub(crate) always_authenticate: Option<bool>,
}

impl PrivateKeyFacts {
    pub(crate) fn read(session: &Session, handle: ObjectHandle) -> Result<Self, HsmError> {
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::Sign,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysAuthenticate,
                ],
            )
            .map_err(|e| HsmError::from_cryptoki(e, "reading the private key's attributes"))?;
        let mut facts = PrivateKeyFacts::default();
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(v) => facts.key_type = Some(v),
                Attribute::EcParams(v) => facts.ec_params = Some(v),
                Attribute::Label(v) => facts.label = Some(v),
                Attribute::Id(v) => facts.id = Some(v),
                Attribute::Sign(v) => facts.sign = Some(v),
                Attribute::Sensitive(v) => facts.sensitive = Some(v),
                Attribute::Extractable(v) => facts.extractable = Some(v),
                Attribute::AlwaysSensitive(v) => facts.always_sensitive = Some(v),
                Attribute::NeverExtractable(v) => facts.never_extractable = Some(v),
                Attribute::AlwaysAuthenticate(v) => facts.always_authenticate = Some(v),
                _ => {}
            }
        }
        Ok(facts)
    }

    /// Sensitive and not extractable, as the token states it; undisclosed counts as unprotected.
    pub(crate) fn protected(&self) -> bool {
        self.sensitive == Some(true) && self.extractable == Some(false)
    }

    /// The algorithm, or why talvault cannot sign with this key.
    pub(crate) fn algorithm(&self) -> Result<KeyAlgorithm, String> {
        let key_type = self
            .key_type
            .ok_or("the token does not disclose CKA_KEY_TYPE")?;
        let edwards = if key_type == KeyType::EC_EDWARDS {
            true
        } else if key_type == KeyType::EC {
            false
        } else {
            return Err(format!(
                "key type {key_type} is not supported (Ed25519 CKK_EC_EDWARDS or P-256 CKK_EC only)"
            ));
        };
        let params = self
            .ec_params
            .as_deref()
            .ok_or("the token does not disclose CKA_EC_PARAMS")?;
        algorithm_for_params(edwards, params).ok_or_else(|| {
            format!(
                "curve parameters {} of this {key_type} key are not supported (Ed25519 or P-256 only)",
                hex(params)
            )
        })
    }
}

/// Lowercase hex, through the workspace's one hex implementation (`base16ct`; talvault's
/// `hex` module wraps the same crate).
pub(crate) fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// Private key objects matching the URI's `object`/`id`.
pub(crate) fn find_private_keys(
    session: &Session,
    uri: &Pkcs11Uri,
) -> Result<Vec<ObjectHandle>, HsmError> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = uri.object() {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = uri.id() {
        template.push(Attribute::Id(id.to_vec()));
    }
    session
        .find_objects(&template)
        .map_err(|e| HsmError::from_cryptoki(e, "searching for the private key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undisclosed_protection_counts_as_unprotected() {
        let mut facts = PrivateKeyFacts::default();
        assert!(!facts.protected());
        facts.sensitive = Some(true);
        assert!(!facts.protected());
        facts.extractable = Some(false);
        assert!(facts.protected());
        facts.sensitive = Some(false);
        assert!(!facts.protected());
    }
}
