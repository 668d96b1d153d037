//! PURE: `audit verify` over a set of event files: recomputes ids, checks names, parents and
//! their order, and — given the vault's id, the environment, the audit keys and the hashes of
//! the files on disk — that each event belongs here, carries a valid MAC (format 2), and that
//! every file the environment holds is the one its last writing event names. It classifies
//! what it finds. It must not touch files (the caller loads them and opens the keys).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use serde_json::Value;

use super::summary::{EventSummary, causal_order, heads as summary_heads};
use super::{AuditError, AuditKeys, Event, EventId, parse_unchecked};

mod findings;
pub use findings::*;

/// Whether the MACs were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticity {
    /// Every format-2 event's MAC verified.
    Checked,
    /// Not checked: why (no identity to open the audit keys, …).
    NotChecked(String),
    /// Every event is format 1 (before `talvault upgrade`): there is nothing to check.
    Format1,
}

/// What `verify` checks the events against (all optional: without them only the structure).
pub struct VerifyInput<'a> {
    /// The vault's id.
    pub vault: Option<&'a str>,
    /// The environment (its directory name).
    pub env: Option<&'a str>,
    /// How far an event may be dated before its parent before it is a finding (seconds).
    pub tolerance: i64,
    /// The audit keys, opened (`None`: authenticity is not checked, for the reason given).
    pub keys: Result<&'a AuditKeys, String>,
    /// Whether the audit key file belongs to the bundle (`Some(false)`: it does not).
    pub keys_bound: Option<bool>,
    /// The backup lane's keys (`backup-audit.age`), opened with the audit keys; `None`: lane
    /// events cannot be checked (each is reported as an unknown epoch).
    pub lane_keys: Option<&'a AuditKeys>,
    /// Whether the lane key file belongs to the bundle.
    pub lane_bound: Option<bool>,
    /// Content hashes of the files the environment holds (relative paths), `/talvault.yaml`
    /// included; `None`: files are not checked.
    pub disk: Option<&'a BTreeMap<String, String>>,
}

impl Default for VerifyInput<'_> {
    fn default() -> Self {
        VerifyInput {
            vault: None,
            env: None,
            tolerance: 0,
            keys: Err("no keys".into()),
            keys_bound: None,
            lane_keys: None,
            lane_bound: None,
            disk: None,
        }
    }
}

/// The result of `verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Files that parsed as events.
    pub events: usize,
    /// Of those, format 1 (hash-linked only).
    pub unsealed: usize,
    /// Current heads (more than one after a merge; that is fine).
    pub heads: Vec<EventId>,
    /// Findings, sorted by file; empty when the log is intact.
    pub problems: Vec<Problem>,
    /// Things worth saying that are not tampering.
    pub warnings: Vec<Warning>,
    /// Whether MACs were checked.
    pub authenticity: Authenticity,
    /// Files checked against the chain.
    pub files: usize,
    /// The state the events that passed the checks above imply (with the keys, their MACs
    /// among them), derived on structure from those events (its `authenticated` is `false`).
    pub chain: super::ChainState,
}

impl Report {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The structural checks only (ids, names, parents, order with no clock tolerance).
pub fn verify(files: &[(String, Vec<u8>)]) -> Report {
    verify_with(files, &VerifyInput::default())
}

/// Verifies a set of event files given as (path relative to the audit directory, contents)
/// against `input` ([`Verifier`], one file at a time).
pub fn verify_with(files: &[(String, Vec<u8>)], input: &VerifyInput<'_>) -> Report {
    let mut v = Verifier::default();
    for (path, bytes) in files {
        v.add(path.clone(), bytes);
    }
    v.finish(input)
}

/// What `verify` keeps of one event file once it is parsed and its bytes are dropped: its
/// summary under the id it states, and what binds it to a vault and an environment.
struct Parsed {
    path: String,
    summary: EventSummary,
    env: String,
    vault: Option<String>,
}

/// `audit verify` over event files fed one at a time ([`Verifier::add`]: each is parsed, its id
/// recomputed and its name checked, and only its summary kept), then [`Verifier::finish`]:
/// that every parent exists and is not younger than its child beyond the tolerance, that
/// events name this vault and environment, their MACs and key epochs (when keys are given), and
/// every file on disk against the chain's last write of it (when the disk is given).
#[derive(Default)]
pub struct Verifier {
    parsed: Vec<Parsed>,
    problems: Vec<Problem>,
    /// Ids of files that exist but do not parse: reported as malformed, not again as missing.
    unreadable: BTreeSet<String>,
}

impl Verifier {
    /// Reads one event file (`path` relative to the audit directory).
    pub fn add(&mut self, path: String, bytes: &[u8]) {
        let (event, stated) = match parse_unchecked(bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(bytes)
                    && let Some(Value::String(id)) = m.get("id")
                {
                    self.unreadable.insert(id.clone());
                }
                self.problems.push(Problem::Malformed {
                    path,
                    reason: match e {
                        AuditError::Malformed(reason) => reason,
                        other => other.to_string(),
                    },
                });
                return;
            }
        };
        if event.id.0 != stated {
            self.problems.push(Problem::Edited {
                path: path.clone(),
                stated: stated.clone(),
                computed: event.id.clone(),
            });
        }
        // Keyed by the *stated* id: children link to what the file claims, so one edited
        // event is reported once (as edited) rather than also as a missing parent.
        let as_stated = Event {
            id: EventId(stated),
            ..event
        };
        let expected = as_stated.relative_path();
        if path != expected {
            self.problems.push(Problem::NameMismatch {
                path: path.clone(),
                expected,
            });
        }
        self.parsed.push(Parsed {
            summary: EventSummary::of(&as_stated),
            env: as_stated.env().to_owned(),
            vault: as_stated.seal().map(|s| s.vault.clone()),
            path,
        });
    }

    /// The report on every file added, checked against `input`.
    pub fn finish(self, input: &VerifyInput<'_>) -> Report {
        let Verifier {
            mut parsed,
            mut problems,
            unreadable,
        } = self;
        let mut warnings = Vec::new();
        parsed.sort_by(|a, b| a.path.cmp(&b.path));
        let mut by_id: HashMap<EventId, Vec<Parsed>> = HashMap::with_capacity(parsed.len());
        for p in parsed {
            by_id.entry(p.summary.id.clone()).or_default().push(p);
        }
        let events: usize = by_id.values().map(Vec::len).sum();

        let mut missing: BTreeMap<EventId, Vec<String>> = BTreeMap::new();
        for (id, copies) in &by_id {
            if copies.len() > 1 {
                problems.push(Problem::DuplicateId {
                    id: id.0.clone(),
                    paths: copies.iter().map(|p| p.path.clone()).collect(),
                });
            }
            for p in copies {
                for parent in &p.summary.parents {
                    match by_id.get(parent).and_then(|c| c.first()) {
                        None if unreadable.contains(&parent.0) => {}
                        None => missing
                            .entry(parent.clone())
                            .or_default()
                            .push(p.path.clone()),
                        Some(pp) if p.summary.time < pp.summary.time => {
                            let seconds = pp.summary.time - p.summary.time;
                            if seconds <= input.tolerance {
                                warnings.push(Warning::ClockSkew {
                                    path: p.path.clone(),
                                    parent_path: pp.path.clone(),
                                    seconds,
                                });
                            } else {
                                problems.push(Problem::OlderThanParent {
                                    path: p.path.clone(),
                                    parent_path: pp.path.clone(),
                                });
                            }
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

        // Events the file state must not rest on: copied from elsewhere, or not authenticated.
        let mut rejected: HashSet<EventId> = HashSet::new();
        // Binding: this vault and this environment.
        for copies in by_id.values() {
            for p in copies {
                let mut names = Vec::new();
                if let Some(env) = input.env
                    && p.env != env
                {
                    names.push(format!("environment {:?}", p.env));
                }
                if let (Some(vault), Some(theirs)) = (input.vault, &p.vault)
                    && theirs != vault
                {
                    names.push(format!("vault {theirs}"));
                }
                if !names.is_empty() {
                    rejected.insert(p.summary.id.clone());
                    problems.push(Problem::Foreign {
                        path: p.path.clone(),
                        names: names.join(" and "),
                    });
                }
            }
        }

        // From here on, the first copy of each id.
        let mut path_of: HashMap<EventId, String> = HashMap::with_capacity(by_id.len());
        let summaries: Vec<EventSummary> = by_id
            .into_values()
            .filter_map(|copies| copies.into_iter().next())
            .map(|p| {
                path_of.insert(p.summary.id.clone(), p.path);
                p.summary
            })
            .collect();
        let path_of = |id: &EventId| path_of.get(id).cloned().unwrap_or_default();

        // Authenticity: MACs, epochs that only grow along the chain, no format 1 after format 2.
        // Per event: the newest main epoch and backup lane epoch at or before it (`None` before
        // the first sealed event).
        let mut newest: HashMap<&EventId, (Option<u32>, u32)> =
            HashMap::with_capacity(summaries.len());
        let mut unsealed = 0;
        let mut derived: HashMap<(bool, u32), Option<super::mac::AuditKey>> = HashMap::new();
        for s in causal_order(&summaries) {
            let path = path_of(&s.id);
            let before: Option<u32> = s
                .parents
                .iter()
                .filter_map(|p| newest.get(p).and_then(|n| n.0))
                .max();
            let lane_before: u32 = s
                .parents
                .iter()
                .filter_map(|p| newest.get(p).map(|n| n.1))
                .max()
                .unwrap_or(0);
            let epoch = s.mac.as_ref().map(|(epoch, _)| *epoch);
            if s.lane && !super::lane_may_record(&s.action, s.files.iter().map(|(f, _)| f.as_str()))
            {
                rejected.insert(s.id.clone());
                problems.push(Problem::LaneOverreach {
                    path: path.clone(),
                    action: s.action.clone(),
                });
            }
            let (inherited, main_epoch, lane_epoch) = if s.lane {
                (
                    Some(lane_before),
                    before,
                    epoch.unwrap_or(0).max(lane_before),
                )
            } else {
                (
                    before,
                    epoch.max(before),
                    s.lane_epoch.unwrap_or(0).max(lane_before),
                )
            };
            match (epoch, inherited) {
                (None, Some(_)) => problems.push(Problem::Unsealed { path: path.clone() }),
                (Some(e), Some(b)) if e < b => {
                    rejected.insert(s.id.clone());
                    problems.push(Problem::RetiredKey {
                        path: path.clone(),
                        epoch: e,
                        newest: b,
                    });
                }
                _ => {}
            }
            if epoch.is_none() {
                unsealed += 1;
            }
            newest.insert(&s.id, (main_epoch, lane_epoch));
            if let (Some((e, mac)), Ok(keys), Some(vault), Some(env)) =
                (&s.mac, &input.keys, input.vault, input.env)
            {
                // Derived once per (lane, epoch), not once per event.
                let key = derived.entry((s.lane, *e)).or_insert_with(|| {
                    if s.lane {
                        input
                            .lane_keys
                            .and_then(|l| l.epoch(*e))
                            .and_then(|k| k.derive_lane(vault, env))
                    } else {
                        keys.epoch(*e).and_then(|k| k.derive(vault, env))
                    }
                });
                match key {
                    None => {
                        rejected.insert(s.id.clone());
                        problems.push(Problem::UnknownEpoch { path, epoch: *e });
                    }
                    Some(key) => {
                        if !key.check(&s.id, mac) {
                            rejected.insert(s.id.clone());
                            problems.push(Problem::BadMac { path });
                        }
                    }
                }
            }
        }
        let any_sealed = summaries.iter().any(|s| s.sealed);
        // Once an environment has sealed events, an unsealed one is legitimate only as history
        // before the upgrade: an ancestor of a sealed event. Anything else was planted.
        if any_sealed {
            let mut ancestors: HashSet<&EventId> = HashSet::new();
            let parents: HashMap<&EventId, &Vec<EventId>> =
                summaries.iter().map(|s| (&s.id, &s.parents)).collect();
            let mut todo: Vec<&EventId> = summaries
                .iter()
                .filter(|s| s.sealed)
                .flat_map(|s| s.parents.iter())
                .collect();
            while let Some(id) = todo.pop() {
                if ancestors.insert(id) {
                    todo.extend(parents.get(id).into_iter().flat_map(|p| p.iter()));
                }
            }
            for s in summaries.iter().filter(|s| !s.sealed) {
                if !ancestors.contains(&s.id) {
                    let path = path_of(&s.id);
                    if !problems
                        .iter()
                        .any(|p| matches!(p, Problem::Unsealed { path: q } if *q == path))
                    {
                        problems.push(Problem::Unsealed { path });
                    }
                }
            }
        }
        let authenticity = match (&input.keys, any_sealed) {
            (_, false) => Authenticity::Format1,
            (Ok(_), true) if input.vault.is_some() && input.env.is_some() => Authenticity::Checked,
            (Ok(_), true) => Authenticity::NotChecked("no vault id".into()),
            (Err(why), true) => Authenticity::NotChecked(why.clone()),
        };
        if input.keys_bound == Some(false) {
            problems.push(Problem::ForeignKeyFile);
        }
        if input.lane_bound == Some(false) {
            problems.push(Problem::ForeignLaneKeyFile);
        }

        let heads = summary_heads(&summaries);
        // The state the genuine events imply: a forged or replayed event's files must not make
        // the real ones look changed (nor vouch for planted ones).
        let genuine: Vec<EventSummary> = summaries
            .into_iter()
            .filter(|s| !rejected.contains(&s.id))
            .collect();
        let chain = super::ChainState::of(&genuine);
        drop(genuine);

        // Files: every file the environment holds is the one its last writing event names.
        let mut checked = 0;
        if let Some(disk) = input.disk
            && any_sealed
        {
            for (file, (hash, event)) in &chain.files {
                checked += 1;
                // After a merge of clones that changed the file differently: either's contents.
                if disk.get(file).is_some_and(|got| chain.accepts(file, got)) {
                    continue;
                }
                match (hash, disk.get(file)) {
                    (Some(_), None) => problems.push(Problem::FileMissing {
                        file: file.clone(),
                        event: event.clone(),
                    }),
                    (Some(want), Some(got)) if want != got => {
                        problems.push(Problem::FileChanged {
                            file: file.clone(),
                            event: event.clone(),
                        });
                    }
                    (None, Some(_)) => problems.push(Problem::FileChanged {
                        file: file.clone(),
                        event: event.clone(),
                    }),
                    _ => {}
                }
            }
            for file in disk.keys() {
                if !chain.files.contains_key(file) {
                    problems.push(Problem::FileUnaccounted { file: file.clone() });
                }
            }
        }

        problems.sort_by_key(Problem::sort_key);
        warnings.sort_by(|a, b| {
            let key = |w: &Warning| match w {
                Warning::ClockSkew {
                    path, parent_path, ..
                } => (path.clone(), parent_path.clone()),
            };
            key(a).cmp(&key(b))
        });
        Report {
            events,
            unsealed,
            heads,
            problems,
            warnings,
            authenticity,
            files: checked,
            chain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventBody, heads, new_event};
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
            seal: None,
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
                seal: None,
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

    // ---- format 2 ----

    const VAULT: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> AuditKeys {
        AuditKeys {
            bundle_sha256: "00".repeat(32),
            keys: vec![
                crate::audit::EpochKey::new(1, &[1; 32]),
                crate::audit::EpochKey::new(2, &[2; 32]),
            ],
        }
    }

    /// A sealed event naming `files`, MACed with `root`'s key for `vault`/`env`/`epoch`.
    fn sealed_event(
        parents: Vec<EventId>,
        time: OffsetDateTime,
        epoch: u32,
        files: &[(&str, Option<&str>)],
        (root, vault, env): ([u8; 32], &str, &str),
    ) -> Event {
        let mut b = body(time, "issue");
        b.env = env.into();
        b.seal = Some(crate::audit::Seal {
            vault: vault.into(),
            epoch,
            files: files
                .iter()
                .map(|(p, h)| ((*p).to_owned(), h.map(str::to_owned)))
                .collect(),
            lane: None,
            lane_epoch: None,
        });
        let key = crate::audit::EpochKey::new(epoch, &root)
            .derive(vault, env)
            .unwrap();
        new_event(parents, b).unwrap().with_mac(&key)
    }

    fn ours(epoch: u32) -> ([u8; 32], &'static str, &'static str) {
        ([epoch as u8; 32], VAULT, "prod")
    }

    fn check(events: &[Event], keys: &AuditKeys, disk: &BTreeMap<String, String>) -> Report {
        verify_with(
            &files(events),
            &VerifyInput {
                vault: Some(VAULT),
                env: Some("prod"),
                tolerance: 300,
                keys: Ok(keys),
                keys_bound: Some(true),
                lane_keys: None,
                lane_bound: None,
                disk: Some(disk),
            },
        )
    }

    fn hash(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// a (epoch 1, writes x and y) <- b (epoch 2, writes x again).
    fn sealed_history() -> (Vec<Event>, BTreeMap<String, String>) {
        let (x1, x2, y) = (hash('1'), hash('2'), hash('3'));
        let a = sealed_event(
            vec![],
            datetime!(2026-05-01 10:00:00 UTC),
            1,
            &[("x", Some(&x1)), ("y", Some(&y))],
            ours(1),
        );
        let b = sealed_event(
            vec![a.id.clone()],
            datetime!(2026-05-01 11:00:00 UTC),
            2,
            &[("x", Some(&x2))],
            ours(2),
        );
        let disk = [("x".to_owned(), x2), ("y".to_owned(), y)]
            .into_iter()
            .collect();
        (vec![a, b], disk)
    }

    #[test]
    fn a_sealed_history_verifies_and_says_whether_it_was_authenticated() {
        let (h, disk) = sealed_history();
        let report = check(&h, &keys(), &disk);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.authenticity, Authenticity::Checked);
        assert_eq!((report.files, report.unsealed), (2, 0));
        let unchecked = verify_with(
            &files(&h),
            &VerifyInput {
                keys: Err("no identity".into()),
                ..VerifyInput::default()
            },
        );
        assert!(unchecked.is_intact());
        assert_eq!(
            unchecked.authenticity,
            Authenticity::NotChecked("no identity".into())
        );
    }

    #[test]
    fn forged_foreign_and_replayed_events_are_found() {
        let (mut h, disk) = sealed_history();
        let head = h[1].id.clone();
        let t = datetime!(2026-05-01 12:00:00 UTC);
        // A MAC made with a key of the forger's own: a side branch on an old event.
        h.push(sealed_event(
            vec![h[0].id.clone()],
            t,
            2,
            &[],
            ([9; 32], VAULT, "prod"),
        ));
        // A root event copied from another vault (its own key and id) and from another
        // environment of this vault (our key, but derived for that environment).
        h.push(sealed_event(
            vec![],
            t,
            1,
            &[],
            ([1; 32], "ffffffffffffffffffffffffffffffff", "prod"),
        ));
        h.push(sealed_event(vec![], t, 1, &[], ([1; 32], VAULT, "stage")));
        // An epoch the key file does not hold; a retired epoch on top of epoch 2.
        h.push(sealed_event(vec![head.clone()], t, 7, &[], ours(7)));
        h.push(sealed_event(vec![head], t, 1, &[], ours(1)));
        let report = check(&h, &keys(), &disk);
        let kinds: Vec<&str> = report
            .problems
            .iter()
            .map(|p| match p {
                Problem::BadMac { .. } => "mac",
                Problem::Foreign { .. } => "foreign",
                Problem::UnknownEpoch { .. } => "epoch",
                Problem::RetiredKey { .. } => "retired",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
        // The forger's MAC, the other vault's (foreign and a wrong MAC), the other
        // environment's (foreign and a MAC under another derived key).
        assert_eq!(count("mac"), 3, "{kinds:?}");
        assert_eq!(count("foreign"), 2, "{kinds:?}");
        assert_eq!(count("epoch"), 1, "{kinds:?}");
        assert_eq!(count("retired"), 1, "{kinds:?}");
        assert!(tampers(&report).iter().all(|t| *t == Tamper::Forged));
    }

    #[test]
    fn files_missing_changed_or_unaccounted_are_found() {
        let (h, mut disk) = sealed_history();
        disk.remove("y");
        disk.insert("x".into(), hash('9'));
        disk.insert("planted".into(), hash('4'));
        let report = check(&h, &keys(), &disk);
        let mut found: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        found.sort();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("planted: no event accounts for it"));
        assert!(found[1].starts_with("x: changed since event"));
        assert!(found[2].starts_with("y: missing; last written by event"));
        // A removal the chain records is not missing.
        let removed = sealed_event(
            vec![h[1].id.clone()],
            datetime!(2026-05-01 12:00:00 UTC),
            2,
            &[("y", None)],
            ours(2),
        );
        let (mut h, mut disk) = sealed_history();
        h.push(removed);
        disk.remove("y");
        assert!(check(&h, &keys(), &disk).is_intact());
    }

    #[test]
    fn clock_skew_within_the_tolerance_is_a_warning_beyond_it_a_finding() {
        let (mut h, disk) = sealed_history();
        let parent = h[1].id.clone();
        // Dated 3 s before its parent: another machine's clock.
        h.push(sealed_event(
            vec![parent.clone()],
            datetime!(2026-05-01 10:59:57 UTC),
            2,
            &[],
            ours(2),
        ));
        let report = check(&h, &keys(), &disk);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.warnings.len(), 1);
        // An hour before: a finding.
        h.pop();
        h.push(sealed_event(
            vec![parent],
            datetime!(2026-05-01 10:00:00 UTC),
            2,
            &[],
            ours(2),
        ));
        let report = check(&h, &keys(), &disk);
        assert_eq!(tampers(&report), [Tamper::Reordered]);
    }

    #[test]
    fn a_format_1_event_after_the_upgrade_is_planted() {
        let (mut h, disk) = sealed_history();
        let old = new_event(
            vec![],
            body(datetime!(2026-04-01 10:00:00 UTC), "env.create"),
        )
        .unwrap();
        // History before the upgrade: a format-1 root under the first sealed event.
        let up = sealed_event(
            vec![old.id.clone()],
            datetime!(2026-04-02 10:00:00 UTC),
            1,
            &[],
            ours(1),
        );
        let planted = new_event(
            vec![h[1].id.clone()],
            body(datetime!(2026-05-02 10:00:00 UTC), "issue"),
        )
        .unwrap();
        h.extend([old, up]);
        let report = check(&h, &keys(), &disk);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.unsealed, 1);
        h.push(planted);
        let report = check(&h, &keys(), &disk);
        assert!(
            matches!(report.problems.as_slice(), [Problem::Unsealed { .. }]),
            "{:?}",
            report.problems
        );
    }

    /// An event MACed under the backup lane key of `root`/`epoch`, doing `action`.
    fn lane_event(
        parents: Vec<EventId>,
        time: OffsetDateTime,
        action: &str,
        files: &[(&str, Option<&str>)],
        root: [u8; 32],
    ) -> Event {
        let mut b = body(time, action);
        b.seal = Some(crate::audit::Seal {
            vault: VAULT.into(),
            epoch: 1,
            files: files
                .iter()
                .map(|(p, h)| ((*p).to_owned(), h.map(str::to_owned)))
                .collect(),
            lane: Some(crate::audit::BACKUP_LANE.into()),
            lane_epoch: None,
        });
        let key = crate::audit::EpochKey::new(1, &root)
            .derive_lane(VAULT, "prod")
            .unwrap();
        new_event(parents, b).unwrap().with_mac(&key)
    }

    #[test]
    fn lane_events_verify_under_the_lane_keys_and_only_for_backups() {
        let (mut h, mut disk) = sealed_history();
        let head = h[1].id.clone();
        let t = datetime!(2026-05-02 12:00:00 UTC);
        let rec = hash('4');
        h.push(lane_event(
            vec![head.clone()],
            t,
            "backup.seal",
            &[("backups/0a.yaml", Some(&rec))],
            [5; 32],
        ));
        disk.insert("backups/0a.yaml".into(), rec);
        let lane = AuditKeys {
            bundle_sha256: "00".repeat(32),
            keys: vec![crate::audit::EpochKey::new(1, &[5; 32])],
        };
        let with_lane = |events: &[Event], disk: &BTreeMap<String, String>| {
            verify_with(
                &files(events),
                &VerifyInput {
                    vault: Some(VAULT),
                    env: Some("prod"),
                    tolerance: 300,
                    keys: Ok(&keys()),
                    keys_bound: Some(true),
                    lane_keys: Some(&lane),
                    lane_bound: Some(true),
                    disk: Some(disk),
                },
            )
        };
        let report = with_lane(&h, &disk);
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.files, 3);
        // Without the lane keys it cannot be authenticated, and so accounts for nothing.
        let report = check(&h, &keys(), &disk);
        assert!(
            matches!(
                report.problems.as_slice(),
                [
                    Problem::UnknownEpoch { .. },
                    Problem::FileUnaccounted { .. }
                ]
            ),
            "{:?}",
            report.problems
        );
        // The lane key vouching for an issuer, or for the bundle through a backup event.
        h.push(lane_event(
            vec![head.clone()],
            t,
            "issuer.create",
            &[],
            [5; 32],
        ));
        h.push(lane_event(
            vec![head],
            t,
            "backup.verify",
            &[("bundle.age", Some(&hash('5')))],
            [5; 32],
        ));
        disk.insert("bundle.age".into(), hash('5'));
        let report = with_lane(&h, &disk);
        let kinds: Vec<&str> = report
            .problems
            .iter()
            .map(|p| match p {
                Problem::LaneOverreach { .. } => "overreach",
                Problem::FileUnaccounted { .. } => "unaccounted",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["overreach", "overreach", "unaccounted"],
            "{kinds:?}"
        );
        assert!(tampers(&report).iter().all(|t| *t == Tamper::Forged));
    }
}
