//! Issuers, revocation, CRLs, `verify` and `status` end to end through the CLI, judged by
//! independent verifiers: a Go apid-style TLS handshake (tests/go/apid-check), `openssl crl`,
//! `openssl verify -crl_check`, and x509-parser.

use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::issue::{apid_check, from_talosconfig, have_go};
use crate::issuing::Env;
use crate::support::{assert_crl_verifies, openssl, verify_with_crl};

fn tools() -> bool {
    crate::support::have("age-keygen") && crate::support::have("openssl") && have_go()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The issuers as `issuer list -o json` shows them.
fn issuers(env: &Env) -> Vec<serde_json::Value> {
    json(&env.ok(&["--vault", "v", "issuer", "list", "prod", "-o", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn issuer_pem(env: &Env, id: &str) -> Vec<u8> {
    let yaml = std::fs::read_to_string(env.path(&format!("v/envs/prod/issuers/{id}/issuer.yaml")))
        .unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    v["certificate"].as_str().unwrap().as_bytes().to_vec()
}

fn created_id(out: &str) -> String {
    out.strip_prefix("created issuer ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned()
}

#[test]
fn issuer_cycle_cuts_access_and_crls_verify() {
    if !tools() {
        return;
    }
    let env = Env::new();
    let dir = env.dir.path();
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--vault", "v"][..], args].concat()
    }

    // No issuer: direct mode, said so.
    let out = env.ok(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "direct.tc",
    ]));
    assert!(out.contains("signed directly by the Talos OS CA"), "{out}");

    // Create (pending: still direct), then activate.
    let out = env.ok(&with(&["issuer", "create", "prod"]));
    let first = created_id(&out);
    assert!(out.contains("talosctl patch machineconfig"), "{out}");
    let list = issuers(&env);
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["algorithm"], "ed25519");
    env.ok(&with(&["issuer", "activate", "prod", &first, "--force"]));
    let out = env.ok(&with(&[
        "issue",
        "prod",
        "--role",
        "os:operator",
        "--holder",
        "alice",
        "-o",
        "alice.tc",
    ]));
    assert!(out.contains(&format!("signed by issuer {first}")), "{out}");
    let out = env.ok(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "--holder",
        "bob",
        "-o",
        "bob.tc",
    ]));
    assert!(out.contains(&format!("signed by issuer {first}")), "{out}");

    // Handshake: accepted while the server trusts OS CA + issuer; refused without the issuer,
    // even when the client sends the issuer certificate along.
    let (crt, key, ca) = from_talosconfig(&std::fs::read_to_string(env.path("alice.tc")).unwrap());
    let issuer = issuer_pem(&env, &first);
    let verdict = apid_check(dir, &[&ca, &issuer], &crt, &key);
    assert!(verdict.accepted, "{verdict:?}");
    assert_eq!(verdict.roles, ["os:operator"]);
    let refused = apid_check(dir, &[&ca], &crt, &key);
    assert!(!refused.accepted, "{refused:?}");
    let chain = [crt.clone(), issuer.clone()].concat();
    let refused = apid_check(dir, &[&ca], &chain, &key);
    assert!(
        !refused.accepted,
        "a self-signed issuer must not chain to the OS CA: {refused:?}"
    );

    // An ECDSA P-256 issuer next to the Ed25519 OS CA.
    let out = env.ok(&with(&[
        "issuer",
        "rotate",
        "prod",
        "--algorithm",
        "ecdsa-p256",
    ]));
    let second = created_id(&out);
    assert!(
        out.contains(&format!("issuer retire prod {first}")),
        "{out}"
    );
    env.ok(&with(&["issuer", "activate", "prod", &second, "--force"]));
    env.ok(&with(&[
        "issue", "prod", "--role", "os:admin", "--ttl", "1h", "-o", "p256.tc",
    ]));
    let (pcrt, pkey, _) = from_talosconfig(&std::fs::read_to_string(env.path("p256.tc")).unwrap());
    let second_pem = issuer_pem(&env, &second);
    let verdict = apid_check(dir, &[&ca, &second_pem], &pcrt, &pkey);
    assert!(verdict.accepted, "{verdict:?}");
    assert!(!apid_check(dir, &[&ca, &issuer], &pcrt, &pkey).accepted);

    // The patch lists exactly the two accepted issuers: a document deleting the current list
    // (so the patch replaces rather than appends, src/patch.rs), then the list.
    let patch = env.ok(&with(&["patch", "accepted-cas", "prod"]));
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&patch)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{patch}");
    assert_eq!(
        docs[0]["machine"]["acceptedCAs"]["$patch"], "delete",
        "{patch}"
    );
    let doc = &docs[1];
    let listed: Vec<Vec<u8>> = doc["machine"]["acceptedCAs"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{patch}"))
        .iter()
        .map(|e| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(e["crt"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(listed, [issuer.clone(), second_pem.clone()]);

    // verify: good now.
    let (code, out, err) = env.run(&with(&["verify", "prod", "alice.tc", "-o", "json"]));
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(report["good"], true);
    assert_eq!(report["signed_by"], first.as_str());

    // Revoke alice through her talosconfig: record, CRL, and the advice.
    let (code, out, err) = env.run(&with(&[
        "revoke",
        "prod",
        "--talosconfig",
        "alice.tc",
        "--reason",
        "keyCompromise",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("retire its issuer {first}")), "{out}");
    assert!(out.contains("1 other live certificate(s)"), "{out}");
    assert!(out.contains("bob"), "{out}");
    assert!(
        out.contains(&format!(
            "publish a fresh CRL for the certificate's issuer: talvault crl prod --issuer {first} -o {first}.crl.pem"
        )),
        "{out}"
    );
    let crl_path = format!("{first}.crl.pem");
    env.ok(&with(&["crl", "prod", "--issuer", &first, "-o", &crl_path]));

    // openssl: the CRL verifies; the revoked leaf fails -crl_check, bob's passes.
    std::fs::write(env.path("issuer.pem"), &issuer).unwrap();
    std::fs::write(env.path("alice.pem"), &crt).unwrap();
    let (bob_crt, _, _) = from_talosconfig(&std::fs::read_to_string(env.path("bob.tc")).unwrap());
    std::fs::write(env.path("bob.pem"), &bob_crt).unwrap();
    assert_crl_verifies(dir, &crl_path, "issuer.pem");
    let (ok, text) = verify_with_crl(dir, &crl_path, "issuer.pem", "alice.pem");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify_with_crl(dir, &crl_path, "issuer.pem", "bob.pem");
    assert!(ok, "{text}");

    // x509-parser: entries, reason, number, AKI = issuer SKI, signature.
    let pem = std::fs::read(env.path(&crl_path)).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    assert_eq!(block.label, "X509 CRL");
    let (_, crl) = CertificateRevocationList::from_der(&block.contents).unwrap();
    let issuer_block = x509_parser::pem::parse_x509_pem(&issuer).unwrap().1;
    let (_, issuer_cert) = X509Certificate::from_der(&issuer_block.contents).unwrap();
    crl.verify_signature(issuer_cert.public_key()).unwrap();
    let entries: Vec<_> = crl.iter_revoked_certificates().collect();
    assert_eq!(entries.len(), 1);
    let alice_serial = report["serial"].as_str().unwrap();
    let listed = entries[0].raw_serial_as_string().replace(':', "");
    assert_eq!(listed.trim_start_matches("00"), alice_serial);
    assert_eq!(
        entries[0].reason_code().map(|(_, r)| r.0),
        Some(1),
        "keyCompromise"
    );
    let ski = issuer_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);
    let number = crl.crl_number().unwrap().clone();

    // A fresh CRL has a larger number.
    env.ok(&with(&[
        "crl",
        "prod",
        "--issuer",
        &first,
        "-o",
        "again.crl",
    ]));
    let again = std::fs::read(env.path("again.crl")).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&again).unwrap();
    let (_, crl2) = CertificateRevocationList::from_der(&block.contents).unwrap();
    assert!(crl2.crl_number().unwrap() > &number);

    // verify: revoked now, exit 1.
    let (code, out, _) = env.run(&with(&["verify", "prod", "alice.tc"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("NOT GOOD"), "{out}");
    assert!(out.contains("fail revocation"), "{out}");

    // Revoking twice is not an error and changes nothing.
    let before = env.tree();
    let (code, out, _) = env.run(&with(&[
        "revoke",
        "prod",
        alice_serial,
        "--reason",
        "superseded",
    ]));
    assert_eq!(code, 0);
    assert!(out.contains("was already revoked"), "{out}");
    assert_eq!(env.tree(), before);

    // The JSON denylist carries direct revocations too.
    let (_, direct_serial) = {
        let (dcrt, _, _) =
            from_talosconfig(&std::fs::read_to_string(env.path("direct.tc")).unwrap());
        std::fs::write(env.path("direct.pem"), &dcrt).unwrap();
        let (_, s) = openssl(&["x509", "-in", "direct.pem", "-noout", "-serial"], dir);
        ((), s.trim().trim_start_matches("serial=").to_owned())
    };
    let out = env.ok(&with(&[
        "revoke",
        "prod",
        &direct_serial,
        "--reason",
        "cessationOfOperation",
    ]));
    assert!(
        out.contains("only its expiry or an OS CA rotation"),
        "{out}"
    );
    let deny = json(&env.ok(&with(&["crl", "prod", "--format", "json"])));
    let modes: Vec<&str> = deny["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes.len(), 2);
    assert!(modes.contains(&"direct") && modes.contains(&"issuer"));

    // Retire the first issuer (not the only active one): bob is cut off.
    let out = env.ok(&with(&["issuer", "retire", "prod", &first]));
    assert!(
        out.contains("1 live certificate(s) it signed stop working"),
        "{out}"
    );
    let (code, out, _) = env.run(&with(&["verify", "prod", "bob.tc"]));
    assert_eq!(code, 1);
    assert!(out.contains("is retired"), "{out}");
    let patch = env.ok(&with(&["patch", "accepted-cas", "prod"]));
    assert!(
        !patch.contains(&first) && patch.contains(&second),
        "{patch}"
    );

    // status: counts, grade and the Prometheus form.
    let (code, out, _) = env.run(&with(&["status", "prod", "-o", "json"]));
    assert_eq!(code, 0, "{out}");
    let st = json(&out);
    assert_eq!(st[0]["counts"]["issued"], 4);
    assert_eq!(st[0]["counts"]["revoked"], 2);
    let (code, prom, _) = env.run(&with(&["status", "-o", "prometheus"]));
    assert_eq!(code, 0);
    assert!(
        prom.contains("talvault_certificates{env=\"prod\",api=\"talos\",state=\"revoked\"} 2"),
        "{prom}"
    );
    // Issuers expire within 10 years: grade 1.
    let (code, _, _) = env.run(&with(&["status", "--expiring", "87600h"]));
    assert_eq!(code, 1);
}

#[test]
fn refusals_change_nothing() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--vault", "v"][..], args].concat()
    }
    let id = created_id(&env.ok(&with(&["issuer", "create", "prod"])));
    env.ok(&with(&["issuer", "activate", "prod", &id, "--force"]));
    env.ok(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "r.tc",
    ]));
    let other = Env::new();
    other.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "x.tc",
    ]);
    std::fs::copy(other.path("x.tc"), env.path("other.tc")).unwrap();

    let cases: &[(&str, Vec<&str>, i32, &str)] = &[
        (
            "unknown serial",
            vec!["revoke", "prod", "abcdef", "--reason", "keyCompromise"],
            1,
            "error: environment \"prod\" has no certificate with serial abcdef",
        ),
        (
            "bad reason",
            vec!["revoke", "prod", "abcdef", "--reason", "lost"],
            2,
            "error: --reason: [..]",
        ),
        (
            "removeFromCRL",
            vec!["revoke", "prod", "abcdef", "--reason", "removeFromCRL"],
            2,
            "error: --reason: [..]",
        ),
        (
            "other cluster",
            vec![
                "revoke",
                "prod",
                "--talosconfig",
                "other.tc",
                "--reason",
                "keyCompromise",
            ],
            1,
            "error: the talosconfig's CA is not the Talos OS CA of environment \"prod\" (cluster \"demo\")",
        ),
        (
            "retire the only active issuer",
            vec!["issuer", "retire", "prod", &id],
            1,
            "error: issuer [..] is the only active issuer and 1 certificate(s) it signed are still live",
        ),
        (
            "unknown issuer",
            vec!["issuer", "activate", "prod", "e9-0000"],
            1,
            "error: environment \"prod\" has no issuer \"e9-0000\"",
        ),
        (
            "activate twice",
            vec!["issuer", "activate", "prod", &id, "--force"],
            1,
            "error: issuer [..] is active; activate needs a pending issuer",
        ),
        (
            "lifetime too long",
            vec!["issuer", "create", "prod", "--lifetime", "100000h"],
            1,
            "error: --lifetime 100000h: an issuer lives between 1h and 87600h",
        ),
        (
            "bad serial",
            vec!["revoke", "prod", "../../etc", "--reason", "keyCompromise"],
            1,
            "error: SERIAL: [..]",
        ),
    ];
    for (name, args, code, first_line) in cases {
        let before = env.tree();
        let (got, _, err) = env.run(&with(args));
        assert_eq!(got, *code, "{name}: {err}");
        crate::support::assert_matches(
            &format!("{first_line}\n"),
            &format!("{}\n", err.lines().next().unwrap_or("")),
        );
        assert_eq!(env.tree(), before, "{name} changed files");
    }
    // A CRL for a retired issuer is refused.
    env.ok(&with(&["issuer", "retire", "prod", &id, "--force"]));
    let before = env.tree();
    let (code, _, err) = env.run(&with(&["crl", "prod", "--issuer", &id]));
    assert_eq!(code, 1);
    assert!(
        err.contains("is retired; a CRL needs a pending or active issuer"),
        "{err}"
    );
    assert_eq!(env.tree(), before);
    // verify of another cluster's talosconfig: not good.
    let (code, out, _) = env.run(&with(&["verify", "prod", "other.tc"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fail server-ca"), "{out}");
    // Unreadable: exit 2.
    std::fs::write(env.path("junk.tc"), "not: [yaml").unwrap();
    let (code, _, _) = env.run(&with(&["verify", "prod", "junk.tc"]));
    assert_eq!(code, 2);
}

#[test]
fn break_glass_under_an_issuer_taints_until_the_issuer_retires() {
    if !crate::support::have("age-keygen") {
        return;
    }
    let env = Env::new();
    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--vault", "v"][..], args].concat()
    }
    let id = created_id(&env.ok(&with(&[
        "issuer",
        "create",
        "prod",
        "--algorithm",
        "ecdsa-p256",
    ])));
    env.ok(&with(&["issuer", "activate", "prod", &id, "--force"]));
    let out = env.ok(&with(&[
        "break-glass",
        "prod",
        "--reason",
        "INC-7",
        "-o",
        "bg.tc",
    ]));
    assert!(out.contains(&format!("signed by issuer {id}")), "{out}");
    // Tainted: status grades 2.
    let (code, out, _) = env.run(&with(&["status", "prod"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("TAINTED: break-glass since"), "{out}");
    // A leaf may not outlive its issuer.
    let short = created_id(&env.ok(&with(&["issuer", "create", "prod", "--lifetime", "2h"])));
    env.ok(&with(&["issuer", "activate", "prod", &short, "--force"]));
    let (code, _, err) = env.run(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "--ttl",
        "3h",
    ]));
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error: a 3h certificate would expire after issuer {short} does ("
        )),
        "{err}"
    );
    // Policy can forbid direct mode; --direct is then refused.
    let policy = env.path("v/envs/prod/policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("allow_direct: true", "allow_direct: false"),
    )
    .unwrap();
    // An edited policy counts only once the audit trail accepts it.
    let (code, _, err) = env.run(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "p.tc",
    ]));
    assert_eq!(code, 1);
    assert!(
        err.contains("envs/prod/policy.yaml differs from the policy the audit trail accepted"),
        "{err}"
    );
    env.ok(&with(&["policy", "accept", "prod", "--reason", "PR 12"]));
    let (code, _, err) = env.run(&with(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "--direct",
        "-o",
        "d.tc",
    ]));
    assert_eq!(code, 1);
    assert!(
        err.contains("forbids signing with the Talos OS CA"),
        "{err}"
    );
    // Retiring the issuer that signed the break-glass certificate clears the taint.
    let out = env.ok(&with(&["issuer", "retire", "prod", &id]));
    assert!(out.contains("is no longer tainted"), "{out}");
    // The 2h issuer expires within the default 720h window (grade 1), not within 1h.
    let (code, _, _) = env.run(&with(&["status", "prod"]));
    assert_eq!(code, 1);
    let (code, _, _) = env.run(&with(&["status", "prod", "--expiring", "1h"]));
    assert_eq!(code, 0);
    // The audit trail holds every step and verifies.
    let log = env.ok(&with(&["audit", "log", "prod"]));
    for action in [
        "issuer.create",
        "issuer.activate",
        "break-glass",
        "issuer.retire",
    ] {
        assert!(log.contains(action), "{action}: {log}");
    }
    env.ok(&with(&["audit", "verify", "prod"]));
}
