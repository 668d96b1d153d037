//! EDGE: `talvault backup …`: sealed etcd backups (or any file). Arguments are checked and
//! destinations opened before the vault is, streams are handed to the service, and results are
//! rendered. Plaintext leaves only to a 0600 file, a stdout that is not a terminal, or a program
//! through a pipe; a sealed backup never goes to a terminal either.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: opens the backup files and input the user names"
)]

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal as _, Read};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::error::CliError;
use super::opts::{ListFormat, Opens, VaultOpts};
use super::output::{Output, json, write_stderr, write_stdout};
use crate::backup::{BackupRecord, Format};
use crate::vault::{BackupView, OpenTo, SealRequest};

/// `talvault backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Seal a file (an etcd snapshot from `talosctl etcd snapshot`, or any file) to the
    /// environment's recipients and backup-only recipients, and record it in the vault.
    Seal(SealArgs),
    /// Decrypt a backup to a 0600 file, a stdout that is not a terminal, or a program through
    /// a pipe (`-- CMD … {} …`). Audited.
    Open(OpenArgs),
    /// Decrypt a backup in memory and check it against its record, and an etcd snapshot against
    /// its own SHA-256, writing no plaintext anywhere (the restoration test). Audited.
    Verify {
        /// The environment.
        env: String,
        /// The sealed backup.
        file: PathBuf,
    },
    /// List an environment's backups, newest first: sizes, hashes, last verification, and
    /// whether each is sealed to the current recipients. Opens nothing.
    List {
        /// The environment.
        env: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
    /// Remove all but the N newest backup records, and print the files to delete where the
    /// backups live (talvault never deletes them itself).
    Prune {
        /// The environment.
        env: String,
        /// How many of the newest records to keep (at least 1).
        #[arg(long, value_name = "N")]
        keep: usize,
    },
    /// Re-encrypt a backup in place to the environment's current recipients and backup-only
    /// recipients (after `recipients add|remove`), checking it on the way. Audited.
    Reseal {
        /// The environment.
        env: String,
        /// The sealed backup (replaced atomically).
        file: PathBuf,
    },
}

/// `backup seal`
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The environment.
    pub env: String,
    /// The file to seal, or `-` for stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: String,
    /// Where the sealed backup goes (created, never overwritten; mode 0600), or `-` for a stdout
    /// that is not a terminal (e.g. into `aws s3 cp - s3://…`).
    #[arg(short = 'o', long = "output", value_name = "OUT.age")]
    pub output: String,
    /// A label for the record (e.g. `nightly`).
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Where the backup will live, for the record and `backup prune` (default: the absolute
    /// path of --output).
    #[arg(long, value_name = "TEXT")]
    pub location: Option<String>,
    /// The input is a copy of etcd's `member/snap/db` (no SHA-256 trailer, nothing to check it
    /// against); recorded as such. Restoring it needs `--skip-hash-check`.
    #[arg(long)]
    pub db_copy: bool,
}

/// `backup open`
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The environment.
    pub env: String,
    /// The sealed backup.
    pub file: PathBuf,
    /// Output file (mode 0600; it appears only once the whole backup checked out), or `-` for
    /// stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// Overwrite an existing file.
    #[arg(short = 'f', long, requires = "output")]
    pub force: bool,
    /// Why, for the audit trail (required when the policy's backup.open_requires_reason is set).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// A command to receive the plaintext: its `{}` argument becomes a /dev/fd pipe.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Runs a `backup` subcommand.
pub fn run(cmd: BackupCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        BackupCommand::Seal(a) => seal(a, o),
        BackupCommand::Open(a) => open(a, o),
        BackupCommand::Verify { env, file } => verify(&env, &file, o),
        BackupCommand::List { env, format } => list(&env, format, o),
        BackupCommand::Prune { env, keep } => prune(&env, keep, o),
        BackupCommand::Reseal { env, file } => reseal(&env, &file, o),
    }
}

/// Opens a sealed backup for reading: it must be a regular file (it is read twice: its first
/// bytes find its record, then age reads it through).
fn backup_file(path: &Path) -> Result<File, CliError> {
    let fail = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "check the path",
            std::io::ErrorKind::PermissionDenied => "check the file's permissions",
            _ => "give the sealed backup file",
        };
        CliError::new(format!("cannot read {}: {e}", path.display())).hint(hint)
    };
    let file = File::open(path).map_err(fail)?;
    if !file.metadata().map_err(fail)?.is_file() {
        return Err(
            CliError::new(format!("{} is not a regular file", path.display()))
                .hint("copy the sealed backup to a local file first (talvault reads it twice)"),
        );
    }
    Ok(file)
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `etcd snapshot (SHA-256 1a2b3c… checked)`, `file`, `etcd member/snap/db copy (unverified)`.
fn what(r: &BackupRecord) -> String {
    match r.contents.format {
        Format::File => "file".into(),
        Format::EtcdSnapshot => format!(
            "etcd snapshot, its SHA-256 {}… checked",
            r.contents
                .etcd
                .as_ref()
                .and_then(|e| e.sha256.as_deref())
                .map_or("", |s| &s[..12])
        ),
        Format::EtcdDbCopy => "etcd member/snap/db copy (no hash to check)".into(),
    }
}

fn named(r: &BackupRecord) -> String {
    match &r.label {
        Some(l) => format!("{} ({l})", r.id),
        None => r.id.clone(),
    }
}

/// `backup seal ENV [FILE|-] -o OUT.age`
fn seal(a: SealArgs, o: &VaultOpts) -> Result<u8, CliError> {
    // The destination first, so a bad one is refused before anything is read.
    if a.output == "-" && std::io::stdout().is_terminal() {
        return Err(
            CliError::new("refusing to write a sealed backup to a terminal")
                .hint("redirect stdout (`> prod.age`, `| aws s3 cp - s3://…`) or use -o FILE"),
        );
    }
    let out = Output::secret(&a.output, false).map_err(|e| {
        if e.hint.as_deref() == Some("use --force to overwrite") {
            e.hint(
                "a sealed backup never replaces a file; name a new one (a date in the name helps)",
            )
        } else {
            e
        }
    })?;
    let location = match &a.location {
        Some(l) => Some(l.clone()),
        None if out.is_stdout() => None,
        None => Some(
            std::path::absolute(&a.output)
                .map_or_else(|_| a.output.clone(), |abs| abs.display().to_string()),
        ),
    };
    let to_stdout = out.is_stdout();
    let (mut input, input_name): (Box<dyn Read>, String) = if a.input == "-" {
        if std::io::stdin().is_terminal() {
            return Err(CliError::usage("refusing to read a backup from a terminal")
                .hint("give the file (e.g. the one `talosctl etcd snapshot FILE` wrote), or pipe it in"));
        }
        (Box::new(std::io::stdin().lock()), "stdin".into())
    } else {
        let path = Path::new(&a.input);
        let file = File::open(path).map_err(|e| {
            CliError::usage(format!("cannot read {}: {e}", path.display())).hint("check the path")
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(
                CliError::usage(format!("{} is a directory", path.display())).hint(
                    "give the snapshot file, e.g. the one `talosctl etcd snapshot FILE` wrote",
                ),
            );
        }
        (Box::new(file), a.input.clone())
    };
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let req = SealRequest {
        input: input_name,
        label: a.label,
        location,
        db_copy: a.db_copy,
    };
    let (stream, pending) = v.backup_seal(&a.env, &mut input, out.into_stream(), req, &ctx)?;
    stream.finish()?;
    let r = v.backup_record(pending, &ctx)?;
    let mut msg = format!(
        "sealed backup {}: {}, {}\n  to {} recipient(s) and {} backup-only; record envs/{}/backups/{}.yaml\n",
        named(&r),
        size(r.contents.size),
        what(&r),
        r.sealed.recipients.len(),
        r.sealed.backup_only.len(),
        a.env,
        r.id
    );
    if let Some(l) = &r.location {
        let _ = writeln!(msg, "  file: {l}");
    }
    if to_stdout {
        write_stderr(msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}

/// Where `backup open` sends the plaintext.
enum Destination {
    Output(Output),
    Exec {
        program: OsString,
        args: Vec<OsString>,
        shown: String,
    },
}

/// `backup open ENV FILE (-o FILE | -- CMD … {} …)`
fn open(a: OpenArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let dest = match (&a.output, a.command.split_first()) {
        (Some(_), Some(_)) => {
            return Err(
                CliError::usage("-o and a command cannot both receive the backup")
                    .hint("use -o FILE, or -- COMMAND … {} …"),
            );
        }
        (None, None) => {
            return Err(CliError::usage("no destination for the decrypted backup").hint(
                "use -o FILE (mode 0600), -o - for a pipe, or -- COMMAND … {} … (e.g. -- sha256sum {})",
            ));
        }
        (Some(target), None) => Destination::Output(Output::secret(target, a.force)?),
        (None, Some((program, args))) => {
            let braces = args.iter().filter(|x| *x == "{}").count();
            if braces != 1 {
                return Err(CliError::usage(format!(
                    "the command needs exactly one {{}} argument to replace with the backup, not {braces}"
                ))
                .hint("the backup is streamed once, through one pipe: put {} where the command reads its input"));
            }
            let shown = program.to_string_lossy().into_owned();
            if crate::process::find_program(program).is_none() {
                return Err(CliError::new(format!(
                    "cannot run {shown}: no such executable{}",
                    if shown.contains('/') { "" } else { " in PATH" }
                ))
                .hint("check the command's name, or give its full path")
                .code(127));
            }
            Destination::Exec {
                program: program.clone(),
                args: args.to_vec(),
                shown,
            }
        }
    };
    let file = backup_file(&a.file)?;
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let (mut stream, pending) = v.backup_open(&a.env, &a.file, &file, a.reason.as_deref(), &ctx)?;
    let id = stream.record().id.clone();
    match dest {
        Destination::Output(out @ Output::File(_)) => {
            // Checked in full before it is audited and published: a damaged backup leaves
            // nothing at the destination.
            let shown = out.shown();
            let mut w = out.into_stream();
            let copied = stream.copy_to(&mut w)?;
            if let Some(e) = copied.write_error {
                return Err(CliError::new(format!("cannot write {shown}: {e}")));
            }
            let r = stream.finish()?;
            v.backup_opened(pending, OpenTo::File, &ctx)?;
            w.finish()?;
            write_stdout(
                format!(
                    "wrote backup {} to {shown} (mode 0600): {}, {}\n",
                    named(&r),
                    size(r.contents.size),
                    what(&r)
                )
                .as_bytes(),
            )?;
            Ok(0)
        }
        Destination::Output(out) => {
            // The reader takes bytes as they come: audit first, then stream.
            v.backup_opened(pending, OpenTo::Stdout, &ctx)?;
            drop(v);
            let mut w = out.into_stream();
            let copied = stream
                .copy_to(&mut w)
                .map_err(|e| after_bytes(e, &id, "stdout"))?;
            if let Some(e) = copied.write_error {
                return Err(CliError::new(format!(
                    "cannot write to stdout after {} bytes: {e}",
                    copied.written
                )));
            }
            stream.finish().map_err(|e| after_bytes(e, &id, "stdout"))?;
            w.finish()?;
            Ok(0)
        }
        Destination::Exec {
            program,
            args,
            shown,
        } => {
            v.backup_opened(
                pending,
                OpenTo::Exec {
                    program: program_name(&shown),
                },
                &ctx,
            )?;
            // The lock is released before the program runs (it may take long, or call talvault).
            drop(v);
            let (code, copied) =
                crate::process::exec_with_stream(&program, &args, |w| stream.copy_to(w))
                    .map_err(|e| CliError::new(format!("cannot run {shown}: {e}")).code(127))?;
            let copied = copied.map_err(|e| after_bytes(e, &id, &shown))?;
            stream.finish().map_err(|e| after_bytes(e, &id, &shown))?;
            if copied.write_error.is_some() && code == 0 {
                write_stderr(
                    format!(
                        "note: {shown} stopped reading after {} of {} bytes; the rest was checked\n",
                        copied.written, copied.read
                    )
                    .as_bytes(),
                );
            }
            Ok(code)
        }
    }
}

/// A streamed backup that failed its checks after bytes had left: say so plainly.
fn after_bytes(e: crate::vault::VaultError, id: &str, to: &str) -> CliError {
    let e = CliError::from(e);
    CliError::new(format!(
        "{}; bytes of backup {id} had already gone to {to}",
        e.message
    ))
    .hint(format!(
        "discard whatever {to} made of them; fetch another copy of the backup, or use an older one"
    ))
}

fn program_name(shown: &str) -> String {
    Path::new(shown)
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `backup verify ENV FILE`
fn verify(env: &str, path: &Path, o: &VaultOpts) -> Result<u8, CliError> {
    let file = backup_file(path)?;
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let r = v.backup_verify(env, path, &file, &ctx)?;
    write_stdout(
        format!(
            "verified backup {} (sealed {} by {}): {}, {}\n",
            named(&r),
            r.created,
            r.actor,
            size(r.contents.size),
            what(&r)
        )
        .as_bytes(),
    )?;
    Ok(0)
}

fn list(env: &str, format: ListFormat, o: &VaultOpts) -> Result<u8, CliError> {
    let views = o.open_vault()?.backup_list(env)?;
    match format {
        ListFormat::Json => write_stdout(&json(&views)?)?,
        ListFormat::Text => write_stdout(list_text(env, &views).as_bytes())?,
    }
    Ok(0)
}

fn list_text(env: &str, views: &[BackupView]) -> String {
    let mut s = String::new();
    if views.is_empty() {
        let _ = writeln!(s, "{env}: no backups recorded");
        return s;
    }
    let _ = writeln!(s, "{env}: {} backup(s), newest first", views.len());
    for b in views {
        let _ = writeln!(
            s,
            "{}  {}  {:<13}  {:>10}  verified {}{}",
            b.id,
            b.created,
            b.format,
            size(b.size),
            b.verified.as_deref().unwrap_or("never"),
            b.label
                .as_deref()
                .map(|l| format!("  [{l}]"))
                .unwrap_or_default()
        );
        if let Some(l) = &b.location {
            let _ = writeln!(s, "    at {l}");
        }
        if b.sealed_to_removed + b.missing_current > 0 {
            let _ = writeln!(
                s,
                "    sealed to {} removed recipient(s), not to {} current one(s): `talvault backup reseal {env} FILE`",
                b.sealed_to_removed, b.missing_current
            );
        }
    }
    s
}

fn prune(env: &str, keep: usize, o: &VaultOpts) -> Result<u8, CliError> {
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let removed = v.backup_prune(env, keep, &ctx)?;
    let mut s = String::new();
    if removed.is_empty() {
        let _ = writeln!(
            s,
            "nothing to prune: {env} has {keep} or fewer backup records"
        );
    } else {
        let _ = writeln!(
            s,
            "removed {} backup record(s) of {env}, kept the {keep} newest; delete these files where the backups live:",
            removed.len()
        );
        for r in &removed {
            let _ = writeln!(
                s,
                "  {}  ({}, sealed {})",
                r.location.as_deref().unwrap_or("(location not recorded)"),
                r.id,
                r.created
            );
        }
    }
    write_stdout(s.as_bytes())?;
    Ok(0)
}

fn reseal(env: &str, path: &Path, o: &VaultOpts) -> Result<u8, CliError> {
    let file = backup_file(path)?;
    // The new file is written beside the old one and renamed over it once it checked out.
    let out = Output::secret(&path.display().to_string(), true)?;
    let v = o.open_vault()?;
    let ctx = o.context(Opens::Secrets)?;
    let (stream, pending) = v.backup_reseal(env, path, &file, out.into_stream(), &ctx)?;
    stream.finish()?;
    let r = v.backup_resealed(pending, &ctx)?;
    write_stdout(
        format!(
            "re-sealed backup {} in {} to {} recipient(s) and {} backup-only, with a fresh file key\n\
             note: copies of the old file elsewhere still open with the keys they were sealed to\n",
            named(&r),
            path.display(),
            r.sealed.recipients.len(),
            r.sealed.backup_only.len()
        )
        .as_bytes(),
    )?;
    Ok(0)
}
