//! Benchmark: signing a CRL of 10,000 and 100,000 entries with an in-memory Ed25519 issuer,
//! talvault's `pki::crl::sign_crl` against rcgen 0.14's `CertificateRevocationListParams::
//! signed_by` for the same entries (rcgen's issuer read from the same certificate, so its key
//! usages include cRLSign and its key id is the certificate's SKI; the CRL's AKI pre-specified as
//! that SKI). Runs the two alternately, prints the median of each and the ratio ours/rcgen, and
//! checks that both produce the same bytes (Ed25519 signatures are deterministic).
//! Run: `cargo bench --bench crl`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    missing_docs
)]

use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use talvault::keys::PrivateKey;
use talvault::pki::crl::{CrlParams, RevocationReason, RevokedCertificate, sign_crl};
use talvault::pki::issuer::{IssuerSpec, create_issuer_certificate};

/// Median wall times of `a` and `b` over `runs` rounds, after one warm-up call of each. The two
/// alternate (a, b, b, a, …) so that both see the same load on a shared machine.
fn medians(runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    a();
    b();
    let (mut ta, mut tb) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for round in 0..runs {
        if round % 2 == 0 {
            ta.push(time(&mut a));
            tb.push(time(&mut b));
        } else {
            tb.push(time(&mut b));
            ta.push(time(&mut a));
        }
    }
    ta.sort_unstable();
    tb.sort_unstable();
    (ta[runs / 2], tb[runs / 2])
}

fn rcgen_reason(r: RevocationReason) -> rcgen::RevocationReason {
    match r {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
    }
}

fn main() {
    let rng = SystemRandom::new();
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let key = PrivateKey::generate_ed25519(&rng).unwrap();
    let issuer = create_issuer_certificate(
        &key.key_pair().unwrap(),
        &IssuerSpec {
            common_name: "bench issuer",
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(365),
        },
        &rng,
    )
    .unwrap();
    let params = CrlParams {
        this_update: now,
        next_update: now + time::Duration::days(7),
        crl_number: 42,
    };

    println!("CRL signing, Ed25519 issuer key in memory (median wall time)");
    for (entries, runs) in [(10_000usize, 31usize), (100_000, 11)] {
        // Random positive 16-byte serials (as talvault mints them), spread revocation times,
        // every reason in turn. Sorted by serial so rcgen (which keeps input order) writes the
        // same CRL as sign_crl (which sorts).
        let mut revoked: Vec<RevokedCertificate> = (0..entries)
            .map(|n| {
                let mut serial = vec![0u8; 16];
                rng.fill(&mut serial).unwrap();
                serial[0] |= 0x01;
                RevokedCertificate {
                    serial,
                    revoked_at: now - time::Duration::seconds(n as i64 * 7),
                    reason: RevocationReason::ALL[n % RevocationReason::ALL.len()],
                }
            })
            .collect();
        revoked.sort_by(|a, b| a.serial.cmp(&b.serial));

        let signer = key.key_pair().unwrap();
        let ours = sign_crl(&issuer.der, &signer, &params, &revoked).unwrap();

        let rcgen_issuer =
            rcgen::Issuer::from_ca_cert_der(&issuer.der.clone().into(), key.key_pair().unwrap())
                .unwrap();
        assert!(
            rcgen_issuer
                .key_usages()
                .contains(&rcgen::KeyUsagePurpose::CrlSign)
        );
        let rcgen_params = rcgen::CertificateRevocationListParams {
            this_update: params.this_update,
            next_update: params.next_update,
            crl_number: rcgen::SerialNumber::from(params.crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&r.serial),
                    revocation_time: r.revoked_at,
                    reason_code: Some(rcgen_reason(r.reason)),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::PreSpecified(issuer.subject_key_id.clone()),
        };
        let theirs = rcgen_params.signed_by(&rcgen_issuer).unwrap();
        assert_eq!(ours.der, theirs.der().as_ref(), "same entries, same bytes");
        let (ours_time, rcgen_time) = medians(
            runs,
            || {
                std::hint::black_box(sign_crl(&issuer.der, &signer, &params, &revoked).unwrap());
            },
            || {
                std::hint::black_box(rcgen_params.signed_by(&rcgen_issuer).unwrap());
            },
        );

        println!(
            "{entries:>7} entries ({:>7} bytes DER): talvault sign_crl {:>8.2} ms | rcgen signed_by {:>8.2} ms | ratio ours/rcgen {:.2}",
            ours.der.len(),
            ours_time.as_secs_f64() * 1e3,
            rcgen_time.as_secs_f64() * 1e3,
            ours_time.as_secs_f64() / rcgen_time.as_secs_f64()
        );
    }
}
