//! Benchmark: opening an environment's bundle with an X25519 identity and re-sealing it (what
//! `recipients add/remove` does to every secret), in process, against the same two operations
//! through the age crate directly with no talvault layer. Prints rates and the ratio.
//! Run: `cargo bench --bench seal`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::path::Path;
use std::time::{Duration, Instant};

use talvault::bundle::{VersionContract, generate};
use talvault::store::age::{self as agestore, Identity, Recipient};

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
    let rng = ring::rand::SystemRandom::new();
    let now = time::OffsetDateTime::now_utc();
    let bundle = generate::generate(VersionContract::parse("v1.6").unwrap(), now, &rng).unwrap();
    let plaintext = bundle.to_yaml();
    let plaintext = plaintext.expose().as_bytes();
    #[expect(
        deprecated,
        reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
    )]
    let key = age::x25519::Identity::generate();
    let recipient = Recipient::parse(&key.to_public().to_string()).unwrap();
    let identities = vec![Identity::from_x25519(key.clone(), "bench.key")];
    let sealed = agestore::seal(plaintext, std::slice::from_ref(&recipient)).unwrap();
    let budget = Duration::from_secs(3);

    let ours = rate(budget, || {
        let (plain, _) = agestore::open(Path::new("bundle.age"), &sealed, &identities).unwrap();
        std::hint::black_box(
            agestore::seal(plain.expose(), std::slice::from_ref(&recipient)).unwrap(),
        );
    });
    let public = key.to_public();
    let raw = rate(budget, || {
        let plain = age::decrypt(&key, &sealed).unwrap();
        std::hint::black_box(age::encrypt_and_armor(&public, &plain).unwrap());
    });
    println!(
        "bundle: {} bytes of secrets.yaml, {} bytes sealed",
        plaintext.len(),
        sealed.len()
    );
    println!(
        "talvault open + re-seal (armored):  {ours:>8.0} /s  ({:.0} µs each)",
        1e6 / ours
    );
    println!(
        "age crate decrypt + encrypt_and_armor: {raw:>5.0} /s  ({:.0} µs each)",
        1e6 / raw
    );
    println!("ratio talvault/raw age:             {:>8.2}", ours / raw);
}
