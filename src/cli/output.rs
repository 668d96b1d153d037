//! EDGE: where secret output goes: a new file with mode 0600, or stdout when it is not a
//! terminal. Refuses to overwrite without `--force` and to print secrets to a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::CliError;

/// Writes secret bytes to `target` (`-` = stdout) with talosctl's rules for `gen secrets`.
pub fn write_secret_output(target: &str, bytes: &[u8], force: bool) -> Result<(), CliError> {
    if target == "-" {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            return Err(CliError::new("refusing to print secrets to a terminal")
                .hint("redirect stdout (`> secrets.yaml`, `| age -r ...`) or use -o FILE"));
        }
        let mut lock = stdout.lock();
        return lock
            .write_all(bytes)
            .and_then(|()| lock.flush())
            .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")));
    }
    let path = Path::new(target);
    if !force && path.symlink_metadata().is_ok() {
        // talosctl: `file "<path>" already exists, use --force to overwrite`.
        return Err(CliError::new(format!("file {target:?} already exists"))
            .hint("use --force to overwrite"));
    }
    write_file_0600(path, bytes).map_err(|e| CliError::new(format!("cannot write {target:?}: {e}")))
}

/// Writes through a temporary file in the same directory (mode 0600), fsync, rename, fsync the
/// directory, so a crash never leaves a half-written secrets file.
fn write_file_0600(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
