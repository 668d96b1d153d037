//! EDGE: `talvault open`, the holder's side of a sealed delivery: read the age file, decrypt it
//! with the holder's own identity and check it is a talosconfig or kubeconfig of one context
//! (one service call), then write it as a new 0600 file or merge it into an existing
//! talosconfig or kubeconfig (never renamed). It needs no vault.

use std::path::PathBuf;

use clap::Args;

use super::error::CliError;
use super::input::read_input;
use super::opts::{Opens, VaultOpts};
use super::output::{KubeconfigOutput, TalosconfigOutput, write_stderr, write_stdout};
use super::render::printable;
use crate::vault::{Opened, OpenedDelivery, open_delivery};

/// `talvault open`
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The sealed talosconfig (`issue --seal`, `renew`) or kubeconfig (`kubeconfig --seal`),
    /// armored or binary.
    pub file: PathBuf,
    /// Write a new file here (mode 0600; `-` for stdout when it is not a terminal; default:
    /// ./talosconfig or ./kubeconfig).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "merge"
    )]
    pub output: Option<String>,
    /// Add the context to this existing talosconfig (e.g. ~/.talos/config) or kubeconfig (e.g.
    /// ~/.kube/config) and make it current.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// With --merge: replace a context (kubeconfig: cluster, user or context) of the same name
    /// (never renamed).
    #[arg(long, requires = "merge")]
    pub replace: bool,
    /// With -o: overwrite an existing file.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `talvault open`
pub fn open(a: OpenArgs, o: &VaultOpts) -> Result<u8, CliError> {
    let sealed = read_input(&a.file, "sealed delivery")?;
    let ctx = o.context(Opens::Given)?;
    let OpenedDelivery { opened, opened_by } = open_delivery(&a.file, &sealed, &ctx.identities)?;
    let (kind, name, to_stdout, written) = match opened {
        Opened::Talosconfig { name, context } => {
            let out = TalosconfigOutput::open(
                a.output.as_deref(),
                a.merge.as_deref(),
                &name,
                a.replace,
                a.force,
            )?;
            let to_stdout = out.is_stdout();
            let written = out.write(&name, context)?;
            ("talosconfig", name, to_stdout, written)
        }
        Opened::Kubeconfig(entry) => {
            let out = KubeconfigOutput::open(
                a.output.as_deref(),
                a.merge.as_deref(),
                &entry.names(),
                a.replace,
                a.force,
            )?;
            let to_stdout = out.is_stdout();
            let written = out.write(&entry)?;
            ("kubeconfig", entry.context.clone(), to_stdout, written)
        }
    };
    let msg = format!(
        "opened {} with {}: {kind} context {:?} written to {written}\n",
        a.file.display(),
        printable(&opened_by),
        printable(&name)
    );
    if to_stdout {
        write_stderr(msg.as_bytes());
    } else {
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}
