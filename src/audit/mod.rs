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
mod verify;

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub use action::{Action, Public};
pub use verify::{Problem, Report, Tamper, verify};

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
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
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
    Ok(Event { id, parents, body })
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
}

impl Event {
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
    let body = EventBody {
        time,
        actor: raw.actor,
        opened_by: raw.opened_by,
        env: raw.env,
        action: raw.action,
        data: raw.data,
    };
    // Parents are kept as written (not re-sorted): reordering them is an edit.
    let id = EventId::of_canonical(&canonical(&body_value(&parents, &body)?));
    Ok((Event { id, parents, body }, raw.id))
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

/// The id and parents an event file states, read without checking anything else: enough to
/// find the heads for the next event, at a fraction of the cost of [`Event::from_json`] (which
/// recomputes the canonical form and its hash). Verification is `verify`'s job, not this.
pub fn stated_links(bytes: &[u8]) -> Option<(EventId, Vec<EventId>)> {
    #[derive(Deserialize)]
    struct Links {
        id: String,
        parents: Vec<String>,
    }
    let links: Links = serde_json::from_slice(bytes).ok()?;
    let id = EventId::parse(&links.id).ok()?;
    let parents = links
        .parents
        .iter()
        .map(|p| EventId::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((id, parents))
}

/// What one file in an audit month directory states: an event's id and parents, or nothing (a
/// file that is not an event; `verify` reports it). One line in the record cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatedLinks(pub Option<(EventId, Vec<EventId>)>);

impl StatedLinks {
    /// Reads a file's links ([`stated_links`]).
    pub fn read(bytes: &[u8]) -> Self {
        StatedLinks(stated_links(bytes))
    }

    /// `ID PARENT…`, or `-` for a file that is not an event.
    pub fn to_line(&self) -> String {
        match &self.0 {
            None => "-".to_owned(),
            Some((id, parents)) => {
                let mut line = id.as_str().to_owned();
                for p in parents {
                    line.push(' ');
                    line.push_str(p.as_str());
                }
                line
            }
        }
    }

    /// The inverse of [`StatedLinks::to_line`]; `None` for anything else.
    pub fn from_line(line: &str) -> Option<Self> {
        if line == "-" {
            return Some(StatedLinks(None));
        }
        let mut ids = line.split(' ').map(|s| EventId::parse(s).ok());
        let id = ids.next()??;
        let parents = ids.collect::<Option<Vec<_>>>()?;
        Some(StatedLinks(Some((id, parents))))
    }
}

/// [`heads`] from stated links (see [`stated_links`]).
pub fn heads_of_links(links: &[(EventId, Vec<EventId>)]) -> Vec<EventId> {
    let referenced: BTreeSet<&EventId> = links.iter().flat_map(|(_, p)| p.iter()).collect();
    let mut out: Vec<EventId> = links
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !referenced.contains(id))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod links_tests {
    use super::*;

    #[test]
    fn stated_links_cache_lines_round_trip_and_refuse_junk() {
        let a = EventId::parse(&"a".repeat(64)).unwrap();
        let b = EventId::parse(&"b".repeat(64)).unwrap();
        for links in [
            StatedLinks(None),
            StatedLinks(Some((a.clone(), vec![]))),
            StatedLinks(Some((a.clone(), vec![b.clone(), a.clone()]))),
        ] {
            assert_eq!(StatedLinks::from_line(&links.to_line()), Some(links));
        }
        let bad_parent = format!("{} {}", "a".repeat(64), "B".repeat(64));
        for junk in ["", " ", "x", "-x", bad_parent.as_str()] {
            assert_eq!(StatedLinks::from_line(junk), None, "{junk:?}");
        }
        assert_eq!(StatedLinks::read(b"not json"), StatedLinks(None));
    }

    #[test]
    fn stated_links_give_the_same_heads() {
        let body = |action: &str| EventBody {
            time: OffsetDateTime::UNIX_EPOCH,
            actor: "a".into(),
            opened_by: None,
            env: "e".into(),
            action: action.into(),
            data: Map::new(),
        };
        let a = new_event(vec![], body("a")).unwrap();
        let b = new_event(vec![a.id().clone()], body("b")).unwrap();
        let c = new_event(vec![a.id().clone()], body("c")).unwrap();
        let events = vec![a, b, c];
        let links: Vec<_> = events
            .iter()
            .map(|e| stated_links(&e.to_json()).unwrap())
            .collect();
        assert_eq!(heads_of_links(&links), heads(&events));
        assert_eq!(heads(&events).len(), 2);
        assert!(stated_links(b"{}").is_none());
    }
}
