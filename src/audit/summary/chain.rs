//! PURE: the chain's state from event summaries: causal order, which events are trusted (MACs,
//! retired epochs, the backup lane), and what they imply (file hashes, revocations, taint,
//! issuer states, CRL numbers, holders, verified backups, heads).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::super::EventId;
use super::EventSummary;

/// An issuer's state as the chain tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerStep {
    /// `pending`, `active` or `retired`.
    pub state: &'static str,
    /// When it was activated (Unix seconds).
    pub activated: Option<i64>,
    /// When it was retired.
    pub retired: Option<i64>,
}

/// A revocation as the chain records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainRevocation {
    /// The issuer (`os` for direct mode).
    pub issuer: Option<String>,
    /// The reason.
    pub reason: Option<String>,
    /// When (Unix seconds).
    pub time: i64,
}

/// The break-glass taint as the chain tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTaint {
    /// The break-glass certificate.
    pub serial: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Since (Unix seconds).
    pub since: i64,
}

/// A `backup.verify` event the chain trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupVerified {
    /// The backup's id.
    pub id: String,
    /// The SHA-256 of the sealed file that checked out.
    pub sealed_sha256: String,
    /// When (Unix seconds).
    pub time: i64,
}

/// What the chain says the environment is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainState {
    /// What the next event names as parents.
    pub heads: Vec<EventId>,
    /// Whether any event is of format 2 (and so accounts for files).
    pub sealed: bool,
    /// Whether the events were authenticated (their MACs checked with the audit keys); when
    /// not, the state rests on structure alone.
    pub authenticated: bool,
    /// Events left out: MACs that do not verify, and format-1 events that no sealed event
    /// descends from (added after the upgrade). `audit verify` says what each one is.
    pub rejected: usize,
    /// Each file's expected content hash (`None`: removed), with the event that wrote it last
    /// (hashed: every record a command reads is looked up here).
    pub files: HashMap<String, (Option<String>, EventId)>,
    /// Files two clones changed differently before a merge (git made the human pick or combine
    /// them): the other contents the chain accepts besides the one in `files`.
    pub concurrent: BTreeMap<String, Vec<(Option<String>, EventId)>>,
    /// Revoked serials.
    pub revoked: BTreeMap<String, ChainRevocation>,
    /// The taint, while a break-glass certificate is outstanding.
    pub taint: Option<ChainTaint>,
    /// Issuer states by id.
    pub issuers: BTreeMap<String, IssuerStep>,
    /// The newest CRL number per issuer.
    pub crl_numbers: BTreeMap<String, u64>,
    /// The registered holders (added and not removed since).
    pub holders: BTreeSet<String>,
    /// Every trusted `backup.verify`, oldest first.
    pub backups_verified: Vec<BackupVerified>,
    /// The newest main and lane key epochs any sealed event names, trusted or not: a key file
    /// holding less was rolled back or replaced.
    pub newest_epochs: (u32, u32),
}

/// The summaries in causal order: every parent before its children; among events whose
/// parents are all placed, the earliest (time, id) first.
pub fn causal_order(summaries: &[EventSummary]) -> Vec<&EventSummary> {
    let refs: Vec<&EventSummary> = summaries.iter().collect();
    causal_order_of(&refs)
}

/// [`causal_order`] of borrowed summaries.
fn causal_order_of<'a>(summaries: &[&'a EventSummary]) -> Vec<&'a EventSummary> {
    let index: HashMap<&EventId, usize> = summaries
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.id, i))
        .collect();
    // Each present parent once (a merge names two or more; most events name one).
    let parents_of = |s: &EventSummary| -> Vec<usize> {
        let mut ps: Vec<usize> = s
            .parents
            .iter()
            .filter_map(|p| index.get(p).copied())
            .collect();
        if ps.len() > 1 {
            ps.sort_unstable();
            ps.dedup();
        }
        ps
    };
    let mut waiting: Vec<usize> = vec![0; summaries.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); summaries.len()];
    for (i, s) in summaries.iter().enumerate() {
        let ps = parents_of(s);
        waiting[i] = ps.len();
        for pi in ps {
            children[pi].push(i);
        }
    }
    let key = |i: usize| (summaries[i].time, summaries[i].id.as_str());
    let mut ready: BTreeSet<((i64, &str), usize)> = (0..summaries.len())
        .filter(|&i| waiting[i] == 0)
        .map(|i| (key(i), i))
        .collect();
    let mut out = Vec::with_capacity(summaries.len());
    let mut placed = vec![false; summaries.len()];
    while let Some(first) = ready.iter().next().copied() {
        ready.remove(&first);
        let i = first.1;
        placed[i] = true;
        out.push(summaries[i]);
        for &c in &children[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.insert((key(c), c));
            }
        }
    }
    // A cycle cannot occur with hash links; keep anything odd in time order at the end.
    let mut rest: Vec<usize> = (0..summaries.len()).filter(|&i| !placed[i]).collect();
    rest.sort_by_key(|&i| key(i));
    out.extend(rest.into_iter().map(|i| summaries[i]));
    out
}

/// Decides whether a sealed event's MAC is genuine: `(lane, epoch, id, mac)`, `lane` when it is
/// under a backup lane key.
pub type MacCheck<'a> = &'a dyn Fn(bool, u32, &EventId, &str) -> bool;

/// The events the state may rest on. In a chain with sealed events: the sealed events whose MAC
/// verifies (every sealed event, when `check` is `None`: structure only), and the format-1
/// events they descend from (history from before the upgrade). In a chain without any: every
/// event (a format-1 vault).
fn trusted<'a>(
    summaries: &'a [EventSummary],
    check: Option<MacCheck<'_>>,
) -> Vec<&'a EventSummary> {
    if !summaries.iter().any(|e| e.sealed) {
        return summaries.iter().collect();
    }
    // An event MACed with an older epoch than one of its ancestors used a retired key (a
    // removed recipient's): never genuine. Main and backup lane epochs are counted apart; a
    // main event that rotates the lane names the lane epoch it made current. Only worth a
    // pass when there are several epochs.
    let epochs: BTreeSet<(bool, u32)> = summaries
        .iter()
        .filter_map(|e| e.mac.as_ref().map(|(epoch, _)| (e.lane, *epoch)))
        .chain(
            summaries
                .iter()
                .filter_map(|e| e.lane_epoch.map(|n| (true, n))),
        )
        .collect();
    let mut retired: HashSet<&EventId> = HashSet::new();
    if epochs.len() > 1 {
        // Per event: the newest (main, lane) epochs at or before it.
        let mut newest: HashMap<&EventId, (u32, u32)> = HashMap::new();
        for e in causal_order(summaries) {
            let (main, lane) = e
                .parents
                .iter()
                .filter_map(|p| newest.get(p))
                .fold((0, 0), |(m, l), (pm, pl)| (m.max(*pm), l.max(*pl)));
            let own = e.mac.as_ref().map_or(0, |(epoch, _)| *epoch);
            let (inherited, own_main, own_lane) = if e.lane {
                (lane, 0, own)
            } else {
                (main, own, e.lane_epoch.unwrap_or(0))
            };
            if e.sealed && own < inherited {
                retired.insert(&e.id);
            }
            newest.insert(&e.id, (main.max(own_main), lane.max(own_lane)));
        }
    }
    let genuine = |e: &EventSummary| {
        !retired.contains(&e.id)
            // A lane key records backups, nothing else: anything more is forged.
            && (!e.lane || super::super::lane_may_record(&e.action, e.files.iter().map(|(f, _)| f.as_str())))
            && match (&e.mac, check) {
                (Some((epoch, mac)), Some(check)) => check(e.lane, *epoch, &e.id, mac),
                (Some(_), None) => true,
                (None, _) => false,
            }
    };
    let mut kept: HashSet<&EventId> = HashSet::with_capacity(summaries.len());
    let mut stack: Vec<&EventSummary> = summaries
        .iter()
        .filter(|e| e.sealed && genuine(e))
        .collect();
    for e in &stack {
        kept.insert(&e.id);
    }
    if summaries.iter().all(|e| e.sealed) {
        // No format-1 history to bring in.
        return summaries.iter().filter(|e| kept.contains(&e.id)).collect();
    }
    let index: HashMap<&EventId, &EventSummary> = summaries.iter().map(|e| (&e.id, e)).collect();
    // Format-1 ancestors of genuine sealed events.
    while let Some(e) = stack.pop() {
        for p in &e.parents {
            if let Some(parent) = index.get(p)
                && !parent.sealed
                && kept.insert(&parent.id)
            {
                stack.push(parent);
            }
        }
    }
    summaries.iter().filter(|e| kept.contains(&e.id)).collect()
}

/// One write of a file.
struct Write<'a> {
    hash: &'a Option<String>,
    event: &'a EventId,
    /// The event's place in the causal order.
    at: usize,
    /// Whether it changed what the event saw (a `policy accept` of an unchanged policy does
    /// not): after a merge, a change beats a concurrent rewrite of the old contents, as git's
    /// three-way merge does.
    change: bool,
    /// The places of the earlier writes of the same file that are its ancestors (it saw them,
    /// so they are superseded).
    covers: BTreeSet<usize>,
}

/// The writes whose contents a file may hold, of its writes no later write saw: the changes if
/// any (one, or several when two clones changed it differently), else all of them.
fn accepted<'w, 'a>(writes: &[&'w Write<'a>]) -> Vec<&'w Write<'a>> {
    let changes: Vec<&Write> = writes.iter().copied().filter(|w| w.change).collect();
    if changes.is_empty() {
        writes.to_vec()
    } else {
        changes
    }
}

/// The events that are ancestors of `order[at]` and not placed before `floor` (in the causal
/// order every path from an event to a descendant runs through later places, so nothing placed
/// before `floor` can lead to a write placed at or after it).
fn ancestors_from(
    order: &[&EventSummary],
    pos: &HashMap<&EventId, usize>,
    at: usize,
    floor: usize,
) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![at];
    while let Some(i) = todo.pop() {
        for p in &order[i].parents {
            if let Some(&j) = pos.get(p)
                && j >= floor
                && seen.insert(j)
            {
                todo.push(j);
            }
        }
    }
    seen
}

impl ChainState {
    /// Whether the chain accepts `hash` as the contents of `file`: what its last write named,
    /// or, after a merge of two clones that changed it differently, what either named.
    pub fn accepts(&self, file: &str, hash: &str) -> bool {
        let is = |h: &Option<String>| h.as_deref() == Some(hash);
        self.files.get(file).is_some_and(|(h, _)| is(h))
            || self
                .concurrent
                .get(file)
                .is_some_and(|alts| alts.iter().any(|(h, _)| is(h)))
    }

    /// What one trusted event says, applied in causal order: revocations, CRL numbers,
    /// verified backups, the taint, issuer states and holders.
    fn apply(&mut self, e: &EventSummary) {
        let subject = e.subject.clone();
        match e.action.as_str() {
            "revoke" => {
                if let Some(serial) = subject {
                    self.revoked.entry(serial).or_insert(ChainRevocation {
                        issuer: e.issuer.clone(),
                        reason: e.reason.clone(),
                        time: e.time,
                    });
                }
                if let (Some(issuer), Some(n)) = (&e.issuer, e.number) {
                    let best = self.crl_numbers.entry(issuer.clone()).or_insert(n);
                    *best = (*best).max(n);
                }
            }
            "crl" => {
                if let (Some(issuer), Some(n)) = (subject, e.number) {
                    let best = self.crl_numbers.entry(issuer).or_insert(n);
                    *best = (*best).max(n);
                }
            }
            "backup.verify" => {
                if let (Some(id), Some(sealed_sha256)) = (subject, e.issuer.clone()) {
                    self.backups_verified.push(BackupVerified {
                        id,
                        sealed_sha256,
                        time: e.time,
                    });
                }
            }
            "break-glass" | "break-glass.kubernetes" => {
                self.taint = Some(ChainTaint {
                    serial: subject,
                    reason: e.reason.clone(),
                    since: e.time,
                });
            }
            "issuer.create" => {
                if let Some(id) = subject {
                    self.issuers.entry(id).or_insert(IssuerStep {
                        state: "pending",
                        activated: None,
                        retired: None,
                    });
                }
            }
            "issuer.activate" => {
                if let Some(id) = subject {
                    let step = self.issuers.entry(id).or_insert(IssuerStep {
                        state: "pending",
                        activated: None,
                        retired: None,
                    });
                    if step.state != "retired" {
                        step.state = "active";
                        step.activated = Some(e.time);
                    }
                }
            }
            "holder.add" => {
                if let Some(name) = subject {
                    self.holders.insert(name);
                }
            }
            "holder.remove" => {
                if let Some(name) = subject {
                    self.holders.remove(&name);
                }
            }
            "issuer.retire" => {
                if let Some(id) = subject {
                    let step = self.issuers.entry(id).or_insert(IssuerStep {
                        state: "pending",
                        activated: None,
                        retired: None,
                    });
                    step.state = "retired";
                    step.retired = Some(e.time);
                }
            }
            _ => {}
        }
        if e.clears_taint {
            self.taint = None;
        }
    }

    /// Adds an event written on top of this state (its parents are exactly the heads, so every
    /// trusted event is its ancestor and it comes last in any causal order): what
    /// [`ChainState::checked`] would derive with it, without deriving everything again. `false`
    /// (the state unchanged) for anything else: a format-1 state or event, other parents, a
    /// backup lane event, or a main event under an epoch older than the newest any event names
    /// (the retired-key rule of the derivation counts epochs of every ancestor, genuine or not:
    /// such an event is left to a full derivation).
    pub fn fold(&mut self, e: &EventSummary) -> bool {
        let mut parents = e.parents.clone();
        parents.sort();
        parents.dedup();
        let Some((epoch, _)) = &e.mac else {
            return false;
        };
        if !self.sealed
            || !e.sealed
            || e.lane
            || *epoch < self.newest_epochs.0
            || parents != self.heads
        {
            return false;
        }
        for (path, hash) in &e.files {
            self.concurrent.remove(path);
            self.files
                .insert(path.clone(), (hash.clone(), e.id.clone()));
        }
        self.apply(e);
        self.heads = vec![e.id.clone()];
        self.newest_epochs.0 = *epoch;
        true
    }

    /// The state the summaries imply, on structure alone (no MAC is checked).
    pub fn of(summaries: &[EventSummary]) -> Self {
        Self::checked(summaries, None)
    }

    /// The state the trusted summaries imply: with `check`, only events whose MAC verifies
    /// under a live epoch, and their format-1 history, count.
    pub fn checked(summaries: &[EventSummary], check: Option<MacCheck<'_>>) -> Self {
        let kept: Vec<&EventSummary> = trusted(summaries, check);
        let mut s = ChainState {
            heads: heads_of(&kept),
            sealed: summaries.iter().any(|e| e.sealed),
            authenticated: check.is_some(),
            rejected: summaries.len() - kept.len(),
            newest_epochs: summaries
                .iter()
                .filter_map(|e| e.mac.as_ref().map(|(epoch, _)| (e.lane, *epoch)))
                .fold((0, 0), |(main, lane), (is_lane, epoch)| {
                    if is_lane {
                        (main, lane.max(epoch))
                    } else {
                        (main.max(epoch), lane)
                    }
                }),
            ..ChainState::default()
        };
        let order = causal_order_of(&kept);
        let pos: HashMap<&EventId, usize> =
            order.iter().enumerate().map(|(i, e)| (&e.id, i)).collect();
        // Per file, every write of it in causal order. The ones no later write saw are what the
        // file may hold: one in a linear history, several after a merge of clones that both
        // wrote it.
        let mut writes: HashMap<&str, Vec<Write>> = HashMap::new();
        for (at, e) in order.iter().enumerate() {
            // This event's ancestors down to the first write of a file it rewrites: only when it
            // rewrites one (most events write new files only), once per event. Rewrites are
            // rare (policy, recipients, the audit keys), so the walk stays cheap.
            let floor = e
                .files
                .iter()
                .filter_map(|(path, _)| writes.get(path.as_str()))
                .filter_map(|ws| ws.first().map(|w| w.at))
                .min();
            let ancestors = floor.map(|floor| ancestors_from(&order, &pos, at, floor));
            for (path, hash) in &e.files {
                let history = writes.entry(path.as_str()).or_default();
                // What this event saw: its ancestor writes that no other ancestor write saw.
                let (seen, covers) = match &ancestors {
                    Some(anc) => {
                        let mine: Vec<&Write> =
                            history.iter().filter(|w| anc.contains(&w.at)).collect();
                        let covered: BTreeSet<usize> =
                            mine.iter().flat_map(|w| w.covers.iter().copied()).collect();
                        let seen: Vec<&Write> = mine
                            .iter()
                            .copied()
                            .filter(|w| !covered.contains(&w.at))
                            .collect();
                        (seen, mine.iter().map(|w| w.at).collect())
                    }
                    None => (Vec::new(), BTreeSet::new()),
                };
                // A change differs from what the event saw; rewriting what it saw keeps that
                // write's standing (a no-op after a change is still the change, after the first
                // write is still no change), so a concurrent no-op never beats a change.
                let change = if seen.is_empty() {
                    false
                } else {
                    match accepted(&seen).iter().find(|w| w.hash == hash) {
                        Some(w) => w.change,
                        None => true,
                    }
                };
                history.push(Write {
                    hash,
                    event: &e.id,
                    at,
                    change,
                    covers,
                });
            }
            s.apply(e);
        }
        for (path, history) in writes {
            let covered: BTreeSet<usize> = history
                .iter()
                .flat_map(|w| w.covers.iter().copied())
                .collect();
            let current: Vec<&Write> = history
                .iter()
                .filter(|w| !covered.contains(&w.at))
                .collect();
            let mut ok = accepted(&current);
            ok.sort_by_key(|w| w.at);
            if let Some(last) = ok.pop() {
                s.files
                    .insert(path.to_owned(), (last.hash.clone(), last.event.clone()));
                let others: Vec<(Option<String>, EventId)> = ok
                    .into_iter()
                    .filter(|w| w.hash != last.hash)
                    .map(|w| (w.hash.clone(), w.event.clone()))
                    .collect();
                if !others.is_empty() {
                    s.concurrent.insert(path.to_owned(), others);
                }
            }
        }
        s
    }
}

/// The events no other event names as a parent, sorted.
pub fn heads(summaries: &[EventSummary]) -> Vec<EventId> {
    let refs: Vec<&EventSummary> = summaries.iter().collect();
    heads_of(&refs)
}

/// [`heads`] of borrowed summaries.
fn heads_of(summaries: &[&EventSummary]) -> Vec<EventId> {
    let referenced: HashSet<&EventId> = summaries.iter().flat_map(|s| s.parents.iter()).collect();
    let mut out: Vec<EventId> = summaries
        .iter()
        .map(|s| &s.id)
        .filter(|id| !referenced.contains(id))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

mod lines;
