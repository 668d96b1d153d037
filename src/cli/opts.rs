//! EDGE: the options every vault command takes, and what they resolve to: the vault (flag,
//! `TALVAULT_VAULT`, or the nearest parent), the acting context (actor, clock, identities, a
//! passphrase asked for only when a passphrase environment is opened, the PKCS#11 PIN prompt),
//! and recipients given as arguments or files.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: resolves the vault, identities, actor and clock from the environment"
)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::error::CliError;
use super::input::read_input;
use super::prompt::{TerminalCallbacks, read_hidden};
use crate::secret::SecretText;
use crate::vault::{self, Context, Recipient, Vault};

/// Options every vault command takes.
#[derive(Debug, Args, Clone)]
pub struct VaultOpts {
    /// The vault directory (default: TALVAULT_VAULT, else the nearest parent holding talvault.yaml).
    #[arg(long, global = true, value_name = "DIR")]
    pub vault: Option<PathBuf>,
    /// Identity file to decrypt with (repeatable; default: TALVAULT_IDENTITY, then SOPS_AGE_KEY_FILE).
    #[arg(short = 'i', long = "identity", global = true, value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Who is acting, for the audit trail (default: TALVAULT_ACTOR, git user.email, login name).
    #[arg(long, global = true, value_name = "NAME")]
    pub actor: Option<String>,
    /// Read the passphrase of a passphrase-sealed environment from this file (else
    /// TALVAULT_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the user PIN of a PKCS#11 token from this file when the key's URI has no
    /// pin-source (else TALVAULT_PKCS11_PIN, else a prompt). Never give a PIN on the command line.
    #[arg(long, global = true, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// The PKCS#11 module library for token-held issuer keys (else TALVAULT_PKCS11_MODULE, else
    /// `pkcs11.module` in ~/.config/talvault/config.yaml, else the system's usual places).
    /// Never taken from the vault.
    #[arg(long, global = true, value_name = "FILE")]
    pub pkcs11_module: Option<PathBuf>,
    /// How long to wait for another talvault process to release the vault lock.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub lock_timeout: u64,
}

/// The operator's configuration file, `$XDG_CONFIG_HOME/talvault/config.yaml` (default
/// `~/.config/talvault/config.yaml`): settings that belong to a person or a machine, never to
/// the vault (which anyone who can push to its repository can edit).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorConfig {
    #[serde(default)]
    pkcs11: OperatorPkcs11,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorPkcs11 {
    /// The module library (an absolute path).
    module: Option<PathBuf>,
    /// Accept token keys that may leave the token.
    #[serde(default)]
    danger_allow_extractable: bool,
}

fn operator_config() -> Result<OperatorConfig, CliError> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => return Ok(OperatorConfig::default()),
        },
    };
    let path = dir.join("talvault/config.yaml");
    if !path.exists() {
        return Ok(OperatorConfig::default());
    }
    let bytes = read_input(&path, "configuration")?;
    crate::model::parse_yaml(&bytes).map_err(|e| {
        CliError::usage(format!("{}: {e}", path.display())).hint(
            "it holds `pkcs11: {module: /path/to/module.so, danger_allow_extractable: false}`",
        )
    })
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// Stable JSON for scripts.
    Json,
}

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// For people.
    Text,
    /// Stable JSON for scripts (docs/revocation.md).
    Json,
}

/// Whether a command opens sealed files (and so needs identities loaded up front).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opens {
    /// Opens nothing sealed.
    Nothing,
    /// Reads what the audit chain decides: authenticates it with the identities given (-i,
    /// TALVAULT_IDENTITY, SOPS_AGE_KEY_FILE) when they open the audit keys, and reports
    /// "structure only" otherwise.
    Given,
    /// May open the bundle or an issuer key, or writes an event: the audit keys must open.
    Secrets,
}

impl VaultOpts {
    /// Finds and opens the vault (taking its lock).
    pub fn open_vault(&self) -> Result<Vault, CliError> {
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::new(format!("cannot read the current directory: {e}")))?;
        let env_var = std::env::var_os("TALVAULT_VAULT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let root = vault::discover(self.vault.as_deref(), env_var.as_deref(), &cwd)?;
        Ok(Vault::open(&root, Duration::from_secs(self.lock_timeout))?)
    }

    /// The acting context. Identities are loaded only for commands that open secrets.
    pub fn context(&self, opens: Opens) -> Result<Context, CliError> {
        let actor = crate::process::actor(
            self.actor.as_deref(),
            std::env::var("TALVAULT_ACTOR").ok().as_deref(),
        );
        // talvault-hsm reads TALVAULT_PKCS11_PIN before it calls the prompt below, so with both
        // set the variable would silently win over --pin-file and spend one of the token's PIN
        // attempts.
        if self.pin_file.is_some() && std::env::var_os(talvault_hsm::PIN_ENV).is_some() {
            return Err(CliError::usage(format!(
                "--pin-file and {} are both set; talvault will not guess which PIN is meant",
                talvault_hsm::PIN_ENV
            ))
            .hint(format!(
                "unset {} or drop --pin-file",
                talvault_hsm::PIN_ENV
            )));
        }
        if actor.chars().any(char::is_control) {
            return Err(CliError::usage(
                "the actor (--actor, TALVAULT_ACTOR or git user.email) must not contain control characters",
            )
            .hint("it is written into every audit event and printed by `talvault audit log`"));
        }
        let mut ctx = Context::new(actor, time::OffsetDateTime::now_utc());
        let config = operator_config()?;
        let module = match self.pkcs11_module.clone().or_else(|| {
            std::env::var_os("TALVAULT_PKCS11_MODULE")
                .filter(|m| !m.is_empty())
                .map(PathBuf::from)
        }) {
            Some(m) => Some(m),
            None => config.pkcs11.module,
        };
        ctx.pkcs11 = vault::Pkcs11Setup {
            module: module.map(|m| m.display().to_string()),
            danger_allow_extractable: config.pkcs11.danger_allow_extractable
                || std::env::var("TALVAULT_PKCS11_ALLOW_EXTRACTABLE").as_deref() == Ok("1"),
        };
        ctx.pin_prompt = Some(match self.pin_file.clone() {
            Some(path) => Box::new(move |_token: &str| {
                // A regular file of at most 1 KiB: never a FIFO or a device.
                let bytes = talvault_hsm::read_pin_file(&path)
                    .map_err(|e| format!("cannot read the PIN file {}: {e}", path.display()))?;
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| "the PIN file is not UTF-8 text".to_owned())?;
                let pin = text.strip_suffix('\n').unwrap_or(&text);
                let pin =
                    secrecy::SecretString::from(pin.strip_suffix('\r').unwrap_or(pin).to_owned());
                crate::secret::wipe_string(text);
                Ok(pin)
            }),
            None => Box::new(|token: &str| {
                read_hidden(&format!("PIN for PKCS#11 token {token:?}: "))
                    .map(|pin| secrecy::SecretString::from(pin.expose().to_owned()))
                    .map_err(|e| {
                        format!(
                            "cannot ask for the PIN ({e}); use --pin-file, pin-source in the URI or TALVAULT_PKCS11_PIN"
                        )
                    })
            }),
        });
        let opts = self.clone();
        ctx.passphrase = Some(Box::new(move || {
            passphrase(&opts, false).map_err(|e| Box::new(e) as Box<_>)
        }));
        ctx.chain = match opens {
            Opens::Nothing => vault::ChainCheck::Structure,
            Opens::Given => vault::ChainCheck::IfIdentity,
            Opens::Secrets => vault::ChainCheck::Required,
        };
        if opens != Opens::Nothing {
            let talvault_identity = std::env::var_os("TALVAULT_IDENTITY");
            let sops = std::env::var_os("SOPS_AGE_KEY_FILE");
            ctx.identities = vault::load_identities(
                &self.identities,
                talvault_identity.as_deref(),
                sops.as_deref(),
                TerminalCallbacks,
            )?;
        }
        Ok(ctx)
    }
}

/// The passphrase for a passphrase-sealed environment: file, TALVAULT_PASSPHRASE, or a prompt
/// (twice when `confirm`).
pub fn passphrase(o: &VaultOpts, confirm: bool) -> Result<SecretText, CliError> {
    if let Some(f) = &o.passphrase_file {
        let bytes = read_input(f, "passphrase file")?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| CliError::usage("the passphrase file is not UTF-8 text"))?;
        let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
        crate::secret::wipe_string(text);
        return Ok(SecretText::new(trimmed));
    }
    if let Some(p) = std::env::var_os("TALVAULT_PASSPHRASE").filter(|p| !p.is_empty()) {
        return p
            .into_string()
            .map(SecretText::new)
            .map_err(|_| CliError::usage("TALVAULT_PASSPHRASE is not UTF-8"));
    }
    let no_tty = |e: std::io::Error| {
        CliError::new(format!("cannot ask for the passphrase: {e}"))
            .hint("use --passphrase-file FILE or TALVAULT_PASSPHRASE when there is no terminal")
    };
    let p = read_hidden("Passphrase: ").map_err(no_tty)?;
    if confirm {
        let again = read_hidden("Confirm passphrase: ").map_err(no_tty)?;
        if again.expose() != p.expose() {
            return Err(CliError::new("the passphrases do not match"));
        }
    }
    if p.is_empty() {
        return Err(CliError::new("the passphrase is empty"));
    }
    Ok(p)
}

/// Recipients from `-r` arguments and `-R` files, each key once.
pub fn recipients_from(args: &[String], files: &[PathBuf]) -> Result<Vec<Recipient>, CliError> {
    let mut out: Vec<Recipient> = Vec::new();
    for a in args {
        let r = Recipient::parse(a)
            .map_err(|p| CliError::usage(format!("-r {}: {p}", shorten(a))).hint(p.hint()))?;
        out.push(r);
    }
    for f in files {
        let bytes = read_input(f, "recipients file")?;
        let parsed =
            vault::read_recipients_file(&bytes, f).map_err(|e| CliError::from(e).code(2))?;
        out.extend(parsed);
    }
    // The same key given twice (two -r, or -r and a -R file) is one recipient, as it is when
    // recipients.txt is read back.
    let mut unique: Vec<Recipient> = Vec::with_capacity(out.len());
    for r in out {
        if !unique.contains(&r) {
            unique.push(r);
        }
    }
    Ok(unique)
}

/// Shows the start of a string the user typed where a recipient belonged (it might be a secret
/// key pasted by mistake, so never all of it).
fn shorten(s: &str) -> String {
    let head: String = s.chars().take(12).collect();
    if s.chars().count() > 12 {
        format!("{head}…")
    } else {
        head
    }
}
