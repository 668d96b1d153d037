//! Inputs the fuzzers found (fuzz/, docs/fuzzing.md), each fed to the same function with the
//! same check as its fuzz target, so a fixed bug stays fixed. The files live in
//! `tests/data/fuzz-regressions/`, named `TARGET-WHAT`.

use std::path::{Path, PathBuf};

use talvault::store::age::parse_recipients;
use talvault::talosconfig::{self, Config};

fn input(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-regressions")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What `issue --merge` writes for `config`, checked as the fuzz harness checks it: it reads
/// back, and writing that again gives the same bytes.
fn written_back_stably(config: &Config) -> String {
    let first = config.to_yaml().expose().to_owned();
    let again = Config::from_yaml(first.as_bytes())
        .unwrap_or_else(|e| panic!("our own output does not read back: {e}\n{first}"));
    assert!(
        again.to_yaml().expose() == first,
        "write → read → write is not stable"
    );
    first
}

/// The fuzz harness's rule (`fuzz/src/lib.rs::assert_no_key_echo`): no run of 41 or more
/// base64 characters from the input appears in the message.
fn assert_no_key_echo(input: &[u8], message: &str) {
    let text = String::from_utf8_lossy(input);
    for line in text.lines() {
        if line.trim_start().starts_with("-----") {
            continue;
        }
        for run in line.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c))) {
            if run.len() >= 41 {
                assert!(
                    !message.contains(&run[..41]),
                    "the error message echoes input key material"
                );
            }
        }
    }
}

/// talosconfig: a base64 key line spliced into a context name came back in the "illegal base64"
/// error, which names the context. Long names are now cut short in errors.
#[test]
fn talosconfig_key_in_context_name_is_not_echoed() {
    let data = input("talosconfig-key-in-context-name.yaml");
    let config = Config::from_yaml(&data).unwrap();
    let mut errors = 0;
    for (name, ctx) in &config.contexts {
        for r in [ctx.ca_pem(name), ctx.crt_pem(name)] {
            if let Err(e) = r {
                errors += 1;
                let msg = e.to_string();
                assert_no_key_echo(&data, &msg);
                assert!(msg.contains('…'), "{msg}");
            }
        }
    }
    assert!(errors > 0, "the input no longer reaches the error path");
}

/// talosconfig: an unknown field with the non-specific tag (`key: ! value`) was written back as
/// `key: !! value`, which does not parse: `issue --merge` would have written a talosconfig that
/// neither talvault nor talosctl can read. The tag is now written in verbatim form, `!<!!>`.
#[test]
fn talosconfig_non_specific_tag_writes_back_readably() {
    let data = input("talosconfig-non-specific-tag.yaml");
    written_back_stably(&Config::from_yaml(&data).unwrap());
}

/// talosconfig: an unknown field whose mapping key carries a tag (`! -x: …`) was written back as
/// the bare tag, losing the key. A tagged key is now written as tag and value.
#[test]
fn talosconfig_tagged_key_writes_back_stably() {
    let data = input("talosconfig-tagged-key.yaml");
    written_back_stably(&Config::from_yaml(&data).unwrap());
}

/// talosconfig: a duplicate-key error quoted the key, and a mangled file can put a 90-character
/// base64 run there. Long names in our own messages are now cut short.
#[test]
fn talosconfig_long_duplicate_key_is_not_echoed() {
    let data = input("talosconfig-long-duplicate-key.yaml");
    let msg = Config::from_yaml(&data).unwrap_err().to_string();
    assert!(msg.contains("duplicate key"), "{msg}");
    assert_no_key_echo(&data, &msg);
}

/// talosconfig: a duplicate key containing backticks. The message was cut at the key's own
/// backticks, so only part of the key was shortened and the rest (41+ characters) was echoed.
/// Names are now shortened where the message is made.
#[test]
fn talosconfig_backticks_in_duplicate_key_are_not_echoed() {
    let data = input("talosconfig-backticks-in-duplicate-key.yaml");
    let msg = Config::from_yaml(&data).unwrap_err().to_string();
    assert!(msg.contains("duplicate key"), "{msg}");
    assert_no_key_echo(&data, &msg);
}

/// talosconfig: a top-level key under YAML's 1024-character limit for implicit keys, whose tabs
/// and astral characters, escaped in double quotes, took it over the limit: the file no longer
/// read. Long keys are now written as explicit keys; the same holds for a long context name.
#[test]
fn talosconfig_long_escaped_key_writes_back_readably() {
    let data = input("talosconfig-long-escaped-key.yaml");
    let first = written_back_stably(&Config::from_yaml(&data).unwrap());
    assert!(first.contains("\n? \""));

    let name = "c".repeat(1500);
    let ctx = talosconfig::Context::issued(b"ca", b"crt", None, vec!["e".into()], vec![]);
    let merged = talosconfig::merge(Config::default(), &name, ctx, false).unwrap();
    let text = merged.to_yaml();
    let read = Config::from_yaml(text.expose().as_bytes())
        .unwrap_or_else(|e| panic!("a long context name does not read back: {e}"));
    assert!(read.contexts.contains_key(&name));
    assert_eq!(read.context, name);
}

/// talosconfig: a tag written with a percent escape (`!endp61%219…`) came back as a tag with a
/// `!` inside, which does not parse. Tags that are not plain are now written in verbatim form.
#[test]
fn talosconfig_escaped_tag_writes_back_readably() {
    let data = input("talosconfig-escaped-tag.yaml");
    written_back_stably(&Config::from_yaml(&data).unwrap());
}

/// talosconfig: unknown fields whose mapping keys are sequences (`? - a`) were written back with
/// `[]` for each key, so two such keys became a duplicate key and the file no longer read. They
/// are now written as explicit keys in flow form, and keep their values.
#[test]
fn talosconfig_sequence_keys_write_back_readably() {
    let data = input("talosconfig-sequence-keys.yaml");
    let config = Config::from_yaml(&data).unwrap();
    let first = written_back_stably(&config);
    assert!(first.contains("? [{? \"03015.1tdpoy ts\" : "), "{}", first);
}

/// talosconfig: keys that differed only in a tag that could not be written plainly (`!…('+/` and
/// `!…('+k`) both lost their tag on write-back and collided. Such tags are now written in
/// verbatim form (`!<…>`, percent-escaped), as is the non-specific tag.
#[test]
fn talosconfig_keys_differing_in_tag_write_back_readably() {
    let data = input("talosconfig-keys-differing-in-tag.yaml");
    let first = written_back_stably(&Config::from_yaml(&data).unwrap());
    assert!(first.contains("!<!BCk1JSUJQek('+k>"), "{}", first);
}

/// talosconfig: a value containing `talosconfig: ` (the prefix talvault's own errors had) made
/// serde's "invalid type" message, which quotes the value and here 42 characters of a key, pass
/// for talvault's own. Own errors now carry a per-process marker.
#[test]
fn talosconfig_marker_in_value_is_not_echoed() {
    let data = input("talosconfig-marker-in-value.yaml");
    let msg = Config::from_yaml(&data).unwrap_err().to_string();
    assert_no_key_echo(&data, &msg);
    assert!(
        msg.starts_with("not a valid talosconfig: wrong type, expected"),
        "{msg}"
    );
    // The same holds when the value also contains ", expected " followed by key material.
    let text = "context: a\ncontexts:\n    a: x, expected LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0KTUM0Q0FRQXdCUVlESzJW\n";
    let msg = Config::from_yaml(text.as_bytes()).unwrap_err().to_string();
    assert_no_key_echo(text.as_bytes(), &msg);
}

/// talosconfig: a file whose only context is named "" reads, and merging under that name is
/// refused (`EmptyName`); the harness had picked that name to merge under and took the refusal
/// for a failure. Merging under another name still works.
#[test]
fn talosconfig_empty_context_name_is_never_merged_under() {
    let data = input("talosconfig-empty-context-name.yaml");
    let config = Config::from_yaml(&data).unwrap();
    assert!(config.contexts.contains_key(""));
    let fresh = || talosconfig::Context::issued(b"ca", b"crt", None, vec!["e".into()], vec![]);
    let err = talosconfig::merge(Config::from_yaml(&data).unwrap(), "", fresh(), true).unwrap_err();
    assert!(matches!(err, talosconfig::MergeError::EmptyName));
    let merged = talosconfig::merge(config, "fuzz", fresh(), false).unwrap();
    Config::from_yaml(merged.to_yaml().expose().as_bytes()).unwrap();
}

/// Every kind of tag, on keys and values, plain and not: written back, read again, the same
/// values (serde_yaml_ng's own equality).
#[test]
fn talosconfig_tags_round_trip() {
    let text = "context: a\ncontexts:\n  a:\n    endpoints: []\n    x:\n      ! k: ! v\n      k: v\n      !e%21x k: !e%21x v\n      !a(b k: [!a(c x, !<!%20%7B%7D> y]\n      !<!a%23,[]> k: {? !n%25 k : !!str v}\n      !t k: !t v\n";
    let config = Config::from_yaml(text.as_bytes()).unwrap();
    let first = written_back_stably(&config);
    let a: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let b: serde_yaml::Value = serde_yaml::from_str(&first).unwrap();
    assert_eq!(a["contexts"]["a"]["x"], b["contexts"]["a"]["x"]);
    assert_eq!(b["contexts"]["a"]["x"].as_mapping().unwrap().len(), 6);
    assert!(first.contains("    !t k: !t v\n"), "{}", first);
}

/// A collection key inside a collection key, tagged and nested, also reads back as the same
/// value.
#[test]
fn talosconfig_nested_collection_keys_round_trip() {
    let text = "context: a\ncontexts:\n  a:\n    endpoints: []\n    x:\n      ? {? [k, 1] : !t {a: [b, null]}}\n      : v\n      ? - q\n      : - w\n";
    let config = Config::from_yaml(text.as_bytes()).unwrap();
    let first = written_back_stably(&config);
    let a: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let b: serde_yaml::Value = serde_yaml::from_str(&first).unwrap();
    assert_eq!(a["contexts"]["a"]["x"], b["contexts"]["a"]["x"]);
}

/// ttl: 24 fractional digits of a large unit overflowed u128 in the fraction (a panic with
/// overflow checks, a silently wrong TTL in release builds). The same input now parses or is
/// refused without a panic.
#[test]
fn ttl_long_fraction_does_not_overflow() {
    let data = input("ttl-long-fraction-overflow.txt");
    let text = String::from_utf8_lossy(&data);
    let _ = talvault::pki::ttl::Ttl::parse(&text);
    for part in text.split(',') {
        let _ = talvault::pki::ttl::Ttl::parse(part);
    }
}

/// recipients: an age secret key followed by non-ASCII bytes. The harness itself panicked
/// (it sliced the line at a byte that is not a character boundary); talvault refused the line
/// correctly. Kept so the refusal, and the absence of the key in the message, stay checked.
#[test]
fn recipients_secret_key_with_non_ascii_is_refused_without_echo() {
    let data = input("recipients-secret-key-non-ascii.txt");
    let text = String::from_utf8_lossy(&data);
    let err = parse_recipients(&text, Path::new("recipients.txt")).unwrap_err();
    let msg = err.to_string();
    assert!(
        !msg.to_ascii_uppercase().contains("AGE-SECRET-KEY-1VR"),
        "{msg}"
    );
    assert_no_key_echo(&data, &msg);
}

/// recipients: an `ssh-rsa` key whose exponent is a zero byte made age 0.12.1 panic (index out
/// of bounds in its mpint reader); a recipients file dropped into the vault crashed every
/// command that read it. talvault now refuses such a key before age sees it.
#[test]
fn recipients_ssh_rsa_zero_mpint_is_refused_not_a_panic() {
    let data = input("recipients-ssh-rsa-zero-mpint.txt");
    let text = String::from_utf8_lossy(&data);
    let err = parse_recipients(&text, Path::new("recipients.txt")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "recipients.txt line 2: not a valid ssh public key"
    );
}

/// pkcs11_uri: a URI whose token *value* contains the text `pin-value` parses (rightly); the
/// harness's own check mistook it for a PIN attribute. The check now looks at attribute names,
/// and this input pins that such a value is kept, while a real `pin-value` attribute is refused.
#[test]
fn pkcs11_uri_value_containing_pin_value_is_not_a_pin() {
    let data = input("pkcs11-uri-value-containing-pin-value.txt");
    let text = std::str::from_utf8(&data).unwrap();
    let uri = talvault_hsm::Pkcs11Uri::parse(text).unwrap();
    assert!(uri.token().unwrap().contains("pin-value"));
    let shown = uri.to_string();
    assert_eq!(talvault_hsm::Pkcs11Uri::parse(&shown).unwrap(), uri);
    let err = talvault_hsm::Pkcs11Uri::parse("pkcs11:token=t?pin-value=s3cr3t-pin").unwrap_err();
    assert!(!err.to_string().contains("s3cr3t-pin"), "{err}");
}

/// pkcs11_uri: `pin-value=kcs11:` in an input that is not a `pkcs11:` URI. The message ("it does
/// not start with \"pkcs11:\"") contains the text of that would-be PIN by coincidence; the
/// harness now tells a coincidence from an echo by replacing the PIN and looking again.
#[test]
fn pkcs11_uri_message_words_are_not_a_pin_echo() {
    let data = input("pkcs11-uri-pin-value-matching-message-words.txt");
    let text = String::from_utf8_lossy(&data).into_owned();
    let err = talvault_hsm::Pkcs11Uri::parse(&text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("kcs11:"));
    let other = text.replacen("kcs11:", "QQQQQQ", 1);
    let again = talvault_hsm::Pkcs11Uri::parse(&other)
        .unwrap_err()
        .to_string();
    assert!(
        again.contains("kcs11:"),
        "the text is the message's own, not the input's"
    );
}

/// pkcs11_uri: `pin-value=` inside another attribute's value, whose text also appears in the
/// unknown attribute's name that the error names. Not a PIN (no `pin-value` attribute), so
/// nothing is echoed; the harness now looks only at real `pin-value` attributes.
#[test]
fn pkcs11_uri_pin_value_text_inside_a_value_is_not_a_pin() {
    let data = input("pkcs11-uri-pin-value-text-inside-a-value.txt");
    let text = String::from_utf8_lossy(&data).into_owned();
    let err = talvault_hsm::Pkcs11Uri::parse(&text)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("unknown attribute"), "{err}");
    // A real pin-value attribute is refused without its value in the message.
    let err = talvault_hsm::Pkcs11Uri::parse("pkcs11:token=t;pin-value=cccoduld-pathcc")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("cccoduld-pathcc"), "{err}");
}
