//! EDGE: everything the command line writes for the user: stdout (secrets never to a
//! terminal), new files (mode 0600 for secrets, 0644 for public artifacts and sealed files in
//! an outbox) and talosconfigs and kubeconfigs merged in place. A destination is opened before the command does its work, so a bad one
//! fails before anything is signed, recorded or audited; only regular files are replaced, and
//! a merge target stays locked from read to replace.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use super::error::CliError;
use crate::kubeconfig::{EntryNames, Kubeconfig, NewEntry};
use crate::store::user_file::{self, LockedFile, Outbox, PendingFile};
use crate::store::{Mode, StoreError};
use crate::talosconfig::{self, Config};

/// Largest talosconfig merged into.
const MAX_TALOSCONFIG: u64 = 4 << 20;
/// Largest kubeconfig merged into.
const MAX_KUBECONFIG: u64 = 4 << 20;

/// Writes public text to stdout.
pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
}

/// Writes a report to stderr (when stdout carries the artifact).
pub fn write_stderr(bytes: &[u8]) {
    let _ = std::io::stderr().write_all(bytes);
}

/// Pretty JSON with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CliError> {
    let mut out = serde_json::to_vec_pretty(value)
        .map_err(|e| CliError::new(format!("cannot render JSON: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Why a destination cannot be written, for the user.
fn destination_error(path: &Path, e: StoreError) -> CliError {
    match e {
        // talosctl: `file "<path>" already exists, use --force to overwrite`.
        StoreError::AlreadyExists { .. } => CliError::new(format!(
            "file {:?} already exists",
            path.display().to_string()
        ))
        .hint("use --force to overwrite"),
        StoreError::NotAFile { .. } => CliError::new(format!(
            "{:?} is not a regular file; talvault only ever replaces regular files",
            path.display().to_string()
        ))
        .hint("name a new or regular file, or use -o - to write to stdout"),
        other => CliError::new(format!(
            "cannot write {:?}: {}",
            path.display().to_string(),
            io_reason(&other)
        ))
        .hint("check that the directory exists and that you may write to it"),
    }
}

fn io_reason(e: &StoreError) -> String {
    match e {
        StoreError::Io { source, .. } => source.to_string(),
        StoreError::NotFound { .. } => "no such directory".to_owned(),
        other => other.to_string(),
    }
}

/// Where one artifact goes: stdout, or a file prepared before the work is done.
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file, published by `write`.
    File(PendingFile),
}

impl Output {
    /// Opens a destination for secret output: `-` is stdout (refused when it is a terminal);
    /// a file is created with mode 0600, an existing one replaced only with `force`.
    pub fn secret(target: &str, force: bool) -> Result<Self, CliError> {
        if target == "-" {
            if std::io::stdout().is_terminal() {
                return Err(CliError::new("refusing to print secrets to a terminal")
                    .hint("redirect stdout (`> secrets.yaml`, `| age -r …`) or use -o FILE"));
            }
            return Ok(Output::Stdout);
        }
        let path = Path::new(target);
        Ok(Output::File(
            user_file::prepare(path, Mode::Secret, force)
                .map_err(|e| destination_error(path, e))?,
        ))
    }

    /// Opens a destination for a public artifact (a patch, a CRL): a file is created with mode
    /// 0644 and replaces an existing regular file; `None` is stdout.
    pub fn public(target: Option<&Path>) -> Result<Self, CliError> {
        match target {
            None => Ok(Output::Stdout),
            Some(path) => Ok(Output::File(
                user_file::prepare(path, Mode::Public, true)
                    .map_err(|e| destination_error(path, e))?,
            )),
        }
    }

    /// Whether this is stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }

    /// Where it goes, for messages.
    pub fn shown(&self) -> String {
        match self {
            Output::Stdout => "stdout".to_owned(),
            Output::File(p) => p.path().display().to_string(),
        }
    }

    /// Writes the artifact.
    pub fn write(self, bytes: &[u8]) -> Result<(), CliError> {
        match self {
            Output::Stdout => {
                let mut lock = std::io::stdout().lock();
                lock.write_all(bytes)
                    .and_then(|()| lock.flush())
                    .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
            }
            Output::File(p) => {
                let path = p.path().to_path_buf();
                p.publish(bytes).map_err(|e| destination_error(&path, e))
            }
        }
    }
}

/// A destination being streamed into (a sealed or decrypted backup of any size): stdout, or
/// the prepared file, which appears at its path only with [`StreamOutput::finish`]; dropped
/// without it, nothing is left behind.
pub enum StreamOutput {
    /// Standard output.
    Stdout(std::io::StdoutLock<'static>),
    /// A file being written.
    File(PendingFile),
}

impl Output {
    /// Starts streaming into the destination.
    pub fn into_stream(self) -> StreamOutput {
        match self {
            Output::Stdout => StreamOutput::Stdout(std::io::stdout().lock()),
            Output::File(p) => StreamOutput::File(p),
        }
    }
}

impl std::io::Write for StreamOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            StreamOutput::Stdout(s) => s.write(buf),
            StreamOutput::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            StreamOutput::Stdout(s) => s.flush(),
            StreamOutput::File(f) => f.flush(),
        }
    }
}

impl StreamOutput {
    /// Flushes stdout, or publishes the file (fsynced, renamed into place).
    pub fn finish(self) -> Result<(), CliError> {
        match self {
            StreamOutput::Stdout(mut s) => s
                .flush()
                .map_err(|e| CliError::new(format!("cannot write to stdout: {e}"))),
            StreamOutput::File(p) => {
                let path = p.path().to_path_buf();
                p.publish_written().map_err(|e| destination_error(&path, e))
            }
        }
    }
}

/// Where an issued talosconfig goes: a new file (or stdout), or merged into an existing
/// talosconfig, which stays locked from now until it is replaced.
pub enum TalosconfigOutput {
    /// A new talosconfig with one context.
    New(Output),
    /// Merged into an existing talosconfig.
    Merge {
        /// The locked file.
        file: LockedFile,
        /// Its contents, parsed.
        config: Box<Config>,
        /// Replace a context of the same name.
        replace: bool,
    },
}

impl TalosconfigOutput {
    /// Opens `-o TARGET` (default `talosconfig`) or `--merge FILE` for a context named `name`,
    /// refusing a merge target that is not a talosconfig or already has that context.
    pub fn open(
        output: Option<&str>,
        merge: Option<&Path>,
        name: &str,
        replace: bool,
        force: bool,
    ) -> Result<Self, CliError> {
        let Some(path) = merge else {
            return Ok(TalosconfigOutput::New(Output::secret(
                output.unwrap_or("talosconfig"),
                force,
            )?));
        };
        let not_one = |detail: String| {
            CliError::new(format!("--merge {}: {detail}", path.display()))
                .hint("merge into a file written by talosctl or talvault, or use -o FILE")
        };
        let file =
            user_file::lock_for_merge(path, Mode::Secret, MAX_TALOSCONFIG).map_err(
                |e| match e {
                    StoreError::NotFound { .. } => CliError::usage(format!(
                        "cannot read talosconfig {}: no such file",
                        path.display()
                    ))
                    .hint("check the path"),
                    other => destination_error(path, other),
                },
            )?;
        let config = Config::from_yaml(file.contents())
            .map_err(|e| not_one(format!("not a talosconfig: {e}")))?;
        // A file with top-level keys talosctl does not know (a kubeconfig, say) is not a
        // talosconfig, even though the reader would keep those keys.
        if !config.extra.is_empty() {
            return Err(not_one(format!(
                "not a talosconfig (unknown top-level keys: {})",
                config.extra.names().join(", ")
            )));
        }
        if config.contexts.contains_key(name) && !replace {
            return Err(CliError::new(format!(
                "--merge {}: context {name:?} already exists",
                path.display()
            ))
            .hint("pass --replace to replace it, or --context NAME for another name"));
        }
        Ok(TalosconfigOutput::Merge {
            file,
            config: Box::new(config),
            replace,
        })
    }

    /// Whether the talosconfig goes to stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, TalosconfigOutput::New(o) if o.is_stdout())
    }

    /// Writes the context (merged, or as a new file); returns where it went.
    pub fn write(self, name: &str, context: talosconfig::Context) -> Result<String, CliError> {
        match self {
            TalosconfigOutput::New(out) => {
                let shown = out.shown();
                let yaml = Config::single(name, context).to_yaml();
                out.write(yaml.expose().as_bytes())?;
                Ok(shown)
            }
            TalosconfigOutput::Merge {
                file,
                config,
                replace,
            } => {
                let path: PathBuf = file.path().to_path_buf();
                let merged = talosconfig::merge(*config, name, context, replace)
                    .map_err(|e| CliError::new(format!("--merge {}: {e}", path.display())))?;
                let yaml = merged.to_yaml();
                file.publish(yaml.expose().as_bytes())
                    .map_err(|e| destination_error(&path, e))?;
                Ok(path.display().to_string())
            }
        }
    }
}

/// An outbox directory for sealed files (`renew -o DIR`), opened before anything is signed.
pub struct OutboxOutput(Outbox, PathBuf);

impl OutboxOutput {
    /// Opens `dir` and checks that none of `names` is something other than a regular file.
    pub fn open<'a>(
        dir: &Path,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, CliError> {
        let outbox = Outbox::open(dir).map_err(|e| destination_error(dir, e))?;
        for name in names {
            outbox.check(name).map_err(|e| match e {
                StoreError::NotAFile { .. } => CliError::new(format!(
                    "{:?} is not a regular file; talvault only ever replaces regular files",
                    dir.join(name).display().to_string()
                ))
                .hint("remove it, or name another outbox directory"),
                other => destination_error(&dir.join(name), other),
            })?;
        }
        Ok(OutboxOutput(outbox, dir.to_path_buf()))
    }

    /// Writes the sealed files (mode 0644: they are ciphertext, safe to commit or send).
    pub fn write(self, files: &[(String, &[u8])]) -> Result<(), CliError> {
        self.0
            .write_all(files, Mode::Public)
            .map(|_| ())
            .map_err(|e| destination_error(&self.1, e))
    }
}

/// Where an issued kubeconfig goes: a new file (or stdout), or merged into an existing
/// kubeconfig, which stays locked from now until it is replaced. Opened before anything is
/// signed, as [`TalosconfigOutput`] is.
pub enum KubeconfigOutput {
    /// A new kubeconfig with one cluster, user and context.
    New(Output),
    /// Merged into an existing kubeconfig.
    Merge {
        /// The locked file.
        file: LockedFile,
        /// Its contents, parsed.
        config: Box<Kubeconfig>,
        /// Replace clashing entries.
        replace: bool,
    },
}

impl KubeconfigOutput {
    /// Opens `-o TARGET` (default `kubeconfig`) or `--merge FILE` for the entries `names`,
    /// refusing a merge target that is not a kubeconfig or where a name is taken by another
    /// entry (unless `replace`).
    pub fn open(
        output: Option<&str>,
        merge: Option<&Path>,
        names: &EntryNames,
        replace: bool,
        force: bool,
    ) -> Result<Self, CliError> {
        let Some(path) = merge else {
            return Ok(KubeconfigOutput::New(Output::secret(
                output.unwrap_or("kubeconfig"),
                force,
            )?));
        };
        let file =
            user_file::lock_for_merge(path, Mode::Secret, MAX_KUBECONFIG).map_err(|e| match e {
                StoreError::NotFound { .. } => CliError::usage(format!(
                    "cannot read kubeconfig {}: no such file",
                    path.display()
                ))
                .hint("check the path, or use -o FILE for a new kubeconfig"),
                other => destination_error(path, other),
            })?;
        let config = Kubeconfig::from_yaml(file.contents()).map_err(|e| {
            CliError::new(format!("--merge {}: {e}", path.display()))
                .hint("merge into a file written by kubectl, talosctl or talvault, or use -o FILE")
        })?;
        if !replace && let Some((kind, name)) = config.clashes(names).into_iter().next() {
            return Err(CliError::new(format!(
                "--merge {}: {kind} {name:?} already exists{}",
                path.display(),
                if kind == "cluster" {
                    " with another server or CA"
                } else {
                    ""
                }
            ))
            .hint("pass --replace to replace it (entries are never renamed), or merge into another file"));
        }
        Ok(KubeconfigOutput::Merge {
            file,
            config: Box::new(config),
            replace,
        })
    }

    /// Whether the kubeconfig goes to stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, KubeconfigOutput::New(o) if o.is_stdout())
    }

    /// Writes the entries (merged, or as a new file); returns where they went.
    pub fn write(self, entry: &NewEntry) -> Result<String, CliError> {
        match self {
            KubeconfigOutput::New(out) => {
                let shown = out.shown();
                let yaml = Kubeconfig::single(entry).to_yaml();
                out.write(yaml.expose().as_bytes())?;
                Ok(shown)
            }
            KubeconfigOutput::Merge {
                file,
                config,
                replace,
            } => {
                let path: PathBuf = file.path().to_path_buf();
                let merged = (*config)
                    .merge(entry, replace)
                    .map_err(|e| CliError::new(format!("--merge {}: {e}", path.display())))?;
                let yaml = merged.to_yaml();
                file.publish(yaml.expose().as_bytes())
                    .map_err(|e| destination_error(&path, e))?;
                Ok(path.display().to_string())
            }
        }
    }
}
