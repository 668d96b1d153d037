//! Benchmark: in-process talosconfig issuance (keygen + build + sign + PEM + talosconfig render)
//! against the raw ring cost of one Ed25519 keygen plus one signature, on the same machine.
//! Prints both rates and their ratio (target: issuance at least 50% of the raw rate).
//! Run: `cargo bench --bench issuance`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use talvault::bundle::{VersionContract, generate};
use talvault::keys::PrivateKey;
use talvault::pki::issue::{IssueTime, SubjectKey, issue_leaf};
use talvault::pki::policy::{Policy, Request};
use talvault::pki::role::Role;
use talvault::talosconfig::{Config, Context};

/// Runs `f` in batches for about `budget`, returns operations per second of the best batch.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut best = 0f64;
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(200) {
            f();
            n += 1;
        }
        best = best.max(f64::from(n) / start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let rng = SystemRandom::new();
    let budget = Duration::from_secs(3);

    let raw = rate(budget, || {
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        std::hint::black_box(kp.sign(&[0u8; 300]));
        std::hint::black_box(kp.public_key());
    });

    let now = time::OffsetDateTime::now_utc();
    let bundle = generate::generate(VersionContract::parse("v1.6").unwrap(), now, &rng).unwrap();
    let os = bundle.certs.as_ref().unwrap().os.as_ref().unwrap();
    let signer = PrivateKey::from_talos_pem(os.key.expose())
        .unwrap()
        .key_pair()
        .unwrap();
    let grant = Policy::default()
        .grant(&Request {
            roles: vec![Role::parse("os:reader").unwrap()],
            ..Request::default()
        })
        .unwrap();
    let issued = rate(budget, || {
        let leaf = issue_leaf(
            &os.crt,
            &signer,
            &grant,
            SubjectKey::Generate,
            IssueTime::new(now),
            &rng,
        )
        .unwrap();
        let ctx = Context::issued(
            &os.crt,
            &leaf.cert_pem,
            leaf.key_pem.as_ref(),
            vec!["10.0.0.1".into()],
            vec![],
        );
        std::hint::black_box(Config::single("reader@demo", ctx).to_yaml());
    });

    println!("raw ring Ed25519 keygen + sign:  {raw:>9.0} /s");
    println!("talvault issuance (in process):  {issued:>9.0} /s");
    println!(
        "ratio issuance/raw:              {:>9.2}  (target >= 0.50)",
        issued / raw
    );
}
