//! Sealed delivery: a talosconfig or kubeconfig age-encrypted to its holder's recipients
//! (`issue --seal`, `break-glass [--kubernetes] --seal`, `kubeconfig --seal`, `renew`), so a
//! private key never sits on disk or in a chat in plaintext; and the holder's side, `open`:
//! decrypt with their own identity and check that what came out is a talosconfig or kubeconfig
//! of exactly one context before it is written or merged. Sealing happens before the
//! certificate is committed, so a recipient that cannot be sealed to leaves nothing recorded.
//! Shared by the rooms that issue (`issue`, `renew`) like `signer`; it holds no room's logic and
//! never touches the vault's files.

use std::path::Path;

use super::{Env, VaultError};
use crate::holder::{HolderName, HolderRecord};
use crate::kubeconfig::{Kubeconfig, NewEntry, looks_like_kubeconfig};
use crate::secret::SecretText;
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

/// What a sealed delivery holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// A talosconfig (`issue`, `break-glass`, `renew`).
    Talosconfig,
    /// A kubeconfig (`kubeconfig`, `break-glass --kubernetes`).
    Kubeconfig,
}

impl DeliveryKind {
    /// `talosconfig` or `kubeconfig`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Talosconfig => "talosconfig",
            DeliveryKind::Kubeconfig => "kubeconfig",
        }
    }
}

/// What a delivery opened by its holder holds: one talosconfig context, or one kubeconfig
/// entry (cluster, user and context).
#[derive(Debug)]
pub enum Opened {
    /// A talosconfig's one context.
    Talosconfig {
        /// The context's name.
        name: String,
        /// The context.
        context: talosconfig::Context,
    },
    /// A kubeconfig's one entry.
    Kubeconfig(NewEntry),
}

/// A delivery opened by its holder.
#[derive(Debug)]
pub struct OpenedDelivery {
    /// What it holds.
    pub opened: Opened,
    /// Whose identity opened it (public: the recipient).
    pub opened_by: String,
}

/// The default file name of a holder's sealed delivery: `<holder>-<env>.talosconfig.age` or
/// `<holder>-<env>.kubeconfig.age` (holder and environment names are safe file names).
pub fn sealed_file_name(holder: &str, env: &str, kind: DeliveryKind) -> String {
    format!("{holder}-{env}.{}.age", kind.as_str())
}

/// Where a delivery goes: `None` unsealed, else the registered holder's recipients and whether
/// to armor. `--seal` for a holder no audit event registered (`asked`) is refused.
pub(super) fn seal_target(
    env: &Env,
    delivery: Delivery,
    registered: Option<&(HolderName, HolderRecord)>,
    asked: Option<&str>,
) -> Result<Option<(Vec<Recipient>, bool)>, VaultError> {
    match (delivery, registered) {
        (Delivery::Talosconfig, _) => Ok(None),
        (Delivery::Sealed { armor }, Some((name, record))) => Ok(Some((
            recipients_of(
                record,
                &format!("envs/{}/holders/{}", env.as_str(), name.file_name()),
            )?,
            armor,
        ))),
        (Delivery::Sealed { .. }, None) => Err(VaultError::UnknownHolder {
            env: env.as_str().into(),
            holder: asked.unwrap_or_default().to_owned(),
        }),
    }
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
    seal(&Config::single(name, context).to_yaml(), recipients, armor)
}

/// Seals a kubeconfig holding just `entry` to `recipients`.
pub(super) fn seal_kubeconfig(
    entry: &NewEntry,
    recipients: &[Recipient],
    armor: bool,
) -> Result<Sealed, VaultError> {
    seal(&Kubeconfig::single(entry).to_yaml(), recipients, armor)
}

fn seal(yaml: &SecretText, recipients: &[Recipient], armor: bool) -> Result<Sealed, VaultError> {
    Ok(Sealed {
        bytes: agestore::seal_delivery(yaml.expose().as_bytes(), recipients, armor)?,
        recipients: recipients.len(),
    })
}

/// `open`: decrypts a sealed delivery (`file` names it in errors) with the caller's identities
/// and checks that it is a talosconfig of one context, or a kubeconfig of one entry, with a
/// client certificate and a server CA. No key, certificate or credential appears in an error
/// (only the context, cluster and user names).
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
    let readable = |what: String, pem: &[u8]| {
        crate::pki::verify::certificate_der(pem)
            .map(drop)
            .map_err(|_| bad(format!("{what} has no readable certificate")))
    };
    let opened = if looks_like_kubeconfig(plain.expose()) {
        let entry = Kubeconfig::from_yaml(plain.expose())
            .and_then(|k| k.delivered_entry())
            .map_err(|e| bad(format!("it does not hold a delivered kubeconfig: {e}")))?;
        readable(
            format!("cluster {:?}'s certificate-authority-data", entry.cluster),
            &entry.ca_pem,
        )?;
        readable(
            format!("user {:?}'s client-certificate-data", entry.user),
            &entry.client_certificate_pem,
        )?;
        Opened::Kubeconfig(entry)
    } else {
        let (name, context) = one_talosconfig_context(plain.expose(), &bad)?;
        let crt = context
            .crt_pem(&name)
            .map_err(|e| bad(format!("context {name:?}: {e}")))?;
        let ca = context
            .ca_pem(&name)
            .map_err(|e| bad(format!("context {name:?}: {e}")))?;
        readable(format!("context {name:?}'s crt"), &crt)?;
        readable(format!("context {name:?}'s ca"), &ca)?;
        Opened::Talosconfig { name, context }
    };
    Ok(OpenedDelivery {
        opened,
        opened_by: opened_by.to_string(),
    })
}

/// The one context of a delivered talosconfig.
fn one_talosconfig_context(
    plain: &[u8],
    bad: &dyn Fn(String) -> VaultError,
) -> Result<(String, talosconfig::Context), VaultError> {
    let mut config = Config::from_yaml(plain).map_err(|e| {
        bad(format!(
            "it holds neither a kubeconfig nor a talosconfig: {e}"
        ))
    })?;
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
    Ok((name, context))
}
