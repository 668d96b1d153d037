//! An environment's bundle leaving the vault: `bundle export` (the plaintext for a file or a
//! pipe) and `bundle exec` (the plaintext for a child process). Each use is audited before the
//! plaintext is handed over.

use std::path::Path;

use super::{Context, Vault, VaultError};
use crate::audit::Action;
use crate::secret::SecretBytes;
use crate::store::txn::Transaction;

/// Where an exported bundle goes, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTo {
    /// Standard output.
    Stdout,
    /// A file.
    File,
}

impl Vault {
    /// `bundle export`: the plaintext secrets.yaml, recorded in the audit trail first.
    pub fn bundle_export(
        &self,
        env: &str,
        to: ExportTo,
        ctx: &Context,
    ) -> Result<SecretBytes, VaultError> {
        let env = self.env_for(env, ctx)?;
        let (plain, _, opened_by) = self.open_bundle(&env, ctx)?;
        let mut t = Transaction::new(&self.root);
        let destination = match to {
            ExportTo::Stdout => "stdout",
            ExportTo::File => "file",
        };
        let action = Action::BundleExport {
            destination: destination.into(),
        };
        self.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        self.commit(t)?;
        Ok(plain)
    }

    /// `bundle exec`: the plaintext for a child process, recorded in the audit trail first. The
    /// vault is consumed, so its lock is released before the child runs (which may take long
    /// or call talvault itself).
    pub fn bundle_for_exec(
        self,
        env: &str,
        program: &str,
        ctx: &Context,
    ) -> Result<SecretBytes, VaultError> {
        let env = self.env_for(env, ctx)?;
        let (plain, _, opened_by) = self.open_bundle(&env, ctx)?;
        let mut t = Transaction::new(&self.root);
        // Only the program name: its arguments are the user's and could hold anything.
        let program = Path::new(program)
            .file_name()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.stage_event(
            &mut t,
            &env,
            ctx,
            Some(&opened_by),
            &Action::BundleExec { program },
        )?;
        self.commit(t)?;
        Ok(plain)
    }
}
