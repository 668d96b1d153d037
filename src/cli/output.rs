//! EDGE: where secret output goes: a new file with mode 0600 (through the one atomic write
//! path), or stdout when it is not a terminal. Refuses to overwrite without `--force` and to
//! print secrets to a terminal.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use super::CliError;
use crate::store::{Mode, write_atomic};

/// Checks that secret output may go to `target` (`-` = stdout), before any work is done.
pub fn check_secret_destination(target: &str, force: bool) -> Result<(), CliError> {
    if target == "-" {
        if std::io::stdout().is_terminal() {
            return Err(CliError::new("refusing to print secrets to a terminal")
                .hint("redirect stdout (`> secrets.yaml`, `| age -r …`) or use -o FILE"));
        }
        return Ok(());
    }
    if !force && Path::new(target).symlink_metadata().is_ok() {
        // talosctl: `file "<path>" already exists, use --force to overwrite`.
        return Err(CliError::new(format!("file {target:?} already exists"))
            .hint("use --force to overwrite"));
    }
    Ok(())
}

/// Writes secret bytes to `target` (`-` = stdout) with talosctl's rules for `gen secrets`.
pub fn write_secret_output(target: &str, bytes: &[u8], force: bool) -> Result<(), CliError> {
    check_secret_destination(target, force)?;
    if target == "-" {
        let mut lock = std::io::stdout().lock();
        return lock
            .write_all(bytes)
            .and_then(|()| lock.flush())
            .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")));
    }
    write_atomic(Path::new(target), bytes, Mode::Secret)
        .map_err(|e| CliError::new(format!("cannot write {target:?}: {e}")))
}
