//! Kubeconfigs end to end, checked by independent verifiers: `kubectl` reads what talvault
//! writes (`config view --raw`, `get-contexts`, `use-context` on a merged file), `openssl verify
//! -purpose sslclient` accepts every certificate, and a real TLS handshake with client
//! authentication, authenticated the way the kube-apiserver's x509 authenticator does it (Go
//! standard library, tests/go/kube-apiserver-check), derives the user and groups — accepted while
//! the issuer is in the accepted-CAs patch, refused once the patch drops it. Policy refusals and
//! the Kubernetes break-glass path, records, audit events, revocation, `verify` and `status`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use age::secrecy::ExposeSecret as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::issue::have_go;
use crate::support::{have, talvault_env};

/// A vault with one environment `prod` of the given contract, cluster `demo`, endpoint
/// 10.5.0.2, opened with a fresh X25519 identity.
struct Vault {
    dir: tempfile::TempDir,
    key: String,
}

impl Vault {
    fn new(contract: &str) -> Vault {
        let dir = tempfile::tempdir().unwrap();
        #[expect(deprecated, reason = "X25519 identities, as vaults use them")]
        let id = age::x25519::Identity::generate();
        let key = dir.path().join("id.key");
        std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let v = Vault {
            dir,
            key: key.display().to_string(),
        };
        v.ok(&["init", "v"]);
        let recipient = id.to_public().to_string();
        let mut args = vec![
            "--vault",
            "v",
            "env",
            "create",
            "prod",
            "-r",
            &recipient,
            "--cluster-name",
            "demo",
            "--endpoint",
            "10.5.0.2",
        ];
        if contract != "current" {
            args.extend(["--talos-version", contract]);
        }
        v.ok(&args);
        v
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let home = self.dir.path().display().to_string();
        talvault_env(
            self.dir.path(),
            args,
            &[
                ("TALVAULT_IDENTITY", &self.key),
                ("TALVAULT_ACTOR", "tester"),
                ("HOME", &home),
            ],
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    /// `talvault --vault v ARGS…`
    fn tv(&self, args: &[&str]) -> String {
        let mut full = vec!["--vault", "v"];
        full.extend_from_slice(args);
        self.ok(&full)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap()
    }

    /// The bundle's Kubernetes CA (env.yaml `certificates.k8s`).
    fn k8s_ca(&self) -> Vec<u8> {
        let env: serde_yaml::Value =
            serde_yaml::from_str(&self.read("v/envs/prod/env.yaml")).unwrap();
        env["certificates"]["k8s"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    /// The id of the only Kubernetes issuer.
    fn kubernetes_issuer(&self) -> String {
        let ids: Vec<String> = std::fs::read_dir(self.path("v/envs/prod/issuers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('k'))
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids.into_iter().next().unwrap()
    }

    /// Every file of the vault and the work dir (but the lock and caches).
    fn tree(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if !rel.ends_with(".lock") && !rel.contains(".cache/") {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// A context's credentials, read with a plain YAML parser (not talvault's).
pub(crate) struct Creds {
    pub(crate) ca: Vec<u8>,
    pub(crate) crt: Vec<u8>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) server: String,
    pub(crate) namespace: String,
}

pub(crate) fn creds(kubeconfig: &str, context: &str) -> Creds {
    let v: serde_yaml::Value = serde_yaml::from_str(kubeconfig).unwrap();
    let find = |list: &str, name: &str| -> serde_yaml::Value {
        v[list]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|i| i["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {list} entry {name}"))
            .clone()
    };
    let ctx = find("contexts", context);
    let user = find("users", ctx["context"]["user"].as_str().unwrap());
    let cluster = find("clusters", ctx["context"]["cluster"].as_str().unwrap());
    let b64 = |v: &serde_yaml::Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
    Creds {
        ca: b64(&cluster["cluster"]["certificate-authority-data"]),
        crt: b64(&user["user"]["client-certificate-data"]),
        key: user["user"]
            .get("client-key-data")
            .map(|k| STANDARD.decode(k.as_str().unwrap()).unwrap()),
        server: cluster["cluster"]["server"].as_str().unwrap().to_owned(),
        namespace: ctx["context"]["namespace"].as_str().unwrap().to_owned(),
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

pub(crate) fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out) = run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        // kubectl must read only the file it is given.
        .env_remove("KUBECONFIG"));
    assert!(ok, "kubectl {args:?}: {out}");
    out
}

fn openssl_client_ok(dir: &Path, ca: &[u8], leaf: &[u8]) {
    let ca = write(dir, "verify-ca.pem", ca);
    let leaf = write(dir, "verify-leaf.pem", leaf);
    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&leaf));
    assert!(ok && out.contains(": OK"), "{out}");
}

fn checker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/kube-apiserver-check/main.go");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kube-apiserver-check");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
        let (ok, text) = run(Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", &cache));
        assert!(ok, "go build kube-apiserver-check: {text}");
        out
    })
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct Verdict {
    pub(crate) authenticated: bool,
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    error: String,
}

/// The x509 authenticator's verdict on `crt`/`key` for a client-CA bundle made of `cas`, joined
/// with no separator as Talos joins them.
pub(crate) fn authenticate(dir: &Path, cas: &[&[u8]], crt: &[u8], key: &[u8]) -> Verdict {
    let mut cmd = Command::new(checker());
    for (i, ca) in cas.iter().enumerate() {
        cmd.arg("-ca")
            .arg(write(dir, &format!("bundle-{i}.pem"), ca));
    }
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    cmd.arg("-client-cert")
        .arg(write(dir, "client.crt", crt))
        .arg("-client-key")
        .arg(write(dir, "client.key", key))
        .arg("-now")
        .arg(now);
    let (ok, out) = run(&mut cmd);
    assert!(ok, "kube-apiserver-check: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The Kubernetes accepted CAs a patch sets, in either form: the v1alpha1 `cluster.acceptedCAs`
/// (`crt: base64(PEM)`) or the `KubeAPIServerCAConfig` document's raw PEMs. The delete documents
/// carry `$patch` and no list.
fn kubernetes_cas_of_patch(patch: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(patch) {
        let doc: serde_yaml::Value = serde::Deserialize::deserialize(de).unwrap();
        if let Some(list) = doc["cluster"]["acceptedCAs"].as_sequence() {
            for e in list {
                out.push(STANDARD.decode(e["crt"].as_str().unwrap()).unwrap());
            }
        }
        if doc["kind"].as_str() == Some("KubeAPIServerCAConfig")
            && let Some(list) = doc["acceptedCAs"].as_sequence()
        {
            for e in list {
                out.push(e.as_str().unwrap().as_bytes().to_vec());
            }
        }
    }
    out
}

pub(crate) fn tools() -> bool {
    // Every check below is needed; under CI=true a missing one fails.
    let (go, kubectl, openssl) = (have_go(), have("kubectl"), have("openssl"));
    go && kubectl && openssl
}

#[test]
fn direct_kubeconfigs_are_read_by_kubectl_and_authenticated_as_their_user_and_groups() {
    if !tools() {
        return;
    }
    let v = Vault::new("v1.13");
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "alice",
        "--group",
        "talvault:viewers",
        "--group",
        "talvault:editors",
        "-o",
        "alice.kubeconfig",
    ]);
    assert!(out.contains("signed directly by the cluster's Kubernetes CA: only its expiry or a Kubernetes CA rotation"), "{out}");
    let file = v.path("alice.kubeconfig");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // kubectl reads it; `config view --raw` writes back exactly what talvault wrote but for the
    // empty `preferences` kubectl ≤ 1.33 adds.
    let text = v.read("alice.kubeconfig");
    let viewed = kubectl(&file, &["config", "view", "--raw"]);
    assert_eq!(viewed.replace("preferences: {}\n", ""), text);
    let contexts = kubectl(&file, &["config", "get-contexts"]);
    assert!(
        contexts.contains("*         alice@demo   demo      alice@demo   default"),
        "{contexts}"
    );
    let c = creds(&text, "alice@demo");
    assert_eq!(c.server, "https://10.5.0.2:6443");
    assert_eq!(c.namespace, "default");
    assert_eq!(
        c.ca,
        v.k8s_ca(),
        "certificate-authority-data is the cluster's Kubernetes CA"
    );
    let key = c.key.clone().unwrap();
    assert!(
        key.starts_with(b"-----BEGIN EC PRIVATE KEY-----\n"),
        "P-256 like certs.k8s"
    );
    openssl_client_ok(v.path("").as_path(), &c.ca, &c.crt);
    let verdict = authenticate(v.path("").as_path(), &[&c.ca], &c.crt, &key);
    assert!(verdict.authenticated, "{verdict:?}");
    assert_eq!(verdict.user, "alice");
    let mut groups = verdict.groups.clone();
    groups.sort();
    assert_eq!(groups, ["talvault:editors", "talvault:viewers"]);
    // Another CA does not authenticate it.
    let other = Vault::new("v1.13");
    let refused = authenticate(v.path("").as_path(), &[&other.k8s_ca()], &c.crt, &key);
    assert!(
        !refused.authenticated && refused.error.contains("unknown authority"),
        "{refused:?}"
    );
    // `verify` recognises a kubeconfig.
    let report = v.tv(&["verify", "prod", "alice.kubeconfig"]);
    assert!(
        report.starts_with("GOOD: kubeconfig context \"alice@demo\""),
        "{report}"
    );
    assert!(
        report
            .contains("pass identity     user \"alice\", groups talvault:editors,talvault:viewers"),
        "{report}"
    );
}

#[test]
fn a_kubernetes_issuer_authenticates_while_accepted_and_not_once_dropped() {
    if !tools() {
        return;
    }
    // Both forms: cluster.acceptedCAs (contract v1.13) and KubeAPIServerCAConfig (current, 1.14).
    for (contract, form) in [
        ("v1.13", "cluster.acceptedCAs"),
        ("current", "KubeAPIServerCAConfig"),
    ] {
        let v = Vault::new(contract);
        let dir = v.path("");
        v.tv(&["issuer", "create", "prod", "--api", "kubernetes"]);
        let id = v.kubernetes_issuer();
        assert!(id.starts_with("k1-"), "{id}");
        let out = v.tv(&["patch", "accepted-cas", "prod", "-o", "ac.yaml"]);
        assert!(out.contains(form), "{contract}: {out}");
        v.tv(&["issuer", "activate", "prod", &id]);
        let out = v.tv(&[
            "kubeconfig",
            "prod",
            "--user",
            "bob",
            "--group",
            "talvault:cluster-admins",
            "-o",
            "bob.kubeconfig",
        ]);
        assert!(
            out.contains(&format!("signed by Kubernetes issuer {id}")),
            "{out}"
        );
        let c = creds(&v.read("bob.kubeconfig"), "bob@demo");
        // The server is still verified with the cluster's CA only, never the issuer.
        assert_eq!(c.ca, v.k8s_ca());
        let key = c.key.unwrap();
        let issuer: serde_yaml::Value =
            serde_yaml::from_str(&v.read(&format!("v/envs/prod/issuers/{id}/issuer.yaml")))
                .unwrap();
        let issuer_pem = issuer["certificate"].as_str().unwrap().as_bytes().to_vec();
        openssl_client_ok(&dir, &issuer_pem, &c.crt);

        // The client-CA bundle Talos builds: the patch's accepted CAs plus the issuing CA.
        let accepted = kubernetes_cas_of_patch(&v.read("ac.yaml"));
        assert!(
            accepted.contains(&issuer_pem),
            "{contract}: the patch lists the issuer"
        );
        let mut bundle: Vec<&[u8]> = accepted.iter().map(Vec::as_slice).collect();
        let k8s = v.k8s_ca();
        bundle.push(&k8s);
        let ok = authenticate(&dir, &bundle, &c.crt, &key);
        assert!(ok.authenticated, "{contract}: {ok:?}");
        assert_eq!(
            (ok.user.as_str(), ok.groups.as_slice()),
            ("bob", &["talvault:cluster-admins".to_owned()][..])
        );

        // Retire it and roll out the new patch: the same certificate is refused.
        let (code, _, err) = v.run(&["--vault", "v", "issuer", "retire", "prod", &id]);
        assert_eq!(
            code, 1,
            "the only active issuer with a live certificate: {err}"
        );
        v.tv(&["issuer", "retire", "prod", &id, "--force"]);
        v.tv(&["patch", "accepted-cas", "prod", "-o", "ac2.yaml"]);
        let accepted = kubernetes_cas_of_patch(&v.read("ac2.yaml"));
        assert!(
            !accepted.contains(&issuer_pem),
            "{contract}: the patch dropped the issuer"
        );
        let mut bundle: Vec<&[u8]> = accepted.iter().map(Vec::as_slice).collect();
        bundle.push(&k8s);
        let refused = authenticate(&dir, &bundle, &c.crt, &key);
        assert!(!refused.authenticated, "{contract}: {refused:?}");
        assert!(
            refused
                .error
                .contains("certificate signed by unknown authority"),
            "{refused:?}"
        );
        let report = v.run(&["--vault", "v", "verify", "prod", "bob.kubeconfig"]);
        assert_eq!(report.0, 1, "{report:?}");
        assert!(
            report.1.contains("fail accepted     Kubernetes issuer"),
            "{report:?}"
        );
    }
}

#[test]
fn the_patch_pem_entries_keep_their_newline_so_talos_can_join_them() {
    if !have_go() {
        return;
    }
    // Talos joins the accepted PEMs with no separator; a PEM without its final newline would
    // glue two blocks and lose the second (reference/kubernetes.md §1.3). The checker joins the
    // bundle the same way.
    let v = Vault::new("current");
    v.tv(&["issuer", "create", "prod", "--api", "kubernetes"]);
    let id = v.kubernetes_issuer();
    v.tv(&["issuer", "activate", "prod", &id]);
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "carol",
        "--group",
        "talvault:viewers",
        "-o",
        "c.kubeconfig",
    ]);
    let c = creds(&v.read("c.kubeconfig"), "carol@demo");
    let patch = v.tv(&["patch", "accepted-cas", "prod", "--api", "kubernetes"]);
    let accepted = kubernetes_cas_of_patch(&patch);
    assert!(
        accepted
            .iter()
            .all(|p| p.ends_with(b"-----END CERTIFICATE-----\n"))
    );
    // The issuer comes last in the patch: it is found only if every block before it ends well.
    let bundle: Vec<&[u8]> = accepted.iter().map(Vec::as_slice).collect();
    let ok = authenticate(&v.path(""), &bundle, &c.crt, &c.key.clone().unwrap());
    assert!(ok.authenticated, "{ok:?}");
    let stripped: Vec<Vec<u8>> = accepted
        .iter()
        .map(|p| p.strip_suffix(b"\n").unwrap().to_vec())
        .collect();
    let bundle: Vec<&[u8]> = stripped.iter().map(Vec::as_slice).collect();
    let broken = authenticate(&v.path(""), &bundle, &c.crt, &c.key.unwrap());
    assert!(!broken.authenticated, "the check can fail: {broken:?}");
}

#[test]
fn merging_into_a_kubectl_written_file_keeps_it_and_kubectl_switches_contexts() {
    if !have("kubectl") {
        return;
    }
    let v = Vault::new("v1.13");
    let file = v.path("config");
    std::fs::write(&file, "").unwrap();
    // A file kubectl wrote, with a token user and a cluster of its own.
    kubectl(
        &file,
        &[
            "config",
            "set-cluster",
            "dev",
            "--server=https://dev.example.com:6443",
            "--insecure-skip-tls-verify=true",
        ],
    );
    kubectl(
        &file,
        &["config", "set-credentials", "ops", "--token=s3cr3t"],
    );
    kubectl(
        &file,
        &[
            "config",
            "set-context",
            "dev",
            "--cluster=dev",
            "--user=ops",
            "--namespace=tools",
        ],
    );
    kubectl(&file, &["config", "use-context", "dev"]);
    let before = v.read("config");
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "alice",
        "--group",
        "talvault:viewers",
        "--namespace",
        "apps",
        "--merge",
        "config",
    ]);
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "bob",
        "--group",
        "talvault:viewers",
        "--merge",
        "config",
    ]);
    let after = v.read("config");
    // Every line kubectl wrote is still there, in order, but for current-context; the new
    // entries sit where kubectl's name order puts them.
    let mut rest = after.as_str();
    for line in before
        .lines()
        .filter(|l| !l.starts_with("current-context:"))
    {
        let at = rest
            .find(&format!("{line}\n"))
            .unwrap_or_else(|| panic!("{line:?} lost or moved:\n{after}"));
        rest = &rest[at + line.len() + 1..];
    }
    assert_eq!(
        kubectl(&file, &["config", "view", "--raw"]),
        after,
        "kubectl writes the merged file back byte for byte"
    );
    let contexts = kubectl(&file, &["config", "get-contexts", "-o", "name"]);
    assert_eq!(contexts, "alice@demo\nbob@demo\ndev\n");
    assert!(after.contains("current-context: bob@demo\n"));
    assert_eq!(creds(&after, "alice@demo").namespace, "apps");
    kubectl(&file, &["config", "use-context", "alice@demo"]);
    assert_eq!(
        kubectl(&file, &["config", "current-context"]),
        "alice@demo\n"
    );
    kubectl(&file, &["config", "use-context", "dev"]);
    // Issuing alice again clashes: refused before anything is signed; --replace replaces in place.
    let tree = v.tree();
    let (code, _, err) = v.run(&[
        "--vault",
        "v",
        "kubeconfig",
        "prod",
        "--user",
        "alice",
        "--group",
        "talvault:viewers",
        "--merge",
        "config",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "error: --merge config: user \"alice@demo\" already exists\nhint: pass --replace"
        ),
        "{err}"
    );
    assert_eq!(tree, v.tree(), "nothing recorded, audited or written");
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "alice",
        "--group",
        "talvault:editors",
        "--merge",
        "config",
        "--replace",
    ]);
    let names = kubectl(&file, &["config", "get-users"]);
    assert_eq!(names, "NAME\nalice@demo\nbob@demo\nops\n");
}

#[test]
fn csr_issued_kubeconfigs_have_no_key_and_requests_for_more_are_refused() {
    if !have("openssl") {
        return;
    }
    let v = Vault::new("v1.13");
    let dir = v.path("");
    let key = dir.join("mine.key");
    let (ok, out) = run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-subj",
            "/CN=mallory/O=system:masters",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(dir.join("req.csr")));
    assert!(ok, "{out}");
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "dave",
        "--group",
        "talvault:viewers",
        "--csr",
        "req.csr",
        "-o",
        "d.kubeconfig",
    ]);
    assert!(out.contains("the kubeconfig has no key: add yours with `kubectl config set-credentials dave@demo --client-key=KEY.pem --embed-certs"), "{out}");
    let c = creds(&v.read("d.kubeconfig"), "dave@demo");
    assert!(c.key.is_none());
    openssl_client_ok(&dir, &c.ca, &c.crt);
    // The subject the request asked for is ignored: CN and O come from the flags.
    let crt = write(&dir, "d.crt", &c.crt);
    let (_, text) = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&crt));
    assert_eq!(text.trim(), "subject=O = talvault:viewers, CN = dave");
    for (file, message) in [
        ("asks-ca.pem", "the CSR asks for a CA certificate"),
        ("asks-cert-sign.pem", "the CSR asks for a CA certificate"),
        (
            "asks-serverauth.pem",
            "the CSR asks for extended key usage serverAuth",
        ),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/csr")
            .join(file);
        let tree = v.tree();
        let (code, _, err) = v.run(&[
            "--vault",
            "v",
            "kubeconfig",
            "prod",
            "--user",
            "dave",
            "--group",
            "talvault:viewers",
            "--csr",
            path.to_str().unwrap(),
            "-o",
            "x.kubeconfig",
        ]);
        assert_eq!(code, 1, "{file}: {err}");
        assert!(err.contains(message), "{file}: {err}");
        assert_eq!(tree, v.tree(), "{file}: nothing changed");
    }
}

#[test]
fn system_masters_only_through_break_glass_which_taints_and_is_audited() {
    if !tools() {
        return;
    }
    let v = Vault::new("v1.13");
    let (code, _, err) = v.run(&[
        "--vault",
        "v",
        "kubeconfig",
        "prod",
        "--user",
        "alice",
        "--group",
        "system:masters",
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: group system:masters is privileged (it bypasses every authorizer, RBAC included): it is issued only by Kubernetes break-glass, with a reason\nhint: for an emergency: `talvault break-glass ENV --kubernetes"), "{err}");
    let out = v.tv(&[
        "break-glass",
        "prod",
        "--kubernetes",
        "--user",
        "alice",
        "--reason",
        "INC-7: API down",
        "-o",
        "bg.kubeconfig",
    ]);
    assert!(
        out.contains("issued a BREAK-GLASS Kubernetes certificate for user alice"),
        "{out}"
    );
    assert!(
        out.contains("environment prod is now marked tainted"),
        "{out}"
    );
    let c = creds(&v.read("bg.kubeconfig"), "alice@demo");
    let verdict = authenticate(&v.path(""), &[&c.ca], &c.crt, &c.key.clone().unwrap());
    assert!(
        verdict.authenticated && verdict.groups == ["system:masters"],
        "{verdict:?}"
    );
    // 1 h by default, plus the 10 s clock-skew allowance.
    let crt = write(&v.path(""), "bg.crt", &c.crt);
    let (_, dates) = run(Command::new("openssl")
        .args(["x509", "-noout", "-startdate", "-enddate", "-in"])
        .arg(&crt));
    let parse = |prefix: &str| {
        let line = dates.lines().find(|l| l.starts_with(prefix)).unwrap();
        let t = &line[prefix.len()..];
        time::PrimitiveDateTime::parse(
            t.trim_end_matches(" GMT"),
            &time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
            ),
        )
        .unwrap()
    };
    assert_eq!(
        parse("notAfter=") - parse("notBefore="),
        time::Duration::seconds(3610)
    );
    let show = v.tv(&["env", "show", "prod"]);
    assert!(show.contains("tainted:        since"), "{show}");
    let (code, status, _) = v.run(&["--vault", "v", "status", "prod"]);
    assert_eq!(code, 2, "tainted: {status}");
    assert!(status.contains("BREAK-GLASS  (kubernetes)"), "{status}");
    let log = v.tv(&["audit", "log", "prod"]);
    assert!(log.contains("break-glass.kubernetes"), "{log}");
    // The record says what it is.
    let record = std::fs::read_dir(v.path("v/envs/prod/certs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = std::fs::read_to_string(record).unwrap();
    for field in [
        "api: kubernetes",
        "break_glass: true",
        "reason: 'INC-7: API down'",
        "- system:masters",
        "holder: alice",
        "ca: k8s",
    ] {
        assert!(record.contains(field), "{field}: {record}");
    }
    v.tv(&["verify", "prod", "bg.kubeconfig"]);
    // Over the break-glass maximum, or a group that is not privileged: refused.
    let (code, _, err) = v.run(&[
        "--vault",
        "v",
        "break-glass",
        "prod",
        "--kubernetes",
        "--user",
        "alice",
        "--reason",
        "x",
        "--ttl",
        "5h",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "requested TTL 5h for Kubernetes break-glass is above the policy maximum of 4h"
        ),
        "{err}"
    );
}

#[test]
fn revoke_by_kubeconfig_status_and_prometheus_know_the_api() {
    if !have("openssl") {
        return;
    }
    let v = Vault::new("v1.13");
    v.tv(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "r.talosconfig",
    ]);
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "erin",
        "--group",
        "talvault:viewers",
        "-o",
        "e.kubeconfig",
    ]);
    v.tv(&["issuer", "create", "prod", "--api", "kubernetes"]);
    let id = v.kubernetes_issuer();
    v.tv(&["issuer", "activate", "prod", &id]);
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "fred",
        "--group",
        "talvault:viewers",
        "-o",
        "f.kubeconfig",
    ]);
    // Direct: the advice names the Kubernetes CA rotation and RBAC.
    let out = v.tv(&[
        "revoke",
        "prod",
        "--kubeconfig",
        "e.kubeconfig",
        "--reason",
        "keyCompromise",
    ]);
    assert!(out.contains("the kube-apiserver checks no CRL"), "{out}");
    assert!(out.contains("signed directly by the cluster's Kubernetes CA: only its expiry or a Kubernetes CA rotation"), "{out}");
    assert!(out.contains("meanwhile, RBAC cuts at once"), "{out}");
    // By the issuer: a CRL of the Kubernetes issuer, which openssl verifies.
    let out = v.tv(&[
        "revoke",
        "prod",
        "--kubeconfig",
        "f.kubeconfig",
        "--reason",
        "superseded",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["api"], "kubernetes");
    // CRLs are derived, never stored: the vault holds none.
    assert!(json.get("crl").is_none(), "{out}");
    assert!(!v.path("v/envs/prod/crl").exists());
    let issuer: serde_yaml::Value =
        serde_yaml::from_str(&v.read(&format!("v/envs/prod/issuers/{id}/issuer.yaml"))).unwrap();
    write(
        &v.path(""),
        "issuer.pem",
        issuer["certificate"].as_str().unwrap().as_bytes(),
    );
    // Without a Talos issuer, `crl` signs with the Kubernetes one, over the revocations the
    // chain vouches for; openssl verifies it and refuses the revoked certificate with it.
    let out = v.tv(&["crl", "prod", "-o", "k.crl"]);
    assert!(
        out.contains(&format!("of issuer {id} with 1 entries")),
        "{out}"
    );
    crate::support::assert_crl_verifies(&v.path(""), "k.crl", "issuer.pem");
    let f = creds(&v.read("f.kubeconfig"), "fred@demo");
    write(&v.path(""), "f.crt", &f.crt);
    let (ok, text) = crate::support::verify_with_crl(&v.path(""), "k.crl", "issuer.pem", "f.crt");
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    // With --issuer, the same issuer; the numbers increase (derived from the chain).
    let again = v.tv(&["crl", "prod", "--issuer", &id, "-o", "k2.crl"]);
    assert!(
        again.contains(&format!("of issuer {id} with 1 entries")),
        "{again}"
    );
    crate::support::assert_crl_verifies(&v.path(""), "k2.crl", "issuer.pem");
    let number = |f: &str| {
        let out = std::process::Command::new("openssl")
            .args(["crl", "-noout", "-crlnumber", "-in", f])
            .current_dir(v.path(""))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        u128::from_str_radix(
            text.trim()
                .trim_start_matches("crlNumber=")
                .trim_start_matches("0x"),
            16,
        )
        .unwrap_or_else(|_| panic!("{text}"))
    };
    assert!(number("k2.crl") > number("k.crl"));
    // A kubeconfig of another environment is refused, nothing written.
    let other = Vault::new("v1.13");
    other.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "erin",
        "--group",
        "talvault:viewers",
        "-o",
        "e.kubeconfig",
    ]);
    std::fs::copy(other.path("e.kubeconfig"), v.path("other.kubeconfig")).unwrap();
    let (code, _, err) = v.run(&[
        "--vault",
        "v",
        "revoke",
        "prod",
        "--kubeconfig",
        "other.kubeconfig",
        "--reason",
        "keyCompromise",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("the kubeconfig's certificate-authority-data is not the Kubernetes CA of environment \"prod\""), "{err}");
    // status: the API in JSON, the table and Prometheus.
    let status = v.tv(&["status", "prod", "-o", "json"]);
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    let by_api = &s[0]["by_api"];
    assert_eq!(by_api[0]["api"], "talos");
    assert_eq!(by_api[0]["counts"]["live"], 1);
    assert_eq!(by_api[1]["api"], "kubernetes");
    assert_eq!(by_api[1]["counts"]["issued"], 2);
    assert_eq!(by_api[1]["counts"]["revoked"], 2);
    assert_eq!(s[0]["issuers"][0]["api"], "kubernetes");
    assert_eq!(s[0]["live"][0]["api"], "talos");
    let prom = v.tv(&["status", "prod", "-o", "prometheus"]);
    assert!(
        prom.contains(
            "talvault_certificates{env=\"prod\",api=\"kubernetes\",state=\"revoked_unexpired\"} 2"
        ),
        "{prom}"
    );
    assert!(prom.contains(&format!("talvault_issuer_not_after_seconds{{env=\"prod\",api=\"kubernetes\",issuer=\"{id}\",state=\"active\"}}")), "{prom}");
    let denylist = v.tv(&["crl", "prod", "--format", "json"]);
    let d: serde_json::Value = serde_json::from_str(&denylist).unwrap();
    assert!(
        d["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["api"] == "kubernetes")
    );
}

#[test]
fn env_kubernetes_endpoints_and_policy_defaults() {
    let v = Vault::new("v1.13");
    let show = v.tv(&["env", "show", "prod"]);
    assert!(
        show.contains("kubernetes:     https://10.5.0.2:6443 (derived from the first endpoint)"),
        "{show}"
    );
    v.tv(&[
        "env",
        "create",
        "lab",
        "-r",
        &age_recipient(&v),
        "--talos-version",
        "v1.13",
        "--endpoint",
        "[fd00::1]:50000",
        "--kubernetes-endpoint",
        "https://lab.example.com:443",
    ]);
    let show = v.tv(&["env", "show", "lab"]);
    assert!(
        show.contains("kubernetes:     https://lab.example.com:443\n"),
        "{show}"
    );
    let policy = v.tv(&["policy", "show", "prod"]);
    for line in [
        "kubernetes:",
        "  groups:",
        "    talvault:cluster-admins:",
        "      default_ttl: 4h",
        "      max_ttl: 24h",
        "    - system:masters",
    ] {
        assert!(policy.lines().any(|l| l == line), "{line:?}:\n{policy}");
    }
    // A policy.yaml written before Kubernetes support (no kubernetes section) still reads.
    let path = v.path("v/envs/prod/policy.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text.split("\nkubernetes:\n").next().unwrap().to_owned() + "\n";
    std::fs::write(&path, &old).unwrap();
    // Until the change is accepted into the trail, commands refuse it.
    let (code, _, err) = v.run(&["--vault", "v", "policy", "show", "prod"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("differs from the policy the audit trail accepted"),
        "{err}"
    );
    v.tv(&[
        "policy",
        "accept",
        "prod",
        "--reason",
        "PR 1: drop the kubernetes section",
    ]);
    assert_eq!(v.tv(&["policy", "show", "prod"]), policy);
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "gina",
        "--group",
        "talvault:viewers",
        "-o",
        "g.kubeconfig",
    ]);
}

fn age_recipient(v: &Vault) -> String {
    let text = v.read("v/envs/prod/recipients.txt");
    text.lines()
        .find(|l| l.starts_with("age1"))
        .unwrap()
        .to_owned()
}

#[test]
fn talos_and_kubernetes_issuers_each_sign_only_their_own_api() {
    if !tools() {
        return;
    }
    let v = Vault::new("v1.13");
    let dir = v.path("");
    // An Ed25519 Kubernetes issuer (P-256 is the default and is covered above).
    v.tv(&[
        "issuer",
        "create",
        "prod",
        "--api",
        "kubernetes",
        "--algorithm",
        "ed25519",
    ]);
    let k = v.kubernetes_issuer();
    v.tv(&["issuer", "activate", "prod", &k]);
    let out = v.tv(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "r.talosconfig",
    ]);
    assert!(out.contains("signed directly by the Talos OS CA"), "{out}");
    v.tv(&["issuer", "create", "prod"]);
    let e: String = std::fs::read_dir(v.path("v/envs/prod/issuers"))
        .unwrap()
        .map(|x| x.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with('e'))
        .unwrap();
    assert!(e.starts_with("e1-"), "epochs count per API: {e}");
    v.tv(&["issuer", "activate", "prod", &e]);
    let out = v.tv(&[
        "issue",
        "prod",
        "--role",
        "os:reader",
        "-o",
        "r2.talosconfig",
    ]);
    assert!(out.contains(&format!("signed by issuer {e}")), "{out}");
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "hal",
        "--group",
        "talvault:viewers",
        "-o",
        "h.kubeconfig",
    ]);
    assert!(
        out.contains(&format!("signed by Kubernetes issuer {k}")),
        "{out}"
    );
    let c = creds(&v.read("h.kubeconfig"), "hal@demo");
    let key = c.key.clone().unwrap();
    assert!(
        key.starts_with(b"-----BEGIN ED25519 PRIVATE KEY-----\n"),
        "the key follows the issuer"
    );
    let issuer: serde_yaml::Value =
        serde_yaml::from_str(&v.read(&format!("v/envs/prod/issuers/{k}/issuer.yaml"))).unwrap();
    let issuer_pem = issuer["certificate"].as_str().unwrap().as_bytes().to_vec();
    assert_eq!(issuer["api"], "kubernetes");
    let ok = authenticate(&dir, &[&issuer_pem, &v.k8s_ca()], &c.crt, &key);
    assert!(ok.authenticated && ok.user == "hal", "{ok:?}");
    // The patch puts each issuer in its own list.
    let patch = v.tv(&["patch", "accepted-cas", "prod"]);
    assert_eq!(kubernetes_cas_of_patch(&patch), [issuer_pem]);
    let talos: Vec<&str> = patch
        .lines()
        .filter(|l| l.contains("# 1. talvault"))
        .collect();
    assert_eq!(talos.len(), 2, "{patch}");
    assert!(
        talos[0].contains(&format!("talvault issuer {e}")),
        "{patch}"
    );
    assert!(
        talos[1].contains(&format!("talvault kubernetes issuer {k}")),
        "{patch}"
    );
    // Retiring the Talos issuer leaves Kubernetes signing alone, and the reverse.
    v.tv(&["issuer", "retire", "prod", &e, "--force"]);
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "ida",
        "--group",
        "talvault:viewers",
        "-o",
        "i.kubeconfig",
    ]);
    assert!(
        out.contains(&format!("signed by Kubernetes issuer {k}")),
        "{out}"
    );
    let list = v.tv(&["issuer", "list", "prod", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let signing: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["signing"] == true)
        .map(|i| (i["id"].as_str().unwrap(), i["api"].as_str().unwrap()))
        .collect();
    assert_eq!(signing, [(k.as_str(), "kubernetes")]);
}

#[test]
fn a_kubernetes_issuer_before_talos_1_7_needs_force() {
    let v = Vault::new("v1.6");
    let out = v.run(&[
        "--vault",
        "v",
        "issuer",
        "create",
        "prod",
        "--api",
        "kubernetes",
    ]);
    assert_eq!(out.0, 0, "{out:?}");
    assert!(
        out.2
            .contains("control planes before Talos 1.7 have no cluster.acceptedCAs"),
        "{out:?}"
    );
    let k = v.kubernetes_issuer();
    let tree = v.tree();
    let (code, _, err) = v.run(&["--vault", "v", "issuer", "activate", "prod", &k]);
    assert_eq!(code, 1);
    assert!(
        err.contains("whose control planes have no cluster.acceptedCAs (Talos 1.7 and later)"),
        "{err}"
    );
    assert!(
        err.contains("hint: if the control planes run Talos 1.7 or later, pass --force"),
        "{err}"
    );
    assert_eq!(tree, v.tree());
    v.tv(&["issuer", "activate", "prod", &k, "--force"]);
}

/// The events of `prod` (parsed), oldest file name first.
fn events(v: &Vault) -> Vec<serde_json::Value> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&v.path("v/envs/prod/audit"), &mut files);
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect()
}

#[test]
fn kubernetes_events_are_authenticated_and_the_chain_decides_issuer_states_and_taint() {
    let v = Vault::new("v1.13");
    let without_identity = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_talvault"))
            .args(["--vault", "v"])
            .args(args)
            .current_dir(v.dir.path())
            .env_remove("TALVAULT_IDENTITY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("TALVAULT_ACTOR", "tester")
            .env("HOME", v.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Writers need the identity that opens the audit keys; refused, nothing changes.
    let before = v.tree();
    for args in [
        &[
            "kubeconfig",
            "prod",
            "--user",
            "ann",
            "--group",
            "talvault:viewers",
            "-o",
            "x.kubeconfig",
        ][..],
        &[
            "break-glass",
            "prod",
            "--kubernetes",
            "--user",
            "ann",
            "--reason",
            "INC-1",
            "-o",
            "x.kubeconfig",
        ],
        &["issuer", "create", "prod", "--api", "kubernetes"],
        &["patch", "accepted-cas", "prod", "--api", "kubernetes"],
    ] {
        let (code, err) = without_identity(args);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("identity"), "{args:?}: {err}");
    }
    assert!(v.tree() == before, "a refusal changed files");

    // A kubeconfig: one MACed event that accounts for the record it wrote.
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "ann",
        "--group",
        "talvault:viewers",
        "-o",
        "a.kubeconfig",
    ]);
    let event = events(&v)
        .into_iter()
        .find(|e| e["action"] == "kubeconfig")
        .expect("a kubeconfig event");
    assert!(
        event["mac"].as_str().is_some_and(|m| !m.is_empty()),
        "{event}"
    );
    let serial = event["data"]["serial"].as_str().unwrap().to_owned();
    let files = event["files"].as_object().expect("files");
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        [&format!("certs/{serial}.yaml")],
        "{event}"
    );
    assert_eq!(event["data"]["user"], "ann");

    // Kubernetes break-glass: MACed, and the chain (not env.yaml) taints the environment.
    let env_yaml = v.read("v/envs/prod/env.yaml");
    v.tv(&[
        "break-glass",
        "prod",
        "--kubernetes",
        "--user",
        "ann",
        "--reason",
        "INC-2",
        "-o",
        "b.kubeconfig",
    ]);
    assert_eq!(
        v.read("v/envs/prod/env.yaml"),
        env_yaml,
        "env.yaml is never rewritten"
    );
    let bg = events(&v)
        .into_iter()
        .find(|e| e["action"] == "break-glass.kubernetes")
        .expect("a break-glass.kubernetes event");
    assert!(bg["mac"].as_str().is_some(), "{bg}");
    let show = v.tv(&["env", "show", "prod"]);
    assert!(show.contains("tainted:        since"), "{show}");
    v.tv(&["env", "untaint", "prod", "--reason", "INC-2 closed"]);
    assert!(
        v.tv(&["env", "show", "prod"])
            .contains("tainted:        no\n")
    );

    // A Kubernetes issuer's state is the chain's: issuer.yaml carries none.
    v.tv(&["issuer", "create", "prod", "--api", "kubernetes"]);
    let id = v.kubernetes_issuer();
    let yaml = v.read(&format!("v/envs/prod/issuers/{id}/issuer.yaml"));
    assert!(
        !yaml.contains("state:") && yaml.contains("api: kubernetes"),
        "{yaml}"
    );
    v.tv(&["issuer", "activate", "prod", &id]);
    assert_eq!(
        v.read(&format!("v/envs/prod/issuers/{id}/issuer.yaml")),
        yaml
    );
    let list = v.tv(&["issuer", "list", "prod", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["api"], "kubernetes");
    v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "bob",
        "--group",
        "talvault:viewers",
        "-o",
        "c.kubeconfig",
    ]);
    assert!(v.read("c.kubeconfig").contains("bob@demo"));

    // An issuer directory no authenticated event created never reaches the patch.
    let planted = "k9-abcd";
    let dir = v.path(&format!("v/envs/prod/issuers/{planted}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("issuer.yaml"), yaml.replace(&id, planted)).unwrap();
    let patch = v.tv(&["patch", "accepted-cas", "prod", "--api", "kubernetes"]);
    assert!(!patch.contains(planted) && patch.contains(&id), "{patch}");
    std::fs::remove_dir_all(&dir).unwrap();

    // A Kubernetes break-glass under the issuer taints until the issuer retires (the chain
    // says so: the retire event clears it).
    v.tv(&[
        "break-glass",
        "prod",
        "--kubernetes",
        "--user",
        "ann",
        "--reason",
        "INC-3",
        "-o",
        "d.kubeconfig",
    ]);
    assert!(
        v.tv(&["env", "show", "prod"])
            .contains("tainted:        since")
    );
    let out = v.tv(&["issuer", "retire", "prod", &id, "--force"]);
    assert!(out.contains("no longer tainted"), "{out}");
    assert!(
        v.tv(&["env", "show", "prod"])
            .contains("tainted:        no\n")
    );
    let patch = v.tv(&["patch", "accepted-cas", "prod", "--api", "kubernetes"]);
    assert!(
        !patch.contains(&id),
        "a retired issuer left the patch: {patch}"
    );

    // The trail is intact and authenticated.
    v.tv(&["audit", "verify", "prod"]);

    // A kubeconfig record edited after the fact disagrees with its event: audit verify says so.
    let record = v.path(&format!("v/envs/prod/certs/{serial}.yaml"));
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("holder: ann", "holder: mallory")).unwrap();
    let (code, out, err) = v.run(&["--vault", "v", "audit", "verify", "prod"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!("certs/{serial}.yaml")),
        "{out}{err}"
    );
}

/// Someone with write access but no identity forges an `issuer.activate` for a pending
/// Kubernetes issuer (a well-formed sealed event on the heads, MACed with a key of their own):
/// the chain does not take it, so the issuer stays pending, kubeconfigs are still signed by the
/// Kubernetes CA, and `audit verify` reports the forgery.
#[test]
fn a_forged_kubernetes_issuer_activation_counts_for_nothing() {
    use talvault::audit::{self, EventBody};
    let v = Vault::new("v1.13");
    v.tv(&["issuer", "create", "prod", "--api", "kubernetes"]);
    let id = v.kubernetes_issuer();
    let env_dir = v.path("v/envs/prod");
    let summaries: Vec<_> = talvault::store::audit_dir::load_all(&env_dir)
        .unwrap()
        .iter()
        .filter_map(|(_, b)| audit::EventSummary::read(b))
        .collect();
    let vault_id = v
        .read("v/talvault.yaml")
        .lines()
        .find_map(|l| l.strip_prefix("vault_id: "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let data: serde_json::Map<String, serde_json::Value> =
        [("issuer".to_owned(), serde_json::Value::String(id.clone()))]
            .into_iter()
            .collect();
    let event = audit::new_event(
        audit::heads_of(&summaries),
        EventBody {
            time: time::OffsetDateTime::now_utc(),
            actor: "mallory".into(),
            opened_by: None,
            env: "prod".into(),
            action: "issuer.activate".into(),
            data,
            seal: Some(audit::Seal {
                vault: vault_id.clone(),
                epoch: 1,
                files: std::collections::BTreeMap::new(),
                lane: None,
                lane_epoch: None,
            }),
        },
    )
    .unwrap()
    .with_mac(&audit::AuditKey::derive(&[7; 32], &vault_id, "prod", 1).unwrap());
    let path = env_dir.join("audit").join(event.relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, event.to_json()).unwrap();

    let list = v.tv(&["issuer", "list", "prod", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "pending", "{list}");
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "ann",
        "--group",
        "talvault:viewers",
        "-o",
        "a.kubeconfig",
    ]);
    assert!(
        out.contains("signed directly by the cluster's Kubernetes CA"),
        "{out}"
    );
    let (code, out, err) = v.run(&["--vault", "v", "audit", "verify", "prod"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("TAMPERED") && out.contains("Forged"), "{out}");
    // The honest activation still works, and then the issuer signs.
    v.tv(&["issuer", "activate", "prod", &id]);
    let out = v.tv(&[
        "kubeconfig",
        "prod",
        "--user",
        "bob",
        "--group",
        "talvault:viewers",
        "-o",
        "b.kubeconfig",
    ]);
    assert!(
        out.contains(&format!("signed by Kubernetes issuer {id}")),
        "{out}"
    );
}
