//! age encryption of vault secrets (c2sp.org/age): parse recipients, load identities, seal
//! (vault files always armored; deliveries to holders armored or binary) and open into zeroizing buffers, reporting which recipient's identity opened
//! the file. It must not write files, read environment variables or prompt: paths, environment
//! values and `age::Callbacks` come in as arguments, and no error or `Debug` carries key material
//! or plaintext.
//!
//! Zeroization is best effort (see reference/crates.md §5): our plaintext and identity-file
//! buffers are `Zeroizing`, but age's `StreamWriter` clears rather than wipes its chunk buffer.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ::age::armor::{ArmoredReader, ArmoredWriter, Format};
use ::age::secrecy::SecretString;
use ::age::{Callbacks, DecryptError, Decryptor, Encryptor, NoCallbacks};
use thiserror::Error;

use crate::secret::{SecretBytes, SecretText};

pub mod stream;

/// scrypt work factor (log2 N) for passphrase sealing: Go age's default, set explicitly because
/// the age crate otherwise calibrates to ~1 s on *this* machine, which slower machines then
/// refuse to open (reference/crates.md §5, "Traps").
pub const SCRYPT_WORK_FACTOR: u8 = 18;

/// Highest scrypt work factor accepted when opening (2^20: a few seconds, 1 GiB of memory).
/// Bounds the cost an attacker-supplied file can impose.
pub const SCRYPT_MAX_WORK_FACTOR: u8 = 20;

/// Largest identity file read (age itself allows 16 MiB; real files are a few hundred bytes).
pub const IDENTITY_FILE_MAX: u64 = 1 << 20;

/// Environment variable naming an identity file (read by the CLI, passed in here).
pub const ENV_TALVAULT_IDENTITY: &str = "TALVAULT_IDENTITY";

/// The identity file sops users already have (read by the CLI, passed in here).
pub const ENV_SOPS_AGE_KEY_FILE: &str = "SOPS_AGE_KEY_FILE";

/// Why a string is not a usable recipient. Never contains the string itself: a user who pastes
/// a secret key where a public key belongs must not see it echoed into logs.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecipientProblem {
    /// An `AGE-SECRET-KEY-1…` string.
    #[error("this is an age secret key, not a recipient")]
    SecretKey,
    /// An `AGE-PLUGIN-…` identity string.
    #[error("this is an age plugin identity, not a recipient")]
    PluginIdentity,
    /// A PEM/OpenSSH private key.
    #[error("this is a private key, not a recipient")]
    PrivateKey,
    /// Starts with `age1` but is not valid Bech32 for any known type.
    #[error("not a valid age1… recipient (bad Bech32 encoding or checksum)")]
    InvalidAge,
    /// An ssh key type age does not encrypt to.
    #[error("ssh key type {0} is not supported by age")]
    SshKeyType(String),
    /// An ssh-rsa key under 2048 bits.
    #[error("ssh-rsa key is smaller than 2048 bits")]
    RsaTooSmall,
    /// An ssh-rsa key above age's limit.
    #[error("ssh-rsa key is larger than age supports")]
    RsaTooLarge,
    /// Starts like an ssh key but does not parse.
    #[error("not a valid ssh public key")]
    InvalidSsh,
    /// Nothing recognisable.
    #[error("not an age recipient")]
    Unknown,
}

impl RecipientProblem {
    /// A one-line suggestion for the user.
    pub fn hint(&self) -> &'static str {
        match self {
            RecipientProblem::SecretKey => {
                "give the public key instead: `age-keygen -y KEYFILE` prints it (age1…)"
            }
            RecipientProblem::PluginIdentity => {
                "give the plugin's recipient (age1<plugin>1…), which the plugin prints when it makes the identity"
            }
            RecipientProblem::PrivateKey => {
                "give the public key, e.g. the contents of the .pub file"
            }
            RecipientProblem::SshKeyType(_)
            | RecipientProblem::RsaTooSmall
            | RecipientProblem::RsaTooLarge => {
                "use an ssh-ed25519 key, an ssh-rsa key of 2048 to 16384 bits, or an age key"
            }
            RecipientProblem::InvalidAge | RecipientProblem::InvalidSsh => {
                "check that the key was copied completely"
            }
            RecipientProblem::Unknown => {
                "expected age1…, ssh-ed25519 AAAA… or ssh-rsa AAAA…, one per line; `#` starts a comment"
            }
        }
    }
}

/// What went wrong sealing or opening. Variants name the condition and the file; none carries
/// plaintext, identities or passphrases.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgeError {
    /// A recipient string (from an argument or a recipients file) is unusable.
    #[error("{origin}: {problem}")]
    InvalidRecipient {
        /// Where it came from, e.g. `envs/prod/recipients.txt line 3`.
        origin: String,
        /// What is wrong with it.
        problem: RecipientProblem,
    },
    /// `seal` was given no recipients.
    #[error("no recipients to encrypt to")]
    NoRecipients,
    /// A plugin recipient or identity needs a binary that is not on PATH.
    #[error("the age plugin {binary} was not found on PATH")]
    PluginNotFound {
        /// The binary's name, `age-plugin-<name>`.
        binary: String,
    },
    /// A plugin reported an error.
    #[error("age plugin error: {message}")]
    PluginFailed {
        /// The plugin's own messages.
        message: String,
    },
    /// Encryption failed for another reason.
    #[error("encryption failed: {reason}")]
    SealFailed {
        /// age's description.
        reason: String,
    },
    /// None of the identities can open the file.
    #[error("no identity matched any of the recipients of {}", path.display())]
    NoMatchingIdentity {
        /// The sealed file.
        path: PathBuf,
        /// How many identities were tried.
        tried: usize,
        /// The file is sealed with a passphrase rather than to recipients.
        passphrase_file: bool,
    },
    /// The file is truncated, edited or not an age file.
    #[error("{} is damaged or not an age file: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What age found wrong (public text: header, MAC or stream errors).
        detail: String,
    },
    /// The passphrase does not open the file.
    #[error("wrong passphrase for {}", path.display())]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// `open_with_passphrase` on a file sealed to recipients.
    #[error("{} is sealed to recipients, not with a passphrase", path.display())]
    NotPassphraseSealed {
        /// The file.
        path: PathBuf,
    },
    /// The file's scrypt work factor is above `SCRYPT_MAX_WORK_FACTOR`.
    #[error(
        "{} asks for scrypt work factor 2^{required}, above the accepted 2^{max}",
        path.display()
    )]
    ExcessiveWork {
        /// The file.
        path: PathBuf,
        /// Its work factor.
        required: u8,
        /// The accepted maximum.
        max: u8,
    },
    /// An empty passphrase was given for sealing.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// An identity file is readable or writable by group or others (like ssh, we refuse it).
    #[error("permissions {mode:04o} for '{}' are too open", path.display())]
    IdentityFileTooOpen {
        /// The identity file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An identity file could not be read.
    #[error("cannot read identity file {}: {source}", path.display())]
    IdentityFileIo {
        /// The identity file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line of an identity file is not an identity. Only the line number is shown.
    #[error("identity file {}: line {line} is not an age identity", path.display())]
    IdentityFileSyntax {
        /// The identity file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The identity file holds no identities.
    #[error("identity file {} contains no identities", path.display())]
    NoIdentities {
        /// The identity file.
        path: PathBuf,
    },
    /// An ssh private key age cannot use.
    #[error("identity file {}: unsupported ssh key ({detail})", path.display())]
    UnsupportedSshKey {
        /// The key file.
        path: PathBuf,
        /// Which kind of key.
        detail: String,
    },
    /// A passphrase-protected ssh key could not be unlocked.
    #[error("could not unlock the passphrase-protected ssh key {}", path.display())]
    IdentityLocked {
        /// The key file.
        path: PathBuf,
    },
    /// No identity file was given by any means.
    #[error("no identity to decrypt with")]
    NoIdentitySource,
}

impl AgeError {
    /// A one-line suggestion for the user, when there is a useful one.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            AgeError::InvalidRecipient { problem, .. } => problem.hint().to_owned(),
            AgeError::PluginNotFound { binary } => {
                format!("install {binary} and make sure it is on PATH")
            }
            AgeError::NoMatchingIdentity {
                passphrase_file: true,
                ..
            } => "this file is sealed with a passphrase; open it with the passphrase".to_owned(),
            AgeError::NoMatchingIdentity { .. } => "pass the right key with -i FILE (or TALVAULT_IDENTITY); if you should have access, ask a current recipient to add your public key with `talvault recipients add`".to_owned(),
            AgeError::Corrupt { path, .. } => format!(
                "the file may be truncated or edited; compare it with git (`git diff -- {}`)",
                path.display()
            ),
            AgeError::WrongPassphrase { .. } => "the passphrase comes from --passphrase-file, TALVAULT_PASSPHRASE or the prompt; check which one is set".to_owned(),
            AgeError::ExcessiveWork { .. } => {
                "re-seal the file with the default work factor (2^18)".to_owned()
            }
            AgeError::IdentityFileTooOpen { path, .. } => {
                format!("run `chmod 600 {}`", path.display())
            }
            AgeError::NoIdentitySource => format!(
                "pass -i FILE, or set {ENV_TALVAULT_IDENTITY} or {ENV_SOPS_AGE_KEY_FILE}"
            ),
            AgeError::UnsupportedSshKey { .. } => {
                "use an ssh-ed25519 or ssh-rsa key, or an age key from age-keygen".to_owned()
            }
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Recipients and identities (their own files)

mod identity;
mod recipient;
use identity::plugin_binary;
pub use identity::*;
use recipient::RecipientKind;
pub use recipient::*;

// ---------------------------------------------------------------------------------------------
// Seal and open

fn seal_failed(e: impl fmt::Display) -> AgeError {
    AgeError::SealFailed {
        reason: e.to_string(),
    }
}

/// Encrypts and armors (c2sp.org/age, "ASCII armor"): armored files diff and review in git.
fn encrypt_armored(encryptor: Encryptor, plaintext: &[u8]) -> Result<Vec<u8>, AgeError> {
    encrypt(encryptor, plaintext, Format::AsciiArmor)
}

/// Encrypts, armored or in age's binary format.
fn encrypt(encryptor: Encryptor, plaintext: &[u8], format: Format) -> Result<Vec<u8>, AgeError> {
    // Armor is base64 (4/3) plus header and line breaks.
    let out = Vec::with_capacity(plaintext.len() / 3 * 4 + plaintext.len() / 16 + 1024);
    let armored = ArmoredWriter::wrap_output(out, format).map_err(seal_failed)?;
    let mut writer = encryptor.wrap_output(armored).map_err(seal_failed)?;
    writer.write_all(plaintext).map_err(seal_failed)?;
    writer
        .finish()
        .and_then(|armored| armored.finish())
        .map_err(seal_failed)
}

/// Seals `plaintext` to `recipients`, armored. Plugin recipients run `age-plugin-<name>` with no
/// user interaction; use `seal_with_callbacks` when a plugin may need to prompt.
pub fn seal(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, AgeError> {
    seal_with_callbacks(plaintext, recipients, NoCallbacks)
}

/// `seal`, with `callbacks` for plugins that show messages or ask questions.
pub fn seal_with_callbacks<C: Callbacks>(
    plaintext: &[u8],
    recipients: &[Recipient],
    callbacks: C,
) -> Result<Vec<u8>, AgeError> {
    encrypt_armored(encryptor(recipients, callbacks)?, plaintext)
}

/// Seals a delivery to its holder's `recipients`: armored when `armor`, else in age's binary
/// format (what `age -e` writes by default); either opens with `age -d`.
pub fn seal_delivery(
    plaintext: &[u8],
    recipients: &[Recipient],
    armor: bool,
) -> Result<Vec<u8>, AgeError> {
    let format = if armor {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    encrypt(encryptor(recipients, NoCallbacks)?, plaintext, format)
}

/// The age encryptor for `recipients` (one plugin process per plugin), shared by `seal`,
/// `seal_delivery` and the streaming `stream::seal`.
fn encryptor<C: Callbacks>(recipients: &[Recipient], callbacks: C) -> Result<Encryptor, AgeError> {
    if recipients.is_empty() {
        return Err(AgeError::NoRecipients);
    }
    let mut wrappers: Vec<Box<dyn ::age::Recipient + Send>> = Vec::new();
    let mut by_plugin: BTreeMap<&str, Vec<::age::plugin::Recipient>> = BTreeMap::new();
    for recipient in recipients {
        match &recipient.kind {
            RecipientKind::X25519(r) => wrappers.push(Box::new(r.clone())),
            RecipientKind::Ssh(r) => wrappers.push(Box::new(r.clone())),
            RecipientKind::Tag(r) => wrappers.push(Box::new(r.clone())),
            RecipientKind::TagPq(r) => wrappers.push(Box::new(r.clone())),
            RecipientKind::Plugin(r) => by_plugin.entry(r.plugin()).or_default().push(r.clone()),
        }
    }
    // One plugin process wraps the file key for all of that plugin's recipients
    // (c2sp.org/age-plugin, recipient-v1).
    for (name, plugin_recipients) in by_plugin {
        let plugin =
            ::age::plugin::RecipientPluginV1::new(name, &plugin_recipients, &[], callbacks.clone())
                .map_err(|_| AgeError::PluginNotFound {
                    binary: plugin_binary(name),
                })?;
        wrappers.push(Box::new(plugin));
    }
    Encryptor::with_recipients(wrappers.iter().map(|r| r.as_ref() as &dyn ::age::Recipient))
        .map_err(seal_failed)
}

fn passphrase_secret(passphrase: &SecretText) -> SecretString {
    SecretString::from(passphrase.expose().to_owned())
}

/// Seals `plaintext` with a passphrase (scrypt recipient, work factor `SCRYPT_WORK_FACTOR`),
/// armored. For offline backups; vault secrets are sealed to recipients.
pub fn seal_with_passphrase(
    plaintext: &[u8],
    passphrase: &SecretText,
) -> Result<Vec<u8>, AgeError> {
    if passphrase.is_empty() {
        return Err(AgeError::EmptyPassphrase);
    }
    let mut recipient = ::age::scrypt::Recipient::new(passphrase_secret(passphrase));
    recipient.set_work_factor(SCRYPT_WORK_FACTOR);
    let encryptor =
        Encryptor::with_recipients(std::iter::once(&recipient as &dyn ::age::Recipient))
            .map_err(seal_failed)?;
    encrypt_armored(encryptor, plaintext)
}

type Header<'a> = Decryptor<ArmoredReader<io::BufReader<&'a [u8]>>>;

fn corrupt(path: &Path, detail: impl fmt::Display) -> AgeError {
    AgeError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Parses the header. `ArmoredReader` accepts armored and binary files alike.
fn header<'a>(path: &Path, ciphertext: &'a [u8]) -> Result<Header<'a>, AgeError> {
    Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(|e| decrypt_error(path, e))
}

fn decrypt_error(path: &Path, e: DecryptError) -> AgeError {
    match e {
        DecryptError::NoMatchingKeys => AgeError::NoMatchingIdentity {
            path: path.to_path_buf(),
            tried: 0,
            passphrase_file: false,
        },
        DecryptError::ExcessiveWork { required, .. } => AgeError::ExcessiveWork {
            path: path.to_path_buf(),
            required,
            max: SCRYPT_MAX_WORK_FACTOR,
        },
        DecryptError::InvalidHeader => corrupt(path, "invalid header"),
        DecryptError::InvalidMac => corrupt(path, "header MAC mismatch (the header was changed)"),
        DecryptError::UnknownFormat => corrupt(path, "unknown age format version"),
        DecryptError::DecryptionFailed => corrupt(path, "decryption failed"),
        DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => corrupt(
            path,
            "unexpected end of file (truncated, or not an age file)",
        ),
        DecryptError::Io(e) => corrupt(path, e),
        DecryptError::Plugin(errors) => AgeError::PluginFailed {
            message: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        },
        DecryptError::PluginResolve(e) => AgeError::PluginFailed {
            message: e.to_string(),
        },
        other => corrupt(path, other),
    }
}

/// Decrypts the payload into a zeroizing buffer pre-sized to the ciphertext length (the
/// plaintext is always shorter), so it never reallocates and leaves no unwiped copy.
fn read_payload<R: Read>(
    path: &Path,
    reader: R,
    ciphertext_len: usize,
) -> Result<SecretBytes, AgeError> {
    let mut buf = crate::secret::read_zeroizing(reader, ciphertext_len + 1, ciphertext_len + 1)
        .map_err(|e| corrupt(path, e))?;
    // Move the Vec out (no copy); the emptied Zeroizing wrapper has nothing left to wipe.
    Ok(SecretBytes::new(std::mem::take(&mut *buf)))
}

/// Opens the age file `ciphertext` (armored or binary; `path` names it in errors) with the first
/// identity that matches one of its recipients, and says which one did.
pub fn open(
    path: &Path,
    ciphertext: &[u8],
    identities: &[Identity],
) -> Result<(SecretBytes, OpenedBy), AgeError> {
    let passphrase_file = header(path, ciphertext)?.is_scrypt();
    // Try identities one at a time (as age's own `find_map` does) so the one that matched is
    // known. Re-parsing the header per identity costs microseconds.
    for identity in identities {
        let decryptor = header(path, ciphertext)?;
        match decryptor.decrypt(std::iter::once(
            identity.inner.as_ref() as &dyn ::age::Identity
        )) {
            Ok(reader) => {
                let plaintext = read_payload(path, reader, ciphertext.len())?;
                return Ok((plaintext, identity.public.clone()));
            }
            Err(DecryptError::NoMatchingKeys) => {}
            Err(DecryptError::KeyDecryptionFailed) => {
                return Err(AgeError::IdentityLocked {
                    path: identity.origin.clone(),
                });
            }
            Err(e) => return Err(decrypt_error(path, e)),
        }
    }
    Err(AgeError::NoMatchingIdentity {
        path: path.to_path_buf(),
        tried: identities.len(),
        passphrase_file,
    })
}

/// Opens a passphrase-sealed file. Accepts work factors up to `SCRYPT_MAX_WORK_FACTOR`.
pub fn open_with_passphrase(
    path: &Path,
    ciphertext: &[u8],
    passphrase: &SecretText,
) -> Result<SecretBytes, AgeError> {
    open_with_passphrase_max(path, ciphertext, passphrase, SCRYPT_MAX_WORK_FACTOR)
}

fn open_with_passphrase_max(
    path: &Path,
    ciphertext: &[u8],
    passphrase: &SecretText,
    max_work_factor: u8,
) -> Result<SecretBytes, AgeError> {
    let decryptor = header(path, ciphertext)?;
    if !decryptor.is_scrypt() {
        return Err(AgeError::NotPassphraseSealed {
            path: path.to_path_buf(),
        });
    }
    let mut identity = ::age::scrypt::Identity::new(passphrase_secret(passphrase));
    // Set explicitly: the default cap is calibrated on this machine and refuses Go age's
    // 2^18 files on slow machines and in debug builds (reference/crates.md §5).
    identity.set_max_work_factor(max_work_factor);
    match decryptor.decrypt(std::iter::once(&identity as &dyn ::age::Identity)) {
        Ok(reader) => read_payload(path, reader, ciphertext.len()),
        // The scrypt stanza's AEAD failed: with a well-formed header that is the passphrase.
        Err(DecryptError::DecryptionFailed) => Err(AgeError::WrongPassphrase {
            path: path.to_path_buf(),
        }),
        Err(DecryptError::ExcessiveWork { required, .. }) => Err(AgeError::ExcessiveWork {
            path: path.to_path_buf(),
            required,
            max: max_work_factor,
        }),
        Err(e) => Err(decrypt_error(path, e)),
    }
}

#[cfg(test)]
#[expect(
    deprecated,
    reason = "the tests make classic X25519 identities, which vaults are sealed to"
)]
#[expect(
    clippy::disallowed_methods,
    reason = "tests write identity files and run the Go age CLI"
)]
mod tests {
    use super::identity::{IdentityLine, parse_identity_lines};
    use super::recipient::ssh_rsa_has_zero_mpint;
    use super::*;
    use ::age::secrecy::ExposeSecret;
    use std::process::Command;

    /// Test-only key (made with `ssh-keygen -t ed25519 -N ''`); it protects nothing.
    const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAHosbQ7nElJ/INKixBzulIUOs9nQiJ4UXxhBU6EtbTdwAAAJB/Bk3jfwZN
4wAAAAtzc2gtZWQyNTUxOQAAACAHosbQ7nElJ/INKixBzulIUOs9nQiJ4UXxhBU6EtbTdw
AAAEDrJqceblh1O+eCtvcm459K/iGiu/3OR8QzUFHlZ9q+1QeixtDucSUn8g0qLEHO6UhQ
6z2dCInhRfGEFToS1tN3AAAADXRlc3RAdGFsdmF1bHQ=
-----END OPENSSH PRIVATE KEY-----
";
    const SSH_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAeixtDucSUn8g0qLEHO6UhQ6z2dCInhRfGEFToS1tN3 test@talvault";

    /// A Talos-secrets-shaped plaintext with a recognisable secret in it.
    const PLAINTEXT: &[u8] = b"cluster:\n  secret: VERY-SECRET-VALUE-4242\n";

    /// Whether the Go `age` CLI runs. Missing under `CI=true` fails the test, so interop coverage
    /// cannot shrink silently.
    fn have_age_cli() -> bool {
        let ok = Command::new("age")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the age CLI is required under CI=true (Debian package `age`)"
            );
            eprintln!("skipping: the age CLI is not installed");
        }
        ok
    }

    fn x25519() -> (::age::x25519::Identity, Recipient) {
        let identity = ::age::x25519::Identity::generate();
        let recipient = Recipient::parse(&identity.to_public().to_string()).unwrap();
        (identity, recipient)
    }

    fn write_private(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// An `age1<name>1…` plugin recipient string.
    fn plugin_recipient(name: &str) -> String {
        let hrp = bech32::Hrp::parse(&format!("age1{name}")).unwrap();
        bech32::encode::<bech32::Bech32>(hrp, &[7u8; 33]).unwrap()
    }

    #[test]
    fn x25519_round_trip_reports_the_identity_that_opened() {
        let (a, ra) = x25519();
        let (b, rb) = x25519();
        let sealed = seal(PLAINTEXT, &[ra, rb.clone()]).unwrap();
        assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(!String::from_utf8_lossy(&sealed).contains("VERY-SECRET"));

        let other = ::age::x25519::Identity::generate();
        let ids = [
            Identity::from_x25519(other, "other.key"),
            Identity::from_x25519(b, "b.key"),
            Identity::from_x25519(a, "a.key"),
        ];
        let (plain, by) = open(Path::new("bundle.age"), &sealed, &ids).unwrap();
        assert_eq!(plain.expose(), PLAINTEXT);
        assert_eq!(by, OpenedBy::X25519(rb.to_string()));
        assert_eq!(by.recipient(), Some(rb.as_str()));
    }

    #[test]
    fn ssh_ed25519_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = write_private(dir.path(), "id_ed25519", SSH_KEY, 0o600);
        let recipient = Recipient::parse(SSH_PUB).unwrap();
        assert_eq!(recipient.recipient_type(), RecipientType::Ssh);
        // The comment is not part of the canonical form.
        assert_eq!(
            recipient.as_str(),
            SSH_PUB.trim_end_matches(" test@talvault")
        );
        let sealed = seal(PLAINTEXT, std::slice::from_ref(&recipient)).unwrap();
        let ids = load_identity_file(&key, NoCallbacks).unwrap();
        assert_eq!(ids.len(), 1);
        let (plain, by) = open(Path::new("bundle.age"), &sealed, &ids).unwrap();
        assert_eq!(plain.expose(), PLAINTEXT);
        assert_eq!(by, OpenedBy::Ssh(recipient.to_string()));
    }

    #[test]
    fn our_armored_output_opens_with_the_go_cli() {
        if !have_age_cli() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = x25519();
        let key = write_private(
            dir.path(),
            "key.txt",
            &format!("{}\n", identity.to_string().expose_secret()),
            0o600,
        );
        let sealed = dir.path().join("bundle.age");
        std::fs::write(&sealed, seal(PLAINTEXT, &[recipient]).unwrap()).unwrap();
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&sealed)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, PLAINTEXT);
    }

    #[test]
    fn go_cli_output_opens_with_ours() {
        if !have_age_cli() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = x25519();
        let input = dir.path().join("secrets.yaml");
        std::fs::write(&input, PLAINTEXT).unwrap();
        for armor in [true, false] {
            let output = dir.path().join(if armor { "a.age" } else { "b.age" });
            let mut cmd = Command::new("age");
            cmd.arg("-r").arg(recipient.as_str());
            if armor {
                cmd.arg("-a");
            }
            let out = cmd.arg("-o").arg(&output).arg(&input).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ciphertext = std::fs::read(&output).unwrap();
            let id = Identity::from_x25519(
                identity.to_string().expose_secret().parse().unwrap(),
                "key.txt",
            );
            let (plain, by) = open(&output, &ciphertext, &[id]).unwrap();
            assert_eq!(plain.expose(), PLAINTEXT);
            assert_eq!(by.recipient(), Some(recipient.as_str()));
        }
    }

    #[test]
    fn wrong_identity_names_the_file_and_hints() {
        let (_, recipient) = x25519();
        let sealed = seal(PLAINTEXT, &[recipient]).unwrap();
        let ids = [Identity::from_x25519(
            ::age::x25519::Identity::generate(),
            "mine.key",
        )];
        let err = open(Path::new("envs/prod/bundle.age"), &sealed, &ids).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no identity matched any of the recipients of envs/prod/bundle.age"
        );
        assert!(matches!(
            err,
            AgeError::NoMatchingIdentity {
                tried: 1,
                passphrase_file: false,
                ..
            }
        ));
        assert!(err.hint().unwrap().contains("-i FILE"));
    }

    #[test]
    fn truncated_and_edited_ciphertext_is_reported_as_damaged() {
        let (identity, recipient) = x25519();
        let ids = [Identity::from_x25519(identity, "k")];
        let big = vec![b'x'; 100_000];
        let sealed = seal(&big, &[recipient]).unwrap();
        let path = Path::new("envs/prod/bundle.age");

        // Cut in the payload: the armor end marker (and the last chunk) are gone.
        let cut = &sealed[..sealed.len() / 2];
        let err = open(path, cut, &ids).unwrap_err();
        assert!(matches!(err, AgeError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("envs/prod/bundle.age"), "{err}");

        // Cut inside the header.
        let err = open(path, &sealed[..60], &ids).unwrap_err();
        assert!(matches!(err, AgeError::Corrupt { .. }), "{err:?}");

        // Not an age file at all.
        let err = open(path, b"hello\n", &ids).unwrap_err();
        assert!(matches!(err, AgeError::Corrupt { .. }), "{err:?}");

        // A flipped bit in the binary payload fails authentication.
        let mut binary = Vec::new();
        ArmoredReader::new(&sealed[..])
            .read_to_end(&mut binary)
            .unwrap();
        let last = binary.len() - 1;
        binary[last] ^= 1;
        let err = open(path, &binary, &ids).unwrap_err();
        assert!(matches!(err, AgeError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn identity_file_with_open_permissions_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let identity = ::age::x25519::Identity::generate();
        let secret = identity.to_string().expose_secret().to_owned();
        let key = write_private(dir.path(), "key.txt", &format!("{secret}\n"), 0o644);
        let err = load_identity_file(&key, NoCallbacks).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("permissions 0644 for '{}' are too open", key.display())
        );
        assert!(err.hint().unwrap().contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(load_identity_file(&key, NoCallbacks).is_err());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let ids = load_identity_file(&key, NoCallbacks).unwrap();
        assert_eq!(
            ids[0].public(),
            &OpenedBy::X25519(identity.to_public().to_string())
        );
        assert!(!format!("{ids:?}").contains(&secret));
    }

    #[test]
    fn identity_file_parsing_like_age_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ::age::x25519::Identity::generate();
        let b = ::age::x25519::Identity::generate();
        let text = format!(
            "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n\n# second\r\n{}\r\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let key = write_private(dir.path(), "keys.txt", &text, 0o600);
        let ids = load_identity_file(&key, NoCallbacks).unwrap();
        let publics: Vec<_> = ids.iter().map(|i| i.public().to_string()).collect();
        assert_eq!(
            publics,
            [a.to_public().to_string(), b.to_public().to_string()]
        );

        // A bad line is reported by number, never echoed.
        let secret = a.to_string().expose_secret().to_owned();
        let broken = format!("{}\n{}\n", secret, &secret[..secret.len() - 1]);
        let key = write_private(dir.path(), "broken.txt", &broken, 0o600);
        let err = load_identity_file(&key, NoCallbacks).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "identity file {}: line 2 is not an age identity",
                key.display()
            )
        );
        assert!(!format!("{err:?}").contains(&secret[20..]));

        let empty = write_private(dir.path(), "empty.txt", "# nothing\n", 0o600);
        assert!(matches!(
            load_identity_file(&empty, NoCallbacks),
            Err(AgeError::NoIdentities { .. })
        ));
    }

    #[test]
    fn plugin_identities_and_recipients() {
        let identity = ::age::plugin::Identity::default_for_plugin("talvaulttest").unwrap();
        let recipient = plugin_recipient("talvaulttest");
        let text = format!(
            "#    Recipient: {recipient}\n{identity}\n{}\n",
            ::age::plugin::Identity::default_for_plugin("other").unwrap()
        );
        let lines = parse_identity_lines(&text, Path::new("yk.txt")).unwrap();
        let named: Vec<_> = lines
            .iter()
            .map(|l| match l {
                IdentityLine::Plugin { recipient, .. } => recipient.clone(),
                IdentityLine::X25519(_) => None,
            })
            .collect();
        // The comment names the first identity's recipient only.
        assert_eq!(named, [Some(recipient.clone()), None]);

        // No age-plugin-talvaulttest binary exists: a clear error at load and at seal.
        let err = parse_identities(&text, Path::new("yk.txt"), NoCallbacks).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the age plugin age-plugin-talvaulttest was not found on PATH"
        );
        let parsed = Recipient::parse(&recipient).unwrap();
        assert_eq!(parsed.recipient_type(), RecipientType::Plugin);
        assert_eq!(parsed.plugin_name(), Some("talvaulttest"));
        let err = seal(PLAINTEXT, &[parsed]).unwrap_err();
        assert!(matches!(err, AgeError::PluginNotFound { .. }), "{err:?}");
    }

    #[test]
    fn native_tag_recipients_seal() {
        // Test vector from the age crate (src/native/tag.rs).
        let tag =
            Recipient::parse("age1tag1qt8lw0ual6avlwmwatk888yqnmdamm7xfd0wak53ut6elz5c4swx2yqdj4e")
                .unwrap();
        assert_eq!(tag.recipient_type(), RecipientType::Tag);
        seal(PLAINTEXT, &[tag]).unwrap();
    }

    #[test]
    fn recipients_file_and_wrong_kinds() {
        let (_, ra) = x25519();
        let text = format!("# team\n\n{ra}\n  {SSH_PUB}  \n{ra}\n");
        let parsed = parse_recipients(&text, Path::new("recipients.txt")).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], ra);

        let secret = ::age::x25519::Identity::generate();
        let secret = secret.to_string().expose_secret().to_owned();
        let text = format!("{ra}\n{secret}\n");
        let err = parse_recipients(&text, Path::new("recipients.txt")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipients.txt line 2: this is an age secret key, not a recipient"
        );
        assert!(err.hint().unwrap().contains("age-keygen -y"));
        assert!(!format!("{err:?}").contains(&secret));

        let cases = [
            ("hello", RecipientProblem::Unknown),
            ("age1notvalid", RecipientProblem::InvalidAge),
            (SSH_KEY, RecipientProblem::PrivateKey),
            ("ssh-ed25519 AAAAnope", RecipientProblem::InvalidSsh),
            (
                "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLtpbQS6OV4VfYDLQaSMwyMwkOlmRbxZbMAMW8jWO2jk1KjvWu+3r+CttqY/IpgGMFtjQLMkMpWYXrH/TE56V64=",
                RecipientProblem::SshKeyType("ecdsa-sha2-nistp256".to_owned()),
            ),
            ("AGE-PLUGIN-YUBIKEY-1XYZ", RecipientProblem::PluginIdentity),
        ];
        for (input, expected) in cases {
            assert_eq!(Recipient::parse(input).unwrap_err(), expected, "{input}");
        }
        assert!(matches!(seal(PLAINTEXT, &[]), Err(AgeError::NoRecipients)));
    }

    #[test]
    fn identity_resolution_order() {
        let explicit = [PathBuf::from("a.key")];
        let tv = Some(OsStr::new("tv.key"));
        let sops = Some(OsStr::new("sops.key"));
        assert_eq!(
            resolve_identity_files(&explicit, tv, sops).unwrap(),
            (IdentitySource::Explicit, explicit.to_vec())
        );
        assert_eq!(
            resolve_identity_files(&[], tv, sops).unwrap(),
            (
                IdentitySource::TalvaultIdentity,
                vec![PathBuf::from("tv.key")]
            )
        );
        assert_eq!(
            resolve_identity_files(&[], Some(OsStr::new("")), sops).unwrap(),
            (
                IdentitySource::SopsAgeKeyFile,
                vec![PathBuf::from("sops.key")]
            )
        );
        let err = resolve_identity_files(&[], None, None).unwrap_err();
        assert!(err.hint().unwrap().contains("TALVAULT_IDENTITY"));
    }

    #[test]
    fn scrypt_round_trip_with_explicit_work_factor() {
        let passphrase = SecretText::from("correct horse battery staple");
        let sealed = seal_with_passphrase(PLAINTEXT, &passphrase).unwrap();
        let path = Path::new("backup.age");
        let plain = open_with_passphrase(path, &sealed, &passphrase).unwrap();
        assert_eq!(plain.expose(), PLAINTEXT);

        // The stanza carries exactly work factor 18: a cap of 17 refuses it before any scrypt.
        let err = open_with_passphrase_max(path, &sealed, &passphrase, 17).unwrap_err();
        assert!(
            matches!(
                err,
                AgeError::ExcessiveWork {
                    required: 18,
                    max: 17,
                    ..
                }
            ),
            "{err:?}"
        );
        // Recipient identities do not match a passphrase file, and the hint says why.
        let ids = [Identity::from_x25519(
            ::age::x25519::Identity::generate(),
            "k",
        )];
        let err = open(path, &sealed, &ids).unwrap_err();
        assert!(err.hint().unwrap().contains("passphrase"), "{err:?}");
        assert!(matches!(
            seal_with_passphrase(PLAINTEXT, &SecretText::from("")),
            Err(AgeError::EmptyPassphrase)
        ));
    }

    #[test]
    fn ssh_rsa_key_with_a_zero_mpint_is_refused_not_a_panic() {
        // Fuzz finding: age 0.12.1 indexes an empty slice for an all-zero mpint.
        for key in [
            "ssh-rsa AAAAB3NzaC1yc2EAAAABAAFjDBAQA9k",
            "ssh-rsa AAAAB3NzaC1yc2EAAAABAAAAAAIAAA",
        ] {
            assert!(matches!(
                Recipient::parse(key),
                Err(RecipientProblem::InvalidSsh)
            ));
        }
        assert!(!ssh_rsa_has_zero_mpint("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"));
        assert!(!ssh_rsa_has_zero_mpint("ssh-ed25519 AAAA"));
    }

    #[test]
    fn errors_and_debug_carry_no_secrets() {
        let (identity, recipient) = x25519();
        let secret = identity.to_string().expose_secret().to_owned();
        let id = Identity::from_x25519(identity, "k");
        let sealed = seal(PLAINTEXT, &[recipient]).unwrap();
        let (plain, _) = open(Path::new("f"), &sealed, std::slice::from_ref(&id)).unwrap();
        let shown = format!("{id:?} {plain:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(!shown.contains("VERY-SECRET"), "{shown}");
    }
}
