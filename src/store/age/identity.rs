//! Identities: which recipient opened a file, identity files (`-i`, `TALVAULT_IDENTITY`,
//! `SOPS_AGE_KEY_FILE`), their lines, plugin and ssh identities.
#![expect(clippy::disallowed_methods, reason = "EDGE: reads identity files")]
#![expect(
    deprecated,
    reason = "age 0.13 deprecates the classic X25519, ssh and tag identities in favour of \
              post-quantum ones; talvault keeps them: vaults are sealed to them, and the Go age \
              CLI (1.1.1) and sops read only those"
)]

use super::*;

/// Which recipient's identity opened a file: the public side, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpenedBy {
    /// An X25519 identity; its `age1…` recipient.
    X25519(String),
    /// An ssh key; its public key (`ssh-ed25519 AAAA…`, no comment).
    Ssh(String),
    /// A plugin identity; `recipient` when the identity file names it in a comment
    /// (age-plugin-yubikey writes `#    Recipient: age1yubikey1…`).
    Plugin {
        /// The plugin name.
        plugin: String,
        /// The recipient, if known.
        recipient: Option<String>,
    },
    /// The passphrase (scrypt).
    Passphrase,
    /// Not an age identity: a key in a PKCS#11 token, by its URI (never with a PIN).
    Pkcs11(String),
}

impl OpenedBy {
    /// The recipient public key string, when known.
    pub fn recipient(&self) -> Option<&str> {
        match self {
            OpenedBy::X25519(r) | OpenedBy::Ssh(r) => Some(r),
            OpenedBy::Plugin { recipient, .. } => recipient.as_deref(),
            OpenedBy::Passphrase | OpenedBy::Pkcs11(_) => None,
        }
    }
}

impl fmt::Display for OpenedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenedBy::X25519(r) | OpenedBy::Ssh(r) => f.write_str(r),
            OpenedBy::Plugin {
                recipient: Some(r), ..
            } => f.write_str(r),
            OpenedBy::Plugin {
                plugin,
                recipient: None,
            } => write!(f, "age-plugin-{plugin} identity"),
            OpenedBy::Passphrase => f.write_str("passphrase"),
            OpenedBy::Pkcs11(uri) => write!(f, "PKCS#11 key {uri}"),
        }
    }
}

/// An identity that can open sealed files, with its public side and where it came from.
/// `Debug` shows only those two.
pub struct Identity {
    pub(super) inner: Box<dyn ::age::Identity + Send + Sync>,
    pub(super) public: OpenedBy,
    pub(super) origin: PathBuf,
}

impl Identity {
    /// Wraps an in-memory X25519 identity (`origin` is shown in messages).
    pub fn from_x25519(identity: ::age::x25519::Identity, origin: impl Into<PathBuf>) -> Self {
        Identity {
            public: OpenedBy::X25519(identity.to_public().to_string()),
            inner: Box::new(identity),
            origin: origin.into(),
        }
    }

    /// The public side: what `open` reports when this identity opens a file.
    pub fn public(&self) -> &OpenedBy {
        &self.public
    }

    /// The file this identity was loaded from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Where the identity files came from (for messages such as "using SOPS_AGE_KEY_FILE").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// `-i FILE` arguments.
    Explicit,
    /// `TALVAULT_IDENTITY`.
    TalvaultIdentity,
    /// `SOPS_AGE_KEY_FILE`.
    SopsAgeKeyFile,
}

/// Picks the identity files: explicit `-i` files, else `TALVAULT_IDENTITY`, else
/// `SOPS_AGE_KEY_FILE` (the values are passed in; empty values count as unset).
pub fn resolve_identity_files(
    explicit: &[PathBuf],
    talvault_identity: Option<&OsStr>,
    sops_age_key_file: Option<&OsStr>,
) -> Result<(IdentitySource, Vec<PathBuf>), AgeError> {
    if !explicit.is_empty() {
        return Ok((IdentitySource::Explicit, explicit.to_vec()));
    }
    let set = |v: Option<&OsStr>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(talvault_identity) {
        return Ok((IdentitySource::TalvaultIdentity, vec![p]));
    }
    if let Some(p) = set(sops_age_key_file) {
        return Ok((IdentitySource::SopsAgeKeyFile, vec![p]));
    }
    Err(AgeError::NoIdentitySource)
}

/// Loads the identities in one file: an age identity file (X25519 and plugin identities, `#`
/// comments, as written by age-keygen or a plugin) or an ssh private key (ssh-ed25519, ssh-rsa).
///
/// Refuses files readable or writable by group or others, as ssh does. `callbacks` serve
/// plugins and passphrase-protected ssh keys.
pub fn load_identity_file<C: Callbacks>(
    path: &Path,
    callbacks: C,
) -> Result<Vec<Identity>, AgeError> {
    let io_err = |source| AgeError::IdentityFileIo {
        path: path.to_path_buf(),
        source,
    };
    // Follows links: this is the user's own file, named by them, outside the vault.
    let file = File::open(path).map_err(io_err)?;
    // fstat the opened file, so the check and the read concern the same inode.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AgeError::IdentityFileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let limit = usize::try_from(IDENTITY_FILE_MAX).unwrap_or(usize::MAX);
    let size = usize::try_from(meta.len()).unwrap_or(limit);
    let buf = crate::secret::read_zeroizing(file, size.saturating_add(1), limit).map_err(io_err)?;
    let text = std::str::from_utf8(&buf)
        .map_err(|_| io_err(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))?;
    parse_identities(text, path, callbacks)
}

/// Loads every file in `files` (see `load_identity_file`), in order.
pub fn load_identities<C: Callbacks>(
    files: &[PathBuf],
    callbacks: C,
) -> Result<Vec<Identity>, AgeError> {
    let mut out = Vec::new();
    for file in files {
        out.extend(load_identity_file(file, callbacks.clone())?);
    }
    Ok(out)
}

/// One parsed line of an age identity file, before plugins are resolved.
pub(super) enum IdentityLine {
    X25519(::age::x25519::Identity),
    Plugin {
        identity: ::age::plugin::Identity,
        recipient: Option<String>,
    },
}

/// The recipient named in an identity-file comment: `# public key: age1…` (age-keygen) or
/// `# Recipient: age1…` (age-plugin-yubikey and others).
fn recipient_in_comment(comment: &str) -> Option<&str> {
    let lower = comment.to_ascii_lowercase();
    ["recipient:", "public key:"].iter().find_map(|label| {
        let at = lower.find(label)? + label.len();
        comment.get(at..)?.split_whitespace().next()
    })
}

/// Parses the lines of an age identity file. Errors name the line number only.
pub(super) fn parse_identity_lines(
    text: &str,
    origin: &Path,
) -> Result<Vec<IdentityLine>, AgeError> {
    let mut out = Vec::new();
    let mut named_recipient: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(r) = recipient_in_comment(comment) {
                named_recipient = Some(r.to_owned());
            }
            continue;
        }
        // Lines are borrowed from the zeroizing file buffer; the parsers keep no copies
        // except inside age's own zeroizing key types.
        if let Ok(identity) = ::age::x25519::Identity::from_str(line) {
            out.push(IdentityLine::X25519(identity));
        } else if let Ok(identity) = ::age::plugin::Identity::from_str(line) {
            // Trust the comment only if it is a recipient of the same plugin.
            let recipient = named_recipient.take().filter(|r| {
                ::age::plugin::Recipient::from_str(r).is_ok_and(|p| p.plugin() == identity.plugin())
            });
            out.push(IdentityLine::Plugin {
                identity,
                recipient,
            });
        } else {
            return Err(AgeError::IdentityFileSyntax {
                path: origin.to_path_buf(),
                line: index + 1,
            });
        }
        named_recipient = None;
    }
    if out.is_empty() {
        return Err(AgeError::NoIdentities {
            path: origin.to_path_buf(),
        });
    }
    Ok(out)
}

pub(super) fn plugin_binary(name: &str) -> String {
    format!("age-plugin-{name}")
}

/// Parses identity-file text (see `load_identity_file`); `origin` names it in errors.
/// Plugin binaries are looked up on PATH here, so a missing plugin fails early and clearly.
pub fn parse_identities<C: Callbacks>(
    text: &str,
    origin: &Path,
    callbacks: C,
) -> Result<Vec<Identity>, AgeError> {
    if text.trim_start().starts_with("-----BEGIN") {
        return parse_ssh_identity(text, origin, callbacks).map(|i| vec![i]);
    }
    let mut out = Vec::new();
    for line in parse_identity_lines(text, origin)? {
        out.push(match line {
            IdentityLine::X25519(identity) => Identity::from_x25519(identity, origin),
            IdentityLine::Plugin {
                identity,
                recipient,
            } => {
                let plugin = identity.plugin().to_owned();
                // One IdentityPluginV1 per identity (not per plugin), so `open` can tell which
                // identity matched.
                let inner = ::age::plugin::IdentityPluginV1::new(
                    &plugin,
                    std::slice::from_ref(&identity),
                    callbacks.clone(),
                )
                .map_err(|_| AgeError::PluginNotFound {
                    binary: plugin_binary(&plugin),
                })?;
                Identity {
                    inner: Box::new(inner),
                    public: OpenedBy::Plugin { plugin, recipient },
                    origin: origin.to_path_buf(),
                }
            }
        });
    }
    Ok(out)
}

fn parse_ssh_identity<C: Callbacks>(
    text: &str,
    origin: &Path,
    callbacks: C,
) -> Result<Identity, AgeError> {
    use ::age::ssh::{Identity as SshIdentity, UnsupportedKey};
    let unsupported = |detail: String| AgeError::UnsupportedSshKey {
        path: origin.to_path_buf(),
        detail,
    };
    let identity = SshIdentity::from_buffer(text.as_bytes(), Some(origin.display().to_string()))
        .map_err(|_| AgeError::IdentityFileSyntax {
            path: origin.to_path_buf(),
            line: 1,
        })?;
    if let SshIdentity::Unsupported(key) = &identity {
        return Err(unsupported(match key {
            UnsupportedKey::EncryptedPem => {
                "encrypted PEM key; convert it with `ssh-keygen -p -o`".to_owned()
            }
            UnsupportedKey::EncryptedSsh(cipher) => format!("encrypted with cipher {cipher}"),
            UnsupportedKey::Hardware(kind) => {
                format!("{kind} is a hardware key; use age-plugin-yubikey")
            }
            UnsupportedKey::Type(kind) => format!("key type {kind}"),
        }));
    }
    let public = ::age::ssh::Recipient::try_from(identity.clone())
        .map_err(|_| unsupported("the public key inside it is not usable".to_owned()))?
        .to_string();
    Ok(Identity {
        inner: Box::new(identity.with_callbacks(callbacks)),
        public: OpenedBy::Ssh(public),
        origin: origin.to_path_buf(),
    })
}
