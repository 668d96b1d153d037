//! Inputs the fuzzers found (fuzz/, docs/fuzzing.md), each fed to the same function with the
//! same check as its fuzz target, so a fixed bug stays fixed. The files live in
//! `tests/data/fuzz-regressions/`, named `TARGET-WHAT`.

use std::path::{Path, PathBuf};

use talvault::store::age::parse_recipients;
use talvault::talosconfig::Config;

fn input(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz-regressions")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
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
