//! The `machine.acceptedCAs` patch (and its Kubernetes part: `cluster.acceptedCAs` or the
//! `KubeAPIServerCAConfig` document) applied to the upstream machine-config vectors
//! (tests/data/talos/stability-v1.1{3,4}-base-{controlplane,worker}.yaml) by a port of the parts
//! of Talos's config patcher this patch exercises, since talosctl cannot be built here. The
//! result must hold exactly the intended list, and nothing else in any document may change.
//!
//! Ported from siderolabs/talos (snapshot of reference/talos-formats.md), each function names its
//! source:
//! - pkg/machinery/config/configloader/internal/decoder/decoder.go `parse`: documents, ids
//!   (apiVersion, kind defaulting to `v1alpha1`, name), the duplicate-document check;
//! - .../decoder/delete.go `AppendDeletesTo`/`processNode`/`isEmptyDoc`/`makeSelector`:
//!   `$patch: delete` extraction, pruning of emptied mappings, dropping emptied documents;
//! - .../decoder/selector.go `deleteForPath`: zeroing a field (struct semantics), "lookup failed"
//!   when an intermediate field is absent;
//! - pkg/machinery/config/container/container.go `Documents`: v1alpha1 deletes first, then the
//!   v1alpha1 document, then the rest;
//! - pkg/machinery/config/configpatcher/strategic.go `StrategicMerge`: match by (apiVersion,
//!   kind, name), selectors applied, documents merged, unmatched ones appended;
//! - pkg/machinery/config/merge/merge.go `merge`: mappings/structs field by field, slices
//!   **appended** (no `merge:"replace"` tag on acceptedCAs), scalars replaced unless the right is
//!   the zero value (booleans always), nil on the right ignored;
//! - pkg/machinery/config/configpatcher/json6902.go: JSON patches refused on multi-document
//!   configs.
//!
//! Not ported (unused by this patch, refused loudly if met): `$patch: delete` inside sequences,
//! the custom `Merge` methods of a few types (network interfaces, VLANs, audit policy), the
//! pointer-to-scalar `overwrite` nuance, typed decoding (unknown-field checks) and omitempty.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use serde_yaml::{Mapping, Value};
use talvault::bundle::SecretsBundle;
use talvault::bundle::{VersionContract, generate};
use talvault::keys::PrivateKey;
use talvault::patch::{
    AcceptedCa, KubernetesCas, KubernetesForm, accepted_cas_patch, accepted_cas_patch_for,
};
use talvault::pki::issuer::{IssuerSpec, create_issuer_certificate};
use time::{Duration, OffsetDateTime};

use crate::support::vector;

// ------------------------------------------------------------------------------------------
// The port.

/// decoder.go `documentID`: (apiVersion, kind, name); the legacy document is ("", "v1alpha1", "").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DocId {
    api_version: String,
    kind: String,
    name: String,
}

impl DocId {
    fn is_v1alpha1(&self) -> bool {
        self.api_version.is_empty() && self.kind == "v1alpha1"
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Doc {
    id: DocId,
    body: Value,
}

/// A delete selector (selector.go `selector`): a path in one document; empty = the document.
#[derive(Debug, Clone, PartialEq)]
struct Selector {
    id: DocId,
    path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Doc(Doc),
    Delete(Selector),
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// delete.go `findValue` on the root mapping.
fn find_value(root: &Value, key: &str) -> String {
    root.get(key).and_then(scalar).unwrap_or_default()
}

/// decoder.go: kind defaults to `v1alpha1`; the legacy document has no apiVersion.
fn doc_id(root: &Value) -> DocId {
    let kind = find_value(root, "kind");
    DocId {
        api_version: find_value(root, "apiVersion"),
        kind: if kind.is_empty() {
            "v1alpha1".into()
        } else {
            kind
        },
        name: find_value(root, "name"),
    }
}

/// delete.go `makeSelector`: apiVersion and kind both empty (legacy) or both set.
fn make_selector(path: &[String], root: &Value) -> Result<Selector, String> {
    let api_version = find_value(root, "apiVersion");
    let kind = find_value(root, "kind");
    if path.is_empty() && (api_version.is_empty() || kind.is_empty()) {
        return Err("missing apiVersion/kind in document for which $patch: delete is used".into());
    }
    let kind = match (api_version.is_empty(), kind.is_empty()) {
        (true, true) => "v1alpha1".to_owned(),
        (false, false) => kind,
        _ => {
            return Err(format!(
                "kind and apiVersion must be both set for path {path:?}"
            ));
        }
    };
    Ok(Selector {
        id: DocId {
            api_version,
            kind,
            name: find_value(root, "name"),
        },
        path: path.to_vec(),
    })
}

fn is_patch_delete(k: &Value, v: &Value) -> bool {
    k.as_str() == Some("$patch") && v.as_str() == Some("delete")
}

/// delete.go `processNode` for mappings and sequences: returns (continue, delete this node).
/// A `$patch: delete` key marks its mapping for deletion; emptied mappings and sequences are
/// deleted from their parent in turn.
fn process(
    node: &mut Value,
    parent_is_sequence: bool,
    path: &mut Vec<String>,
    root_snapshot: &Value,
    out: &mut Vec<Selector>,
) -> Result<(bool, bool), String> {
    match node {
        Value::Mapping(m) => {
            if m.iter().any(|(k, v)| is_patch_delete(k, v)) {
                if parent_is_sequence {
                    return Err("port: $patch: delete inside a sequence is not ported".into());
                }
                // delete.go `ensureNoSeqInChain`.
                if path.iter().any(|p| p.starts_with('[')) {
                    return Err(format!("cannot delete an inner key in {path:?}"));
                }
                out.push(make_selector(path, root_snapshot)?);
                return Ok((true, true));
            }
            let keys: Vec<Value> = m.keys().cloned().collect();
            for k in keys {
                path.push(scalar(&k).unwrap_or_default());
                let child = m.get_mut(&k).ok_or("vanished key")?;
                let (cont, del) = process(child, false, path, root_snapshot, out)?;
                path.pop();
                if !cont {
                    return Ok((false, del));
                }
                if del {
                    m.remove(&k);
                    if m.is_empty() {
                        return Ok((true, true));
                    }
                }
            }
            Ok((true, false))
        }
        Value::Sequence(s) => {
            let mut i = 0;
            while i < s.len() {
                path.push(format!("[{i}]"));
                let (cont, del) = process(&mut s[i], true, path, root_snapshot, out)?;
                path.pop();
                if !cont {
                    return Ok((false, del));
                }
                if del {
                    s.remove(i);
                    if s.is_empty() {
                        return Ok((true, true));
                    }
                } else {
                    i += 1;
                }
            }
            Ok((true, false))
        }
        _ => Ok((true, false)),
    }
}

/// delete.go `isEmptyDoc`: only version/kind/name scalars left.
fn is_empty_doc(root: &Value) -> bool {
    root.as_mapping().is_some_and(|m| {
        m.iter().all(|(k, v)| {
            matches!(k.as_str(), Some("version" | "kind" | "name")) && scalar(v).is_some()
        })
    })
}

/// decoder.go `parse`: each YAML document yields its delete selectors (when allowed) and then,
/// unless it was emptied, the document itself; duplicate documents are refused unless allowed.
fn load(text: &str, allow_patch_delete: bool, allow_duplicates: bool) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let mut root: Value = serde::Deserialize::deserialize(de).map_err(|e| e.to_string())?;
        if root.is_null() {
            continue;
        }
        if allow_patch_delete {
            let snapshot = root.clone();
            let mut selectors = Vec::new();
            let (_, del) = process(&mut root, false, &mut Vec::new(), &snapshot, &mut selectors)?;
            items.extend(selectors.into_iter().map(Item::Delete));
            if del || is_empty_doc(&root) {
                continue;
            }
        }
        if !root.is_mapping() {
            return Err("expected a YAML document".into());
        }
        let id = doc_id(&root);
        if !allow_duplicates && !seen.insert(id.clone()) {
            return Err(format!("duplicate document {id:?} is not allowed"));
        }
        items.push(Item::Doc(Doc { id, body: root }));
    }
    Ok(items)
}

/// container.go `Documents`: v1alpha1 delete selectors, then the v1alpha1 document, then the
/// rest in their order.
fn container_order(items: Vec<Item>) -> Vec<Item> {
    let is_v1_delete = |i: &Item| matches!(i, Item::Delete(s) if s.id.kind == "v1alpha1");
    let is_v1_doc = |i: &Item| matches!(i, Item::Doc(d) if d.id.is_v1alpha1());
    let mut out: Vec<Item> = items.iter().filter(|i| is_v1_delete(i)).cloned().collect();
    out.extend(items.iter().filter(|i| is_v1_doc(i)).cloned());
    out.extend(
        items
            .into_iter()
            .filter(|i| !is_v1_delete(i) && !is_v1_doc(i)),
    );
    out
}

/// selector.go `deleteForPath` with struct semantics: the last field is zeroed (absent or not);
/// an absent intermediate field is "lookup failed".
fn delete_path(body: &mut Value, path: &[String]) -> Result<(), String> {
    let (last, intermediate) = path.split_last().ok_or("path is empty")?;
    let mut node = body;
    for seg in intermediate {
        node = match node.get_mut(seg.as_str()) {
            Some(v) if v.is_mapping() => v,
            _ => {
                return Err(format!(
                    "failed to delete path '{}': lookup failed",
                    path.join(".")
                ));
            }
        };
    }
    let m = node.as_mapping_mut().ok_or("lookup failed")?;
    m.remove(last.as_str());
    Ok(())
}

/// merge.go `merge` on YAML values.
fn merge(left: &mut Value, right: &Value) -> Result<(), String> {
    match (&mut *left, right) {
        // A nil pointer, slice or map on the right leaves the left alone.
        (_, Value::Null) => Ok(()),
        (Value::Null, r) => {
            *left = r.clone();
            Ok(())
        }
        (Value::Mapping(l), Value::Mapping(r)) => {
            for (k, rv) in r {
                match l.get_mut(k) {
                    Some(lv) if !lv.is_null() => merge(lv, rv)?,
                    _ => {
                        l.insert(k.clone(), rv.clone());
                    }
                }
            }
            Ok(())
        }
        // Slices are concatenated: left, then right.
        (Value::Sequence(l), Value::Sequence(r)) => {
            l.extend(r.iter().cloned());
            Ok(())
        }
        (Value::Bool(_), Value::Bool(_)) => {
            *left = right.clone();
            Ok(())
        }
        (Value::String(_), Value::String(r)) => {
            if !r.is_empty() {
                *left = right.clone();
            }
            Ok(())
        }
        (Value::Number(_), Value::Number(r)) => {
            if r.as_f64() != Some(0.0) {
                *left = right.clone();
            }
            Ok(())
        }
        (l, r) => Err(format!("merge type mismatch left {l:?} right {r:?}")),
    }
}

/// strategic.go `StrategicMerge` of a patch (already in container order) into `config`.
fn strategic_merge(config: Vec<Doc>, patch: Vec<Item>) -> Result<Vec<Doc>, String> {
    strategic_merge_with(config, patch, false)
}

/// [`strategic_merge`]; with `skip_absent`, a delete selector for a document the config lacks
/// is skipped, as strategic.go does at the Talos 1.14 snapshot ("a delete selector for a
/// non-existent document is silently skipped").
fn strategic_merge_with(
    mut config: Vec<Doc>,
    patch: Vec<Item>,
    skip_absent: bool,
) -> Result<Vec<Doc>, String> {
    for item in patch {
        match item {
            Item::Delete(sel) => {
                let Some(pos) = config.iter().position(|d| d.id == sel.id) else {
                    if skip_absent {
                        continue;
                    }
                    return Err(
                        "port: a delete for a document the config lacks is not ported".into(),
                    );
                };
                if sel.path.is_empty() {
                    if sel.id.is_v1alpha1() {
                        return Err("can't delete the root of the legacy document".into());
                    }
                    config.remove(pos); // ErrZeroedDocument
                } else {
                    delete_path(&mut config[pos].body, &sel.path).map_err(|e| {
                        format!(
                            "patch delete: path '{}' in document '{}/{}': {e}",
                            sel.path.join("."),
                            sel.id.api_version,
                            sel.id.kind
                        )
                    })?;
                }
            }
            Item::Doc(doc) => match config.iter_mut().find(|d| d.id == doc.id) {
                Some(left) => merge(&mut left.body, &doc.body)?,
                None => config.push(doc),
            },
        }
    }
    Ok(config)
}

/// A machine config as loaded (no deletes, no duplicates).
fn load_config(text: &str) -> Vec<Doc> {
    load(text, false, false)
        .unwrap()
        .into_iter()
        .map(|i| match i {
            Item::Doc(d) => d,
            Item::Delete(_) => unreachable!(),
        })
        .collect()
}

/// configpatcher `LoadPatch` + `Apply` for a strategic-merge patch. Duplicates are refused, as
/// talosctl versions before `WithNoValidation` did, so the patch must not rely on them.
fn apply(config: &[Doc], patch: &str) -> Result<Vec<Doc>, String> {
    let items = load(patch, true, false)?;
    strategic_merge(config.to_vec(), container_order(items))
}

/// `LoadPatch` + `Apply` as talosctl 1.14 does them (commit `1a075383a`): the patch is loaded
/// with `WithNoValidation`, so documents of one kind may repeat, and the unvalidated container
/// (container.go `NewReadonlyUnvalidated`, `Documents`) puts v1alpha1 deletes first and keeps
/// every other item, the v1alpha1 document included, in file order.
fn apply_1_14(config: &[Doc], patch: &str) -> Result<Vec<Doc>, String> {
    let items = load(patch, true, true)?;
    let is_v1_delete = |i: &Item| matches!(i, Item::Delete(s) if s.id.kind == "v1alpha1");
    let mut ordered: Vec<Item> = items.iter().filter(|i| is_v1_delete(i)).cloned().collect();
    ordered.extend(items.into_iter().filter(|i| !is_v1_delete(i)));
    strategic_merge_with(config.to_vec(), ordered, true)
}

/// json6902.go: the document count that decides whether a JSON patch may apply.
fn yaml_document_count(text: &str) -> usize {
    serde_yaml::Deserializer::from_str(text).count()
}

// ------------------------------------------------------------------------------------------
// The tests.

fn issuer_pem(name: &str) -> String {
    let rng = SystemRandom::new();
    let key = PrivateKey::generate_ed25519(&rng).unwrap();
    let now = OffsetDateTime::now_utc();
    create_issuer_certificate(
        &key.key_pair().unwrap(),
        &IssuerSpec {
            common_name: name,
            not_before: now,
            not_after: now + Duration::days(365),
        },
        &rng,
    )
    .unwrap()
    .pem
}

fn other_os_ca_pem() -> String {
    let bundle = generate::generate(
        VersionContract::parse("v1.6").unwrap(),
        OffsetDateTime::now_utc(),
        &SystemRandom::new(),
    )
    .unwrap();
    String::from_utf8(bundle.certs.unwrap().os.unwrap().crt).unwrap()
}

fn crt_list(pems: &[&str]) -> Value {
    Value::Sequence(
        pems.iter()
            .map(|p| {
                let mut m = Mapping::new();
                m.insert("crt".into(), STANDARD.encode(p).into());
                Value::Mapping(m)
            })
            .collect(),
    )
}

fn v1alpha1(docs: &mut [Doc]) -> &mut Value {
    &mut docs.iter_mut().find(|d| d.id.is_v1alpha1()).unwrap().body
}

/// `config` with `machine.acceptedCAs` set to exactly `pems` (absent when empty) and nothing
/// else changed.
fn expected(config: &[Doc], pems: &[&str]) -> Vec<Doc> {
    let mut want = config.to_vec();
    let machine = v1alpha1(&mut want)["machine"].as_mapping_mut().unwrap();
    if pems.is_empty() {
        machine.remove("acceptedCAs");
    } else {
        machine.insert("acceptedCAs".into(), crt_list(pems));
    }
    want
}

fn accepted(docs: &mut [Doc]) -> Vec<String> {
    v1alpha1(docs)["machine"]
        .get("acceptedCAs")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .map(|e| {
                    String::from_utf8(STANDARD.decode(e["crt"].as_str().unwrap()).unwrap()).unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

const VECTORS: [&str; 4] = [
    "stability-v1.13-base-controlplane.yaml",
    "stability-v1.13-base-worker.yaml",
    "stability-v1.14-base-controlplane.yaml",
    "stability-v1.14-base-worker.yaml",
];

/// Every vector, its single-document form (the v1alpha1 document alone, as configs up to
/// Talos 1.11 were), and each of those with a different acceptedCAs list already in place.
fn configs(existing: &[&str]) -> Vec<(String, Vec<Doc>)> {
    let mut out = Vec::new();
    for name in VECTORS {
        let text = String::from_utf8(vector(name)).unwrap();
        let docs = load_config(&text);
        assert!(docs.len() > 1, "{name} is multi-document");
        // A JSON 6902 patch would be refused on every one of these (json6902.go).
        assert!(yaml_document_count(&text) > 1, "{name}");
        let single: Vec<Doc> = docs
            .iter()
            .filter(|d| d.id.is_v1alpha1())
            .cloned()
            .collect();
        assert_eq!(single.len(), 1, "{name}");
        assert!(
            v1alpha1(&mut docs.clone())["machine"]
                .get("acceptedCAs")
                .is_none(),
            "{name} has no acceptedCAs"
        );
        for (variant, base) in [("multi-doc", docs), ("single-doc", single)] {
            let mut with_existing = base.clone();
            v1alpha1(&mut with_existing)["machine"]
                .as_mapping_mut()
                .unwrap()
                .insert("acceptedCAs".into(), crt_list(existing));
            out.push((format!("{name} {variant}"), base));
            out.push((format!("{name} {variant} with acceptedCAs"), with_existing));
        }
    }
    out
}

#[test]
fn patch_sets_exactly_the_list_on_every_upstream_config() {
    let old_os = other_os_ca_pem();
    let old_issuer = issuer_pem("prod issuer e1 2025-11");
    let e3 = issuer_pem("prod issuer e3 2026-11");
    let e4 = issuer_pem("prod issuer e4 2027-05");
    let wanted_lists: [&[&str]; 4] = [&[&e3], &[&e3, &e4], &[&e4, &e3], &[]];
    for (name, config) in configs(&[&old_os, &old_issuer]) {
        for wanted in wanted_lists {
            let cas: Vec<AcceptedCa> = wanted
                .iter()
                .enumerate()
                .map(|(n, pem)| AcceptedCa {
                    label: format!("issuer {n} (active)"),
                    certificate_pem: (*pem).to_owned(),
                })
                .collect();
            let patch = accepted_cas_patch(&cas).unwrap();
            let mut result = apply(&config, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                accepted(&mut result),
                wanted.to_vec(),
                "{name}: exactly the intended list, in order"
            );
            assert_eq!(
                result,
                expected(&config, wanted),
                "{name}: nothing else changed"
            );
            // Applying it again changes nothing (a merge-only patch would grow the list).
            let again = apply(&result, &patch).unwrap();
            assert_eq!(again, result, "{name}: idempotent");
        }
    }
}

#[test]
fn a_merge_only_patch_would_append_and_fail_this_check() {
    // The same list without the delete document, as a naive patch would be: Talos appends it,
    // so the old CAs stay accepted. This is what the two-document form exists to prevent.
    let old = issuer_pem("old issuer");
    let new = issuer_pem("new issuer");
    let patch = accepted_cas_patch(&[AcceptedCa {
        label: "new".into(),
        certificate_pem: new.clone(),
    }])
    .unwrap();
    let merge_only = patch.split("\n---\n").nth(1).unwrap();
    assert!(!merge_only.contains("$patch"));
    for (name, config) in configs(&[&old]) {
        let mut result = apply(&config, merge_only).unwrap();
        if name.ends_with("with acceptedCAs") {
            assert_eq!(accepted(&mut result), [old.clone(), new.clone()], "{name}");
            assert_ne!(result, expected(&config, &[&new]), "{name}");
        } else {
            assert_eq!(accepted(&mut result), std::slice::from_ref(&new), "{name}");
        }
    }
}

#[test]
fn deletes_apply_first_whatever_their_place_in_the_patch() {
    // container.go orders v1alpha1 deletes before the v1alpha1 document, so even a patch with the
    // documents swapped replaces the list (the patch talvault writes puts the delete first).
    let old = issuer_pem("old issuer");
    let new = issuer_pem("new issuer");
    let patch = accepted_cas_patch(&[AcceptedCa {
        label: "new".into(),
        certificate_pem: new.clone(),
    }])
    .unwrap();
    let (delete, set) = patch.split_once("\n---\n").unwrap();
    let swapped = format!("{set}---\n{delete}");
    for (name, config) in configs(&[&old]) {
        assert_eq!(
            apply(&config, &swapped).unwrap(),
            expected(&config, &[&new]),
            "{name}"
        );
    }
}

/// The port against behaviour upstream documents or tests, so that its verdicts above mean
/// something: delete-then-set replaces a list in a named document (configpatcher
/// testdata/patchmixed, which needs duplicates allowed), a delete under an absent parent fails
/// with "lookup failed" (TestPatchDeleteMissing), and a plain patch appends to lists and keeps
/// unrelated fields (patching.md "Strategic Merge patches").
#[test]
fn the_port_reproduces_upstream_behaviour() {
    let base = "\
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  - url: http://old:5001
---
apiVersion: v1alpha1
kind: LinkConfig
name: eth0
addresses:
  - address: 10.0.0.2/24
";
    let patch = "\
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  $patch: delete
---
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  - url: http://new:5001
---
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
skipFallback: true
";
    let config = load_config(base);
    let items = load(patch, true, true).unwrap();
    let result = strategic_merge(config.clone(), container_order(items)).unwrap();
    let want = load_config(
        "\
apiVersion: v1alpha1
kind: RegistryMirrorConfig
name: registry.k8s.io
endpoints:
  - url: http://new:5001
skipFallback: true
---
apiVersion: v1alpha1
kind: LinkConfig
name: eth0
addresses:
  - address: 10.0.0.2/24
",
    );
    assert_eq!(result, want);
    // Without duplicates allowed that patch is refused; talvault's patch needs no duplicates.
    assert!(
        load(patch, true, false)
            .unwrap_err()
            .contains("duplicate document")
    );

    let legacy = load_config("version: v1alpha1\nmachine:\n  type: worker\n");
    let err = apply(
        &legacy,
        "machine:\n  network:\n    hostname:\n      $patch: delete\n",
    )
    .unwrap_err();
    assert!(
        err.contains("patch delete: path 'machine.network.hostname' in document '/v1alpha1'")
            && err.contains("lookup failed"),
        "{err}"
    );

    let cfg = load_config(
        "version: v1alpha1\nmachine:\n  type: worker\n  certSANs: [a]\n  network:\n    hostname: x\n",
    );
    let mut out = apply(
        &cfg,
        "machine:\n  certSANs: [b]\n  network:\n    hostname: worker1\n",
    )
    .unwrap();
    let machine = &v1alpha1(&mut out)["machine"];
    assert_eq!(
        machine["certSANs"],
        serde_yaml::from_str::<Value>("[a, b]").unwrap()
    );
    assert_eq!(machine["network"]["hostname"], "worker1");
    assert_eq!(machine["type"], "worker");
}

#[test]
fn the_patch_needs_no_duplicate_documents_and_no_sequence_deletes() {
    // What older talosctl (no WithNoValidation) and the port's refusals both require.
    let e3 = issuer_pem("e3");
    let patch = accepted_cas_patch(&[AcceptedCa {
        label: "e3".into(),
        certificate_pem: e3,
    }])
    .unwrap();
    let items = load(&patch, true, false).unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(
        &items[0],
        Item::Delete(Selector { id, path }) if id.is_v1alpha1() && path == &["machine", "acceptedCAs"]
    ));
    assert!(matches!(&items[1], Item::Doc(d) if d.id.is_v1alpha1()));
}

// ------------------------------------------------------------------------------------------
// The Kubernetes part (reference/kubernetes.md §2, §6.4).

/// The stability vectors' Kubernetes CA (`certs.k8s.crt` of stability-secrets.yaml), which the
/// v1.14 worker's `KubeAPIServerCAConfig` holds.
fn stability_k8s_ca() -> String {
    let bundle = SecretsBundle::from_yaml(&vector("stability-secrets.yaml")).unwrap();
    String::from_utf8(bundle.certs.unwrap().k8s.unwrap().crt).unwrap()
}

fn ca(label: &str, pem: &str) -> AcceptedCa {
    AcceptedCa {
        label: label.into(),
        certificate_pem: pem.into(),
    }
}

fn kube_doc(docs: &mut [Doc]) -> Option<&mut Value> {
    docs.iter_mut()
        .find(|d| d.id.kind == "KubeAPIServerCAConfig")
        .map(|d| &mut d.body)
}

/// `cluster.acceptedCAs` of the v1alpha1 document, decoded.
fn cluster_accepted(docs: &mut [Doc]) -> Vec<String> {
    v1alpha1(docs)["cluster"]
        .get("acceptedCAs")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .map(|e| {
                    String::from_utf8(STANDARD.decode(e["crt"].as_str().unwrap()).unwrap()).unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `KubeAPIServerCAConfig` document's `acceptedCAs`.
fn document_accepted(docs: &mut [Doc]) -> Vec<String> {
    kube_doc(docs)
        .and_then(|d| d.get("acceptedCAs").cloned())
        .and_then(|l| l.as_sequence().cloned())
        .map(|s| s.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn the_kubernetes_part_sets_exactly_its_list_in_the_form_of_each_contract() {
    let k8s = stability_k8s_ca();
    let talos = issuer_pem("prod issuer e3 2026-11");
    let k1 = issuer_pem("prod kubernetes issuer k1 2026-11");
    let k2 = issuer_pem("prod kubernetes issuer k2 2027-05");
    let stale = issuer_pem("prod kubernetes issuer k0 2025-11");
    let wanted_lists: [&[&str]; 3] = [&[&k1], &[&k1, &k2], &[]];
    for wanted in wanted_lists {
        let cas: Vec<AcceptedCa> = wanted.iter().map(|p| ca("kubernetes issuer", p)).collect();
        for (form, vectors) in [
            (
                KubernetesForm::Cluster,
                [
                    "stability-v1.13-base-controlplane.yaml",
                    "stability-v1.13-base-worker.yaml",
                ],
            ),
            (
                KubernetesForm::Document,
                [
                    "stability-v1.14-base-controlplane.yaml",
                    "stability-v1.14-base-worker.yaml",
                ],
            ),
        ] {
            let kube = KubernetesCas {
                form,
                cluster_ca: ca("the cluster's Kubernetes CA", &k8s),
                cas: &cas,
            };
            let patch =
                accepted_cas_patch_for(Some(&[ca("talos issuer", &talos)]), Some(&kube)).unwrap();
            for name in vectors {
                let config = load_config(&String::from_utf8(vector(name)).unwrap());
                // A list talvault did not write is replaced too (a stale issuer).
                let mut with_stale = config.clone();
                match form {
                    KubernetesForm::Cluster => {
                        v1alpha1(&mut with_stale)["cluster"]
                            .as_mapping_mut()
                            .unwrap()
                            .insert("acceptedCAs".into(), crt_list(&[&stale]));
                    }
                    KubernetesForm::Document => {
                        let doc = kube_doc(&mut with_stale).unwrap().as_mapping_mut().unwrap();
                        let mut list = doc
                            .get("acceptedCAs")
                            .and_then(Value::as_sequence)
                            .cloned()
                            .unwrap_or_default();
                        list.push(stale.clone().into());
                        doc.insert("acceptedCAs".into(), Value::Sequence(list));
                    }
                }
                for (variant, base) in [("plain", config), ("with a stale CA", with_stale)] {
                    let what = format!("{name} {variant} {form:?} {}", wanted.len());
                    // talosctl before 1.14 refuses duplicate documents: the v1alpha1 form needs
                    // none; the document form needs talosctl 1.14, which knows the kind anyway.
                    let mut result = match form {
                        KubernetesForm::Cluster => apply(&base, &patch),
                        KubernetesForm::Document => apply_1_14(&base, &patch),
                    }
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(
                        accepted(&mut result),
                        std::slice::from_ref(&talos),
                        "{what}"
                    );
                    let mut want = base.clone();
                    let machine = v1alpha1(&mut want)["machine"].as_mapping_mut().unwrap();
                    machine.insert("acceptedCAs".into(), crt_list(&[&talos]));
                    match form {
                        KubernetesForm::Cluster => {
                            assert_eq!(cluster_accepted(&mut result), wanted.to_vec(), "{what}");
                            let cluster = v1alpha1(&mut want)["cluster"].as_mapping_mut().unwrap();
                            if wanted.is_empty() {
                                cluster.remove("acceptedCAs");
                            } else {
                                cluster.insert("acceptedCAs".into(), crt_list(wanted));
                            }
                        }
                        KubernetesForm::Document => {
                            // The cluster CA first (workers' kubelets need it), then the list.
                            let mut list = vec![k8s.clone()];
                            list.extend(wanted.iter().map(|p| p.to_string()));
                            assert_eq!(document_accepted(&mut result), list, "{what}");
                            let doc = kube_doc(&mut want).unwrap().as_mapping_mut().unwrap();
                            doc.insert(
                                "acceptedCAs".into(),
                                Value::Sequence(list.into_iter().map(Value::from).collect()),
                            );
                        }
                    }
                    assert_eq!(result, want, "{what}: nothing else changed");
                    let again = match form {
                        KubernetesForm::Cluster => apply(&result, &patch),
                        KubernetesForm::Document => apply_1_14(&result, &patch),
                    }
                    .unwrap();
                    assert_eq!(again, result, "{what}: idempotent");
                }
            }
        }
    }
}

#[test]
fn the_form_matters() {
    let k8s = stability_k8s_ca();
    let k1 = issuer_pem("k1");
    let cas = [ca("k1", &k1)];
    let cluster = KubernetesCas {
        form: KubernetesForm::Cluster,
        cluster_ca: ca("cluster CA", &k8s),
        cas: &cas,
    };
    // The v1.14 worker already holds the cluster CA in its document: the document form keeps it
    // (listed first by talvault, byte for byte the PEM upstream generated).
    let worker =
        load_config(&String::from_utf8(vector("stability-v1.14-base-worker.yaml")).unwrap());
    assert_eq!(
        document_accepted(&mut worker.clone()),
        std::slice::from_ref(&k8s)
    );
    // The cluster form on a v1.14 config only sets cluster.acceptedCAs, which a config with a
    // KubeAPIServerCAConfig document ignores (container.go K8sAPIServerCAConfig): the
    // document's list is untouched, so the issuer would never be accepted.
    let patch = accepted_cas_patch_for(None, Some(&cluster)).unwrap();
    let mut result = apply(&worker, &patch).unwrap();
    assert_eq!(cluster_accepted(&mut result), std::slice::from_ref(&k1));
    assert_eq!(document_accepted(&mut result), std::slice::from_ref(&k8s));
    // The document form on a v1.13 config appends a KubeAPIServerCAConfig document beside
    // cluster.ca, which Talos refuses ("kube-apiserver CA is already set in v1alpha1 config",
    // types/k8s/apiserver_ca.go V1Alpha1ConflictValidate): talosctl stops before applying.
    let document = KubernetesCas {
        form: KubernetesForm::Document,
        ..cluster
    };
    let patch = accepted_cas_patch_for(None, Some(&document)).unwrap();
    let cp =
        load_config(&String::from_utf8(vector("stability-v1.13-base-controlplane.yaml")).unwrap());
    let mut result = apply_1_14(&cp, &patch).unwrap();
    assert!(v1alpha1(&mut result)["cluster"].get("ca").is_some());
    assert!(kube_doc(&mut result).is_some(), "a conflicting document");
    // The document form's patch holds two documents of one kind: older talosctl refuses it.
    assert!(
        apply(&cp, &patch)
            .unwrap_err()
            .contains("duplicate document")
    );
}
