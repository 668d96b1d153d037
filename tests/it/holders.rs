//! Holders end to end, checked with independent tools: a talosconfig sealed to a holder opens
//! with the Go `age` CLI and their identity (age X25519, or ssh-ed25519 with `age -d -i
//! id_ed25519`) and passes the apid-style mutual-TLS handshake, while any other identity
//! (the vault's own recipients included) cannot open it; `talvault open` writes it 0600 or
//! merges it without renaming; renewal under libfaketime, days ahead, picks exactly the
//! certificates that are due, issues nothing when run twice, skips grants the policy no longer
//! allows and renews a CSR-only holder from a fresh CSR; `status` and `holder list` report them.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use time::{Duration, OffsetDateTime};

use crate::issue::{apid_check, apid_check_at, from_talosconfig, have_go};
use crate::issuing::Env;
use crate::support::{have, only_issuer};

fn age_keygen(dir: &Path, file: &str) -> String {
    let ok = Command::new("age-keygen")
        .arg("-o")
        .arg(dir.join(file))
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "age-keygen");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(dir.join(file))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn ssh_keygen(dir: &Path, file: &str) -> String {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "holder", "-f"])
        .arg(dir.join(file))
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen");
    std::fs::read_to_string(dir.join(format!("{file}.pub")))
        .unwrap()
        .trim()
        .to_owned()
}

/// `age -d -i IDENTITY FILE` with the Go age CLI: the plaintext, or `None` when it refuses.
fn age_decrypt(dir: &Path, identity: &str, file: &str) -> Option<String> {
    let out = Command::new("age")
        .args(["-d", "-i", identity, file])
        .current_dir(dir)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn events(env: &Env) -> Vec<String> {
    let log = env.ok(&["--vault", "v", "audit", "log", "prod", "-o", "json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn sealed_talosconfigs_open_with_age_and_pass_an_apid_handshake() {
    if !have("age-keygen") || !have("age") || !have("ssh-keygen") {
        return;
    }
    let env = Env::new();
    let d = env.dir.path();
    let alice = age_keygen(d, "alice.key");
    age_keygen(d, "eve.key");
    let bob = ssh_keygen(d, "bob_ed25519");
    env.ok(&[
        "--vault",
        "v",
        "holder",
        "add",
        "prod",
        "alice",
        "-r",
        &alice,
        "--role",
        "os:reader",
    ]);
    env.ok(&[
        "--vault",
        "v",
        "holder",
        "add",
        "prod",
        "bob",
        "-r",
        &bob,
        "--role",
        "os:operator",
        "--ttl",
        "8h",
    ]);

    // The default file name, age's binary format, mode 0600, no key in sight.
    let out = env.ok(&[
        "--vault", "v", "issue", "prod", "--holder", "alice", "--seal",
    ]);
    assert!(out.contains("sealed to alice (1 recipient(s))"), "{out}");
    let sealed = env.path("alice-prod.talosconfig.age");
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"));
    assert_eq!(mode(&sealed), 0o600);
    let yaml = age_decrypt(d, "alice.key", "alice-prod.talosconfig.age")
        .expect("alice's identity opens her talosconfig");
    let (crt, key, ca) = from_talosconfig(&yaml);
    assert!(String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
    if have_go() {
        let v = apid_check(d, &[&ca], &crt, &key);
        assert!(v.accepted, "{v:?}");
        assert_eq!(v.roles, ["os:reader"], "the standing grant's roles");
    }
    // Nobody else opens it: another age identity, nor the vault's own recipient.
    assert_eq!(
        age_decrypt(d, "eve.key", "alice-prod.talosconfig.age"),
        None
    );
    assert_eq!(age_decrypt(d, &env.key, "alice-prod.talosconfig.age"), None);
    let (code, _, err) = env.run(&[
        "-i",
        "eve.key",
        "open",
        "alice-prod.talosconfig.age",
        "-o",
        "eve.tc",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("none of the 1 identities given opens it"),
        "{err}"
    );
    assert!(!env.path("eve.tc").exists());

    // An ssh-ed25519 holder, armored: `age -d -i id_ed25519`.
    env.ok(&[
        "--vault", "v", "issue", "prod", "--holder", "bob", "--seal", "--armor", "-o", "bob.age",
    ]);
    let armored = std::fs::read_to_string(env.path("bob.age")).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let yaml = age_decrypt(d, "bob_ed25519", "bob.age").expect("bob's ssh key opens it");
    let (crt, key, ca) = from_talosconfig(&yaml);
    if have_go() {
        let v = apid_check(d, &[&ca], &crt, &key);
        assert!(v.accepted, "{v:?}");
        assert_eq!(v.roles, ["os:operator"]);
    }
    assert_eq!(age_decrypt(d, "alice.key", "bob.age"), None);

    // Break-glass, sealed.
    env.ok(&[
        "--vault",
        "v",
        "break-glass",
        "prod",
        "--reason",
        "INC-18",
        "--holder",
        "alice",
        "--seal",
        "-o",
        "bg.age",
    ]);
    let yaml = age_decrypt(d, "alice.key", "bg.age").unwrap();
    let (crt, key, ca) = from_talosconfig(&yaml);
    if have_go() {
        let v = apid_check(d, &[&ca], &crt, &key);
        assert!(v.accepted, "{v:?}");
        assert_eq!(v.roles, ["os:admin"]);
    }

    // `talvault open`: a new 0600 file with exactly what age decrypts, or a merge that keeps
    // every other context and renames nothing.
    let plain = age_decrypt(d, "alice.key", "alice-prod.talosconfig.age").unwrap();
    let out = env.ok(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.talosconfig.age",
        "-o",
        "alice.tc",
    ]);
    assert!(
        out.contains("context \"reader@demo\" written to alice.tc"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("alice.tc")).unwrap(),
        plain
    );
    assert_eq!(mode(&env.path("alice.tc")), 0o600);
    env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:operator",
        "-o",
        "mine.tc",
    ]);
    env.ok(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.talosconfig.age",
        "--merge",
        "mine.tc",
    ]);
    let merged = std::fs::read_to_string(env.path("mine.tc")).unwrap();
    let cfg = talvault::talosconfig::Config::from_yaml(merged.as_bytes()).unwrap();
    assert_eq!(cfg.context, "reader@demo");
    assert_eq!(
        cfg.contexts.keys().collect::<Vec<_>>(),
        ["operator@demo", "reader@demo"]
    );
    let (code, _, err) = env.run(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.talosconfig.age",
        "--merge",
        "mine.tc",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("context \"reader@demo\" already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("mine.tc")).unwrap(),
        merged
    );

    assert_eq!(
        events(&env),
        [
            "env.create",
            "holder.add",
            "holder.add",
            "issue",
            "issue",
            "break-glass",
            "issue"
        ]
    );
    env.ok(&["--vault", "v", "audit", "verify"]);
}

/// `kubeconfig --seal` and `break-glass --kubernetes --seal`: the Go age CLI opens the sealed
/// kubeconfig with the holder's identity (age X25519 or ssh-ed25519) and nobody else's,
/// kubectl reads what it holds, the kube-apiserver's x509 authenticator (tests/go) derives the
/// holder's user and groups from it, and `talvault open` writes it 0600 or merges it into a
/// kubeconfig kubectl wrote without renaming anything.
#[test]
fn sealed_kubeconfigs_open_with_age_and_authenticate_as_the_holder() {
    if !have("age-keygen") || !have("age") || !have("ssh-keygen") || !crate::kubernetes::tools() {
        return;
    }
    use crate::kubernetes::{authenticate, creds, kubectl};
    let env = Env::new();
    let d = env.dir.path();
    let alice = age_keygen(d, "alice.key");
    age_keygen(d, "eve.key");
    let bob = ssh_keygen(d, "bob_ed25519");
    for (name, recipient) in [("alice", &alice), ("bob", &bob)] {
        env.ok(&[
            "--vault",
            "v",
            "holder",
            "add",
            "prod",
            name,
            "-r",
            recipient,
            "--role",
            "os:reader",
        ]);
    }

    // The default file name, age's binary format, mode 0600, no key in sight; the user is the
    // holder's name.
    let out = env.ok(&[
        "--vault",
        "v",
        "kubeconfig",
        "prod",
        "--holder",
        "alice",
        "--group",
        "talvault:viewers",
        "--seal",
    ]);
    assert!(out.contains("for user alice:"), "{out}");
    assert!(
        out.contains("kubeconfig context \"alice@demo\" (server https://10.5.0.2:6443) sealed to alice (1 recipient(s)) in alice-prod.kubeconfig.age"),
        "{out}"
    );
    let sealed = env.path("alice-prod.kubeconfig.age");
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"));
    assert_eq!(mode(&sealed), 0o600);
    let yaml = age_decrypt(d, "alice.key", "alice-prod.kubeconfig.age")
        .expect("alice's identity opens her kubeconfig");
    let plain = env.path("alice.plain");
    std::fs::write(&plain, &yaml).unwrap();
    let viewed = kubectl(&plain, &["config", "view", "--raw"]);
    assert_eq!(viewed.replace("preferences: {}\n", ""), yaml);
    let c = creds(&yaml, "alice@demo");
    let key = c.key.clone().expect("a generated key travels sealed");
    let verdict = authenticate(d, &[&c.ca], &c.crt, &key);
    assert!(verdict.authenticated, "{verdict:?}");
    assert_eq!(verdict.user, "alice");
    assert_eq!(verdict.groups, ["talvault:viewers"]);
    // Nobody else opens it: another age identity, nor the vault's own recipient.
    assert_eq!(age_decrypt(d, "eve.key", "alice-prod.kubeconfig.age"), None);
    assert_eq!(age_decrypt(d, &env.key, "alice-prod.kubeconfig.age"), None);

    // Break-glass for an ssh-ed25519 holder, armored: `age -d -i id_ed25519`.
    env.ok(&[
        "--vault",
        "v",
        "break-glass",
        "prod",
        "--kubernetes",
        "--holder",
        "bob",
        "--reason",
        "INC-18",
        "--seal",
        "--armor",
        "-o",
        "bg.age",
    ]);
    let armored = std::fs::read_to_string(env.path("bg.age")).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let yaml = age_decrypt(d, "bob_ed25519", "bg.age").expect("bob's ssh key opens it");
    let c = creds(&yaml, "bob@demo");
    let verdict = authenticate(d, &[&c.ca], &c.crt, c.key.as_ref().unwrap());
    assert!(verdict.authenticated, "{verdict:?}");
    assert_eq!(
        (verdict.user.as_str(), verdict.groups.as_slice()),
        ("bob", ["system:masters".to_owned()].as_slice())
    );
    assert_eq!(age_decrypt(d, "alice.key", "bg.age"), None);

    // `talvault open`: a new 0600 file with exactly what age decrypts, or a merge into a file
    // kubectl wrote that keeps every entry and renames nothing.
    let plain = age_decrypt(d, "alice.key", "alice-prod.kubeconfig.age").unwrap();
    let out = env.ok(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.kubeconfig.age",
        "-o",
        "alice.kc",
    ]);
    assert!(
        out.contains("kubeconfig context \"alice@demo\" written to alice.kc"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("alice.kc")).unwrap(),
        plain
    );
    assert_eq!(mode(&env.path("alice.kc")), 0o600);
    let mine = env.path("mine.kc");
    kubectl(
        &mine,
        &[
            "config",
            "set-cluster",
            "dev",
            "--server",
            "https://dev:6443",
        ],
    );
    kubectl(
        &mine,
        &["config", "set-credentials", "dev", "--token", "t0k3n"],
    );
    kubectl(
        &mine,
        &[
            "config",
            "set-context",
            "dev",
            "--cluster",
            "dev",
            "--user",
            "dev",
        ],
    );
    kubectl(&mine, &["config", "use-context", "dev"]);
    env.ok(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.kubeconfig.age",
        "--merge",
        "mine.kc",
    ]);
    assert_eq!(
        kubectl(&mine, &["config", "get-contexts", "-o", "name"]),
        "alice@demo\ndev\n"
    );
    assert_eq!(
        kubectl(&mine, &["config", "current-context"]),
        "alice@demo\n"
    );
    let merged = std::fs::read_to_string(&mine).unwrap();
    assert!(merged.contains("token: t0k3n"), "{merged}");
    let (code, _, err) = env.run(&[
        "-i",
        "alice.key",
        "open",
        "alice-prod.kubeconfig.age",
        "--merge",
        "mine.kc",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("user \"alice@demo\" already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), merged);
    let (code, _, err) = env.run(&["-i", "eve.key", "open", "bg.age", "-o", "eve.kc"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("none of the 1 identities given opens it"),
        "{err}"
    );
    assert!(!env.path("eve.kc").exists());

    assert_eq!(
        events(&env),
        [
            "env.create",
            "holder.add",
            "holder.add",
            "kubeconfig",
            "break-glass.kubernetes",
        ]
    );
    env.ok(&["--vault", "v", "audit", "verify"]);
}

/// `talvault ARGS` with the clock `days` ahead of the test's (libfaketime; under the date
/// sweep the test's clock is itself faked, and this stays relative to it).
fn ahead(env: &Env, days: i64, args: &[&str]) -> (i32, String, String) {
    let at = OffsetDateTime::now_utc() + Duration::days(days);
    let stamp = format!(
        "@{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let home = env.dir.path().display().to_string();
    let out = Command::new("faketime")
        .arg("-f")
        .arg(&stamp)
        .arg(env!("CARGO_BIN_EXE_talvault"))
        .args(args)
        .current_dir(env.dir.path())
        .env("TALVAULT_IDENTITY", &env.key)
        .env("TALVAULT_ACTOR", "renewal-job")
        .env("HOME", &home)
        .env_remove("TALVAULT_PKCS11_PIN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ahead_ok(env: &Env, days: i64, args: &[&str]) -> String {
    let (code, out, err) = ahead(env, days, args);
    assert_eq!(code, 0, "+{days}d {args:?}: {err}{out}");
    out
}

/// The holders of every certificate record, sorted, with how many records there are.
fn record_holders(env: &Env) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(env.path("v/envs/prod/certs"))
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            v["holder"].as_str().unwrap_or("-").to_owned()
        })
        .collect();
    out.sort();
    out
}

fn outbox(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.path("outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn renewal_days_ahead_picks_exactly_the_due_certificates() {
    if !have("age-keygen") || !have("age") || !have("faketime") || !have("openssl") {
        return;
    }
    let env = Env::new();
    let d = env.dir.path();
    // Under an active issuer (Talos ≥ 1.7 nodes accept it; the v1.6 contract needs --force).
    env.ok(&["--vault", "v", "issuer", "create", "prod"]);
    let issuer = only_issuer(&env.path("v/envs/prod/issuers"));
    env.ok(&[
        "--vault", "v", "issuer", "activate", "prod", &issuer, "--force",
    ]);
    let mut keys = Vec::new();
    for (name, role, ttl) in [
        ("a", "os:reader", "720h"),
        ("b", "os:operator", "240h"),
        ("c", "os:etcd:backup", "72h"),
    ] {
        let r = age_keygen(d, &format!("{name}.key"));
        env.ok(&[
            "--vault", "v", "holder", "add", "prod", name, "-r", &r, "--role", role, "--ttl", ttl,
        ]);
        keys.push(r);
    }
    let rd = age_keygen(d, "d.key");
    env.ok(&[
        "--vault",
        "v",
        "holder",
        "add",
        "prod",
        "d",
        "-r",
        &rd,
        "--role",
        "os:reader",
        "--csr-only",
    ]);
    std::fs::create_dir(env.path("outbox")).unwrap();

    // Day 0: nobody has a certificate; the CSR-only holder waits for a CSR.
    let dry = ahead_ok(
        &env,
        0,
        &["--vault", "v", "renew", "prod", "--all", "--dry-run"],
    );
    assert!(
        dry.contains("would renew a: os:reader for 720h (no live certificate)"),
        "{dry}"
    );
    assert!(
        !env.path("v/envs/prod/certs").exists(),
        "a dry run issues nothing"
    );
    let out = ahead_ok(
        &env,
        0,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    assert!(
        out.contains("SKIPPED d: CSR-only: needs a fresh CSR"),
        "{out}"
    );
    assert!(out.contains(&format!("signed by issuer {issuer}")), "{out}");
    assert_eq!(record_holders(&env), ["a", "b", "c"]);
    assert_eq!(
        outbox(&env),
        [
            "a-prod.talosconfig.age",
            "b-prod.talosconfig.age",
            "c-prod.talosconfig.age"
        ]
    );
    // One audit event per certificate, chained: one head.
    let verify = env.ok(&["--vault", "v", "audit", "verify"]);
    assert!(verify.contains("1 head(s)"), "{verify}");
    let before = events(&env).len();

    // Twice: nothing.
    let out = ahead_ok(
        &env,
        0,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    assert!(out.contains("nothing to renew"), "{out}");
    assert_eq!(record_holders(&env), ["a", "b", "c"]);
    assert_eq!(events(&env).len(), before, "a second run writes no event");

    // Day 8: b (10 days, due after 6.7) and c (3 days, expired) are due; a (30 days) is not.
    let out = ahead_ok(
        &env,
        8,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    assert!(out.contains("not due: a"), "{out}");
    assert!(
        out.contains("renewed b:") && out.contains("renewed c:"),
        "{out}"
    );
    assert_eq!(record_holders(&env), ["a", "b", "b", "c", "c"]);
    let out = ahead_ok(
        &env,
        8,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    assert!(out.contains("nothing to renew"), "{out}");
    assert_eq!(record_holders(&env).len(), 5);
    // The renewed file is b's new certificate, sealed to b, and valid on day 8.
    let yaml = age_decrypt(d, "b.key", "outbox/b-prod.talosconfig.age").unwrap();
    let (crt, key, _) = from_talosconfig(&yaml);
    if have_go() {
        let issuer_pem =
            std::fs::read_to_string(env.path(&format!("v/envs/prod/issuers/{issuer}/issuer.yaml")))
                .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&issuer_pem).unwrap();
        let ca = v["certificate"].as_str().unwrap().as_bytes().to_vec();
        let at = OffsetDateTime::now_utc() + Duration::days(8);
        let verdict = apid_check_at(d, &[&ca], &crt, &key, at);
        assert!(verdict.accepted, "{verdict:?}");
        assert_eq!(verdict.roles, ["os:operator"]);
    }

    // Day 21: the policy now caps os:reader at 7 days. a's standing 30-day grant is refused,
    // not shortened; b and c are renewed; d still waits for a CSR.
    let policy = std::fs::read_to_string(env.path("v/envs/prod/policy.yaml")).unwrap();
    let capped = policy.replace(
        "  os:reader:\n    default_ttl: 720h\n    max_ttl: 2160h\n",
        "  os:reader:\n    default_ttl: 24h\n    max_ttl: 168h\n",
    );
    assert_ne!(capped, policy, "{policy}");
    std::fs::write(env.path("v/envs/prod/policy.yaml"), capped).unwrap();
    ahead_ok(
        &env,
        21,
        &[
            "--vault", "v", "policy", "accept", "prod", "--reason", "PR 7",
        ],
    );
    let out = ahead_ok(
        &env,
        21,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    assert!(
        out.contains("SKIPPED a: the policy no longer allows the standing grant: requested TTL 720h for os:reader is above the policy maximum of 168h"),
        "{out}"
    );
    assert!(
        out.contains("renewed b:") && out.contains("renewed c:"),
        "{out}"
    );
    assert_eq!(record_holders(&env), ["a", "b", "b", "b", "c", "c", "c"]);

    // The CSR-only holder: their own key, a fresh CSR; the talosconfig carries no key.
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out", "d.pem"])
        .current_dir(d)
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args([
                "req", "-new", "-key", "d.pem", "-subj", "/CN=d", "-out", "d.csr",
            ])
            .current_dir(d)
            .status()
            .unwrap()
            .success();
    assert!(ok);
    // d's grant is os:reader 720h too: refused now, so the policy goes back first.
    std::fs::write(env.path("v/envs/prod/policy.yaml"), &policy).unwrap();
    ahead_ok(
        &env,
        21,
        &[
            "--vault", "v", "policy", "accept", "prod", "--reason", "PR 8",
        ],
    );
    let out = ahead_ok(
        &env,
        21,
        &[
            "--vault", "v", "renew", "prod", "--holder", "d", "--csr", "d.csr", "-o", "outbox",
        ],
    );
    assert!(out.contains("renewed d:"), "{out}");
    let yaml = age_decrypt(d, "d.key", "outbox/d-prod.talosconfig.age").unwrap();
    assert!(!yaml.contains("key:"), "{yaml}");
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let crt = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        v["contexts"]["reader@demo"]["crt"].as_str().unwrap(),
    )
    .unwrap();
    if have_go() {
        let issuer_yaml =
            std::fs::read_to_string(env.path(&format!("v/envs/prod/issuers/{issuer}/issuer.yaml")))
                .unwrap();
        let iv: serde_yaml::Value = serde_yaml::from_str(&issuer_yaml).unwrap();
        let ca = iv["certificate"].as_str().unwrap().as_bytes().to_vec();
        let key = std::fs::read(env.path("d.pem")).unwrap();
        let at = OffsetDateTime::now_utc() + Duration::days(21);
        let verdict = apid_check_at(d, &[&ca], &crt, &key, at);
        assert!(verdict.accepted, "{verdict:?}");
    }

    // Day 22: the issuer is rotated and the old one retired. Its certificates give no access
    // any more, so every standing grant is due again, under the new issuer (b's day-21
    // certificate would not have been due until day 27).
    ahead_ok(&env, 22, &["--vault", "v", "issuer", "create", "prod"]);
    let next = std::fs::read_dir(env.path("v/envs/prod/issuers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| *n != issuer)
        .unwrap();
    ahead_ok(
        &env,
        22,
        &[
            "--vault", "v", "issuer", "activate", "prod", &next, "--force",
        ],
    );
    ahead_ok(
        &env,
        22,
        &[
            "--vault", "v", "issuer", "retire", "prod", &issuer, "--force",
        ],
    );
    let out = ahead_ok(
        &env,
        22,
        &["--vault", "v", "renew", "prod", "--all", "-o", "outbox"],
    );
    for h in ["a", "b", "c"] {
        assert!(out.contains(&format!("renewed {h}:")), "{out}");
    }
    assert!(out.contains(&format!("signed by issuer {next}")), "{out}");
    assert!(out.contains("SKIPPED d: CSR-only"), "{out}");
    let (code, out, err) = ahead(&env, 22, &["--vault", "v", "audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn status_and_holder_list_report_holders() {
    if !have("age-keygen") {
        return;
    }
    let env = Env::new();
    let d = env.dir.path();
    let a = age_keygen(d, "a.key");
    let b = age_keygen(d, "b.key");
    env.ok(&[
        "--vault",
        "v",
        "holder",
        "add",
        "prod",
        "ann",
        "-r",
        &a,
        "--role",
        "os:reader",
    ]);
    env.ok(&[
        "--vault",
        "v",
        "holder",
        "add",
        "prod",
        "ben",
        "-r",
        &b,
        "--role",
        "os:operator",
    ]);
    env.ok(&["--vault", "v", "holder", "add", "prod", "cid", "-r", &b]);
    env.ok(&[
        "--vault", "v", "issue", "prod", "--holder", "ann", "--seal", "-o", "ann.age",
    ]);
    env.ok(&[
        "--vault",
        "v",
        "issue",
        "prod",
        "--role",
        "os:reader",
        "--holder",
        "zed",
        "-o",
        "z.tc",
    ]);
    // Grade 1: ben has a standing grant and no certificate; zed is no registered holder.
    let (code, out, _) = env.run(&["--vault", "v", "status", "prod", "-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = &s[0]["holders"];
    assert_eq!(h["registered"], 3);
    assert_eq!(h["without_certificate"], serde_json::json!(["ben", "cid"]));
    assert_eq!(h["renewals"][0]["holder"], "ben");
    assert_eq!(h["renewals"][0]["due_now"], true);
    assert_eq!(h["renewals"][1]["holder"], "ann");
    assert_eq!(h["renewals"][1]["due_now"], false);
    assert_eq!(h["unknown_holder"][0]["holder"], "zed");
    let kinds: Vec<&str> = s[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["unrenewed", "orphaned"]);
    let (_, prom, _) = env.run(&["--vault", "v", "status", "prod", "-o", "prometheus"]);
    for line in [
        "talvault_holders{env=\"prod\",state=\"registered\"} 3",
        "talvault_holders{env=\"prod\",state=\"without_certificate\"} 2",
        "talvault_holders{env=\"prod\",state=\"renewal_due\"} 1",
        "talvault_unknown_holder_certificates{env=\"prod\"} 1",
    ] {
        assert!(prom.lines().any(|l| l == line), "{line} not in\n{prom}");
    }
    assert!(prom.contains("talvault_holder_renewal_due_seconds{env=\"prod\",holder=\"ann\"}"));
    let (_, table, _) = env.run(&["--vault", "v", "status", "prod"]);
    assert!(
        table.contains("holders: 3 registered, 2 without a live certificate (ben, cid)"),
        "{table}"
    );
    assert!(table.contains("renewal ben"), "{table}");

    let list = env.ok(&["--vault", "v", "holder", "list", "prod", "-o", "json"]);
    let l: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "ben", "cid"]);
    assert_eq!(l[0]["live"].as_array().unwrap().len(), 1);
    assert_eq!(l[1]["renewal"], "due");
    assert_eq!(l[2]["renewal"], "none");

    // ben's record edited by hand (his recipient swapped for ann's): it disagrees with the
    // authenticated chain, so `renew --all` leaves ben out and says so, seals nothing to the
    // swapped-in key, and records nothing.
    let ben = env.path("v/envs/prod/holders/ben.yaml");
    let original = std::fs::read(&ben).unwrap();
    let edited = String::from_utf8(original.clone()).unwrap().replace(&b, &a);
    std::fs::write(&ben, edited).unwrap();
    std::fs::create_dir(env.path("outbox")).unwrap();
    let before = env.ok(&["--vault", "v", "audit", "log", "prod", "-o", "json"]);
    let out = env.ok(&["--vault", "v", "renew", "prod", "--all", "-o", "outbox"]);
    assert!(
        out.contains(
            "DISAGREES: envs/prod/holders/ben.yaml: its contents are not what audit event"
        ),
        "{out}"
    );
    assert!(out.contains("nothing to renew"), "{out}");
    assert_eq!(std::fs::read_dir(env.path("outbox")).unwrap().count(), 0);
    let after = env.ok(&["--vault", "v", "audit", "log", "prod", "-o", "json"]);
    assert_eq!(before, after);
    std::fs::write(&ben, original).unwrap();

    // Offboarding: ann's record goes (the event names it removed); her certificate stays live
    // and is now one of no registered holder.
    let out = env.ok(&["--vault", "v", "holder", "remove", "prod", "ann"]);
    assert!(
        out.contains("their 1 live certificate(s) stay valid"),
        "{out}"
    );
    assert!(!env.path("v/envs/prod/holders/ann.yaml").exists());
    let log = env.ok(&["--vault", "v", "audit", "log", "prod", "-o", "json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["action"], "holder.remove");
    let files = last["files"].as_object().unwrap();
    assert!(files["holders/ann.yaml"].is_null(), "{last}");
    env.ok(&["--vault", "v", "audit", "verify"]);
    let (_, out, _) = env.run(&["--vault", "v", "status", "prod", "-o", "json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        s[0]["holders"]["unknown_holder"].as_array().unwrap().len(),
        2
    );
    // Put back by hand, a removed holder's record is not trusted.
    std::fs::write(env.path("v/envs/prod/holders/ann.yaml"), b"version: 1\n").unwrap();
    let (code, _, err) = env.run(&[
        "--vault", "v", "issue", "prod", "--holder", "ann", "--seal", "-o", "x.age",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("has no holder \"ann\""), "{err}");
}
