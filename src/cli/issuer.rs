//! EDGE: `talvault issuer …`, `patch accepted-cas` and `hsm check`: arguments, one service
//! call each, and the next steps they print.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::error::CliError;
use super::input::{read_input, ttl_arg};
use super::opts::{ListFormat, Opens, VaultOpts};
use super::output::{Output, json, write_stderr, write_stdout};
use super::render::{cert_line, issuer_line};
use crate::model::Api;
use crate::patch::KubernetesForm;
use crate::pki::issuer::IssuerAlgorithm as Algorithm;
use crate::vault::{
    DEFAULT_ISSUER_LIFETIME, IssuerChange, NewIssuer, NewIssuerKey, PatchOutput, PatchRequest,
};

/// The API an issuer (or a patch) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// The Talos API: talosconfigs, machine.acceptedCAs.
    Talos,
    /// The Kubernetes API: kubeconfigs, the kube-apiserver's accepted CAs.
    Kubernetes,
}

impl From<ApiArg> for Api {
    fn from(a: ApiArg) -> Self {
        match a {
            ApiArg::Talos => Api::Talos,
            ApiArg::Kubernetes => Api::Kubernetes,
        }
    }
}

/// Where the nodes' configs keep the Kubernetes accepted CAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormArg {
    /// v1alpha1 cluster.acceptedCAs (configs made for Talos 1.7 to 1.13).
    Cluster,
    /// The KubeAPIServerCAConfig document (configs made for Talos 1.14).
    Document,
}

/// Issuer key algorithms.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssuerAlgorithm {
    /// Ed25519 (as the Talos OS CA).
    Ed25519,
    /// ECDSA P-256 (what most hardware tokens sign).
    EcdsaP256,
}

impl From<IssuerAlgorithm> for Algorithm {
    fn from(a: IssuerAlgorithm) -> Self {
        match a {
            IssuerAlgorithm::Ed25519 => Algorithm::Ed25519,
            IssuerAlgorithm::EcdsaP256 => Algorithm::EcdsaP256,
        }
    }
}

/// `talvault issuer …`
#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Create a client-issuing CA for the environment (pending until activated).
    Create(CreateArgs),
    /// Create the next issuer as pending: step 1 of "add next, switch, drop old".
    Rotate(CreateArgs),
    /// Let a pending issuer sign new certificates.
    Activate {
        /// The environment.
        env: String,
        /// The issuer id.
        id: String,
        /// Activate it although the environment's contract predates machine.acceptedCAs
        /// (Talos 1.7), for nodes that were upgraded since.
        #[arg(long)]
        force: bool,
    },
    /// Retire an issuer: the next accepted-cas patch drops it, cutting off all it signed.
    Retire {
        /// The environment.
        env: String,
        /// The issuer id.
        id: String,
        /// Retire the only active issuer even though certificates it signed are still live.
        #[arg(long)]
        force: bool,
    },
    /// List issuers: state, algorithm, validity, certificates issued and still live.
    List {
        /// The environment.
        env: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
}

/// `issuer create` / `issuer rotate`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The environment.
    pub env: String,
    /// Key algorithm.
    #[arg(long, value_enum)]
    pub algorithm: Option<IssuerAlgorithm>,
    /// Lifetime of the issuer certificate.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_ISSUER_LIFETIME)]
    pub lifetime: String,
    /// Keep the issuer key in a PKCS#11 token, named by an RFC 7512 URI
    /// ('pkcs11:token=…;object=…?module-path=…&pin-source=…'); it never leaves the token.
    #[arg(long, value_name = "URI")]
    pub pkcs11: Option<String>,
    /// With --pkcs11: generate the key pair in the token (sensitive, not extractable).
    #[arg(long, requires = "pkcs11")]
    pub generate: bool,
    /// With --pkcs11: accept a key that may leave the token (extractable or not sensitive).
    #[arg(long, requires = "pkcs11")]
    pub danger_allow_extractable: bool,
    /// The API it issues for: talos (talosconfigs; machine.acceptedCAs) or kubernetes
    /// (kubeconfigs; the kube-apiserver's accepted CAs, default key ecdsa-p256).
    #[arg(long, value_enum, default_value = "talos")]
    pub api: ApiArg,
}

/// `talvault patch …`
#[derive(Debug, Subcommand)]
pub enum PatchCommand {
    /// The machine-config patch that sets machine.acceptedCAs (and, once the environment has
    /// Kubernetes issuers, the kube-apiserver's accepted CAs) to exactly the pending and active
    /// issuers (for `talosctl patch machineconfig --patch @FILE`).
    AcceptedCas {
        /// The environment.
        env: String,
        /// Also keep accepting this CA certificate for the Talos API (PEM; repeatable), e.g.
        /// during an OS CA rotation.
        #[arg(long = "keep-ca", value_name = "FILE")]
        keep: Vec<PathBuf>,
        /// Also keep accepting this CA certificate for the Kubernetes API (PEM; repeatable),
        /// e.g. during a Kubernetes CA rotation.
        #[arg(long = "keep-kubernetes-ca", value_name = "FILE")]
        keep_kubernetes: Vec<PathBuf>,
        /// Only this API's part: talos (for workers) or kubernetes (default: both, the
        /// Kubernetes part once the environment has Kubernetes issuers).
        #[arg(long, value_enum)]
        api: Option<ApiArg>,
        /// The form of the Kubernetes part (default: from the environment's contract; cluster
        /// up to v1.13, document from v1.14). Pick the form the nodes' current config uses.
        #[arg(long, value_enum)]
        kubernetes_form: Option<FormArg>,
        /// Write the patch here instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `talvault issuer …`
pub fn issuer(cmd: IssuerCommand, o: &VaultOpts) -> Result<u8, CliError> {
    match cmd {
        IssuerCommand::Create(a) => create(a, false, o),
        IssuerCommand::Rotate(a) => create(a, true, o),
        IssuerCommand::Activate { env, id, force } => {
            let v = o.open_vault()?;
            v.issuer_activate(&env, &id, force, &o.context(Opens::Secrets)?)?;
            let mut msg = format!("issuer {id} is active and signs new certificates\n");
            let _ = writeln!(
                msg,
                "re-issue the certificates of older issuers, then retire them with `talvault issuer retire {env} OLD-ID` and roll out `talvault patch accepted-cas {env}`"
            );
            write_stdout(msg.as_bytes())?;
            Ok(0)
        }
        IssuerCommand::Retire { env, id, force } => {
            let v = o.open_vault()?;
            let IssuerChange {
                issuer,
                cut_off,
                untainted,
                ..
            } = v.issuer_retire(&env, &id, force, &o.context(Opens::Secrets)?)?;
            let mut msg = format!("issuer {id} is retired\n");
            let nodes = if issuer.api == Api::Kubernetes {
                "CONTROL-PLANES"
            } else {
                "ALL-NODES"
            };
            let _ = writeln!(
                msg,
                "now roll out the patch that drops it: talvault patch accepted-cas {env} -o accepted-cas.yaml && talosctl patch machineconfig --nodes {nodes} --patch @accepted-cas.yaml"
            );
            if !cut_off.is_empty() {
                let _ = writeln!(
                    msg,
                    "{} live certificate(s) it signed stop working once nodes apply the patch:",
                    cut_off.len()
                );
                for c in &cut_off {
                    let _ = writeln!(msg, "{}", cert_line(c));
                }
            }
            if untainted {
                let _ = writeln!(
                    msg,
                    "environment {env} is no longer tainted: the break-glass certificate was signed by {id}"
                );
            }
            write_stdout(msg.as_bytes())?;
            Ok(0)
        }
        IssuerCommand::List { env, format } => {
            let v = o.open_vault()?;
            let list = v.issuer_list(&env, &o.context(Opens::Given)?)?;
            match format {
                ListFormat::Json => write_stdout(&json(&list)?)?,
                ListFormat::Text => {
                    let mut msg = String::new();
                    if list.is_empty() {
                        let _ = writeln!(
                            msg,
                            "environment {env} has no issuers (certificates are signed directly by the Talos OS CA); create one with `talvault issuer create {env}`"
                        );
                    }
                    for i in &list {
                        let _ = writeln!(msg, "{}", issuer_line(i));
                    }
                    write_stdout(msg.as_bytes())?;
                }
            }
            Ok(0)
        }
    }
}

fn create(a: CreateArgs, rotate: bool, o: &VaultOpts) -> Result<u8, CliError> {
    let lifetime = ttl_arg("--lifetime", &a.lifetime, "e.g. --lifetime 8760h or 365d")?;
    let key = match &a.pkcs11 {
        Some(uri) => NewIssuerKey::Pkcs11 {
            uri: uri.clone(),
            generate: a.generate,
            allow_extractable: a.danger_allow_extractable,
        },
        None => NewIssuerKey::Sealed,
    };
    let v = o.open_vault()?;
    let change = v.issuer_create(
        &NewIssuer {
            env: a.env.clone(),
            algorithm: a.algorithm.map(Algorithm::from),
            key,
            lifetime,
            rotate,
            api: a.api.into(),
        },
        &o.context(Opens::Secrets)?,
    )?;
    for w in &change.warnings {
        write_stderr(format!("warning: {w}\n").as_bytes());
    }
    let env = &a.env;
    let view = &change.issuer;
    let id = &view.id;
    let kubernetes = a.api == ApiArg::Kubernetes;
    let mut msg = format!(
        "created {}issuer {id} ({}, {}, valid until {}), pending\n",
        if kubernetes { "Kubernetes " } else { "" },
        view.algorithm,
        view.subject,
        view.not_after
    );
    if view.key_store == "pkcs11" {
        let _ = writeln!(
            msg,
            "its key is in the PKCS#11 token and never leaves it; the certificate was signed there"
        );
    }
    let _ = writeln!(msg, "next steps:");
    if kubernetes {
        let _ = writeln!(
            msg,
            "  1. talvault patch accepted-cas {env} -o accepted-cas.yaml  and apply it to every control-plane node:\n     talosctl patch machineconfig --nodes CONTROL-PLANES --patch @accepted-cas.yaml"
        );
        let _ = writeln!(
            msg,
            "  2. talvault issuer activate {env} {id}  once every control plane has the patch"
        );
    } else {
        let _ = writeln!(
            msg,
            "  1. talvault patch accepted-cas {env} -o accepted-cas.yaml  and apply it to every node (control planes and workers):\n     talosctl patch machineconfig --nodes ALL-NODES --patch @accepted-cas.yaml"
        );
        let _ = writeln!(
            msg,
            "  2. talvault issuer activate {env} {id}  once every node has the patch"
        );
    }
    if rotate && let Some(old) = &change.previous {
        let _ = writeln!(
            msg,
            "  3. re-issue the {} live certificate(s) of {}, then: talvault issuer retire {env} {}  and roll out a fresh accepted-cas patch",
            old.live, old.id, old.id
        );
    }
    write_stdout(msg.as_bytes())?;
    Ok(0)
}

/// `talvault patch accepted-cas`
pub fn patch(cmd: PatchCommand, o: &VaultOpts) -> Result<u8, CliError> {
    let PatchCommand::AcceptedCas {
        env,
        keep,
        keep_kubernetes,
        api,
        kubernetes_form,
        output,
    } = cmd;
    let read = |paths: &[PathBuf]| -> Result<Vec<(String, Vec<u8>)>, CliError> {
        paths
            .iter()
            .map(|path| {
                Ok((
                    path.display().to_string(),
                    read_input(path, "CA certificate")?.to_vec(),
                ))
            })
            .collect()
    };
    let req = PatchRequest {
        env,
        api: api.map(Api::from),
        keep: read(&keep)?,
        keep_kubernetes: read(&keep_kubernetes)?,
        kubernetes_form: kubernetes_form.map(|f| match f {
            FormArg::Cluster => KubernetesForm::Cluster,
            FormArg::Document => KubernetesForm::Document,
        }),
    };
    let out = Output::public(output.as_deref())?;
    // The patch decides which CAs nodes trust: it rests on the authenticated chain only.
    let ctx = o.context(Opens::Secrets)?;
    let PatchOutput {
        patch,
        talos,
        kubernetes,
        form,
    } = o.open_vault()?.accepted_cas_patch(req, &ctx)?;
    let to_stdout = out.is_stdout();
    let shown = out.shown();
    out.write(patch.as_bytes())?;
    if !to_stdout {
        let mut counts = Vec::new();
        if let Some(n) = talos {
            counts.push(if kubernetes.is_some() {
                format!("{n} CA(s) for the Talos API")
            } else {
                format!("{n} CA(s)")
            });
        }
        if let Some(n) = kubernetes {
            counts.push(format!(
                "{n} CA(s) for the Kubernetes API in {}",
                match form {
                    Some(KubernetesForm::Document) => "the KubeAPIServerCAConfig document",
                    _ => "cluster.acceptedCAs",
                }
            ));
        }
        let (nodes, target) = if kubernetes.is_some() {
            ("every control-plane node", "CONTROL-PLANES")
        } else {
            ("every node", "ALL-NODES")
        };
        let mut msg = format!(
            "wrote {shown} ({}); apply it to {nodes}: talosctl patch machineconfig --nodes {target} --patch @{shown}\n",
            counts.join(", ")
        );
        if kubernetes.is_some() && talos.is_some() {
            let _ = writeln!(
                msg,
                "workers need only the Talos part (--api talos); the Kubernetes part would only widen their kubelet's client trust"
            );
        }
        write_stdout(msg.as_bytes())?;
    }
    Ok(0)
}

/// `talvault hsm …`
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Show what a PKCS#11 token offers talvault: module, token, the mechanisms each algorithm
    /// needs, and whether the named key is sensitive and never extractable and signs (one test
    /// signature, checked against its public key object).
    Check {
        /// The RFC 7512 `pkcs11:` URI (token, and object/id for a key).
        uri: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        format: ListFormat,
    },
}

/// `talvault hsm check`: exit 0 when the token (and the key, if named) will work, 1 when not.
pub fn hsm(cmd: HsmCommand, o: &VaultOpts) -> Result<u8, CliError> {
    let HsmCommand::Check { uri, format } = cmd;
    let parsed = talvault_hsm::Pkcs11Uri::parse(&uri)
        .map_err(|e| CliError::usage(format!("URI: {e}")).maybe_hint(e.hint()))?;
    let ctx = o.context(Opens::Nothing)?;
    let report = talvault_hsm::check(
        &parsed,
        &talvault_hsm::OpenOptions {
            pin_prompt: ctx.pin_prompt.as_deref(),
            ..talvault_hsm::OpenOptions::default()
        },
    )
    .map_err(|e| CliError::from(crate::vault::VaultError::Hsm(e)))?;
    match format {
        ListFormat::Json => write_stdout(&json(&report)?)?,
        ListFormat::Text => write_stdout(report.to_text().as_bytes())?,
    }
    // Usable: the named key would be accepted, or (no key named) some algorithm is fully offered.
    let usable = match &report.key {
        Some(k) => k.usable,
        None => report.algorithms.iter().any(|a| a.usable),
    };
    Ok(if usable { 0 } else { 1 })
}
