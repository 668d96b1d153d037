//! The module map ARCHITECTURE.md describes, checked: every module (one source file) of the
//! talvault crate and the hsm crate, the modules its code refers to (`use`, `crate::…`,
//! `super::…` paths; re-exports with `pub use`, `mod` declarations and unit tests excluded),
//! and two rules: the dependency graph has no cycle, and each layer refers only to the layers
//! below it (pure core ← store ← vault ← cli, `process` beside the CLI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`crate::vault::issue`) → its source file.
fn modules(src: &Path, prefix: &str) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, module: &str, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                walk(&path, &format!("{module}::{name}"), out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let m = match name.as_str() {
                    "mod" | "lib" => module.to_owned(),
                    "main" => continue,
                    _ => format!("{module}::{name}"),
                };
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, prefix, &mut out);
    out
}

/// The code of a file without comments, string contents, unit tests and `pub use` lines.
fn code(text: &str) -> String {
    let text = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("//") || t.starts_with("pub use ") || t.starts_with("pub(crate) use ") {
            continue;
        }
        // Drop string literals (paths in messages are not dependencies).
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The modules a file's code refers to.
fn deps(
    module: &str,
    file: &Path,
    all: &BTreeMap<String, PathBuf>,
    root: &str,
) -> BTreeSet<String> {
    let code = code(&std::fs::read_to_string(file).unwrap());
    // `pub use` blocks spanning lines were dropped only on their first line: drop the rest.
    let mut paths = Vec::new();
    let is_mod_file = matches!(
        file.file_stem().and_then(|s| s.to_str()),
        Some("mod" | "lib")
    );
    // `super` is the enclosing module, for a mod.rs as for any other file.
    let parent = module.rsplit_once("::").map_or(root, |(p, _)| p).to_owned();
    let bytes = code.as_bytes();
    for (start, kw) in [
        ("crate::", root),
        ("super::", parent.as_str()),
        ("self::", module),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            // Only whole path starts (not `foo_crate::`).
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            // `self::` in a mod.rs/lib.rs names a child; `super::` in one names the parent's
            // sibling level, which for mod.rs is the module's own parent.
            let base = if start == "self::" { module } else { kw };
            let rest: String = code[from..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                .collect();
            let mut path = base.to_owned();
            let mut resolved = base.to_owned();
            for seg in rest.split("::") {
                let seg = seg.trim_end_matches('{');
                if seg.is_empty() {
                    break;
                }
                path = format!("{path}::{seg}");
                if all.contains_key(&path) {
                    resolved = path.clone();
                } else {
                    break;
                }
            }
            // `use super::{a, b}` / `use crate::x::{y, z}`: each name may be a module.
            if rest.ends_with('{') || code[from + rest.len()..].starts_with('{') {
                let brace = from + rest.len() + code[from + rest.len()..].find('{').unwrap_or(0);
                if let Some(end) = code[brace..].find('}') {
                    for name in code[brace + 1..brace + end].split(',') {
                        let name = name.trim().split("::").next().unwrap_or("").trim();
                        let candidate = format!("{resolved}::{name}");
                        if all.contains_key(&candidate) {
                            paths.push(candidate);
                        }
                    }
                }
            }
            paths.push(resolved);
        }
    }
    // In a mod.rs or lib.rs, a child's items can be named without a prefix: `child::item`.
    if is_mod_file {
        for child in all.keys().filter(|k| {
            k.strip_prefix(module)
                .and_then(|r| r.strip_prefix("::"))
                .is_some_and(|r| !r.contains("::"))
        }) {
            let name = child.rsplit("::").next().unwrap_or_default();
            let needle = format!("{name}::");
            let mut from = 0;
            while let Some(i) = code[from..].find(&needle) {
                let at = from + i;
                from = at + needle.len();
                let before = at.checked_sub(1).map(|b| bytes[b]);
                if before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')) {
                    paths.push(child.clone());
                    break;
                }
            }
        }
    }
    paths
        .into_iter()
        .filter(|p| p != module && all.contains_key(p))
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeMap::new();
    for (root, src) in [("crate", repo.join("src")), ("hsm", repo.join("hsm/src"))] {
        let all = modules(&src, root);
        for (m, f) in &all {
            out.insert(m.clone(), deps(m, f, &all, root));
        }
    }
    out
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == d).unwrap_or(0);
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 40, "{} modules found", g.len());
    // The checker itself must see a cycle when there is one.
    let mut bad = g.clone();
    bad.entry("crate::pki::ttl".into())
        .or_default()
        .insert("crate::vault".into());
    bad.entry("crate::vault".into())
        .or_default()
        .insert("crate::pki::ttl".into());
    assert!(find_cycle(&bad).is_some());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

/// The same graph between top-level modules (`crate::pki`, `crate::bundle`, …): the rooms of
/// one area may lean on each other, areas may not.
#[test]
fn top_level_modules_have_no_cycle() {
    let top = |m: &str| -> String {
        let mut parts = m.splitn(3, "::");
        let (root, first) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        format!("{root}::{first}")
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in graph() {
        let from = top(&m);
        let entry = g.entry(from.clone()).or_default();
        entry.extend(deps.iter().map(|d| top(d)).filter(|d| *d != from));
    }
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle between areas: {}", cycle.join(" -> "));
    }
}

/// The layer a module belongs to: 0 pure core, 1 store, 2 vault, 3 cli and process.
fn layer(m: &str) -> Option<u8> {
    let top = m.strip_prefix("crate::")?.split("::").next()?;
    Some(match top {
        "store" => 1,
        "vault" => 2,
        "cli" | "process" => 3,
        _ => 0,
    })
}

#[test]
fn layers_refer_only_downwards() {
    let g = graph();
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(l) = layer(m) else { continue };
        for d in deps {
            if let Some(dl) = layer(d)
                && dl > l
            {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "upward dependencies: {wrong:#?}");
    // The CLI writes the user's files through its output module only, and calls the pure core
    // for the standalone bundle commands; everything else goes through the service.
    for (m, deps) in &g {
        if m.starts_with("crate::cli") && m != "crate::cli::output" {
            let store: Vec<&String> = deps
                .iter()
                .filter(|d| d.starts_with("crate::store"))
                .collect();
            assert!(store.is_empty(), "{m} uses {store:?}");
        }
    }
}

/// The service's rooms (one file per capability) share the kernel (`vault`, `trail`), the read
/// side (`records`), signing (`signer`), sealing to a holder (`delivery`) and the errors, never
/// each other.
#[test]
fn vault_rooms_do_not_import_each_other() {
    const SHARED: [&str; 6] = [
        "crate::vault",
        "crate::vault::trail",
        "crate::vault::records",
        "crate::vault::signer",
        "crate::vault::delivery",
        "crate::vault::error",
    ];
    let g = graph();
    // A room (or a shared module) may be a directory (`vault/backup/`): its files are one.
    let room_of = |m: &str| -> String {
        let rest = m.trim_start_matches("crate::vault::");
        format!("crate::vault::{}", rest.split("::").next().unwrap_or(rest))
    };
    let rooms: Vec<&String> = g
        .keys()
        .filter(|m| m.starts_with("crate::vault::") && !SHARED.contains(&room_of(m).as_str()))
        .collect();
    assert!(rooms.len() >= 10, "{rooms:?}");
    let mut wrong = Vec::new();
    for room in &rooms {
        for d in &g[*room] {
            if rooms.contains(&d) && room_of(d) != room_of(room) {
                wrong.push(format!("{room} -> {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "rooms importing rooms: {wrong:#?}");
}
