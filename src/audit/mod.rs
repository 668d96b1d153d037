//! PURE: audit events as a hash-linked set of JSON files, their canonical form, and the
//! verification that detects edited, deleted and re-ordered events. It must not touch files,
//! the clock or the environment (time comes in as an argument; `store::audit_dir` does the I/O),
//! and events carry public data only.
//!
//! An event's id is the hex SHA-256 of its canonical form: the event without `id` as JSON with
//! object keys sorted (by UTF-8 bytes) and no whitespace. Each event lists the heads it saw as
//! `parents`, so editing or deleting any event that has a child breaks its child's link, and a
//! child dated before its parent betrays a re-ordering. After a git merge there are several
//! heads; the next event simply names them all. What no hash chain can detect alone: deleting or
//! editing (and re-hashing) the newest events, the heads. Anchor heads elsewhere (a signed tag,
//! a CI log) when that matters.

mod action;
mod mac;
mod summary;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub use action::{Action, Public};
pub use mac::{AuditKey, AuditKeys, EpochKey, Keyring, lane_may_record};

/// The lane marker an event MACed under a backup lane key carries (`"lane": "backup"` in its
/// hashed body).
pub const BACKUP_LANE: &str = "backup";
pub use summary::{
    ChainRevocation, ChainState, ChainTaint, EventFile, EventSummary, IssuerStep, causal_order,
    heads as heads_of,
};
pub use verify::{
    Authenticity, Problem, Report, Tamper, Verifier, VerifyInput, Warning, verify, verify_with,
};

/// Errors building or parsing one event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Not 64 lower-case hex digits.
    #[error("invalid event id {0:?}: expected 64 lower-case hex digits")]
    InvalidId(String),
    /// The time cannot be written as `YYYY-MM-DDTHH:MM:SSZ`.
    #[error("event time outside the years 0000-9999")]
    TimeOutOfRange,
    /// The JSON is not an event (syntax, missing or unknown field, bad time). Positions only.
    #[error("not an audit event: {0}")]
    Malformed(String),
    /// The id stored in the event is not the hash of its contents.
    #[error("event id {stated} does not match its contents (hash {computed})")]
    IdMismatch {
        /// The id written in the file.
        stated: String,
        /// The id its contents hash to.
        computed: EventId,
    },
}

/// An event id: hex SHA-256 of the event's canonical form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(String);

impl EventId {
    /// Checks that `s` is 64 lower-case hex digits.
    pub fn parse(s: &str) -> Result<Self, AuditError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(EventId(s.to_owned()))
        } else {
            Err(AuditError::InvalidId(s.chars().take(80).collect()))
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }

    fn of_canonical(canonical: &str) -> Self {
        EventId(crate::digest::sha256_hex(canonical.as_bytes()))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.short())
    }
}

/// What `new_event` needs besides the parents. Public data only: the caller must never put a
/// secret in `data` (serials, roles, TTLs, reasons and fingerprints are fine).
#[derive(Clone, Debug, PartialEq)]
pub struct EventBody {
    /// When it happened; stored in UTC with whole seconds.
    pub time: OffsetDateTime,
    /// Who did it (user or robot name).
    pub actor: String,
    /// The age recipient whose identity decrypted the key or bundle, if one was used.
    pub opened_by: Option<String>,
    /// The environment.
    pub env: String,
    /// What happened, e.g. `issue`, `bundle.export`, `break-glass`.
    pub action: String,
    /// Action-specific public details.
    pub data: Map<String, Value>,
    /// Format 2: what binds the event to its vault, its files and its key (`None`: format 1).
    pub seal: Option<Seal>,
}

/// What binds an event of format 2 to its vault, its files and its audit key. It is part of
/// the canonical form, so the id (and the MAC over the id) covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// The vault's id (`talvault.yaml`): an event copied from another vault names another.
    pub vault: String,
    /// The audit key epoch whose key MACs the event.
    pub epoch: u32,
    /// The content hash (hex SHA-256) of every file the command wrote, or `None` for a file it
    /// removed; paths relative to the environment directory, `/talvault.yaml` for the vault's.
    pub files: BTreeMap<String, Option<String>>,
    /// `Some("backup")` when the MAC is under a backup lane key (the epoch is then a lane
    /// epoch): trusted only for `backup.*` actions writing backup records
    /// ([`lane_may_record`]).
    pub lane: Option<String>,
    /// A main event that writes a new `backup-audit.age`: the lane epoch it makes current (lane
    /// events MACed under an older lane epoch after it are not genuine).
    pub lane_epoch: Option<u32>,
}

impl EventBody {
    /// The body of an event recording `action` (its name and typed, public data).
    pub fn new(
        time: OffsetDateTime,
        actor: &str,
        opened_by: Option<String>,
        env: &str,
        action: &Action,
    ) -> Result<Self, AuditError> {
        Ok(EventBody {
            time,
            actor: actor.to_owned(),
            opened_by,
            env: env.to_owned(),
            action: action.name().to_owned(),
            data: action.data()?,
            seal: None,
        })
    }
}

/// One audit event. Fields are read-only so the id cannot go stale; build with `new_event`, read
/// with `Event::from_json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    id: EventId,
    parents: Vec<EventId>,
    body: EventBody,
    /// Format 2: hex HMAC-SHA256 of the id under the environment's audit key.
    mac: Option<String>,
}

/// `YYYY-MM-DDTHH:MM:SSZ`: RFC 3339 §5.6 `date-time` in UTC, no fraction, so that one instant has
/// one spelling and the canonical form is unique.
fn format_time(t: OffsetDateTime) -> Result<String, AuditError> {
    if !(0..=9999).contains(&t.year()) {
        return Err(AuditError::TimeOutOfRange);
    }
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// Appends `value` in canonical form: sorted keys, no whitespace. serde_json writes strings and
/// numbers one way; sorting is done here so it does not depend on serde_json's map feature.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// A string or scalar as serde_json writes it compactly (what `Value`'s `Display` prints).
fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string or a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

fn canonical(value: &Value) -> String {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out);
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The event without `id`, as a JSON object.
fn body_value(parents: &[EventId], body: &EventBody) -> Result<Value, AuditError> {
    let mut m = Map::new();
    m.insert("action".into(), Value::String(body.action.clone()));
    m.insert("actor".into(), Value::String(body.actor.clone()));
    m.insert("data".into(), Value::Object(body.data.clone()));
    m.insert("env".into(), Value::String(body.env.clone()));
    m.insert(
        "opened_by".into(),
        body.opened_by.clone().map_or(Value::Null, Value::String),
    );
    m.insert(
        "parents".into(),
        Value::Array(parents.iter().map(|p| Value::String(p.0.clone())).collect()),
    );
    m.insert("time".into(), Value::String(format_time(body.time)?));
    if let Some(seal) = &body.seal {
        m.insert("v".into(), Value::from(2u32));
        m.insert("vault".into(), Value::String(seal.vault.clone()));
        m.insert("epoch".into(), Value::from(seal.epoch));
        if let Some(lane) = &seal.lane {
            m.insert("lane".into(), Value::String(lane.clone()));
        }
        if let Some(n) = seal.lane_epoch {
            m.insert("lane_epoch".into(), Value::from(n));
        }
        m.insert(
            "files".into(),
            Value::Object(
                seal.files
                    .iter()
                    .map(|(path, hash)| {
                        (
                            path.clone(),
                            hash.clone().map_or(Value::Null, Value::String),
                        )
                    })
                    .collect(),
            ),
        );
    }
    Ok(Value::Object(m))
}

/// Builds an event on top of `parents` (normally `heads` of the existing events). The time is
/// converted to UTC and truncated to whole seconds; parents are sorted and deduplicated, so the
/// id does not depend on the order heads were listed in.
pub fn new_event(parents: Vec<EventId>, mut body: EventBody) -> Result<Event, AuditError> {
    let utc = body.time.to_offset(UtcOffset::UTC);
    body.time = utc.replace_nanosecond(0).unwrap_or(utc);
    let parents: Vec<EventId> = parents
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id = EventId::of_canonical(&canonical(&body_value(&parents, &body)?));
    Ok(Event {
        id,
        parents,
        body,
        mac: None,
    })
}

/// The file shape, parsed strictly: an added field is an edit, not noise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    parents: Vec<String>,
    time: String,
    actor: String,
    opened_by: Option<String>,
    env: String,
    action: String,
    data: Map<String, Value>,
    // Format 2 only; all or none of them.
    v: Option<u32>,
    vault: Option<String>,
    epoch: Option<u32>,
    files: Option<BTreeMap<String, Option<String>>>,
    mac: Option<String>,
    // Format 2, backup lane (optional).
    lane: Option<String>,
    lane_epoch: Option<u32>,
}

impl Event {
    /// Format 2: the seal (vault, key epoch, files).
    pub fn seal(&self) -> Option<&Seal> {
        self.body.seal.as_ref()
    }

    /// Format 2: the MAC as written.
    pub fn mac(&self) -> Option<&str> {
        self.mac.as_deref()
    }

    /// The event with its MAC under `key` (format 2).
    pub fn with_mac(mut self, key: &AuditKey) -> Event {
        self.mac = Some(key.mac(&self.id));
        self
    }

    /// The id.
    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The heads this event was written on top of.
    pub fn parents(&self) -> &[EventId] {
        &self.parents
    }

    /// When it happened (UTC, whole seconds).
    pub fn time(&self) -> OffsetDateTime {
        self.body.time
    }

    /// Who did it.
    pub fn actor(&self) -> &str {
        &self.body.actor
    }

    /// The recipient whose identity opened the secret, if any.
    pub fn opened_by(&self) -> Option<&str> {
        self.body.opened_by.as_deref()
    }

    /// The environment.
    pub fn env(&self) -> &str {
        &self.body.env
    }

    /// What happened.
    pub fn action(&self) -> &str {
        &self.body.action
    }

    /// Action-specific public details.
    pub fn data(&self) -> &Map<String, Value> {
        &self.body.data
    }

    /// The path of this event's file below the audit directory:
    /// `<yyyy>/<mm>/<yyyymmddThhmmssZ>-<id>.json`, so a plain listing sorts by time.
    pub fn relative_path(&self) -> String {
        let t = self.body.time;
        format!(
            "{:04}/{:02}/{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}.json",
            t.year(),
            u8::from(t.month()),
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            self.id
        )
    }

    /// The canonical form the id is computed over.
    pub fn canonical_form(&self) -> String {
        // `new_event`/`from_json` already formatted this time successfully.
        body_value(&self.parents, &self.body)
            .map(|v| canonical(&v))
            .unwrap_or_default()
    }

    /// The file contents: the event with its id, pretty-printed with sorted keys (reviewable in
    /// a pull request), ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut value = body_value(&self.parents, &self.body).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut value {
            m.insert("id".into(), Value::String(self.id.0.clone()));
            if let Some(mac) = &self.mac {
                m.insert("mac".into(), Value::String(mac.clone()));
            }
        }
        let mut out = serde_json::to_vec_pretty(&value).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses an event file, accepting it only if its id matches its contents.
    pub fn from_json(bytes: &[u8]) -> Result<Event, AuditError> {
        let (event, stated) = parse_unchecked(bytes)?;
        if event.id.0 != stated {
            return Err(AuditError::IdMismatch {
                stated,
                computed: event.id,
            });
        }
        Ok(event)
    }
}

/// Parses the file and recomputes the id; returns the event (with the *computed* id) and the
/// id the file states.
fn parse_unchecked(bytes: &[u8]) -> Result<(Event, String), AuditError> {
    // serde_json's messages name a line and column, never the input.
    let raw: RawEvent =
        serde_json::from_slice(bytes).map_err(|e| AuditError::Malformed(e.to_string()))?;
    let time = OffsetDateTime::parse(&raw.time, &Rfc3339)
        .map_err(|_| AuditError::Malformed("time is not RFC 3339".into()))?;
    if format_time(time).ok().as_deref() != Some(raw.time.as_str()) {
        return Err(AuditError::Malformed(
            "time is not in the canonical form YYYY-MM-DDTHH:MM:SSZ".into(),
        ));
    }
    let parents = raw
        .parents
        .iter()
        .map(|p| EventId::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let seal = match (raw.v, raw.vault, raw.epoch, raw.files, &raw.mac) {
        (None, None, None, None, None) if raw.lane.is_none() && raw.lane_epoch.is_none() => None,
        (Some(2), Some(vault), Some(epoch), Some(files), Some(_)) => {
            if let Some(bad) = files
                .values()
                .flatten()
                .find(|h| EventId::parse(h).is_err())
            {
                return Err(AuditError::Malformed(format!(
                    "files: {:?} is not a SHA-256",
                    bad.chars().take(80).collect::<String>()
                )));
            }
            match (&raw.lane, raw.lane_epoch) {
                (Some(lane), _) if lane != BACKUP_LANE => {
                    return Err(AuditError::Malformed(format!(
                        "lane {:?} is not one this talvault knows",
                        lane.chars().take(40).collect::<String>()
                    )));
                }
                (Some(_), Some(_)) => {
                    return Err(AuditError::Malformed(
                        "a lane event does not rotate the lane".into(),
                    ));
                }
                _ => {}
            }
            Some(Seal {
                vault,
                epoch,
                files,
                lane: raw.lane.clone(),
                lane_epoch: raw.lane_epoch,
            })
        }
        (Some(v), ..) if v != 2 => {
            return Err(AuditError::Malformed(format!(
                "event format {v} is not one this talvault reads"
            )));
        }
        _ => {
            return Err(AuditError::Malformed(
                "v, vault, epoch, files and mac go together".into(),
            ));
        }
    };
    let body = EventBody {
        time,
        actor: raw.actor,
        opened_by: raw.opened_by,
        env: raw.env,
        action: raw.action,
        data: raw.data,
        seal,
    };
    // Parents are kept as written (not re-sorted): reordering them is an edit.
    let id = EventId::of_canonical(&canonical(&body_value(&parents, &body)?));
    Ok((
        Event {
            id,
            parents,
            body,
            mac: raw.mac,
        },
        raw.id,
    ))
}

/// The events no other event lists as a parent: what the next event should name as parents.
/// Sorted; several after a merge, none for an empty log.
pub fn heads(events: &[Event]) -> Vec<EventId> {
    let referenced: BTreeSet<&EventId> = events.iter().flat_map(|e| e.parents.iter()).collect();
    let mut out: Vec<EventId> = events
        .iter()
        .map(|e| &e.id)
        .filter(|id| !referenced.contains(id))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}
