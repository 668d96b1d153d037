//! The checks behind every fuzz target, one public function per target (the files under
//! `fuzz_targets/` only call these). Each feeds the input to the same talvault function that
//! reads untrusted input in production and asserts what is cheap to assert: no panic (implicit),
//! parse → write → parse round trips, and that an error message never echoes key material.
//!
//! Adding a target (e.g. `issuer_meta`, `revocation_record`, `pkcs11_uri`): write `pub fn NAME(data:
//! &[u8])` here, copy any file in `fuzz_targets/` to `fuzz_targets/NAME.rs` naming it, add a
//! `[[bin]]` block to `Cargo.toml`, and put a few real inputs in `seeds/NAME/`. `scripts/fuzz`
//! picks it up from `cargo fuzz list`.
#![forbid(unsafe_code)]

use std::path::Path;

use talvault::audit::{self, Event};
use talvault::bundle::SecretsBundle;
use talvault::bundle::validate::{deep_findings, talos_errors};
use talvault::bundle::{VersionContract, import, inspect};
use talvault::keys::{PrivateKey, pem_decode_first, pem_encode};
use talvault::model::{EnvMeta, Pins, VaultConfig};
use talvault::pki::issue::verify_csr;
use talvault::pki::policy::{Holder, Policy, Request};
use talvault::pki::role::Role;
use talvault::pki::ttl::Ttl;
use talvault::store::age::{Recipient, parse_recipients};
use talvault::kubeconfig::{KubeMergeError, Kubeconfig, NewEntry};
use talvault::talosconfig::{self, Config, MergeError};
use talvault::inventory::{CertEntry, RevokedEntry};
use talvault::model::{IssuerMeta, RevocationRecord};
use talvault::pki::issuer::read_issuer_certificate;
use talvault::pki::verify::{certificate_der, crl_number, leaf_facts};
use talvault::vault::CertRecord;
use talvault_hsm::Pkcs11Uri;

/// A fixed "now" for the checks that depend on time (2026-11-27T00:00:00Z).
fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_795_737_600).expect("a valid timestamp")
}

/// The shortest run of base64/bech32 characters treated as key material. Serde field names
/// that talvault's sanitisers may show are at most 40 characters; a PEM body line is 64.
const KEY_RUN: usize = 41;

/// Asserts that `message` contains no run of ≥ `KEY_RUN` base64 characters taken from `input`
/// (a PEM body line, a base64 key value, a token). PEM armour lines are skipped: labels are
/// public. Key material in an error would end up in terminals, CI logs and bug reports.
pub fn assert_no_key_echo(input: &[u8], message: &str) {
    let text = String::from_utf8_lossy(input);
    for line in text.lines() {
        if line.trim_start().starts_with("-----") {
            continue;
        }
        for run in line.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c))) {
            if run.len() >= KEY_RUN {
                assert!(
                    !message.contains(&run[..KEY_RUN]),
                    "the error message echoes input key material: {message}"
                );
            }
        }
    }
}

/// `secrets.yaml` (bundle export/validate/inspect, `env import --from-secrets`, every open of
/// `bundle.age`): read, validate as Talos and deeper, summarise; a bundle that reads writes in
/// talosctl's layout, and that output reads back and writes identically.
pub fn secrets_yaml(data: &[u8]) {
    match SecretsBundle::from_yaml(data) {
        Ok(bundle) => {
            let _ = talos_errors(&bundle);
            let contract = VersionContract::parse("v1.6").expect("a valid contract");
            let _ = deep_findings(&bundle, contract, now());
            let _ = inspect::summarize(&bundle);
            let _ = Pins::of(&bundle);
            let first = bundle.to_yaml();
            let again = SecretsBundle::from_yaml(first.expose().as_bytes())
                .unwrap_or_else(|e| panic!("our own output does not read back: {e}"));
            assert!(
                again.to_yaml().expose() == first.expose(),
                "write → read → write is not stable"
            );
        }
        Err(e) => assert_no_key_echo(data, &e.to_string()),
    }
}

/// A talosconfig (`issue --merge FILE`): read, decode each context's PEMs, write back stably,
/// and merge a new context with and without `replace`.
pub fn talosconfig(data: &[u8]) {
    let config = match Config::from_yaml(data) {
        Ok(c) => c,
        Err(e) => return assert_no_key_echo(data, &e.to_string()),
    };
    for (name, ctx) in &config.contexts {
        for r in [ctx.ca_pem(name), ctx.crt_pem(name)] {
            if let Err(e) = r {
                assert_no_key_echo(data, &e.to_string());
            }
        }
        if let Err(e) = ctx.key_pem(name) {
            assert_no_key_echo(data, &e.to_string());
        }
    }
    let first = config.to_yaml();
    let reread = Config::from_yaml(first.expose().as_bytes())
        .unwrap_or_else(|e| panic!("our own output does not read back: {e}"));
    assert!(
        reread.to_yaml().expose() == first.expose(),
        "write → read → write is not stable"
    );

    let existing = config.contexts.keys().find(|k| !k.is_empty()).cloned();
    let name = existing.clone().unwrap_or_else(|| "fuzz".to_owned());
    let fresh = || talosconfig::Context::issued(b"ca", b"crt", None, vec!["e".into()], vec![]);
    let reread_again = || Config::from_yaml(first.expose().as_bytes()).expect("read above");
    // A context named "" reads (talosctl writes none); talvault never merges under that name.
    if config.contexts.contains_key("") {
        let refused = talosconfig::merge(reread_again(), "", fresh(), true);
        assert!(matches!(refused, Err(MergeError::EmptyName)));
    }
    match talosconfig::merge(reread, &name, fresh(), false) {
        Err(MergeError::ContextExists { .. }) => assert!(existing.is_some()),
        Err(e) => panic!("merge failed: {e}"),
        Ok(merged) => {
            assert!(existing.is_none());
            assert_eq!(merged.context, name);
            let out = merged.to_yaml();
            Config::from_yaml(out.expose().as_bytes())
                .unwrap_or_else(|e| panic!("a merged config does not read back: {e}"));
        }
    }
    let merged = talosconfig::merge(reread_again(), &name, fresh(), true)
        .unwrap_or_else(|e| panic!("merge with replace failed: {e}"));
    assert_eq!(merged.context, name);
    assert_eq!(
        merged.contexts.get(&name).map(|c| c.ca.as_str()),
        Some("Y2E=")
    );
}

/// A control-plane machine config (`env import --from-controlplane-config`): the bundle it
/// yields writes and reads back stably; errors echo no key.
pub fn machine_config(data: &[u8]) {
    match import::from_controlplane_config(data) {
        Ok(bundle) => {
            let _ = talos_errors(&bundle);
            let first = bundle.to_yaml();
            let again = SecretsBundle::from_yaml(first.expose().as_bytes())
                .unwrap_or_else(|e| panic!("the imported bundle does not read back: {e}"));
            assert!(
                again.to_yaml().expose() == first.expose(),
                "write → read → write is not stable"
            );
        }
        Err(e) => assert_no_key_echo(data, &e.to_string()),
    }
}

/// A PKCS#10 request, PEM or DER (`issue --csr FILE`).
pub fn csr(data: &[u8]) {
    if let Ok(v) = verify_csr(data) {
        assert!(!v.spki_der().is_empty());
        let _ = v.requested_subject();
    }
}

/// The vault's public metadata parsers, picked by the first input byte so that one target
/// covers all of them. Append new parsers at the end (existing seeds keep their meaning).
pub const META_PARSERS: &[(&str, fn(&[u8]))] = &[
    ("talvault.yaml", vault_config),
    ("env.yaml", env_meta),
    ("policy.yaml", policy),
    ("certs/<serial>.yaml", cert_record),
];

/// `vault_meta`: dispatches on the first byte to one of [`META_PARSERS`].
pub fn vault_meta(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (_, parse) = META_PARSERS[usize::from(selector) % META_PARSERS.len()];
    parse(rest);
}

fn vault_config(data: &[u8]) {
    if let Ok(c) = VaultConfig::from_yaml(data) {
        assert_eq!(VaultConfig::from_yaml(c.to_yaml().as_bytes()).ok(), Some(c));
    }
}

fn env_meta(data: &[u8]) {
    if let Ok(m) = EnvMeta::from_yaml("env.yaml", data) {
        let out = m.to_yaml().expect("env.yaml renders");
        let again = EnvMeta::from_yaml("env.yaml", out.as_bytes())
            .unwrap_or_else(|e| panic!("our env.yaml does not read back: {e}"));
        assert_eq!(again, m);
        let _ = m.contract();
    }
}

fn policy(data: &[u8]) {
    let Ok(p) = Policy::from_yaml(data) else {
        return;
    };
    let again = Policy::from_yaml(p.to_yaml().as_bytes())
        .unwrap_or_else(|e| panic!("our policy.yaml does not read back: {e}"));
    assert_eq!(again, p);
    // Grants never panic, and never let os:impersonator through unless the policy names it.
    for role in ["os:admin", "os:operator", "os:reader", "os:etcd:backup", "os:impersonator"] {
        let role = Role::parse(role).expect("a known role");
        let named = p.roles.keys().any(|r| r == &role);
        let request = Request {
            roles: vec![role.clone()],
            ttl: None,
            holder: Holder::parse("alice").ok(),
            break_glass: None,
        };
        if let Ok(grant) = p.grant(&request) {
            assert!(
                !role.is_impersonator() || named,
                "os:impersonator granted by a policy that does not name it"
            );
            assert!(grant.roles().contains(&role));
        }
    }
    let bg = Request {
        roles: vec![],
        ttl: None,
        holder: None,
        break_glass: Some("INC-1".into()),
    };
    let _ = p.grant(&bg);
}

fn cert_record(data: &[u8]) {
    if let Ok(r) = serde_yaml::from_slice::<CertRecord>(data) {
        let out = serde_yaml::to_string(&r).expect("a record renders");
        let again: CertRecord = serde_yaml::from_str(&out)
            .unwrap_or_else(|e| panic!("our record does not read back: {e}"));
        assert_eq!(serde_yaml::to_string(&again).ok(), Some(out));
    }
}

/// Audit event files (`audit log`, `audit verify`, every append): parse one event; verify a
/// small set made by splitting the input on `\n--\n` (at most four files).
pub fn audit_event(data: &[u8]) {
    if let Ok(e) = Event::from_json(data) {
        let json = e.to_json();
        let again = Event::from_json(&json)
            .unwrap_or_else(|err| panic!("our event does not read back: {err}"));
        assert_eq!(again.id(), e.id());
        assert_eq!(again, e);
        let _ = e.canonical_form();
        // A single root event in its own file name verifies intact, as its only head.
        if e.parents().is_empty() {
            let report = audit::verify(&[(e.relative_path(), data.to_vec())]);
            assert!(report.is_intact(), "{:?}", report.problems);
            assert_eq!(report.heads, vec![e.id().clone()]);
        }
    }
    // The summary the chain state is built from reads back from its cache line.
    if let Some(summary) = audit::EventSummary::read(data) {
        assert_eq!(
            audit::EventSummary::from_line(&summary.to_line()).as_ref(),
            Some(&summary)
        );
    }

    let mut files = Vec::new();
    let mut rest = data;
    while files.len() < 4 {
        let cut = rest.windows(4).position(|w| w == b"\n--\n");
        let (part, next) = match cut {
            Some(i) => (&rest[..i], Some(&rest[i + 4..])),
            None => (rest, None),
        };
        let name = match Event::from_json(part) {
            Ok(e) if files.len() % 2 == 0 => e.relative_path(),
            _ => format!("2026/11/20261127T000000Z-{}.json", files.len()),
        };
        files.push((name, part.to_vec()));
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    let report = audit::verify(&files);
    for p in &report.problems {
        let _ = p.to_string();
        let _ = p.tamper();
    }
    let summaries: Vec<_> = files
        .iter()
        .filter_map(|(_, b)| audit::EventSummary::read(b))
        .collect();
    let _ = audit::heads_of(&summaries);
    let _ = audit::ChainState::of(&summaries);
}

/// TTLs, roles and holder names (`--ttl`, `--role`, `--holder`, policy keys): what parses
/// prints as something that parses to the same value.
pub fn ttl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Ttl::parse(text) {
        let shown = t.to_string();
        assert_eq!(Ttl::parse(&shown).ok(), Some(t), "{shown}");
        let _ = t.as_duration();
    }
    if let Ok(r) = Role::parse(text) {
        assert_eq!(Role::parse(r.as_str()).ok(), Some(r.clone()));
        let _ = r.short_name();
    }
    let _ = Role::parse_set(text.split(','));
    if let Ok(h) = Holder::parse(text) {
        assert_eq!(Holder::parse(h.as_str()).ok(), Some(h));
    }
}

/// A recipients file (`-R FILE`, every environment's `recipients.txt`): each recipient that
/// parses re-parses from its text; an error never shows an age secret key that was put there
/// by mistake.
pub fn recipients(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_recipients(&text, Path::new("recipients.txt")) {
        Ok(list) => {
            for r in list {
                assert_eq!(Recipient::parse(r.as_str()).ok().as_ref(), Some(&r));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let upper = msg.to_ascii_uppercase();
            for line in text.lines() {
                let line = line.trim();
                let l = line.to_ascii_uppercase();
                let head: String = l.chars().take(24).collect();
                if (l.starts_with("AGE-SECRET-KEY-") || l.starts_with("AGE-PLUGIN-"))
                    && head.chars().count() == 24
                {
                    assert!(
                        !upper.contains(&head),
                        "the error message echoes a secret key: {msg}"
                    );
                }
            }
            assert_no_key_echo(data, &msg);
        }
    }
}

/// PEM private keys as Talos writes them (CA keys in a bundle, `--from-kubernetes-pki` files):
/// PEM blocks re-encode to the same block; keys re-encode to the same key.
pub fn pem_key(data: &[u8]) {
    if let Some(block) = pem_decode_first(data) {
        let encoded = pem_encode(&block.label, &block.der);
        let again = pem_decode_first(&encoded).expect("our PEM decodes");
        assert_eq!(again.label, block.label);
        assert!(*again.der == *block.der, "PEM round trip changed the DER");
    }
    match PrivateKey::from_talos_pem(data) {
        Ok(key) => {
            let pem = key.to_talos_pem().expect("a key we read can be written");
            let again = PrivateKey::from_talos_pem(pem.expose())
                .unwrap_or_else(|e| panic!("our key PEM does not read back: {e}"));
            assert_eq!(again.algorithm(), key.algorithm());
            assert_eq!(
                again.public_key_info().ok(),
                key.public_key_info().ok(),
                "the key changed on a round trip"
            );
        }
        Err(e) => assert_no_key_echo(data, &e.to_string()),
    }
}

/// `issuers/<id>/issuer.yaml` (read by every command that lists or uses issuers): parse, round
/// trip, and read its certificate the way `vault` checks it.
pub fn issuer_meta(data: &[u8]) {
    let Ok(m) = IssuerMeta::from_yaml("issuer.yaml", data) else {
        return;
    };
    let out = m.to_yaml().expect("issuer.yaml renders");
    let again = IssuerMeta::from_yaml("issuer.yaml", out.as_bytes())
        .unwrap_or_else(|e| panic!("our issuer.yaml does not read back: {e}"));
    assert_eq!(again, m);
    if let Err(e) = read_issuer_certificate(m.certificate.as_bytes()) {
        assert_no_key_echo(data, &e.to_string());
    }
}

/// `revocations/<serial>.yaml` and `certs/<serial>.yaml` as `status`, `crl` and `revoke` read
/// them: parse, summarise, and the summary's cache line reads back identically (a hostile
/// field must never break the tab-separated cache). The first byte picks the record type.
/// Also: any bytes as a stored CRL (`crl_number`) and as a certificate (`leaf_facts`).
pub fn revocation_record(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(r) = RevocationRecord::from_yaml("r.yaml", rest)
                && let Ok(e) = RevokedEntry::from_record(&r)
            {
                let line = e.to_line();
                assert!(!line.contains('\n'), "a summary line holds a newline");
                assert_eq!(RevokedEntry::from_line(&line), Some(e));
            }
        }
        1 => {
            if let Ok(r) = CertRecord::from_yaml("c.yaml", rest)
                && let Ok(e) = CertEntry::from_record(&r)
            {
                let line = e.to_line();
                assert!(!line.contains('\n'), "a summary line holds a newline");
                assert_eq!(CertEntry::from_line(&line), Some(e));
            }
        }
        2 => {
            let _ = crl_number(rest);
        }
        _ => {
            if let Ok(der) = certificate_der(rest) {
                let _ = leaf_facts(&der);
            }
        }
    }
}

/// `pkcs11:` URIs (`issuer create --pkcs11`, `hsm check`, issuer.yaml): parse; a parsed URI's
/// canonical form parses back to the same URI; an error never repeats a `pin-value`.
pub fn pkcs11_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Pkcs11Uri::parse(text) {
        Ok(uri) => {
            let shown = uri.to_string();
            let again = Pkcs11Uri::parse(&shown)
                .unwrap_or_else(|e| panic!("our canonical URI {shown:?} does not parse: {e}"));
            assert_eq!(again, uri);
            assert_eq!(again.to_string(), shown);
            // No attribute of the canonical form is a PIN (a value may contain the text).
            let body = shown.strip_prefix("pkcs11:").unwrap_or(&shown);
            let attributes = body.split(['?', ';', '&']);
            assert!(
                attributes
                    .filter_map(|a| a.split_once('=').map(|(k, _)| k))
                    .all(|k| !k.eq_ignore_ascii_case("pin-value")),
                "a parsed URI carries a PIN"
            );
        }
        Err(e) => {
            let message = e.to_string();
            // Only a real `pin-value` attribute (at the start of a path or query attribute)
            // holds a PIN; the same text inside another attribute's value is just text.
            let starts = text.match_indices("pin-value=").filter(|(i, _)| {
                *i > 0 && matches!(text.as_bytes()[i - 1], b':' | b';' | b'?' | b'&')
            });
            for (i, _) in starts {
                let value_at = i + "pin-value=".len();
                let pin: String = text[value_at..]
                    .chars()
                    .take_while(|c| *c != '&' && *c != ';')
                    .collect();
                // An echo, not a coincidence with other parts of the input or the message's
                // own words: the text must vanish when this PIN is replaced by another.
                if pin.len() >= 4 && message.contains(&pin) {
                    let mut other = text.to_owned();
                    other.replace_range(value_at..value_at + pin.len(), &"Q".repeat(pin.len()));
                    let again = Pkcs11Uri::parse(&other).err().map(|e| e.to_string());
                    assert!(
                        again.is_some_and(|m| m.contains(&pin)),
                        "the PIN is echoed: {message}"
                    );
                }
            }
        }
    }
}

/// A kubeconfig (`kubeconfig --merge FILE`, `revoke --kubeconfig`, `verify`): read, take the
/// current context's credentials, write back stably, and merge talvault's entries with and
/// without `replace`; errors echo no key.
pub fn kubeconfig(data: &[u8]) {
    let config = match Kubeconfig::from_yaml(data) {
        Ok(c) => c,
        Err(e) => return assert_no_key_echo(data, &e.to_string()),
    };
    if let Err(e) = config.context_credentials(None) {
        assert_no_key_echo(data, &e.to_string());
    }
    let first = config.to_yaml();
    let reread = Kubeconfig::from_yaml(first.expose().as_bytes())
        .unwrap_or_else(|e| panic!("our own output does not read back: {e}"));
    assert!(
        reread.to_yaml().expose() == first.expose(),
        "write → read → write is not stable"
    );
    let entry = || NewEntry {
        cluster: "fuzz".into(),
        server: "https://fuzz:6443".into(),
        ca_pem: b"ca".to_vec(),
        user: "u@fuzz".into(),
        client_certificate_pem: b"crt".to_vec(),
        client_key_pem: None,
        context: "u@fuzz".into(),
        namespace: "default".into(),
    };
    let clashes = reread.clashes(&entry().names());
    match reread.merge(&entry(), false) {
        Err(KubeMergeError::Clash { .. }) => assert!(!clashes.is_empty()),
        Ok(merged) => {
            assert!(clashes.is_empty());
            let out = merged.to_yaml();
            let back = Kubeconfig::from_yaml(out.expose().as_bytes())
                .unwrap_or_else(|e| panic!("a merged kubeconfig does not read back: {e}"));
            let creds = back
                .context_credentials(None)
                .unwrap_or_else(|e| panic!("the merged context is not current: {e}"));
            assert_eq!(creds.certificate, b"crt");
        }
    }
    let again = Kubeconfig::from_yaml(first.expose().as_bytes()).expect("read above");
    let replaced = again
        .merge(&entry(), true)
        .unwrap_or_else(|e| panic!("merge with replace failed: {e}"));
    Kubeconfig::from_yaml(replaced.to_yaml().expose().as_bytes())
        .unwrap_or_else(|e| panic!("a replaced kubeconfig does not read back: {e}"));
}
