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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

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
        // SHA-256 through ring, the one SHA-256 of the workspace.
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        EventId(crate::hex::encode(digest.as_ref()))
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

/// The class of tampering a problem indicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Contents changed after the id was computed (or a file is not an event at all).
    Edited,
    /// An event was removed.
    Deleted,
    /// Order changed: a child dated before its parent, or a file name that does not match its
    /// time and id.
    Reordered,
}

/// One finding of `verify`. Paths are relative to the audit directory.
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
    /// An event is dated before one of its parents.
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
}

impl Problem {
    /// What kind of tampering this indicates.
    pub fn tamper(&self) -> Tamper {
        match self {
            Problem::Malformed { .. } | Problem::Edited { .. } | Problem::DuplicateId { .. } => {
                Tamper::Edited
            }
            Problem::MissingParent { .. } => Tamper::Deleted,
            Problem::OlderThanParent { .. } | Problem::NameMismatch { .. } => Tamper::Reordered,
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
                    "{path}: re-ordered: dated before its parent {parent_path}"
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
        }
    }
}

/// The result of `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Files that parsed as events.
    pub events: usize,
    /// Current heads (more than one after a merge; that is fine).
    pub heads: Vec<EventId>,
    /// Findings, sorted by file; empty when the log is intact.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a set of event files given as (path relative to the audit directory, contents):
/// recomputes every id, checks each file name against the event's time and id, checks that
/// every parent exists and is not younger than its child.
pub fn verify(files: &[(String, Vec<u8>)]) -> Report {
    let mut problems = Vec::new();
    // Keyed by the *stated* id: children link to what the file claims, so one edited event is
    // reported once (as edited) rather than also as a missing parent.
    let mut by_id: BTreeMap<String, Vec<(&str, Event)>> = BTreeMap::new();
    // Ids of files that exist but do not parse: reported as malformed, not again as missing.
    let mut unreadable: BTreeSet<String> = BTreeSet::new();
    for (path, bytes) in files {
        let (event, stated) = match parse_unchecked(bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(bytes)
                    && let Some(Value::String(id)) = m.get("id")
                {
                    unreadable.insert(id.clone());
                }
                problems.push(Problem::Malformed {
                    path: path.clone(),
                    reason: match e {
                        AuditError::Malformed(reason) => reason,
                        other => other.to_string(),
                    },
                });
                continue;
            }
        };
        if event.id.0 != stated {
            problems.push(Problem::Edited {
                path: path.clone(),
                stated: stated.clone(),
                computed: event.id.clone(),
            });
        }
        let as_stated = Event {
            id: EventId(stated.clone()),
            ..event
        };
        let expected = as_stated.relative_path();
        if *path != expected {
            problems.push(Problem::NameMismatch {
                path: path.clone(),
                expected,
            });
        }
        by_id.entry(stated).or_default().push((path, as_stated));
    }

    let mut missing: BTreeMap<EventId, Vec<String>> = BTreeMap::new();
    for (id, copies) in &by_id {
        if copies.len() > 1 {
            problems.push(Problem::DuplicateId {
                id: id.clone(),
                paths: copies.iter().map(|(p, _)| (*p).to_owned()).collect(),
            });
        }
        for (path, event) in copies {
            for parent in &event.parents {
                match by_id.get(&parent.0).and_then(|c| c.first()) {
                    None if unreadable.contains(&parent.0) => {}
                    None => missing
                        .entry(parent.clone())
                        .or_default()
                        .push((*path).to_owned()),
                    Some((parent_path, parent_event)) if event.time() < parent_event.time() => {
                        problems.push(Problem::OlderThanParent {
                            path: (*path).to_owned(),
                            parent_path: (*parent_path).to_owned(),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for (parent, mut children) in missing {
        children.sort();
        problems.push(Problem::MissingParent { parent, children });
    }

    let events: Vec<Event> = by_id
        .into_values()
        .flat_map(|copies| copies.into_iter().map(|(_, e)| e))
        .collect();
    problems.sort_by_key(|p| match p {
        Problem::Malformed { path, .. }
        | Problem::Edited { path, .. }
        | Problem::OlderThanParent { path, .. }
        | Problem::NameMismatch { path, .. } => path.clone(),
        Problem::MissingParent { children, .. } => children.first().cloned().unwrap_or_default(),
        Problem::DuplicateId { paths, .. } => paths.first().cloned().unwrap_or_default(),
    });
    Report {
        events: events.len(),
        heads: heads(&events),
        problems,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn body(time: OffsetDateTime, action: &str) -> EventBody {
        let mut data = Map::new();
        data.insert("serial".into(), Value::String("0a1b".into()));
        EventBody {
            time,
            actor: "alice".into(),
            opened_by: Some("age1example".into()),
            env: "prod".into(),
            action: action.into(),
            data,
        }
    }

    fn file(e: &Event) -> (String, Vec<u8>) {
        (e.relative_path(), e.to_json())
    }

    /// a <- b <- c, then two branches d1, d2 on c (two clones), merged by e.
    fn history() -> Vec<Event> {
        let a = new_event(
            vec![],
            body(datetime!(2026-05-01 10:00:00 UTC), "env.create"),
        )
        .unwrap();
        let b = new_event(
            vec![a.id.clone()],
            body(datetime!(2026-05-01 11:00:00 UTC), "issue"),
        )
        .unwrap();
        let c = new_event(
            vec![b.id.clone()],
            body(datetime!(2026-05-02 09:00:00 UTC), "issue"),
        )
        .unwrap();
        let d1 = new_event(
            heads(&[a.clone(), b.clone(), c.clone()]),
            body(datetime!(2026-05-03 08:00:00 UTC), "revoke"),
        )
        .unwrap();
        let d2 = new_event(
            vec![c.id.clone()],
            body(datetime!(2026-06-01 00:00:00 UTC), "bundle.export"),
        )
        .unwrap();
        let all = [a.clone(), b.clone(), c.clone(), d1.clone(), d2.clone()];
        let merge_heads = heads(&all);
        assert_eq!(merge_heads.len(), 2);
        let e = new_event(
            merge_heads,
            body(datetime!(2026-06-02 00:00:00 UTC), "issue"),
        )
        .unwrap();
        vec![a, b, c, d1, d2, e]
    }

    fn files(events: &[Event]) -> Vec<(String, Vec<u8>)> {
        events.iter().map(file).collect()
    }

    fn tampers(report: &Report) -> Vec<Tamper> {
        report.problems.iter().map(Problem::tamper).collect()
    }

    #[test]
    fn canonical_form_and_id_are_pinned() {
        let mut data = Map::new();
        data.insert("ttl".into(), Value::from(3600));
        data.insert("reason".into(), Value::from("INC-1"));
        let event = new_event(
            vec![],
            EventBody {
                // Not UTC and with a fraction: stored as UTC whole seconds.
                time: datetime!(2026-05-04 05:02:01.75 +02:00),
                actor: "alice".into(),
                opened_by: Some("age1xyz".into()),
                env: "prod".into(),
                action: "bundle.export".into(),
                data,
            },
        )
        .unwrap();
        let expected = r#"{"action":"bundle.export","actor":"alice","data":{"reason":"INC-1","ttl":3600},"env":"prod","opened_by":"age1xyz","parents":[],"time":"2026-05-04T03:02:01Z"}"#;
        assert_eq!(event.canonical_form(), expected);
        // sha256 of `expected`, computed independently (Python hashlib).
        assert_eq!(
            event.id().as_str(),
            "33f63b3acbf587f277b41d844e443e0a3459a032a6035873b530a3c6f7e01573"
        );
        assert_eq!(
            event.relative_path(),
            "2026/05/20260504T030201Z-33f63b3acbf587f277b41d844e443e0a3459a032a6035873b530a3c6f7e01573.json"
        );
        let parsed = Event::from_json(&event.to_json()).unwrap();
        assert_eq!(parsed, event);
    }

    #[test]
    fn parents_are_order_independent() {
        let h = history();
        let x = new_event(
            vec![h[3].id.clone(), h[4].id.clone()],
            body(datetime!(2026-07-01 0:00 UTC), "x"),
        )
        .unwrap();
        let y = new_event(
            vec![h[4].id.clone(), h[3].id.clone(), h[4].id.clone()],
            body(datetime!(2026-07-01 0:00 UTC), "x"),
        )
        .unwrap();
        assert_eq!(x.id(), y.id());
        assert_eq!(x.parents().len(), 2);
    }

    #[test]
    fn intact_history_with_a_merge_verifies() {
        let h = history();
        let report = verify(&files(&h));
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.events, 6);
        assert_eq!(report.heads, vec![h[5].id.clone()]);
        // Before the merge event, two heads are fine too.
        let report = verify(&files(&h[..5]));
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.heads.len(), 2);
        assert!(verify(&[]).is_intact());
    }

    #[test]
    fn edit_is_detected() {
        let h = history();
        let mut fs = files(&h);
        let text = String::from_utf8(fs[1].1.clone()).unwrap();
        fs[1].1 = text.replace("\"alice\"", "\"mallory\"").into_bytes();
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Edited]);
        assert!(matches!(&report.problems[0], Problem::Edited { path, .. } if *path == fs[1].0));
        assert!(report.problems[0].to_string().contains("edited"));

        // Adding a field is an edit too, and so is reordering the parents of the merge.
        let mut fs = files(&h);
        let text = String::from_utf8(fs[2].1.clone()).unwrap();
        fs[2].1 = text.replacen('{', "{\"note\":\"x\",", 1).into_bytes();
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Edited]);
        assert!(matches!(report.problems[0], Problem::Malformed { .. }));
        assert!(Event::from_json(&fs[2].1).is_err());

        let mut fs = files(&h);
        let mut v: Value = serde_json::from_slice(&fs[5].1).unwrap();
        v["parents"].as_array_mut().unwrap().reverse();
        fs[5].1 = serde_json::to_vec(&v).unwrap();
        assert_eq!(tampers(&verify(&fs)), [Tamper::Edited]);
    }

    #[test]
    fn edit_with_rehash_breaks_the_child_link() {
        // The attacker recomputes the id and renames the file: the child's parent goes missing.
        let h = history();
        let mut fs = files(&h);
        let mut forged_body = h[1].body.clone();
        forged_body.actor = "mallory".into();
        let forged = new_event(h[1].parents.clone(), forged_body).unwrap();
        fs[1] = file(&forged);
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Deleted]);
        assert!(
            matches!(&report.problems[0], Problem::MissingParent { parent, .. } if *parent == h[1].id)
        );
    }

    #[test]
    fn delete_is_detected() {
        let h = history();
        let mut fs = files(&h);
        fs.remove(2);
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Deleted]);
        match &report.problems[0] {
            Problem::MissingParent { parent, children } => {
                assert_eq!(*parent, h[2].id);
                // Both branches named it.
                assert_eq!(children.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reorder_is_detected() {
        let h = history();
        // A head re-dated (and re-hashed, and renamed) to before its parent.
        let mut fs = files(&h);
        let mut early = h[5].body.clone();
        early.time = datetime!(2026-05-01 00:00:00 UTC);
        let forged = new_event(h[5].parents.clone(), early).unwrap();
        fs[5] = file(&forged);
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Reordered, Tamper::Reordered]);
        assert!(
            report
                .problems
                .iter()
                .all(|p| matches!(p, Problem::OlderThanParent { .. }))
        );

        // Two files swapped names: both names mismatch.
        let mut fs = files(&h);
        let (n1, n2) = (fs[1].0.clone(), fs[2].0.clone());
        fs[1].0 = n2;
        fs[2].0 = n1;
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Reordered, Tamper::Reordered]);
    }

    #[test]
    fn rename_is_detected() {
        let h = history();
        let mut fs = files(&h);
        fs[3].0 = fs[3].0.replace("2026/05/", "2026/04/");
        let report = verify(&fs);
        assert_eq!(tampers(&report), [Tamper::Reordered]);
        assert!(
            matches!(&report.problems[0], Problem::NameMismatch { expected, .. } if *expected == h[3].relative_path())
        );

        // A copy under another name is a duplicate.
        let mut fs = files(&h);
        fs.push(("2026/05/copy.json".into(), fs[0].1.clone()));
        let report = verify(&fs);
        assert!(
            report
                .problems
                .iter()
                .any(|p| matches!(p, Problem::DuplicateId { .. }))
        );
    }

    #[test]
    fn malformed_files_and_times() {
        let h = history();
        let mut fs = files(&h[..1]);
        fs.push(("2026/05/garbage.json".into(), b"{not json".to_vec()));
        let text = String::from_utf8(fs[0].1.clone()).unwrap();
        fs.push((
            "2026/05/offset.json".into(),
            text.replace("2026-05-01T10:00:00Z", "2026-05-01T12:00:00+02:00")
                .into_bytes(),
        ));
        let report = verify(&fs);
        assert_eq!(report.events, 1);
        assert_eq!(tampers(&report), [Tamper::Edited, Tamper::Edited]);
        assert!(EventId::parse("ABC").is_err());
        assert!(matches!(
            new_event(vec![], body(datetime!(-0001-01-01 0:00 UTC), "x")),
            Err(AuditError::TimeOutOfRange)
        ));
    }
}
