//! PURE: what `audit verify` finds: problems (each with the class of tampering it indicates)
//! and warnings, and how they read.

use super::*;

/// The class of tampering a problem indicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Contents changed after the id was computed (or a file is not an event at all).
    Edited,
    /// An event or a file was removed.
    Deleted,
    /// Order changed: a child dated well before its parent, or a file name that does not match
    /// its time and id.
    Reordered,
    /// Made by someone without the audit key, or copied from elsewhere: a wrong MAC, a foreign
    /// vault or environment, a retired key, a file no event accounts for.
    Forged,
}

/// One finding of `verify`. Paths of events are relative to the audit directory; paths of
/// other files to the environment directory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not a valid event.
    Malformed {
        /// The file.
        path: String,
        /// What is wrong (no contents).
        reason: String,
    },
    /// The contents do not hash to the id the file states.
    Edited {
        /// The file.
        path: String,
        /// The id written in the file.
        stated: String,
        /// The id its contents hash to.
        computed: EventId,
    },
    /// Events name a parent that no file holds.
    MissingParent {
        /// The missing event.
        parent: EventId,
        /// Files of the events that name it.
        children: Vec<String>,
    },
    /// An event is dated before one of its parents by more than the clock tolerance.
    OlderThanParent {
        /// The child's file.
        path: String,
        /// The parent's file.
        parent_path: String,
    },
    /// The file name is not `<yyyy>/<mm>/<time>-<id>.json` for the event's own time and id.
    NameMismatch {
        /// The file.
        path: String,
        /// The name it should have.
        expected: String,
    },
    /// Two files state the same id.
    DuplicateId {
        /// The id.
        id: String,
        /// The files.
        paths: Vec<String>,
    },
    /// The event names another vault or environment (copied from there).
    Foreign {
        /// The file.
        path: String,
        /// What it names.
        names: String,
    },
    /// The MAC does not verify under the audit key of its epoch.
    BadMac {
        /// The file.
        path: String,
    },
    /// The event names an audit key epoch the environment's key file lacks.
    UnknownEpoch {
        /// The file.
        path: String,
        /// The epoch.
        epoch: u32,
    },
    /// The event uses an older key than one of its ancestors (a key retired by a recipients
    /// change, which a removed recipient still knows).
    RetiredKey {
        /// The file.
        path: String,
        /// Its epoch.
        epoch: u32,
        /// The newest epoch among its ancestors.
        newest: u32,
    },
    /// An event MACed under the backup lane key that records more than a backup (an issuer,
    /// the policy, recipients, or a file other than a backup record): a backup-only key
    /// cannot vouch for it.
    LaneOverreach {
        /// The file.
        path: String,
        /// Its action.
        action: String,
    },
    /// A format-1 (unauthenticated) event after the environment moved to format 2.
    Unsealed {
        /// The file.
        path: String,
    },
    /// The audit key file was not sealed together with this environment's bundle.
    ForeignKeyFile,
    /// The backup lane key file was not sealed together with this environment's bundle.
    ForeignLaneKeyFile,
    /// A file the chain says exists is gone.
    FileMissing {
        /// The file.
        file: String,
        /// The event that wrote it last.
        event: EventId,
    },
    /// A file differs from what its last writing event names.
    FileChanged {
        /// The file.
        file: String,
        /// The event that wrote it last.
        event: EventId,
    },
    /// A file no event accounts for.
    FileUnaccounted {
        /// The file.
        file: String,
    },
}

impl Problem {
    /// What kind of tampering this indicates.
    pub fn tamper(&self) -> Tamper {
        match self {
            Problem::Malformed { .. }
            | Problem::Edited { .. }
            | Problem::DuplicateId { .. }
            | Problem::FileChanged { .. } => Tamper::Edited,
            Problem::MissingParent { .. } | Problem::FileMissing { .. } => Tamper::Deleted,
            Problem::OlderThanParent { .. } | Problem::NameMismatch { .. } => Tamper::Reordered,
            Problem::Foreign { .. }
            | Problem::BadMac { .. }
            | Problem::UnknownEpoch { .. }
            | Problem::RetiredKey { .. }
            | Problem::LaneOverreach { .. }
            | Problem::Unsealed { .. }
            | Problem::ForeignKeyFile
            | Problem::ForeignLaneKeyFile
            | Problem::FileUnaccounted { .. } => Tamper::Forged,
        }
    }

    pub(super) fn sort_key(&self) -> String {
        match self {
            Problem::Malformed { path, .. }
            | Problem::Edited { path, .. }
            | Problem::OlderThanParent { path, .. }
            | Problem::NameMismatch { path, .. }
            | Problem::Foreign { path, .. }
            | Problem::BadMac { path }
            | Problem::UnknownEpoch { path, .. }
            | Problem::RetiredKey { path, .. }
            | Problem::LaneOverreach { path, .. }
            | Problem::Unsealed { path } => path.clone(),
            Problem::MissingParent { children, .. } => {
                children.first().cloned().unwrap_or_default()
            }
            Problem::DuplicateId { paths, .. } => paths.first().cloned().unwrap_or_default(),
            Problem::ForeignKeyFile | Problem::ForeignLaneKeyFile => "~".into(),
            Problem::FileMissing { file, .. }
            | Problem::FileChanged { file, .. }
            | Problem::FileUnaccounted { file } => format!("~{file}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { path, reason } => {
                write!(f, "{path}: not an audit event: {reason}")
            }
            Problem::Edited {
                path,
                stated,
                computed,
            } => write!(
                f,
                "{path}: edited: its contents hash to {} but it claims id {}",
                computed.short(),
                stated.chars().take(12).collect::<String>()
            ),
            Problem::MissingParent { parent, children } => write!(
                f,
                "event {} is missing (deleted?); named as parent by {}",
                parent.short(),
                children.join(", ")
            ),
            Problem::OlderThanParent { path, parent_path } => {
                write!(
                    f,
                    "{path}: re-ordered: dated before its parent {parent_path} by more than the clock tolerance"
                )
            }
            Problem::NameMismatch { path, expected } => {
                write!(f, "{path}: renamed or re-dated: expected {expected}")
            }
            Problem::DuplicateId { id, paths } => write!(
                f,
                "event {} appears in several files: {}",
                id.chars().take(12).collect::<String>(),
                paths.join(", ")
            ),
            Problem::Foreign { path, names } => {
                write!(f, "{path}: copied from elsewhere: it names {names}")
            }
            Problem::BadMac { path } => {
                write!(
                    f,
                    "{path}: forged: its MAC does not verify under the audit key"
                )
            }
            Problem::UnknownEpoch { path, epoch } => {
                write!(f, "{path}: forged: audit key epoch {epoch} does not exist")
            }
            Problem::RetiredKey {
                path,
                epoch,
                newest,
            } => write!(
                f,
                "{path}: MACed with audit key epoch {epoch}, retired by epoch {newest} before it (a removed recipient's key?)"
            ),
            Problem::LaneOverreach { path, action } => write!(
                f,
                "{path}: forged: MACed under the backup lane key, which records backups only, yet it is {action:?} or writes other files"
            ),
            Problem::Unsealed { path } => write!(
                f,
                "{path}: an event without seal or MAC (format 1) that no sealed event descends from: written after the environment moved to format 2, so not by talvault"
            ),
            Problem::ForeignKeyFile => {
                f.write_str("audit.age was not sealed with this environment's bundle (replaced?)")
            }
            Problem::ForeignLaneKeyFile => f.write_str(
                "backup-audit.age was not sealed with this environment's bundle (replaced?)",
            ),
            Problem::FileMissing { file, event } => {
                write!(
                    f,
                    "{file}: missing; last written by event {}",
                    event.short()
                )
            }
            Problem::FileChanged { file, event } => {
                write!(f, "{file}: changed since event {} wrote it", event.short())
            }
            Problem::FileUnaccounted { file } => {
                write!(f, "{file}: no event accounts for it (planted?)")
            }
        }
    }
}

/// Something worth saying that is not tampering.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// An event dated before its parent, within the clock tolerance (another machine's clock).
    ClockSkew {
        /// The child's file.
        path: String,
        /// The parent's file.
        parent_path: String,
        /// By how many seconds.
        seconds: i64,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ClockSkew {
                path,
                parent_path,
                seconds,
            } => write!(
                f,
                "{path}: dated {seconds} s before its parent {parent_path} (clocks differ; within the tolerance)"
            ),
        }
    }
}
