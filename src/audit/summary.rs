//! PURE: what the vault relies on, derived from the audit chain. Each event file is summarised
//! on one cache line (id, parents, time, what it did, the files it wrote); the summaries, put in
//! causal order, give the chain's state: the content hash each file must have, which
//! certificates are revoked, whether a break-glass certificate taints the environment, each
//! issuer's state, the newest CRL number per issuer, the registered holders, and the heads the
//! next event names (`chain.rs`). Loose files are checked against this state, never trusted on
//! their own.

use serde_json::{Map, Value};

use super::{Event, EventId};

/// One event file as the chain state needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSummary {
    /// Its id.
    pub id: EventId,
    /// The heads it was written on.
    pub parents: Vec<EventId>,
    /// Its time (Unix seconds).
    pub time: i64,
    /// Its action.
    pub action: String,
    /// The serial (issue, break-glass, revoke), issuer id (issuer.*, crl) or holder (holder.*)
    /// it is about.
    pub subject: Option<String>,
    /// revoke: the issuer that signed the certificate.
    pub issuer: Option<String>,
    /// revoke: the reason; break-glass: why.
    pub reason: Option<String>,
    /// crl or revoke: the CRL number signed.
    pub number: Option<u64>,
    /// The break-glass taint ends here (env.untaint, or retiring the issuer that signed it).
    pub clears_taint: bool,
    /// Format 2: the files it wrote (hash) or removed (`None`).
    pub files: Vec<(String, Option<String>)>,
    /// Format 2.
    pub sealed: bool,
    /// Format 2: the audit key epoch and the MAC of the id (checked by [`ChainState::of`] when
    /// the caller holds the keys; the id itself was recomputed from the file's contents when the
    /// summary was made, so the MAC binds everything above).
    pub mac: Option<(u32, String)>,
    /// Format 2: the MAC is under a backup lane key (`mac`'s epoch is a lane epoch).
    pub lane: bool,
    /// Format 2: the backup lane epoch this (main) event made current.
    pub lane_epoch: Option<u32>,
}

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

impl EventSummary {
    /// The summary of a parsed event.
    pub fn of(e: &Event) -> Self {
        let data = e.data();
        let (subject, issuer, reason, number, clears_taint) = match e.action() {
            "issue" | "kubeconfig" => (text(data, "serial"), None, None, None, false),
            // A Kubernetes break-glass certificate taints the environment like a Talos one.
            "break-glass" | "break-glass.kubernetes" => (
                text(data, "serial"),
                text(data, "signed_by"),
                text(data, "reason"),
                None,
                false,
            ),
            "revoke" => (
                text(data, "serial"),
                text(data, "signed_by"),
                text(data, "reason"),
                data.get("crl_number").and_then(Value::as_u64),
                false,
            ),
            "crl" => (
                text(data, "issuer"),
                None,
                None,
                data.get("crl_number").and_then(Value::as_u64),
                false,
            ),
            "issuer.create" | "issuer.activate" => (text(data, "issuer"), None, None, None, false),
            "issuer.retire" => (
                text(data, "issuer"),
                None,
                None,
                None,
                data.get("untainted").and_then(Value::as_bool) == Some(true),
            ),
            "env.untaint" => (None, None, None, None, true),
            "holder.add" | "holder.remove" => (text(data, "holder"), None, None, None, false),
            // The backup and the sealed file that checked out.
            "backup.verify" => (
                text(data, "id"),
                text(data, "sealed_sha256"),
                None,
                None,
                false,
            ),
            _ => (None, None, None, None, false),
        };
        EventSummary {
            id: e.id().clone(),
            parents: e.parents().to_vec(),
            time: e.time().unix_timestamp(),
            action: e.action().to_owned(),
            subject: subject.map(str::to_owned),
            issuer: issuer.map(str::to_owned),
            reason: reason.map(str::to_owned),
            number,
            clears_taint,
            files: e
                .seal()
                .map(|s| {
                    s.files
                        .iter()
                        .map(|(p, h)| (p.clone(), h.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            sealed: e.seal().is_some(),
            mac: e
                .seal()
                .zip(e.mac())
                .map(|(seal, mac)| (seal.epoch, mac.to_owned())),
            lane: e.seal().is_some_and(|s| s.lane.is_some()),
            lane_epoch: e.seal().and_then(|s| s.lane_epoch),
        }
    }

    /// Reads an event file: `None` for a file that is not an event or whose stated id is not
    /// the hash of its contents (`audit verify` reports those; the chain leaves them out).
    pub fn read(bytes: &[u8]) -> Option<Self> {
        Event::from_json(bytes).ok().map(|e| Self::of(&e))
    }

    /// One cache line: tab-separated fields, free text percent-escaped.
    pub fn to_line(&self) -> String {
        let opt = |o: &Option<String>| o.as_deref().map_or("-".to_owned(), escape);
        let parents: Vec<&str> = self.parents.iter().map(EventId::as_str).collect();
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(p, h)| format!("{}={}", escape(p), h.as_deref().unwrap_or("-")))
            .collect();
        [
            self.id.as_str().to_owned(),
            if parents.is_empty() {
                "-".to_owned()
            } else {
                parents.join(" ")
            },
            self.time.to_string(),
            escape(&self.action),
            opt(&self.subject),
            opt(&self.issuer),
            opt(&self.reason),
            self.number.map_or("-".to_owned(), |n| n.to_string()),
            u8::from(self.clears_taint).to_string(),
            u8::from(self.sealed).to_string(),
            self.mac
                .as_ref()
                .map_or("-".to_owned(), |(epoch, mac)| format!("{epoch}:{mac}")),
            if files.is_empty() {
                "-".to_owned()
            } else {
                files.join(" ")
            },
            match (self.lane, self.lane_epoch) {
                (true, _) => "lane".to_owned(),
                (false, Some(n)) => format!("lane-epoch:{n}"),
                (false, None) => "-".to_owned(),
            },
        ]
        .join("\t")
    }

    /// The inverse of [`EventSummary::to_line`]; `None` for anything else.
    pub fn from_line(line: &str) -> Option<Self> {
        let mut f: Vec<&str> = line.split('\t').collect();
        // Lines written before the backup lane have no lane field.
        let lane = if f.len() == 13 { f.pop()? } else { "-" };
        let (lane, lane_epoch) = match lane {
            "-" => (false, None),
            "lane" => (true, None),
            other => (
                false,
                Some(other.strip_prefix("lane-epoch:")?.parse().ok()?),
            ),
        };
        let [
            id,
            parents,
            time,
            action,
            subject,
            issuer,
            reason,
            number,
            clears,
            sealed,
            mac,
            files,
        ] = f.as_slice()
        else {
            return None;
        };
        let opt = |s: &str| {
            if s == "-" {
                Ok(None)
            } else {
                unescape(s).map(Some)
            }
        };
        Some(EventSummary {
            id: EventId::parse(id).ok()?,
            parents: if *parents == "-" {
                Vec::new()
            } else {
                parents
                    .split(' ')
                    .map(|p| EventId::parse(p).ok())
                    .collect::<Option<_>>()?
            },
            time: time.parse().ok()?,
            action: unescape(action).ok()?,
            subject: opt(subject).ok()?,
            issuer: opt(issuer).ok()?,
            reason: opt(reason).ok()?,
            number: if *number == "-" {
                None
            } else {
                Some(number.parse().ok()?)
            },
            clears_taint: *clears == "1",
            sealed: *sealed == "1",
            mac: if *mac == "-" {
                None
            } else {
                let (epoch, mac) = mac.split_once(':')?;
                Some((epoch.parse().ok()?, mac.to_owned()))
            },
            files: if *files == "-" {
                Vec::new()
            } else {
                files
                    .split(' ')
                    .map(|pair| {
                        let (p, h) = pair.rsplit_once('=')?;
                        Some((unescape(p).ok()?, (h != "-").then(|| h.to_owned())))
                    })
                    .collect::<Option<_>>()?
            },
            lane,
            lane_epoch,
        })
    }
}

/// One file of an audit month directory as the cache keeps it: an event's summary, or nothing
/// for a file that is not an event (`audit verify` reports those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFile(pub Option<EventSummary>);

impl EventFile {
    /// Reads a file ([`EventSummary::read`]).
    pub fn read(bytes: &[u8]) -> Self {
        EventFile(EventSummary::read(bytes))
    }

    /// The cache line: the summary's, or `-`.
    pub fn to_line(&self) -> String {
        self.0
            .as_ref()
            .map_or_else(|| "-".to_owned(), EventSummary::to_line)
    }

    /// The inverse of [`EventFile::to_line`].
    pub fn from_line(line: &str) -> Option<Self> {
        if line == "-" {
            return Some(EventFile(None));
        }
        EventSummary::from_line(line).map(|s| EventFile(Some(s)))
    }
}

/// Percent-escapes `%`, whitespace and control characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() || c == '=' {
            for b in c.to_string().bytes() {
                out.push_str(&format!("%{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, ()> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = it.next().ok_or(())?;
            let lo = it.next().ok_or(())?;
            let pair = [hi, lo];
            let v = crate::hex::decode(std::str::from_utf8(&pair).map_err(|_| ())?).ok_or(())?;
            bytes.extend(v);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).map_err(|_| ())
}

mod chain;
pub use chain::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::audit::{Action, EventBody, new_event};

    fn event(parents: Vec<EventId>, time: i64, action: Action) -> Event {
        new_event(
            parents,
            EventBody::new(
                time::OffsetDateTime::from_unix_timestamp(time).unwrap(),
                "a",
                None,
                "prod",
                &action,
            )
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_chain_state_round_trips_through_its_cache_lines() {
        let id = |c: char| EventId::parse(&c.to_string().repeat(64)).unwrap();
        let mut s = ChainState {
            heads: vec![id('a'), id('b')],
            sealed: true,
            authenticated: true,
            rejected: 3,
            newest_epochs: (2, 1),
            taint: Some(ChainTaint {
                serial: Some("ab12".into()),
                reason: Some("INC-1: 100% down\tnow = bad".into()),
                since: 1_700_000_000,
            }),
            ..ChainState::default()
        };
        s.files
            .insert("certs/ab12.yaml".into(), (Some("f".repeat(64)), id('c')));
        s.files.insert("/talvault.yaml".into(), (None, id('d')));
        s.concurrent.insert(
            "policy.yaml".into(),
            vec![(Some("0".repeat(64)), id('e')), (None, id('f'))],
        );
        s.revoked.insert(
            "ab12".into(),
            ChainRevocation {
                issuer: Some("e1-x".into()),
                reason: None,
                time: -5,
            },
        );
        s.issuers.insert(
            "e1-x".into(),
            IssuerStep {
                state: "retired",
                activated: Some(10),
                retired: Some(20),
            },
        );
        s.issuers.insert(
            "e2-y".into(),
            IssuerStep {
                state: "pending",
                activated: None,
                retired: None,
            },
        );
        s.crl_numbers.insert("e1-x".into(), 7);
        s.holders.insert("alice".into());
        s.backups_verified.push(BackupVerified {
            id: "b1".into(),
            sealed_sha256: "9".repeat(64),
            time: 42,
        });
        let text = s.to_cache();
        assert_eq!(ChainState::from_cache(&text), Some(s.clone()));
        s.taint = None;
        assert_eq!(ChainState::from_cache(&s.to_cache()), Some(s));
        for bad in [
            "",
            "state 1 1 0 0",
            "state 1 1 0 0 0\nhead xyz",
            "state 1 1 0 0 0\nissuer e1 revoked - -",
            "state 1 1 0 0 0\nfile a + b",
            "state 1 1 0 0 0\nholder a b",
            "state 1 1 0 0 0\nsomething else",
        ] {
            assert_eq!(ChainState::from_cache(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lines_round_trip_with_awkward_text() {
        let e = event(
            vec![],
            1_800_000_000,
            Action::BreakGlass {
                serial: "0a".into(),
                fingerprint: "sha256:00".into(),
                roles: vec!["os:admin".into()],
                holder: None,
                ttl: "1h".into(),
                not_after: "x".into(),
                mode: "direct".into(),
                signed_by: "os".into(),
                key: "generated".into(),
                reason: Some("INC 1\tx=y %20\nz".into()),
            },
        );
        let mut s = EventSummary::of(&e);
        s.files = vec![
            ("certs/0a.yaml".into(), Some("ab".repeat(32))),
            ("gone file".into(), None),
        ];
        assert_eq!(EventSummary::from_line(&s.to_line()), Some(s.clone()));
        assert_eq!(EventSummary::read(&e.to_json()).unwrap().reason, s.reason);
        for junk in ["", "x", "-\t-"] {
            assert_eq!(EventSummary::from_line(junk), None);
        }
    }

    /// A summary writing `files` on `parents` at `time`.
    fn writing(parents: &[&EventSummary], time: i64, files: &[(&str, &str)]) -> EventSummary {
        let e = event(
            parents.iter().map(|p| p.id.clone()).collect(),
            time,
            Action::EnvUntaint {
                reason: format!("{time}"),
                tainted_since: "x".into(),
                break_glass_serial: None,
            },
        );
        let mut s = EventSummary::of(&e);
        s.clears_taint = false;
        s.files = files
            .iter()
            .map(|(p, h)| ((*p).to_owned(), Some((*h).repeat(64))))
            .collect();
        s
    }

    #[test]
    fn merged_writes_of_one_file_resolve_as_git_does() {
        let base = writing(&[], 100, &[("policy.yaml", "0")]);
        // Clone v changes the policy; clone w, later by the clock, re-accepts the old one.
        let v = writing(&[&base], 200, &[("policy.yaml", "1")]);
        let w = writing(&[&base], 300, &[("policy.yaml", "0")]);
        let state = ChainState::of(&[base.clone(), v.clone(), w.clone()]);
        assert_eq!(state.files["policy.yaml"].1, v.id, "the change wins");
        assert!(state.accepts("policy.yaml", &"1".repeat(64)));
        assert!(!state.accepts("policy.yaml", &"0".repeat(64)));
        // Both change it, differently: either is accepted until the next write.
        let w2 = writing(&[&base], 300, &[("policy.yaml", "2")]);
        let state = ChainState::of(&[base.clone(), v.clone(), w2.clone()]);
        assert!(state.accepts("policy.yaml", &"1".repeat(64)));
        assert!(state.accepts("policy.yaml", &"2".repeat(64)));
        let merged = writing(&[&v, &w2], 400, &[("policy.yaml", "3")]);
        let state = ChainState::of(&[base.clone(), v.clone(), w2, merged.clone()]);
        assert_eq!(state.files["policy.yaml"].1, merged.id);
        assert!(!state.accepts("policy.yaml", &"1".repeat(64)));
        assert!(state.concurrent.is_empty());
        // A no-op rewrite after the change is still the change; a concurrent no-op rewrite of
        // the old contents does not beat it.
        let again = writing(&[&v], 250, &[("policy.yaml", "1")]);
        let state = ChainState::of(&[base.clone(), v.clone(), again.clone(), w.clone()]);
        assert!(state.accepts("policy.yaml", &"1".repeat(64)));
        assert!(!state.accepts("policy.yaml", &"0".repeat(64)));
        // In a linear history a rewrite of the old contents is just the newest write.
        let back = writing(&[&v], 500, &[("policy.yaml", "0")]);
        let state = ChainState::of(&[base, v, back]);
        assert!(state.accepts("policy.yaml", &"0".repeat(64)));
        assert!(!state.accepts("policy.yaml", &"1".repeat(64)));
    }

    #[test]
    fn state_follows_causal_order_not_clocks() {
        let issue = |serial: &str| Action::Issue {
            serial: serial.into(),
            fingerprint: "f".into(),
            roles: vec![],
            holder: None,
            ttl: "1h".into(),
            not_after: "x".into(),
            mode: "issuer".into(),
            signed_by: "e1".into(),
            key: "generated".into(),
            reason: None,
        };
        let a = event(vec![], 1000, issue("01"));
        // The child's clock was 30 s behind: it is still after its parent.
        let b = event(
            vec![a.id().clone()],
            970,
            Action::BreakGlass {
                serial: "02".into(),
                fingerprint: "f".into(),
                roles: vec![],
                holder: None,
                ttl: "1h".into(),
                not_after: "x".into(),
                mode: "issuer".into(),
                signed_by: "e1".into(),
                key: "generated".into(),
                reason: Some("INC".into()),
            },
        );
        let c = event(
            vec![b.id().clone()],
            960,
            Action::Revoke {
                serial: "01".into(),
                fingerprint: "f".into(),
                reason: "keyCompromise".into(),
                signed_by: "e1".into(),
            },
        );
        let d = event(
            vec![c.id().clone()],
            950,
            Action::IssuerRetire {
                issuer: "e1".into(),
                forced: true,
                cut_off: 1,
                untainted: true,
            },
        );
        let e = event(
            vec![d.id().clone()],
            970,
            Action::Crl {
                issuer: "e1".into(),
                crl_number: 77,
                entries: 1,
            },
        );
        let summaries: Vec<EventSummary> = [&d, &c, &a, &b, &e]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        let order: Vec<&str> = causal_order(&summaries)
            .iter()
            .map(|s| s.action.as_str())
            .collect();
        assert_eq!(
            order,
            ["issue", "break-glass", "revoke", "issuer.retire", "crl"]
        );
        let state = ChainState::of(&summaries);
        assert_eq!(state.heads, vec![e.id().clone()]);
        assert!(state.revoked.contains_key("01"));
        assert_eq!(state.crl_numbers["e1"], 77);
        assert_eq!(state.taint, None, "retiring its issuer cleared the taint");
        assert_eq!(state.issuers["e1"].state, "retired");
        let without_retire = ChainState::of(&summaries[1..4]);
        assert_eq!(without_retire.taint.unwrap().serial.as_deref(), Some("02"));
    }

    #[test]
    fn kubernetes_break_glass_taints_and_a_kubeconfig_names_its_serial() {
        let kube = |serial: &str, reason: Option<&str>| {
            let (fingerprint, user, groups, ttl, not_after, mode, signed_by, key) = (
                "f".to_owned(),
                "alice".to_owned(),
                vec!["system:masters".to_owned()],
                "1h".to_owned(),
                "x".to_owned(),
                "issuer".to_owned(),
                "k1".to_owned(),
                "generated".to_owned(),
            );
            match reason {
                Some(r) => Action::KubernetesBreakGlass {
                    serial: serial.into(),
                    fingerprint,
                    user,
                    groups,
                    ttl,
                    not_after,
                    mode,
                    signed_by,
                    key,
                    reason: r.into(),
                },
                None => Action::Kubeconfig {
                    serial: serial.into(),
                    fingerprint,
                    user,
                    groups,
                    ttl,
                    not_after,
                    mode,
                    signed_by,
                    key,
                },
            }
        };
        let a = event(vec![], 1000, kube("0a", None));
        let b = event(vec![a.id().clone()], 1001, kube("0b", Some("INC-9")));
        let summaries: Vec<EventSummary> = [&a, &b].iter().map(|e| EventSummary::of(e)).collect();
        assert_eq!(summaries[0].subject.as_deref(), Some("0a"));
        let state = ChainState::of(&summaries);
        let taint = state.taint.expect("Kubernetes break-glass taints");
        assert_eq!(taint.serial.as_deref(), Some("0b"));
        assert_eq!(taint.reason.as_deref(), Some("INC-9"));
        // Retiring the Kubernetes issuer that signed it clears the taint.
        let c = event(
            vec![b.id().clone()],
            1002,
            Action::IssuerRetire {
                issuer: "k1".into(),
                forced: true,
                cut_off: 1,
                untainted: true,
            },
        );
        let summaries: Vec<EventSummary> =
            [&a, &b, &c].iter().map(|e| EventSummary::of(e)).collect();
        assert_eq!(ChainState::of(&summaries).taint, None);
    }

    /// Folding an event written on the heads gives exactly what deriving the whole chain gives,
    /// including after a merge (two heads), a concurrent rewrite, a revocation, a taint and its
    /// end; an event on other parents, or a format-1 one, is not folded.
    #[test]
    fn folding_an_event_on_the_heads_is_deriving_it() {
        let revoke = Action::Revoke {
            serial: "01".into(),
            fingerprint: "f".into(),
            reason: "keyCompromise".into(),
            signed_by: "e1".into(),
        };
        let root = sealed(vec![], 1000, accept(), 1, 1);
        let left = sealed(vec![root.id().clone()], 1001, accept(), 1, 1);
        let right = sealed(vec![root.id().clone()], 999, revoke.clone(), 1, 1);
        let merge = sealed(
            vec![left.id().clone(), right.id().clone()],
            1002,
            untaint(),
            1,
            1,
        );
        let next = sealed(vec![merge.id().clone()], 900, revoke, 1, 1);
        let all: Vec<EventSummary> = [&root, &left, &right, &merge, &next]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        let check: MacCheck<'_> = &genuine;
        for n in 2..=all.len() {
            let mut folded = ChainState::checked(&all[..n - 1], Some(check));
            let before = folded.clone();
            let ok = folded.fold(&all[n - 1]);
            if n == 3 {
                // `right` was written on `root`, not on the heads (`left`).
                assert!(!ok);
                assert_eq!(folded, before, "a refused fold changes nothing");
                continue;
            }
            assert!(ok, "event {n}");
            assert_eq!(
                folded,
                ChainState::checked(&all[..n], Some(check)),
                "event {n}"
            );
        }
        let plain = EventSummary::of(&event(vec![next.id().clone()], 1003, accept()));
        let mut state = ChainState::checked(&all, Some(check));
        assert!(
            !state.fold(&plain),
            "a format-1 event after the upgrade is never folded"
        );

        // A forged event naming epoch 99, a genuine backup lane event on top of it (a
        // backup-only job trusts main events on structure), then an honest event on the heads
        // under epoch 1: the derivation counts the forged epoch as inherited and rejects it, so
        // it is not folded either.
        let forged = sealed(vec![next.id().clone()], 1004, accept(), 99, 9);
        let lane = lane_event(
            vec![forged.id().clone()],
            1005,
            verify_action("0a"),
            1,
            &["backups/0a.yaml"],
        );
        let mut with: Vec<EventSummary> = all.clone();
        with.extend([&forged, &lane].iter().map(|e| EventSummary::of(e)));
        let mut state = ChainState::checked(&with, Some(check));
        let honest = sealed(state.heads.clone(), 1006, accept(), 1, 1);
        let before = state.clone();
        assert!(!state.fold(&EventSummary::of(&honest)));
        assert_eq!(state, before);
        with.push(EventSummary::of(&honest));
        assert!(
            !ChainState::checked(&with, Some(check))
                .heads
                .contains(honest.id()),
            "the derivation rejects it too"
        );
        // A lane event is never folded.
        let lane2 = lane_event(
            state.heads.clone(),
            1007,
            verify_action("0b"),
            1,
            &["backups/0b.yaml"],
        );
        assert!(!state.fold(&EventSummary::of(&lane2)));
    }

    /// A sealed event: `epoch`, MACed with `key` (the vault's, or a forger's).
    fn sealed(parents: Vec<EventId>, time: i64, action: Action, epoch: u32, key: u8) -> Event {
        let mut body = EventBody::new(
            time::OffsetDateTime::from_unix_timestamp(time).unwrap(),
            "a",
            None,
            "prod",
            &action,
        )
        .unwrap();
        body.seal = Some(super::super::Seal {
            vault: "v".into(),
            epoch,
            files: [("policy.yaml".to_owned(), Some("00".repeat(32)))]
                .into_iter()
                .collect(),
            lane: None,
            lane_epoch: None,
        });
        let mac_key = crate::audit::AuditKey::derive(&[key; 32], "v", "prod", epoch).unwrap();
        new_event(parents, body).unwrap().with_mac(&mac_key)
    }

    fn untaint() -> Action {
        Action::EnvUntaint {
            reason: "done".into(),
            tainted_since: "2026-01-01T00:00:00Z".into(),
            break_glass_serial: None,
        }
    }

    fn accept() -> Action {
        Action::PolicyAccept {
            reason: "PR 1".into(),
        }
    }

    /// The vault's MAC check: key byte 1, any epoch; lane keys from key byte 2.
    fn genuine(lane: bool, epoch: u32, id: &EventId, mac: &str) -> bool {
        if lane {
            crate::audit::AuditKey::derive_lane(&[2; 32], "v", "prod", epoch)
                .unwrap()
                .check(id, mac)
        } else {
            crate::audit::AuditKey::derive(&[1; 32], "v", "prod", epoch)
                .unwrap()
                .check(id, mac)
        }
    }

    /// An event MACed under the backup lane key (key byte 2) of `epoch`, writing `files`.
    fn lane_event(
        parents: Vec<EventId>,
        time: i64,
        action: Action,
        epoch: u32,
        files: &[&str],
    ) -> Event {
        let mut body = EventBody::new(
            time::OffsetDateTime::from_unix_timestamp(time).unwrap(),
            "nightly",
            None,
            "prod",
            &action,
        )
        .unwrap();
        body.seal = Some(super::super::Seal {
            vault: "v".into(),
            epoch,
            files: files
                .iter()
                .map(|f| ((*f).to_owned(), Some("11".repeat(32))))
                .collect(),
            lane: Some(crate::audit::BACKUP_LANE.into()),
            lane_epoch: None,
        });
        let key = crate::audit::AuditKey::derive_lane(&[2; 32], "v", "prod", epoch).unwrap();
        new_event(parents, body).unwrap().with_mac(&key)
    }

    fn verify_action(id: &str) -> Action {
        Action::BackupVerify {
            id: id.into(),
            sealed_sha256: "22".repeat(32),
            size: 1,
            sha256: "33".repeat(32),
            format: "file".into(),
            etcd_sha256: None,
        }
    }

    #[test]
    fn a_lane_key_records_backups_and_nothing_else() {
        let first = sealed(vec![], 900, accept(), 1, 1);
        // A backup-only identity verifies a backup: trusted, and status may rest on it.
        let verified = lane_event(
            vec![first.id().clone()],
            910,
            verify_action("0a"),
            1,
            &["backups/0a.yaml"],
        );
        // The same key forging an issuer, the policy, or a bundle through a backup event.
        let issuer = lane_event(
            vec![verified.id().clone()],
            920,
            Action::IssuerCreate {
                issuer: "e9-x".into(),
                epoch: 9,
                algorithm: "ed25519".into(),
                fingerprint: "sha256:00".into(),
                not_after: "2030-01-01T00:00:00Z".into(),
                key_store: "age".into(),
                pkcs11_uri: None,
                danger_allow_extractable: None,
                api: None,
            },
            1,
            &["issuers/e9-x/issuer.yaml"],
        );
        let policy = lane_event(
            vec![verified.id().clone()],
            921,
            accept(),
            1,
            &["policy.yaml"],
        );
        let bundle = lane_event(
            vec![verified.id().clone()],
            922,
            verify_action("0b"),
            1,
            &["bundle.age"],
        );
        let all: Vec<EventSummary> = [&first, &verified, &issuer, &policy, &bundle]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        for line in all.iter().map(EventSummary::to_line) {
            assert_eq!(EventSummary::from_line(&line).unwrap().to_line(), line);
        }
        for state in [
            ChainState::checked(&all, Some(&genuine)),
            ChainState::of(&all),
        ] {
            assert_eq!(state.rejected, 3, "{state:?}");
            assert!(state.issuers.is_empty());
            assert_eq!(state.files["policy.yaml"].1, *first.id());
            assert!(!state.files.contains_key("bundle.age"));
            assert_eq!(state.backups_verified.len(), 1);
            assert_eq!(state.backups_verified[0].id, "0a");
            assert_eq!(state.heads, vec![verified.id().clone()]);
        }
        // A main key's event under the lane's name, or a lane event under another lane key,
        // is not authentic.
        let wrong_key = {
            let mut e = EventSummary::of(&verified);
            e.lane = false;
            e
        };
        let state = ChainState::checked(&[EventSummary::of(&first), wrong_key], Some(&genuine));
        assert_eq!(state.rejected, 1);
    }

    #[test]
    fn a_lane_event_under_a_rotated_lane_epoch_is_never_authentic() {
        // The recipients change: a main event makes lane epoch 2 current.
        let first = sealed(vec![], 900, accept(), 1, 1);
        let mut body = EventBody::new(
            time::OffsetDateTime::from_unix_timestamp(910).unwrap(),
            "a",
            None,
            "prod",
            &accept(),
        )
        .unwrap();
        body.seal = Some(super::super::Seal {
            vault: "v".into(),
            epoch: 2,
            files: BTreeMap::new(),
            lane: None,
            lane_epoch: Some(2),
        });
        let rotated = new_event(vec![first.id().clone()], body)
            .unwrap()
            .with_mac(&crate::audit::AuditKey::derive(&[1; 32], "v", "prod", 2).unwrap());
        // A removed backup-only recipient still holds lane epoch 1.
        let stale = lane_event(vec![rotated.id().clone()], 920, verify_action("0a"), 1, &[]);
        let fresh = lane_event(vec![rotated.id().clone()], 921, verify_action("0b"), 2, &[]);
        let all: Vec<EventSummary> = [&first, &rotated, &stale, &fresh]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        let state = ChainState::checked(&all, Some(&genuine));
        assert_eq!(state.rejected, 1);
        assert_eq!(state.backups_verified.len(), 1);
        assert_eq!(state.backups_verified[0].id, "0b");
    }

    #[test]
    fn the_checked_chain_keeps_only_authentic_events_and_their_format_1_history() {
        // Format-1 history, then an upgrade-like sealed event on top of it.
        let old = event(vec![], 900, untaint());
        let up = sealed(vec![old.id().clone()], 910, accept(), 1, 1);
        // A forged sealed event (another key) on the head, and a format-1 event planted after
        // the upgrade.
        let forged = sealed(vec![up.id().clone()], 920, accept(), 1, 9);
        let planted = event(vec![up.id().clone()], 930, untaint());
        let all: Vec<EventSummary> = [&old, &up, &forged, &planted]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        let state = ChainState::checked(&all, Some(&genuine));
        assert!(state.authenticated && state.sealed);
        assert_eq!(state.rejected, 2);
        assert_eq!(
            state.heads,
            vec![up.id().clone()],
            "forged heads are never named"
        );
        assert_eq!(state.files["policy.yaml"].1, *up.id());
        // Structure only: the forged sealed event counts (nothing can tell), the planted
        // format-1 one does not.
        let structural = ChainState::of(&all);
        assert!(!structural.authenticated);
        assert_eq!(structural.rejected, 1);
        assert_eq!(structural.heads, vec![forged.id().clone()]);
        // A vault with no sealed event at all is format 1: everything counts.
        let v1 = ChainState::checked(&all[..1], Some(&genuine));
        assert_eq!((v1.rejected, v1.sealed), (0, false));
    }

    #[test]
    fn an_event_under_a_retired_epoch_is_never_authentic() {
        let first = sealed(vec![], 900, accept(), 1, 1);
        let rotated = sealed(vec![first.id().clone()], 910, accept(), 2, 1);
        // A removed recipient still holds epoch 1's key: an epoch-1 event on an epoch-2 head.
        let stale = sealed(vec![rotated.id().clone()], 920, accept(), 1, 1);
        // Concurrent work in a clone that had not seen the rotation stays authentic.
        let concurrent = sealed(vec![first.id().clone()], 915, accept(), 1, 1);
        let all: Vec<EventSummary> = [&first, &rotated, &stale, &concurrent]
            .iter()
            .map(|e| EventSummary::of(e))
            .collect();
        let state = ChainState::checked(&all, Some(&genuine));
        assert_eq!(state.rejected, 1);
        let mut heads = state.heads.clone();
        heads.sort();
        let mut want = vec![rotated.id().clone(), concurrent.id().clone()];
        want.sort();
        assert_eq!(heads, want);
    }
}
