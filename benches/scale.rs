//! Benchmark at scale: one environment with 100,000 issued and 10,000 revoked certificates
//! (`SCALE_CERTS`, `SCALE_REVOKED` to change) and an audit event for each (110,000 events),
//! then `talvault status`, `verify`, `crl` and `audit verify` run as processes. Prints medians,
//! the largest resident set of each command, and the CRL command against rcgen encoding and
//! signing the same CRL in-process. Targets: `status`, `verify` and `crl` under 300 ms median,
//! `audit verify` under 2 s, memory under 200 MB, `crl` within 2× of rcgen in-process.
//! Run: `cargo bench --bench scale` (populating takes about a minute in release).
//!
//! The records and events are written the way `talvault issue` and `revoke` write them (same
//! types, real certificates signed by the environment's issuer, format-2 events that name the
//! record's hash and carry a MAC under the environment's audit key, opened from `audit.age` with
//! the bench's identity), but in bulk, so that setting up 110,000 records does not take hours.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use talvault::audit::{Action, AuditKeys, EventBody, EventId, Seal, new_event};
use talvault::keys::PrivateKey;
use talvault::model::{CertRecord, RevocationRecord, SignedBy};
use talvault::pki::issue::{IssueTime, SubjectKey, issue_leaf};
use talvault::pki::policy::{Policy, Request};
use talvault::pki::role::Role;
use talvault::store::age::{Identity, open};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(bin: &Path, dir: &Path, args: &[&str], key: &Path) -> (bool, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("TALVAULT_IDENTITY", key)
        .env("TALVAULT_ACTOR", "bench")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code() == Some(0),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Median wall time of `runs` runs and the largest child RSS seen (KiB).
fn measure(bin: &Path, dir: &Path, args: &[&str], key: &Path, runs: usize) -> (Duration, i64) {
    // One warm-up run (fills the page cache and the summary cache).
    let (ok, text) = run(bin, dir, args, key);
    assert!(ok, "{args:?}: {text}");
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("TALVAULT_IDENTITY", key)
            .env("TALVAULT_ACTOR", "bench")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        times.push(start.elapsed());
        // Every command here succeeds (status grade 0, verify good): a refusal timed as a
        // result would flatter the numbers.
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
    times.sort();
    (
        times[times.len() / 2],
        rss_kib(bin, dir, args, key).unwrap_or(-1),
    )
}

/// Peak resident set of one run, in KiB, measured by GNU time (`None` without /usr/bin/time).
fn rss_kib(bin: &Path, dir: &Path, args: &[&str], key: &Path) -> Option<i64> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .env("TALVAULT_IDENTITY", key)
        .env("TALVAULT_ACTOR", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn main() {
    let certs = env_usize("SCALE_CERTS", 100_000);
    let revoked = env_usize("SCALE_REVOKED", 10_000);
    let runs = env_usize("SCALE_RUNS", 15);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_talvault"));
    let work = tempfile::tempdir().unwrap();
    // SCALE_KEEP=1 keeps the populated vault for profiling (its path is printed).
    let keep = std::env::var("SCALE_KEEP").as_deref() == Ok("1");
    let dir = work.path();
    let key_path = dir.join("key.txt");
    #[expect(
        deprecated,
        reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
    )]
    let identity = age::x25519::Identity::generate();
    {
        use age::secrecy::ExposeSecret as _;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(
            &key_path,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        // Identity files readable by others are refused, as ssh does.
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let recipient = identity.to_public().to_string();
    let vault = dir.join("v");
    let key = key_path.as_path();
    for args in [
        vec!["init", "v"],
        vec![
            "--vault",
            "v",
            "env",
            "create",
            "prod",
            "-r",
            &recipient,
            "--talos-version",
            "v1.11",
            "--endpoint",
            "10.5.0.2",
        ],
        vec!["--vault", "v", "issuer", "create", "prod"],
    ] {
        let (ok, text) = run(&bin, dir, &args, key);
        assert!(ok, "{args:?}: {text}");
    }
    let list = run(
        &bin,
        dir,
        &["--vault", "v", "issuer", "list", "prod", "-o", "json"],
        key,
    )
    .1;
    let id = serde_json::from_str::<serde_json::Value>(&list).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, text) = run(
        &bin,
        dir,
        &["--vault", "v", "issuer", "activate", "prod", &id],
        key,
    );
    assert!(ok, "issuer activate: {text}");
    let (ok, text) = run(
        &bin,
        dir,
        &[
            "--vault",
            "v",
            "issue",
            "prod",
            "--role",
            "os:reader",
            "-o",
            "check.tc",
        ],
        key,
    );
    assert!(ok, "{text}");

    // Populate: real leaves signed by the issuer, written as `issue` writes their records.
    let issuer_dir = vault.join(format!("envs/prod/issuers/{id}"));
    let issuer_yaml = std::fs::read_to_string(issuer_dir.join("issuer.yaml")).unwrap();
    let issuer: talvault::model::IssuerMeta =
        talvault::model::IssuerMeta::from_yaml("issuer.yaml", issuer_yaml.as_bytes()).unwrap();
    let sealed = std::fs::read(issuer_dir.join("key.age")).unwrap();
    let (plain, _) = open(
        Path::new("key.age"),
        &sealed,
        &[Identity::from_x25519(identity.clone(), "key.txt")],
    )
    .unwrap();
    let pair = PrivateKey::from_talos_pem(plain.expose())
        .unwrap()
        .key_pair()
        .unwrap();
    let rng = SystemRandom::new();
    let now = OffsetDateTime::now_utc();
    let grant = Policy::default()
        .grant(&Request {
            roles: vec![Role::parse("os:reader").unwrap()],
            ttl: None,
            holder: None,
            break_glass: None,
        })
        .unwrap();
    let certs_dir = vault.join("envs/prod/certs");
    let rev_dir = vault.join("envs/prod/revocations");
    std::fs::create_dir_all(&rev_dir).unwrap();
    std::fs::create_dir_all(&certs_dir).unwrap();

    // The audit key, as a command holding the identity opens it, and the chain's head.
    let sealed_keys = std::fs::read(vault.join("envs/prod/audit.age")).unwrap();
    let (plain, _) = open(
        Path::new("audit.age"),
        &sealed_keys,
        &[Identity::from_x25519(identity.clone(), "key.txt")],
    )
    .unwrap();
    let keys = AuditKeys::from_json(plain.expose()).unwrap();
    let config = std::fs::read_to_string(vault.join("talvault.yaml")).unwrap();
    let vault_id = config
        .lines()
        .find_map(|l| l.strip_prefix("vault_id: "))
        .unwrap()
        .trim()
        .to_owned();
    let epoch = keys.current().unwrap();
    let mac_key = epoch.derive(&vault_id, "prod").unwrap();
    let audit_dir = vault.join("envs/prod/audit");
    let mut head: EventId = {
        let list = run(
            &bin,
            dir,
            &["--vault", "v", "audit", "log", "prod", "-o", "json"],
            key,
        )
        .1;
        let events: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
        EventId::parse(events.last().unwrap()["id"].as_str().unwrap()).unwrap()
    };
    // One event on the head, naming `file` with the hash of `bytes`, MACed.
    let mut append = |action: &Action, file: String, bytes: &[u8]| {
        let mut body = EventBody::new(now, "bench", None, "prod", action).unwrap();
        body.seal = Some(Seal {
            vault: vault_id.clone(),
            epoch: epoch.epoch,
            files: [(file, Some(talvault::digest::sha256_hex(bytes)))]
                .into_iter()
                .collect(),
            lane: None,
            lane_epoch: None,
        });
        let event = new_event(vec![head.clone()], body)
            .unwrap()
            .with_mac(&mac_key);
        let path = audit_dir.join(event.relative_path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, event.to_json()).unwrap();
        head = event.id().clone();
    };
    let start = Instant::now();
    let mut rev_entries = Vec::new();
    for i in 0..certs {
        let leaf = issue_leaf(
            issuer.certificate.as_bytes(),
            &pair,
            &grant,
            SubjectKey::Generate,
            IssueTime::new(now),
            &rng,
        )
        .unwrap();
        let record = CertRecord {
            serial: leaf.serial_hex.clone(),
            fingerprint: format!("sha256:{}", leaf.fingerprint_sha256),
            roles: vec!["os:reader".into()],
            holder: Some(format!("user{i}")),
            not_before: rfc3339(leaf.not_before),
            not_after: rfc3339(leaf.not_after),
            ttl: "720h".into(),
            signed_by: SignedBy {
                ca: id.clone(),
                fingerprint: issuer.fingerprint.clone(),
            },
            mode: "issuer".into(),
            key: "generated".into(),
            actor: "bench".into(),
            issued: rfc3339(now),
            break_glass: false,
            reason: None,
            certificate: String::from_utf8(leaf.cert_pem.clone()).unwrap(),
            api: Default::default(),
        };
        let yaml = record.to_yaml().unwrap();
        std::fs::write(certs_dir.join(format!("{}.yaml", leaf.serial_hex)), &yaml).unwrap();
        append(
            &Action::Issue {
                serial: record.serial.clone(),
                fingerprint: record.fingerprint.clone(),
                roles: record.roles.clone(),
                holder: record.holder.clone(),
                ttl: record.ttl.clone(),
                not_after: record.not_after.clone(),
                mode: record.mode.clone(),
                signed_by: id.clone(),
                key: record.key.clone(),
                reason: None,
            },
            format!("certs/{}.yaml", leaf.serial_hex),
            yaml.as_bytes(),
        );
        if i < revoked {
            let r = RevocationRecord {
                serial: leaf.serial_hex.clone(),
                fingerprint: record.fingerprint.clone(),
                signed_by: record.signed_by.clone(),
                reason: "superseded".into(),
                revoked: rfc3339(now),
                actor: "bench".into(),
                holder: record.holder.clone(),
                roles: record.roles.clone(),
                not_after: record.not_after.clone(),
            };
            let yaml = r.to_yaml().unwrap();
            std::fs::write(rev_dir.join(format!("{}.yaml", leaf.serial_hex)), &yaml).unwrap();
            append(
                &Action::Revoke {
                    serial: r.serial.clone(),
                    fingerprint: r.fingerprint.clone(),
                    reason: r.reason.clone(),
                    signed_by: id.clone(),
                },
                format!("revocations/{}.yaml", leaf.serial_hex),
                yaml.as_bytes(),
            );
            rev_entries.push((leaf.cert_der.clone(), leaf.serial_hex.clone()));
        }
    }
    println!(
        "populated {certs} certificates ({revoked} revoked) and {} events in {:.1} s",
        certs + revoked,
        start.elapsed().as_secs_f64()
    );
    // The trail must be intact and authenticated before anything is timed.
    let (ok, text) = run(&bin, dir, &["--vault", "v", "audit", "verify", "prod"], key);
    assert!(ok && text.contains(", authenticated"), "{text}");

    // First (cold-cache) run of status: parses every record.
    let start = Instant::now();
    let (ok, text) = run(
        &bin,
        dir,
        &["--vault", "v", "status", "prod", "-o", "json"],
        key,
    );
    assert!(ok, "{text}");
    println!(
        "status, first run (builds the summary cache): {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );

    let mut rows = Vec::new();
    for (name, args) in [
        (
            "status -o json",
            vec!["--vault", "v", "status", "prod", "-o", "json"],
        ),
        ("status (table)", vec!["--vault", "v", "status", "prod"]),
        ("verify", vec!["--vault", "v", "verify", "prod", "check.tc"]),
        ("crl", vec!["--vault", "v", "crl", "prod", "-o", "out.crl"]),
        (
            "crl --format json",
            vec!["--vault", "v", "crl", "prod", "--format", "json"],
        ),
        (
            "audit verify",
            vec!["--vault", "v", "audit", "verify", "prod"],
        ),
    ] {
        let (median, rss) = measure(&bin, dir, &args, key, runs);
        rows.push((name, median));
        println!(
            "{name:<20} median {:>7.1} ms over {runs} runs; peak RSS {:.1} MB",
            median.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0
        );
    }

    // rcgen in-process: encode and sign the same CRL (same key, same entries).
    let issuer_params = {
        let mut p = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "talvault");
        p.distinguished_name = dn;
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![1; 20]);
        p
    };
    let rc_issuer = rcgen::Issuer::new(issuer_params, &pair);
    let mut best = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(7),
            crl_number: rcgen::SerialNumber::from(42u64),
            issuing_distribution_point: None,
            revoked_certs: rev_entries
                .iter()
                .map(|(_, serial)| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(
                        &(0..serial.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap())
                            .collect::<Vec<_>>(),
                    ),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::Superseded),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(vec![1; 20]),
        };
        let crl = params.signed_by(&rc_issuer).unwrap();
        std::hint::black_box(crl.pem().unwrap());
        best.push(start.elapsed());
    }
    best.sort();
    let rcgen_median = best[best.len() / 2];
    let crl_median = rows.iter().find(|r| r.0 == "crl").unwrap().1;
    println!(
        "rcgen in-process CRL ({} entries, build params + sign + PEM): median {:.1} ms; talvault crl process / rcgen in-process = {:.2}",
        rev_entries.len(),
        rcgen_median.as_secs_f64() * 1000.0,
        crl_median.as_secs_f64() / rcgen_median.as_secs_f64()
    );
    if keep {
        println!("kept {}", work.keep().display());
    }
}
