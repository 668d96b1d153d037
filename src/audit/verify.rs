//! PURE: `audit verify` over a set of event files: recomputes ids, checks names, parents and
//! their order, and classifies what it finds. It must not touch files (the caller loads them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::{AuditError, Event, EventId, heads, parse_unchecked};

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
mod tests {
    use super::*;
    use crate::audit::{EventBody, new_event};
    use serde_json::Map;
    use time::OffsetDateTime;
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
