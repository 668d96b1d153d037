//! Recipients: parsing (age X25519, ssh-ed25519 and ssh-rsa, plugin recipients), their kinds
//! and the recipients files the vault keeps.
#![expect(
    deprecated,
    reason = "age 0.13 deprecates the classic X25519, ssh and tag recipients in favour of \
              post-quantum ones; talvault keeps them: vaults are sealed to them, and the Go age \
              CLI (1.1.1) and sops read only those"
)]

use super::*;

#[derive(Clone)]
pub(super) enum RecipientKind {
    X25519(::age::x25519::Recipient),
    Ssh(::age::ssh::Recipient),
    Tag(::age::tag::Recipient),
    TagPq(::age::tagpq::Recipient),
    Plugin(::age::plugin::Recipient),
}

/// What kind of recipient a [`Recipient`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientType {
    /// Native X25519 (`age1…`).
    X25519,
    /// `ssh-ed25519 …` or `ssh-rsa …`.
    Ssh,
    /// Native hardware-tag recipients (`age1tag1…`, `age1tagpq1…`). Go age 1.1.1 cannot open
    /// files sealed to them.
    Tag,
    /// A plugin recipient (`age1<plugin>1…`), sealed through `age-plugin-<plugin>` on PATH.
    Plugin,
}

/// Whether `s` is an `ssh-rsa` key whose exponent or modulus is a non-empty run of zero bytes.
/// age 0.12.1 panics on that (an index out of bounds in `read_ssh::mpint`, found by the
/// `recipients` fuzz target), and a recipients file dropped into the vault would crash every
/// command that reads it. This reads the key exactly as age does (the longest run of
/// unpadded standard base64 after `ssh-rsa `) and leaves every other judgement to age.
pub(super) fn ssh_rsa_has_zero_mpint(s: &str) -> bool {
    use base64::Engine as _;
    let Some(rest) = s.strip_prefix("ssh-rsa ") else {
        return false;
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
        .unwrap_or(rest.len());
    let Ok(blob) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&rest[..end]) else {
        return false;
    };
    // string key-type, mpint e, mpint n (RFC 4253 §6.6); each a u32 length and its bytes.
    let mut input = blob.as_slice();
    for field in 0..3 {
        let Some((len, tail)) = input.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((value, tail)) = (len <= tail.len()).then(|| tail.split_at(len)) else {
            return false;
        };
        if field > 0 && !value.is_empty() && value.iter().all(|&b| b == 0) {
            return true;
        }
        input = tail;
    }
    false
}

/// A public key to seal to. Compared and displayed by its canonical text (ssh comments dropped).
#[derive(Clone)]
pub struct Recipient {
    pub(super) kind: RecipientKind,
    text: String,
}

impl Recipient {
    /// Parses one recipient (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Self, RecipientProblem> {
        let s = s.trim();
        let upper_prefix = |p: &str| {
            s.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        };
        if upper_prefix("AGE-SECRET-KEY-") {
            return Err(RecipientProblem::SecretKey);
        }
        if upper_prefix("AGE-PLUGIN-") {
            return Err(RecipientProblem::PluginIdentity);
        }
        if s.starts_with("-----BEGIN") {
            return Err(RecipientProblem::PrivateKey);
        }
        if s.starts_with("age1") {
            // The Bech32 HRP decides the type: "age" is X25519, "age1tag"/"age1tagpq" are the
            // native tag types, any other "age1<name>" is a plugin (c2sp.org/age-plugin).
            let kind = if let Ok(r) = ::age::x25519::Recipient::from_str(s) {
                RecipientKind::X25519(r)
            } else if let Ok(r) = ::age::tag::Recipient::from_str(s) {
                RecipientKind::Tag(r)
            } else if let Ok(r) = ::age::tagpq::Recipient::from_str(s) {
                RecipientKind::TagPq(r)
            } else if let Ok(r) = ::age::plugin::Recipient::from_str(s) {
                RecipientKind::Plugin(r)
            } else {
                return Err(RecipientProblem::InvalidAge);
            };
            return Ok(Self::from_kind(kind));
        }
        if s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-") {
            use ::age::ssh::ParseRecipientKeyError as E;
            if ssh_rsa_has_zero_mpint(s) {
                return Err(RecipientProblem::InvalidSsh);
            }
            return match ::age::ssh::Recipient::from_str(s) {
                Ok(r) => Ok(Self::from_kind(RecipientKind::Ssh(r))),
                Err(E::Unsupported(key_type)) => Err(RecipientProblem::SshKeyType(key_type)),
                Err(E::RsaModulusTooSmall) => Err(RecipientProblem::RsaTooSmall),
                Err(E::RsaModulusTooLarge) => Err(RecipientProblem::RsaTooLarge),
                Err(_) => Err(RecipientProblem::InvalidSsh),
            };
        }
        Err(RecipientProblem::Unknown)
    }

    fn from_kind(kind: RecipientKind) -> Self {
        let text = match &kind {
            RecipientKind::X25519(r) => r.to_string(),
            RecipientKind::Ssh(r) => r.to_string(),
            RecipientKind::Tag(r) => r.to_string(),
            RecipientKind::TagPq(r) => r.to_string(),
            RecipientKind::Plugin(r) => r.to_string(),
        };
        Recipient { kind, text }
    }

    /// The canonical text (`age1…`, or `ssh-ed25519 AAAA…` without comment).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The recipient's type.
    pub fn recipient_type(&self) -> RecipientType {
        match self.kind {
            RecipientKind::X25519(_) => RecipientType::X25519,
            RecipientKind::Ssh(_) => RecipientType::Ssh,
            RecipientKind::Tag(_) | RecipientKind::TagPq(_) => RecipientType::Tag,
            RecipientKind::Plugin(_) => RecipientType::Plugin,
        }
    }

    /// For plugin recipients, the plugin name (`yubikey` for `age1yubikey1…`).
    pub fn plugin_name(&self) -> Option<&str> {
        match &self.kind {
            RecipientKind::Plugin(r) => Some(r.plugin()),
            _ => None,
        }
    }
}

impl FromStr for Recipient {
    type Err = RecipientProblem;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Recipient {}

impl std::hash::Hash for Recipient {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.text)
    }
}

/// Parses a recipients file the way age reads one (`age -R`): one recipient per line, `#`
/// comments and blank lines ignored. `origin` names the file in errors. Exact duplicates are
/// dropped (they would only add identical-purpose stanzas).
pub fn parse_recipients(text: &str, origin: &Path) -> Result<Vec<Recipient>, AgeError> {
    let mut out: Vec<Recipient> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let recipient = Recipient::parse(line).map_err(|problem| AgeError::InvalidRecipient {
            origin: format!("{} line {}", origin.display(), index + 1),
            problem,
        })?;
        if !out.contains(&recipient) {
            out.push(recipient);
        }
    }
    Ok(out)
}
