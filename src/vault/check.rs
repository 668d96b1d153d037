//! `env check --machine-config`: the recovery drill's half that needs no cluster. Reads a
//! control-plane machine config (v1alpha1 or the 1.14 multi-document form, through
//! `bundle::import`), opens the environment's bundle, and compares every CA and secret by
//! SHA-256 (`bundle::compare`). Reports field names and states, certificate fingerprints, never
//! a value; the use of the bundle is audited like any other.

use serde::Serialize;

use super::{Context, Vault, VaultError};
use crate::audit::Action;
use crate::bundle::compare::{self, FieldState};
use crate::bundle::import;
use crate::secret::SecretBytes;
use crate::store::txn::Transaction;

/// One compared field, for people and JSON.
#[derive(Debug, Clone, Serialize)]
pub struct FieldCheck {
    /// Its name in secrets.yaml.
    pub field: &'static str,
    /// `match`, `differs`, `missing in the machine config` or `missing in the bundle`.
    pub result: &'static str,
    /// For certificates: the bundle's fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_fingerprint: Option<String>,
    /// For certificates: the machine config's fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_fingerprint: Option<String>,
}

/// The result of `env check`.
#[derive(Debug, Clone, Serialize)]
pub struct MachineCheck {
    /// The environment.
    pub env: String,
    /// Whether every field matched.
    pub matches: bool,
    /// Every field compared, in secrets.yaml order.
    pub fields: Vec<FieldCheck>,
}

impl Vault {
    /// `env check ENV --machine-config FILE`: compares the config's CAs and secrets with the
    /// environment's bundle and records the check (with the names of the fields that differ).
    pub fn env_check(
        &self,
        env: &str,
        machine_config: &SecretBytes,
        ctx: &Context,
    ) -> Result<MachineCheck, VaultError> {
        let env = self.env(env)?;
        let theirs = import::from_controlplane_config(machine_config.expose())
            .map_err(|e| VaultError::BadMachineConfig(e.to_string()))?;
        let (_, ours, opened_by) = self.open_bundle(&env, ctx)?;
        let fields = compare::compare(&ours, &theirs);
        let matches = fields.iter().all(|f| f.state == FieldState::Match);
        let action = Action::EnvCheck {
            matches,
            checked: fields.iter().map(|f| f.name.to_owned()).collect(),
            mismatched: fields
                .iter()
                .filter(|f| f.state != FieldState::Match)
                .map(|f| f.name.to_owned())
                .collect(),
        };
        let mut t = Transaction::new(&self.root);
        self.stage_event(&mut t, &env, ctx, Some(&opened_by), &action)?;
        self.commit(t)?;
        let fields = fields
            .into_iter()
            .map(|f| {
                let (bundle_fingerprint, config_fingerprint) = match f.fingerprints {
                    Some((a, b)) => (a.map(|f| f.0), b.map(|f| f.0)),
                    None => (None, None),
                };
                FieldCheck {
                    field: f.name,
                    result: f.state.as_str(),
                    bundle_fingerprint,
                    config_fingerprint,
                }
            })
            .collect();
        Ok(MachineCheck {
            env: env.as_str().into(),
            matches,
            fields,
        })
    }
}
