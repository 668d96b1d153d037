//! Benchmark: what a sealed backup's stream costs per part, in process, on this machine: SHA-256
//! (ring), age's STREAM encryption and decryption alone (the age crate, nothing of ours), and
//! talvault's seal and open pipelines (age plus the plaintext scan and, for seal, the sealed
//! bytes' SHA-256 on their own threads). The ceiling these set for `benches/backup/compare.sh`:
//! a seal cannot be faster than the encryption alone, nor take less CPU than it plus two
//! SHA-256 passes. Run: `cargo bench --bench backup` (`BENCH_MIB=1024` for a larger stream,
//! `BENCH_CHUNK_KIB=256` for larger pieces).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::io::{Read, Write};
use std::time::Instant;

use talvault::backup::background::Background;
use talvault::backup::etcd::Scan;
use talvault::digest::Sha256Stream;
use talvault::store::age::stream as agestream;
use talvault::store::age::{Identity, Recipient};

/// Best of three runs of `f`, in MiB/s of `mib`.
fn best(mib: f64, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            mib / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn main() {
    let env = |k: &str, default: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = env("BENCH_MIB", 256);
    // The piece size handed to each stage (talvault uses 64 KiB, age's chunk).
    let chunk = env("BENCH_CHUNK_KIB", 64) << 10;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let plain: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    #[expect(
        deprecated,
        reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
    )]
    let key = age::x25519::Identity::generate();
    let public = key.to_public();
    let recipient = Recipient::parse(&public.to_string()).unwrap();
    let m = mib as f64;
    println!(
        "{mib} MiB in memory, {} KiB pieces, best of 3 (MiB/s)",
        chunk >> 10
    );

    let sha = best(m, || {
        let mut h = Sha256Stream::new();
        for c in plain.chunks(chunk) {
            h.update(c);
        }
        std::hint::black_box(h.finish());
    });
    println!("  SHA-256 (ring)                         {sha:>7.0}");

    let mut sealed = Vec::new();
    let enc = best(m, || {
        let e = age::Encryptor::with_recipients(std::iter::once(&public as &dyn age::Recipient))
            .unwrap();
        let mut w = e.wrap_output(std::io::sink()).unwrap();
        for c in plain.chunks(chunk) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap();
    });
    println!("  age crate: encrypt only                {enc:>7.0}");
    {
        let e = age::Encryptor::with_recipients(std::iter::once(&public as &dyn age::Recipient))
            .unwrap();
        let mut w = e.wrap_output(&mut sealed).unwrap();
        w.write_all(&plain).unwrap();
        w.finish().unwrap();
    }
    let dec = best(m, || {
        let d = age::Decryptor::new_buffered(&sealed[..]).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&key as &dyn age::Identity))
            .unwrap();
        let mut buf = vec![0u8; chunk];
        while r.read(&mut buf).unwrap() > 0 {}
    });
    println!("  age crate: decrypt only                {dec:>7.0}");

    let seal = best(m, || {
        let mut scan = Background::<Scan>::spawn();
        let mut w = agestream::seal(
            std::io::sink(),
            std::slice::from_ref(&recipient),
            age::NoCallbacks,
        )
        .unwrap();
        for c in plain.chunks(chunk) {
            scan.update(c);
            w.write_all(c).unwrap();
        }
        std::hint::black_box(w.finish().unwrap().1);
        std::hint::black_box(scan.finish().finish());
    });
    println!("  talvault seal pipeline (2 SHA-256)     {seal:>7.0}");

    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&sealed).unwrap();
    let ids = [Identity::from_x25519(key.clone(), "bench.key")];
    let open = best(m, || {
        let (mut r, _) = agestream::open(std::path::Path::new("b.age"), &file, &ids).unwrap();
        let mut scan = Background::<Scan>::spawn();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            scan.update(&buf[..n]);
        }
        std::hint::black_box(scan.finish().finish());
    });
    println!("  talvault open pipeline (1 SHA-256)     {open:>7.0}");
    println!(
        "  CPU floor of a seal: 1/(1/enc + 2/sha) = {:.0} MiB/s on one core",
        1.0 / (1.0 / enc + 2.0 / sha)
    );
}
