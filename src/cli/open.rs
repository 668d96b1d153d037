//! EDGE: `talvault open`, the holder's side of a sealed delivery: read the age file, decrypt it
//! with the holder's own identity and check it is a talosconfig (one service call), then write
//! it as a new 0600 file or merge its context into an existing talosconfig (never renamed). It
//! needs no vault.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;
use super::input::read_input;
use super::opts::{Opens, VaultOpts};
use super::output::{TalosconfigOutput, write_stderr, write_stdout};
use super::render::printable;
use crate::vault::open_delivery;

/// `talvault open`
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The sealed talosconfig (`issue --seal`, `renew`), armored or binary.
    pub file: PathBuf,
    /// Write a new talosconfig here (mode 0600; `-` for stdout when it is not a terminal;
    /// default: ./talosconfig).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "merge"
    )]
    pub output: Option<String>,
    /// Add the context to this existing talosconfig (e.g. ~/.talos/config) and make it current.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// With --merge: replace a context of the same name (never renamed).
    #[arg(long, requires = "merge")]
    pub replace: bool,
    /// With -o: overwrite an existing file.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `talvault open`
pub fn open(a: OpenArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let sealed = read_input(&a.file, "sealed talosconfig")?;
    let ctx = o.context(Opens::Given)?;
    let opened = open_delivery(&a.file, &sealed, &ctx.identities)?;
    let out = TalosconfigOutput::open(
        a.output.as_deref(),
        a.merge.as_deref(),
        &opened.name,
        a.replace,
        a.force,
    )?;
    let to_stdout = out.is_stdout();
    let name = opened.name.clone();
    let written = out.write(&opened.name, opened.context)?;
    let msg = format!(
        "opened {} with {}: talosconfig context {:?} written to {written}\n",
        a.file.display(),
        printable(&opened.opened_by),
        printable(&name)
    );
    if to_stdout {
        write_stderr(msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}
