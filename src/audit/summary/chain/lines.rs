//! The derived state as cache lines (`.cache/<env>/chain-*.state`, written by the vault
//! kernel): one line per fact, fields separated by spaces and percent-escaped
//! (`summary::escape`), an optional field `-` (absent) or `+<text>`.

use super::super::{escape, unescape};
use super::*;

fn opt(v: Option<&str>) -> String {
    match v {
        None => "-".to_owned(),
        Some(s) => format!("+{}", escape(s)),
    }
}

fn unopt(field: &str) -> Option<Option<String>> {
    match field {
        "-" => Some(None),
        _ => unescape(field.strip_prefix('+')?).ok().map(Some),
    }
}

fn issuer_state(text: &str) -> Option<&'static str> {
    ["pending", "active", "retired"]
        .into_iter()
        .find(|s| *s == text)
}

impl ChainState {
    /// The state as cache lines ([`ChainState::from_cache`] reads them back).
    pub fn to_cache(&self) -> String {
        use std::fmt::Write as _;
        let e = escape;
        let mut out = String::with_capacity(64 + self.files.len() * 180);
        let _ = writeln!(
            out,
            "state {} {} {} {} {}",
            u8::from(self.sealed),
            u8::from(self.authenticated),
            self.rejected,
            self.newest_epochs.0,
            self.newest_epochs.1
        );
        for h in &self.heads {
            let _ = writeln!(out, "head {}", e(h.as_str()));
        }
        for (path, (hash, event)) in &self.files {
            let _ = writeln!(
                out,
                "file {} {} {}",
                e(path),
                opt(hash.as_deref()),
                e(event.as_str())
            );
        }
        for (path, alts) in &self.concurrent {
            for (hash, event) in alts {
                let _ = writeln!(
                    out,
                    "concurrent {} {} {}",
                    e(path),
                    opt(hash.as_deref()),
                    e(event.as_str())
                );
            }
        }
        for (serial, r) in &self.revoked {
            let _ = writeln!(
                out,
                "revoked {} {} {} {}",
                e(serial),
                opt(r.issuer.as_deref()),
                opt(r.reason.as_deref()),
                r.time
            );
        }
        if let Some(t) = &self.taint {
            let _ = writeln!(
                out,
                "taint {} {} {}",
                opt(t.serial.as_deref()),
                opt(t.reason.as_deref()),
                t.since
            );
        }
        for (id, step) in &self.issuers {
            let _ = writeln!(
                out,
                "issuer {} {} {} {}",
                e(id),
                step.state,
                opt(step.activated.map(|t| t.to_string()).as_deref()),
                opt(step.retired.map(|t| t.to_string()).as_deref())
            );
        }
        for (issuer, n) in &self.crl_numbers {
            let _ = writeln!(out, "crl {} {n}", e(issuer));
        }
        for name in &self.holders {
            let _ = writeln!(out, "holder {}", e(name));
        }
        for b in &self.backups_verified {
            let _ = writeln!(
                out,
                "backup {} {} {}",
                e(&b.id),
                e(&b.sealed_sha256),
                b.time
            );
        }
        out
    }

    /// Reads [`ChainState::to_cache`]'s lines; `None` for anything else.
    pub fn from_cache(text: &str) -> Option<ChainState> {
        let un = |f: &str| unescape(f).ok();
        let id = |f: &str| EventId::parse(f).ok();
        let time = |f: Option<&str>| -> Option<Option<i64>> {
            match unopt(f?)? {
                None => Some(None),
                Some(t) => t.parse().ok().map(Some),
            }
        };
        let mut lines = text.lines();
        let mut head = lines.next()?.strip_prefix("state ")?.split(' ');
        let flag = |f: Option<&str>| match f? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let mut s = ChainState {
            sealed: flag(head.next())?,
            authenticated: flag(head.next())?,
            rejected: head.next()?.parse().ok()?,
            newest_epochs: (head.next()?.parse().ok()?, head.next()?.parse().ok()?),
            ..ChainState::default()
        };
        if head.next().is_some() {
            return None;
        }
        let mut files = Vec::new();
        for line in lines {
            let (kind, rest) = line.split_once(' ')?;
            let mut f = rest.split(' ');
            match kind {
                "head" => s.heads.push(id(f.next()?)?),
                "file" | "concurrent" => {
                    let path = un(f.next()?)?;
                    let hash = unopt(f.next()?)?;
                    let event = id(f.next()?)?;
                    if kind == "file" {
                        files.push((path, (hash, event)));
                    } else {
                        s.concurrent.entry(path).or_default().push((hash, event));
                    }
                }
                "revoked" => {
                    let serial = un(f.next()?)?;
                    let issuer = unopt(f.next()?)?;
                    let reason = unopt(f.next()?)?;
                    let time = f.next()?.parse().ok()?;
                    s.revoked.insert(
                        serial,
                        ChainRevocation {
                            issuer,
                            reason,
                            time,
                        },
                    );
                }
                "taint" => {
                    let serial = unopt(f.next()?)?;
                    let reason = unopt(f.next()?)?;
                    let since = f.next()?.parse().ok()?;
                    s.taint = Some(ChainTaint {
                        serial,
                        reason,
                        since,
                    });
                }
                "issuer" => {
                    let id = un(f.next()?)?;
                    let state = issuer_state(f.next()?)?;
                    let activated = time(f.next())?;
                    let retired = time(f.next())?;
                    s.issuers.insert(
                        id,
                        IssuerStep {
                            state,
                            activated,
                            retired,
                        },
                    );
                }
                "crl" => {
                    let issuer = un(f.next()?)?;
                    s.crl_numbers.insert(issuer, f.next()?.parse().ok()?);
                }
                "holder" => {
                    s.holders.insert(un(f.next()?)?);
                }
                "backup" => s.backups_verified.push(BackupVerified {
                    id: un(f.next()?)?,
                    sealed_sha256: un(f.next()?)?,
                    time: f.next()?.parse().ok()?,
                }),
                _ => return None,
            }
            if f.next().is_some() {
                return None;
            }
        }
        let n = files.len();
        s.files = files.into_iter().collect();
        // A path listed twice is no state this module wrote.
        (s.files.len() == n).then_some(s)
    }
}
