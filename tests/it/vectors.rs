//! Golden tests on the upstream Talos vectors (tests/data/talos/README.md says where they come from).

use talvault::bundle::validate::{format_multierror, talos_errors};
use talvault::bundle::{SecretsBundle, VersionContract};

use crate::support::vector;

#[test]
fn talosctl_written_bundles_round_trip_byte_for_byte() {
    for name in ["secrets.yaml", "tf-secretsv1.2.yaml"] {
        let input = vector(name);
        let bundle = SecretsBundle::from_yaml(&input).unwrap();
        assert_eq!(
            bundle.to_yaml().expose().as_bytes(),
            &input[..],
            "{name} did not round-trip"
        );
    }
}

#[test]
fn other_vectors_keep_their_data() {
    for name in ["stability-secrets.yaml", "invalid-secrets.yaml"] {
        let input = vector(name);
        let once = SecretsBundle::from_yaml(&input).unwrap();
        let written = once.to_yaml();
        let twice = SecretsBundle::from_yaml(written.expose().as_bytes()).unwrap();
        assert_eq!(twice.to_yaml().expose(), written.expose(), "{name}");
        // The comment line is not data; everything else is kept.
        let stripped: String = String::from_utf8(input)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        if name == "stability-secrets.yaml" {
            assert_eq!(written.expose(), stripped);
        }
    }
}

#[test]
fn valid_vectors_pass_talos_validation() {
    for name in [
        "secrets.yaml",
        "stability-secrets.yaml",
        "tf-secretsv1.2.yaml",
    ] {
        let b = SecretsBundle::from_yaml(&vector(name)).unwrap();
        assert_eq!(talos_errors(&b), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn invalid_vector_gives_upstream_six_errors_word_for_word() {
    let b = SecretsBundle::from_yaml(&vector("invalid-secrets.yaml")).unwrap();
    let expected = "6 errors occurred:\n\
\t* cluster.secret is required\n\
\t* one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is required\n\
\t* trustdinfo is required\n\
\t* certs.etcd is invalid: failed to parse PEM block\n\
\t* certs.k8saggregator is required\n\
\t* certs.os is invalid: unsupported key type: \"CERTIFICATE\"\n\
\n";
    assert_eq!(format_multierror(&talos_errors(&b)), expected);
}

#[test]
fn deep_checks_pass_on_upstream_vectors_in_their_lifetime() {
    let at = time::macros::datetime!(2026-01-01 00:00:00 UTC);
    for (name, contract) in [
        ("secrets.yaml", "v1.6"),
        ("stability-secrets.yaml", "v1.6"),
        ("tf-secretsv1.2.yaml", "v1.2"),
    ] {
        let b = SecretsBundle::from_yaml(&vector(name)).unwrap();
        let c = VersionContract::parse(contract).unwrap();
        let findings = talvault::bundle::validate::deep_findings(&b, c, at);
        assert!(findings.is_empty(), "{name}: {findings:?}");
    }
}

/// Expiry is judged at the instant given, so the same vector is fine in its lifetime, warned
/// about in its last 30 days, and an error after it (the CAs end 2033-05-22T12:14:42Z).
#[test]
fn deep_checks_judge_ca_expiry_at_the_given_instant() {
    use talvault::bundle::validate::Severity;
    use time::macros::datetime;
    let b = SecretsBundle::from_yaml(&vector("secrets.yaml")).unwrap();
    let c = VersionContract::parse("v1.6").unwrap();
    let at = |t| talvault::bundle::validate::deep_findings(&b, c, t);
    assert!(at(datetime!(2033-04-01 00:00:00 UTC)).is_empty());
    let late = at(datetime!(2033-05-10 00:00:00 UTC));
    assert_eq!(late.len(), 4, "{late:?}");
    assert!(late.iter().all(
        |f| f.severity == Severity::Warning && f.message.starts_with("expires within 30 days")
    ));
    let after = at(datetime!(2033-05-22 12:14:43 UTC));
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.iter().all(|f| f.severity == Severity::Error
        && f.message == "expired (notAfter May 22 12:14:42 2033 +00:00)"));
    let before = at(datetime!(2023-05-25 12:14:41 UTC));
    assert!(
        before
            .iter()
            .all(|f| f.message.starts_with("not valid yet")),
        "{before:?}"
    );
}
