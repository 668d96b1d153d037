//! Benchmark: what a token key costs. Per process, opening a key (load the module, C_Initialize,
//! find the token, open a session, C_Login, find the key and its public half); per signature
//! (each verified in memory before it is returned), Ed25519 and ECDSA P-256 in SoftHSM2 against ring in memory. Prints
//! medians. Run: `cargo bench -p talvault-hsm --bench sign` (needs SoftHSM2; skips without it).
//!
//! Like the tests, it needs its own SOFTHSM2_CONF before C_Initialize: the first run sets up a
//! token in a temporary directory and re-runs itself with the configuration in its environment;
//! the per-process figure comes from fresh child processes that each open one key once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::SigningKey as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use talvault_hsm::{HsmKey, KeyAlgorithm, OpenOptions, Pkcs11Uri};

#[path = "../tests/common/mod.rs"]
#[allow(
    dead_code,
    reason = "the tests' helpers for pkcs11-spy are not needed here"
)]
mod common;

const LABEL: &str = "talvault-bench";
const DIR: &str = "TALVAULT_HSM_BENCH_DIR";
const MESSAGE_LEN: usize = 300;
const BATCHES: usize = 7;
const BATCH_TIME: Duration = Duration::from_millis(300);
const PROCESSES: usize = 15;

fn uri(module: &Path, dir: &Path, object: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(&format!(
        "pkcs11:token={LABEL};object={object}?module-path={}&pin-source={}",
        module.display(),
        dir.join("pin").display()
    ))
    .unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Median over batches of the time per call, each batch running for about BATCH_TIME.
fn per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < BATCH_TIME {
            f();
            n += 1;
        }
        batches.push(start.elapsed().as_secs_f64() / f64::from(n));
    }
    median(batches)
}

fn micros(seconds: f64) -> String {
    format!("{:8.1} µs", seconds * 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(module) = common::softhsm_module() else {
        println!("sign: skipped, SoftHSM2 is not installed (apt-get install softhsm2)");
        return;
    };

    // A child measuring one open in a fresh process.
    if let Some(i) = args.iter().position(|a| a == "--open-once") {
        let dir = PathBuf::from(std::env::var(DIR).unwrap());
        let object = &args[i + 1];
        let start = Instant::now();
        let key = HsmKey::open(&uri(&module, &dir, object), &OpenOptions::default()).unwrap();
        let elapsed = start.elapsed();
        assert!(!key.public_key_der().is_empty());
        println!("{}", elapsed.as_nanos());
        return;
    }
    // A child splitting the open: `check` without an object (dlopen, C_Initialize, find token,
    // C_OpenSession, mechanism list; no login), then the open (C_Login, find key and public
    // key) on the now-loaded module.
    if let Some(i) = args.iter().position(|a| a == "--open-split") {
        let dir = PathBuf::from(std::env::var(DIR).unwrap());
        let object = &args[i + 1];
        let token_only = Pkcs11Uri::parse(&format!(
            "pkcs11:token={LABEL}?module-path={}",
            module.display()
        ))
        .unwrap();
        let start = Instant::now();
        talvault_hsm::check(&token_only, &OpenOptions::default()).unwrap();
        let loaded = start.elapsed();
        HsmKey::open(&uri(&module, &dir, object), &OpenOptions::default()).unwrap();
        let opened = start.elapsed() - loaded;
        println!("{} {}", loaded.as_nanos(), opened.as_nanos());
        return;
    }

    // First run: make a token, then run again with SOFTHSM2_CONF set.
    let Ok(dir) = std::env::var(DIR) else {
        let dir = tempfile::tempdir().unwrap();
        let conf = common::init_token(dir.path(), LABEL, "1234", "5678", "");
        std::fs::write(dir.path().join("pin"), "1234\n").unwrap();
        let status = Command::new(&args[0])
            .args(&args[1..])
            .env("SOFTHSM2_CONF", &conf)
            .env(DIR, dir.path())
            .env_remove(talvault_hsm::PIN_ENV)
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    };
    let dir = PathBuf::from(dir);

    let rng = SystemRandom::new();
    let message = vec![0x5a; MESSAGE_LEN];
    let ed = HsmKey::generate(
        &uri(&module, &dir, "bench-ed25519"),
        KeyAlgorithm::Ed25519,
        &OpenOptions::default(),
    )
    .unwrap();
    let p256 = HsmKey::generate(
        &uri(&module, &dir, "bench-p256"),
        KeyAlgorithm::EcdsaP256,
        &OpenOptions::default(),
    )
    .unwrap();

    println!(
        "talvault-hsm sign benchmark: SoftHSM2 at {}; {MESSAGE_LEN}-byte message; medians",
        module.display()
    );
    println!(
        "per-process open (dlopen + C_Initialize + find token + C_OpenSession + C_Login + find key \
         and public key), {PROCESSES} fresh processes each:"
    );
    for (algorithm, object) in [
        (KeyAlgorithm::Ed25519, "bench-ed25519"),
        (KeyAlgorithm::EcdsaP256, "bench-p256"),
    ] {
        let mut open = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..PROCESSES {
            let start = Instant::now();
            let out = Command::new(&args[0])
                .args(["--open-once", object])
                .output()
                .unwrap();
            wall.push(start.elapsed().as_secs_f64());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let nanos: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            open.push(nanos / 1e9);
        }
        let (mut loaded, mut opened) = (Vec::new(), Vec::new());
        for _ in 0..PROCESSES {
            let out = Command::new(&args[0])
                .args(["--open-split", object])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let (a, b) = text.trim().split_once(' ').unwrap();
            loaded.push(a.parse::<f64>().unwrap() / 1e9);
            opened.push(b.parse::<f64>().unwrap() / 1e9);
        }
        println!(
            "  {:<11} open {:>6.2} ms in process (of which: load module + C_Initialize + token + \
             session {:.2} ms, C_Login + key {:.2} ms); whole child process \
             {:.2} ms",
            algorithm.as_str(),
            median(open) * 1e3,
            median(loaded) * 1e3,
            median(opened) * 1e3,
            median(wall) * 1e3
        );
    }

    let ring_ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let p256_alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let ring_p256 = EcdsaKeyPair::from_pkcs8(
        p256_alg,
        EcdsaKeyPair::generate_pkcs8(p256_alg, &rng)
            .unwrap()
            .as_ref(),
        &rng,
    )
    .unwrap();

    println!(
        "per signature ({BATCHES} batches of ~{} ms each):",
        BATCH_TIME.as_millis()
    );
    let hsm_ed = per_call(|| {
        ed.sign(&message).unwrap();
    });
    let mem_ed = per_call(|| {
        ring_ed.sign(&message);
    });
    let hsm_p256 = per_call(|| {
        p256.sign(&message).unwrap();
    });
    let mem_p256 = per_call(|| {
        ring_p256.sign(&rng, &message).unwrap();
    });
    for (name, hsm, mem) in [
        ("ed25519", hsm_ed, mem_ed),
        ("ecdsa-p256", hsm_p256, mem_p256),
    ] {
        println!(
            "  {name:<11} SoftHSM {}  ({:>6.0}/s)   ring in memory {}  ({:>6.0}/s)   SoftHSM/ring {:>4.1}x",
            micros(hsm),
            1.0 / hsm,
            micros(mem),
            1.0 / mem,
            hsm / mem
        );
    }
}
