//! Sealed delivery: a talosconfig age-encrypted to its holder's recipients (`issue --seal`,
//! `break-glass --seal`, `renew`), so a private key never sits on disk or in a chat in
//! plaintext; and the holder's side, `open`: decrypt with their own identity and check that what
//! came out is a talosconfig before it is written or merged. Sealing happens before the
//! certificate is committed, so a recipient that cannot be sealed to leaves nothing recorded.
//! Shared by the rooms that issue (`issue`, `renew`) like `signer`; it holds no room's logic and
//! never touches the vault's files.

use std::path::Path;

use super::VaultError;
use crate::holder::HolderRecord;
use crate::store::age::{self as agestore, AgeError, Identity, Recipient};
use crate::talosconfig::{self, Config};

/// How an issued talosconfig leaves the vault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    /// As a talosconfig (a file of mode 0600, a merge, or stdout).
    #[default]
    Talosconfig,
    /// Sealed to the holder's recipients, armored or in age's binary format.
    Sealed {
        /// ASCII armor.
        armor: bool,
    },
}

/// A talosconfig sealed to its holder.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The age file.
    pub bytes: Vec<u8>,
    /// How many recipients it is sealed to.
    pub recipients: usize,
}

/// A delivery opened by its holder: the talosconfig's one context.
#[derive(Debug)]
pub struct OpenedDelivery {
    /// The context's name.
    pub name: String,
    /// The context.
    pub context: talosconfig::Context,
    /// Whose identity opened it (public: the recipient).
    pub opened_by: String,
}

/// The default file name of a holder's sealed talosconfig: `<holder>-<env>.talosconfig.age`
/// (holder and environment names are safe file names).
pub fn sealed_file_name(holder: &str, env: &str) -> String {
    format!("{holder}-{env}.talosconfig.age")
}

/// A holder record's recipients, parsed.
pub(super) fn recipients_of(
    record: &HolderRecord,
    file: &str,
) -> Result<Vec<Recipient>, VaultError> {
    let recipients = agestore::parse_recipients(&record.recipients.join("\n"), Path::new(file))?;
    if recipients.is_empty() {
        return Err(VaultError::NoHolderRecipients {
            holder: record.name.clone(),
        });
    }
    Ok(recipients)
}

/// Seals a one-context talosconfig to `recipients`.
pub(super) fn seal_talosconfig(
    name: &str,
    context: talosconfig::Context,
    recipients: &[Recipient],
    armor: bool,
) -> Result<Sealed, VaultError> {
    let yaml = Config::single(name, context).to_yaml();
    Ok(Sealed {
        bytes: agestore::seal_delivery(yaml.expose().as_bytes(), recipients, armor)?,
        recipients: recipients.len(),
    })
}

/// `open`: decrypts a sealed talosconfig (`file` names it in errors) with the caller's
/// identities and checks that it is a talosconfig of one context with a client certificate and
/// a server CA. Nothing of its contents appears in an error.
pub fn open_delivery(
    file: &Path,
    bytes: &[u8],
    identities: &[Identity],
) -> Result<OpenedDelivery, VaultError> {
    if identities.is_empty() {
        return Err(AgeError::NoIdentitySource.into());
    }
    let shown = file.display().to_string();
    let bad = |problem: String| VaultError::BadDelivery {
        file: shown.clone(),
        problem,
    };
    let (plain, opened_by) = match agestore::open(file, bytes, identities) {
        Err(AgeError::NoMatchingIdentity {
            passphrase_file: false,
            tried,
            ..
        }) => {
            return Err(VaultError::NotYourDelivery { file: shown, tried });
        }
        other => other?,
    };
    let mut config = Config::from_yaml(plain.expose())
        .map_err(|e| bad(format!("it does not hold a talosconfig: {e}")))?;
    if !config.extra.is_empty() {
        return Err(bad(format!(
            "it does not hold a talosconfig (unknown top-level keys: {})",
            config.extra.names().join(", ")
        )));
    }
    if config.contexts.len() != 1 {
        return Err(bad(format!(
            "it holds {} contexts; a delivery holds exactly one",
            config.contexts.len()
        )));
    }
    let Some((name, context)) = config.contexts.pop_first() else {
        return Err(bad("it holds no context".into()));
    };
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(bad(
            "its context name is empty or has control characters".into()
        ));
    }
    let crt = context
        .crt_pem(&name)
        .map_err(|e| bad(format!("context {name:?}: {e}")))?;
    let ca = context
        .ca_pem(&name)
        .map_err(|e| bad(format!("context {name:?}: {e}")))?;
    for (field, pem) in [("crt", &crt), ("ca", &ca)] {
        if crate::pki::verify::certificate_der(pem).is_err() {
            return Err(bad(format!(
                "context {name:?} has no readable certificate in {field}"
            )));
        }
    }
    Ok(OpenedDelivery {
        name,
        context,
        opened_by: opened_by.to_string(),
    })
}
