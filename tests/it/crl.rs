//! Issuer certificates and CRLs checked by independent verifiers: `openssl verify -x509_strict`
//! (chains, purposes, `-crl_check`), `openssl crl -verify`, `openssl x509 -text`, x509-parser
//! (fields and signatures), and rcgen's own CRL encoder (byte-for-byte equal output).

use std::path::{Path, PathBuf};
use std::process::Command;

use ring::rand::SystemRandom;
use talvault::bundle::{VersionContract, generate};
use talvault::keys::{self, PrivateKey};
use talvault::pki::cert::{CertificateTemplate, ExtendedKeyUsage, KeyUsage};
use talvault::pki::crl::{CrlError, CrlParams, RevocationReason, RevokedCertificate, sign_crl};
use talvault::pki::issue::{IssueTime, IssuedLeaf, SubjectKey, issue_leaf};
use talvault::pki::issuer::{IssuerCertificate, IssuerSpec, create_issuer_certificate};
use talvault::pki::name;
use talvault::pki::policy::{Grant, Policy, Request};
use talvault::pki::role::Role;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::support::have;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// An issuer: its certificate and its key.
struct Issuer {
    cert: IssuerCertificate,
    key: PrivateKey,
}

fn issuer(key: PrivateKey, name: &str) -> Issuer {
    let spec = IssuerSpec {
        common_name: name,
        not_before: now() - Duration::minutes(5),
        not_after: now() + Duration::days(400),
    };
    let cert =
        create_issuer_certificate(&key.key_pair().unwrap(), &spec, &SystemRandom::new()).unwrap();
    Issuer { cert, key }
}

fn issuers() -> Vec<(&'static str, Issuer)> {
    let rng = SystemRandom::new();
    vec![
        (
            "ed25519",
            issuer(
                PrivateKey::generate_ed25519(&rng).unwrap(),
                "prod issuer e3 2026-11",
            ),
        ),
        (
            "p256",
            issuer(
                PrivateKey::generate_p256(&rng).unwrap(),
                "prod issuer e4 2026-12",
            ),
        ),
    ]
}

/// The Talos OS CA of a freshly generated bundle: its certificate PEM and key.
fn os_ca() -> (Vec<u8>, PrivateKey) {
    let bundle = generate::generate(
        VersionContract::parse("v1.6").unwrap(),
        now() - Duration::minutes(5),
        &SystemRandom::new(),
    )
    .unwrap();
    let os = bundle.certs.unwrap().os.unwrap();
    (os.crt, PrivateKey::from_talos_pem(os.key.expose()).unwrap())
}

fn grant(roles: &[&str]) -> Grant {
    Policy::default()
        .grant(&Request {
            roles: Role::parse_set(roles.iter().copied()).unwrap(),
            ..Request::default()
        })
        .unwrap()
}

fn leaf(issuer: &Issuer, roles: &[&str]) -> IssuedLeaf {
    issue_leaf(
        issuer.cert.pem.as_bytes(),
        &issuer.key.key_pair().unwrap(),
        &grant(roles),
        SubjectKey::Generate,
        IssueTime::new(now()),
        &SystemRandom::new(),
    )
    .unwrap()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Runs openssl; returns (success, stdout + stderr).
fn openssl(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn params(number: u64) -> CrlParams {
    CrlParams {
        this_update: now() - Duration::minutes(1),
        next_update: now() + Duration::days(7),
        crl_number: number,
    }
}

fn revoked(leaf: &IssuedLeaf, reason: RevocationReason) -> RevokedCertificate {
    let (_, cert) = X509Certificate::from_der(&leaf.cert_der).unwrap();
    RevokedCertificate {
        serial: cert.tbs_certificate.serial.to_bytes_be(),
        revoked_at: now() - Duration::seconds(30),
        reason,
    }
}

fn ski(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn issuer_certificates_pass_openssl_strict_and_show_the_profile() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (kind, i) in issuers() {
        let pem = write(dir.path(), "issuer.pem", i.cert.pem.as_bytes());
        let (ok, out) = openssl(os!["verify", "-x509_strict", "-CAfile", &pem, &pem]);
        assert!(ok && out.contains("issuer.pem: OK"), "{kind}: {out}");
        let (ok, text) = openssl(os!["x509", "-noout", "-text", "-in", &pem]);
        assert!(ok, "{kind}: {text}");
        assert!(text.contains("CA:TRUE, pathlen:0"), "{kind}: {text}");
        assert!(
            text.contains("Digital Signature, Certificate Sign, CRL Sign"),
            "{kind}: {text}"
        );
        let eku = text
            .lines()
            .skip_while(|l| !l.contains("X509v3 Extended Key Usage"))
            .nth(1)
            .unwrap()
            .trim();
        assert_eq!(eku, "TLS Web Client Authentication", "{kind}: {text}");
        assert!(!text.contains("Authority Key Identifier"), "{kind}: {text}");
        assert!(text.contains("Subject Key Identifier"), "{kind}: {text}");
        let subject = text
            .lines()
            .find(|l| l.trim().starts_with("Subject:"))
            .unwrap();
        assert!(
            subject.contains("O = talvault, CN = prod issuer e"),
            "{kind}: {subject}"
        );
        let issuer_line = text
            .lines()
            .find(|l| l.trim().starts_with("Issuer:"))
            .unwrap();
        assert_eq!(
            issuer_line.trim().trim_start_matches("Issuer:"),
            subject.trim().trim_start_matches("Subject:"),
            "{kind}: self-signed"
        );
        let algorithm = if kind == "ed25519" {
            "Signature Algorithm: ED25519"
        } else {
            "Signature Algorithm: ecdsa-with-SHA256"
        };
        assert!(text.contains(algorithm), "{kind}: {text}");
    }
}

#[test]
fn leaves_under_issuers_verify_for_client_auth_only() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (kind, i) in issuers() {
        let issuer_pem = write(dir.path(), "issuer.pem", i.cert.pem.as_bytes());
        let l = leaf(&i, &["os:reader", "os:etcd:backup"]);
        let leaf_pem = write(dir.path(), "leaf.pem", &l.cert_pem);
        let (ok, out) = openssl(os![
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            &issuer_pem,
            &leaf_pem
        ]);
        assert!(ok && out.contains("leaf.pem: OK"), "{kind}: {out}");
        // The leaf names its issuer exactly: issuer = the issuer's subject, AKI = its SKI.
        let (_, cert) = X509Certificate::from_der(&l.cert_der).unwrap();
        let (_, ca) = X509Certificate::from_der(&i.cert.der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, i.cert.subject_key_id);

        // A server certificate signed by the issuer is refused at depth 1 (the issuer): its EKU
        // excludes serverAuth, which keeps nodes from accepting it for servers (§6.3 item 4).
        let server_key = PrivateKey::generate_ed25519(&SystemRandom::new()).unwrap();
        let server = CertificateTemplate {
            serial: vec![0x42; 16],
            issuer: ca.subject().as_raw().to_vec(),
            subject: name::encode(&[], Some("node-1")).unwrap(),
            not_before: now() - Duration::minutes(1),
            not_after: now() + Duration::days(1),
            subject_public_key_info: server_key.public_key_info().unwrap(),
            key_usage: KeyUsage {
                digital_signature: true,
                ..KeyUsage::default()
            },
            extended_key_usage: vec![ExtendedKeyUsage::ServerAuth],
            ca: None,
            subject_key_id: None,
            authority_key_id: Some(i.cert.subject_key_id.clone()),
        }
        .sign(&i.key.key_pair().unwrap())
        .unwrap();
        let server_pem = write(
            dir.path(),
            "server.pem",
            &keys::pem_encode(keys::LABEL_CERTIFICATE, &server),
        );
        let (ok, out) = openssl(os![
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            &issuer_pem,
            &server_pem
        ]);
        assert!(
            !ok && out.contains("at 1 depth lookup: unsuitable certificate purpose"),
            "{kind}: {out}"
        );
    }
}

#[test]
fn issuer_leaves_do_not_chain_to_the_os_ca() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (os_pem, _) = os_ca();
    let os_pem = write(dir.path(), "os.pem", &os_pem);
    for (kind, i) in issuers() {
        let issuer_pem = write(dir.path(), "issuer.pem", i.cert.pem.as_bytes());
        let l = leaf(&i, &["os:admin"]);
        let leaf_pem = write(dir.path(), "leaf.pem", &l.cert_pem);
        // Even with the issuer offered as an intermediate, the chain ends at a root the node
        // no longer trusts once the issuer is out of acceptedCAs.
        let (ok, out) = openssl(os![
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            &os_pem,
            "-untrusted",
            &issuer_pem,
            &leaf_pem
        ]);
        assert!(!ok, "{kind}: {out}");
        assert!(
            out.contains("self-signed certificate in certificate chain")
                || out.contains("unable to get local issuer certificate"),
            "{kind}: {out}"
        );
        // And the OS CA may not sign CRLs at all.
    }
}

#[test]
fn crls_verify_with_openssl_and_revoke_what_they_list() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (kind, i) in issuers() {
        let issuer_pem = write(dir.path(), "issuer.pem", i.cert.pem.as_bytes());
        let revoked_leaf = leaf(&i, &["os:operator"]);
        let other_revoked = leaf(&i, &["os:reader"]);
        let live_leaf = leaf(&i, &["os:reader"]);
        let signer = i.key.key_pair().unwrap();

        // An empty CRL verifies and revokes nothing.
        let empty = sign_crl(&i.cert.der, &signer, &params(1), &[]).unwrap();
        let empty_pem = write(dir.path(), "empty.crl.pem", empty.pem().as_bytes());
        let (ok, out) = openssl(os![
            "crl",
            "-in",
            &empty_pem,
            "-CAfile",
            &issuer_pem,
            "-noout",
            "-verify"
        ]);
        assert!(ok && out.contains("verify OK"), "{kind}: {out}");
        let (ok, text) = openssl(os!["crl", "-in", &empty_pem, "-noout", "-text"]);
        assert!(
            ok && text.contains("No Revoked Certificates."),
            "{kind}: {text}"
        );

        let crl = sign_crl(
            &i.cert.der,
            &signer,
            &params(2),
            &[
                revoked(&revoked_leaf, RevocationReason::KeyCompromise),
                revoked(&other_revoked, RevocationReason::Unspecified),
            ],
        )
        .unwrap();
        let crl_pem = write(dir.path(), "crl.pem", crl.pem().as_bytes());
        let (ok, out) = openssl(os![
            "crl",
            "-in",
            &crl_pem,
            "-CAfile",
            &issuer_pem,
            "-noout",
            "-verify"
        ]);
        assert!(ok && out.contains("verify OK"), "{kind}: {out}");
        let (ok, text) = openssl(os!["crl", "-in", &crl_pem, "-noout", "-text"]);
        assert!(ok, "{kind}: {text}");
        assert!(text.contains("Version 2 (0x1)"), "{kind}: {text}");
        assert!(
            text.contains("X509v3 CRL Number: \n                2"),
            "{kind}: {text}"
        );
        assert!(text.contains("Key Compromise"), "{kind}: {text}");
        assert_eq!(
            text.matches("X509v3 CRL Reason Code").count(),
            1,
            "unspecified is written as no reason code: {text}"
        );

        for (name, l, want_revoked) in [
            ("revoked", &revoked_leaf, true),
            ("revoked-unspecified", &other_revoked, true),
            ("live", &live_leaf, false),
        ] {
            let leaf_pem = write(dir.path(), "leaf.pem", &l.cert_pem);
            let (ok, out) = openssl(os![
                "verify",
                "-x509_strict",
                "-purpose",
                "sslclient",
                "-crl_check",
                "-CRLfile",
                &crl_pem,
                "-CAfile",
                &issuer_pem,
                &leaf_pem
            ]);
            if want_revoked {
                assert!(
                    !ok && out.contains("certificate revoked"),
                    "{kind} {name}: {out}"
                );
            } else {
                assert!(ok && out.contains("leaf.pem: OK"), "{kind} {name}: {out}");
            }
            // With the empty CRL every leaf passes the CRL check.
            let (ok, out) = openssl(os![
                "verify",
                "-crl_check",
                "-CRLfile",
                &empty_pem,
                "-CAfile",
                &issuer_pem,
                &leaf_pem
            ]);
            assert!(ok, "{kind} {name} under the empty CRL: {out}");
        }

        // A CRL from another issuer's key does not verify against this issuer.
        let (_, other) = issuers().remove(0);
        let other_pem = write(dir.path(), "other.pem", other.cert.pem.as_bytes());
        let (ok, out) = openssl(os![
            "crl", "-in", &crl_pem, "-CAfile", &other_pem, "-noout", "-verify"
        ]);
        assert!(!ok || !out.contains("verify OK"), "{kind}: {out}");
    }
}

#[test]
fn crls_parse_and_verify_with_x509_parser() {
    for (kind, i) in issuers() {
        let leaves: Vec<IssuedLeaf> = (0..5).map(|_| leaf(&i, &["os:reader"])).collect();
        let reasons = [
            RevocationReason::KeyCompromise,
            RevocationReason::Superseded,
            RevocationReason::Unspecified,
            RevocationReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise,
        ];
        let entries: Vec<RevokedCertificate> = leaves
            .iter()
            .zip(reasons)
            .map(|(l, r)| revoked(l, r))
            .collect();
        let crl = sign_crl(
            &i.cert.der,
            &i.key.key_pair().unwrap(),
            &params(u64::MAX),
            &entries,
        )
        .unwrap();
        let (rest, parsed) = CertificateRevocationList::from_der(&crl.der).unwrap();
        assert!(rest.is_empty(), "{kind}");
        let (_, ca) = X509Certificate::from_der(&i.cert.der).unwrap();
        parsed.verify_signature(ca.public_key()).unwrap();
        assert_eq!(parsed.issuer().as_raw(), ca.subject().as_raw(), "{kind}");
        assert_eq!(
            parsed.crl_number().unwrap().to_u64_digits(),
            vec![u64::MAX],
            "{kind}"
        );
        let aki = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski(&i.cert.der), "{kind}");
        assert!(parsed.extensions().iter().all(|e| !e.critical), "{kind}");
        // Every entry present, in serial order, with its reason (none for unspecified).
        let mut want: Vec<(Vec<u8>, Option<u8>)> = entries
            .iter()
            .map(|e| {
                let code = (e.reason != RevocationReason::Unspecified).then_some(e.reason.code());
                (e.serial.clone(), code)
            })
            .collect();
        want.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(&b.0)));
        let got: Vec<(Vec<u8>, Option<u8>)> = parsed
            .iter_revoked_certificates()
            .map(|r| (r.serial().to_bytes_be(), r.reason_code().map(|(_, c)| c.0)))
            .collect();
        assert_eq!(got, want, "{kind}");
        for r in parsed.iter_revoked_certificates() {
            assert_eq!(
                r.revocation_date.timestamp(),
                entries[0].revoked_at.unix_timestamp(),
                "{kind}"
            );
        }
        // A flipped bit breaks the signature.
        let mut broken = crl.der.clone();
        let at = broken.len() - 10;
        broken[at] ^= 1;
        let (_, parsed) = CertificateRevocationList::from_der(&broken).unwrap();
        assert!(parsed.verify_signature(ca.public_key()).is_err(), "{kind}");
    }
}

/// rcgen's own encoder, configured as crates.md §4 says (issuer from the certificate, AKI
/// pre-specified as the SKI), must produce the same bytes for the same entries in serial order.
/// Ed25519 signatures are deterministic, so the whole CRL is compared.
#[test]
fn crls_match_rcgen_byte_for_byte() {
    let rng = SystemRandom::new();
    let i = issuer(PrivateKey::generate_ed25519(&rng).unwrap(), "cmp issuer");
    let this_update = time::macros::datetime!(2026-03-01 12:00:00 UTC);
    let mut entries: Vec<RevokedCertificate> = (0u8..40)
        .map(|n| RevokedCertificate {
            serial: [&[n | 0x40, n][..], &[0x80 | n; 14]].concat(),
            revoked_at: this_update - Duration::minutes(i64::from(n)),
            reason: RevocationReason::ALL[usize::from(n) % RevocationReason::ALL.len()],
        })
        .collect();
    entries.push(RevokedCertificate {
        serial: vec![0xff; 16],
        revoked_at: time::macros::datetime!(2050-06-01 0:00 UTC),
        reason: RevocationReason::CessationOfOperation,
    });
    entries.sort_by(|a, b| a.serial.cmp(&b.serial));
    for crl_number in [0u64, 1, 0x80, u64::MAX] {
        for revoked in [&entries[..], &[]] {
            let p = CrlParams {
                this_update,
                next_update: this_update + Duration::days(30),
                crl_number,
            };
            let ours = sign_crl(&i.cert.der, &i.key.key_pair().unwrap(), &p, revoked).unwrap();

            let kp = i.key.key_pair().unwrap();
            let rcgen_issuer =
                rcgen::Issuer::from_ca_cert_der(&i.cert.der.clone().into(), kp).unwrap();
            let theirs = rcgen::CertificateRevocationListParams {
                this_update: p.this_update,
                next_update: p.next_update,
                crl_number: rcgen::SerialNumber::from(crl_number),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|r| rcgen::RevokedCertParams {
                        serial_number: rcgen::SerialNumber::from_slice(&r.serial),
                        revocation_time: r.revoked_at,
                        reason_code: Some(match r.reason {
                            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
                            RevocationReason::KeyCompromise => {
                                rcgen::RevocationReason::KeyCompromise
                            }
                            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
                            RevocationReason::AffiliationChanged => {
                                rcgen::RevocationReason::AffiliationChanged
                            }
                            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
                            RevocationReason::CessationOfOperation => {
                                rcgen::RevocationReason::CessationOfOperation
                            }
                            RevocationReason::CertificateHold => {
                                rcgen::RevocationReason::CertificateHold
                            }
                            RevocationReason::PrivilegeWithdrawn => {
                                rcgen::RevocationReason::PrivilegeWithdrawn
                            }
                            RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
                        }),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: rcgen::KeyIdMethod::PreSpecified(
                    i.cert.subject_key_id.clone(),
                ),
            }
            .signed_by(&rcgen_issuer)
            .unwrap();
            assert_eq!(
                ours.der,
                theirs.der().as_ref(),
                "crl_number {crl_number}, {} entries",
                revoked.len()
            );
        }
    }
}

#[test]
fn the_os_ca_cannot_sign_crls() {
    let (os_pem, os_key) = os_ca();
    let os_der = keys::pem_decode_first(&os_pem).unwrap().der.to_vec();
    let err = sign_crl(&os_der, &os_key.key_pair().unwrap(), &params(1), &[]).unwrap_err();
    assert!(matches!(err, CrlError::NotCrlSigner { .. }), "{err}");
    assert!(err.to_string().contains("O=talos"), "{err}");
    assert!(err.to_string().contains("cRLSign"), "{err}");
    // An issuer certificate with the OS CA's key would still be the issuer's own CRL signer only.
    let (_, i) = issuers().remove(0);
    let err = sign_crl(&i.cert.der, &os_key.key_pair().unwrap(), &params(1), &[]).unwrap_err();
    assert!(matches!(err, CrlError::SignerMismatch), "{err}");
}
