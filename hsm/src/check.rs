//! `talvault hsm check URI`: what the module and token offer, and whether the key the URI names
//! (if any) is one talvault would sign with. Read-only: nothing is created or changed.

use std::fmt::Write as _;

use cryptoki::mechanism::MechanismType;
use cryptoki::slot::TokenInfo;
use serde::Serialize;

use crate::algorithm::KeyAlgorithm;
use crate::error::HsmError;
use crate::key::{Connection, HsmKey, PrivateKeyFacts, find_private_keys, hex};
use crate::module::lock;
use crate::options::OpenOptions;
use crate::uri::Pkcs11Uri;

/// Everything `check` found out, for `-o json` (serde) or [`CheckReport::to_text`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The URI checked, re-serialised (never holds a PIN).
    pub uri: String,
    /// The module that was loaded.
    pub module: ModuleReport,
    /// The token the URI selected.
    pub token: TokenReport,
    /// One entry per algorithm talvault supports.
    pub algorithms: Vec<AlgorithmReport>,
    /// The key the URI names; absent when it names none.
    pub key: Option<KeyReport>,
}

/// `C_GetInfo` of the module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// Path of the library loaded.
    pub path: String,
    /// `libraryDescription`.
    pub description: String,
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `libraryVersion`, `major.minor`.
    pub version: String,
    /// `cryptokiVersion`, `major.minor`.
    pub cryptoki_version: String,
}

/// `C_GetTokenInfo` and `C_GetSlotInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    /// `label`.
    pub label: String,
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `model`.
    pub model: String,
    /// `serialNumber`.
    pub serial: String,
    /// `slotDescription`.
    pub slot_description: String,
    /// CKF_LOGIN_REQUIRED.
    pub login_required: bool,
    /// CKF_USER_PIN_INITIALIZED.
    pub user_pin_initialized: bool,
    /// CKF_PROTECTED_AUTHENTICATION_PATH (PIN pad).
    pub protected_authentication_path: bool,
    /// CKF_WRITE_PROTECTED.
    pub write_protected: bool,
    /// CKF_USER_PIN_COUNT_LOW (a wrong PIN was entered since the last good one).
    pub user_pin_count_low: bool,
    /// CKF_USER_PIN_FINAL_TRY.
    pub user_pin_final_try: bool,
    /// CKF_USER_PIN_LOCKED.
    pub user_pin_locked: bool,
    /// CKF_RNG.
    pub rng: bool,
}

/// Whether the token offers what one algorithm needs.
#[derive(Debug, Clone, Serialize)]
pub struct AlgorithmReport {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Both mechanisms offered with the needed flags (generate key pair; sign).
    pub usable: bool,
    /// Key-pair generation then signing mechanism.
    pub mechanisms: Vec<MechanismReport>,
}

/// One mechanism from `C_GetMechanismList` / `C_GetMechanismInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct MechanismReport {
    /// PKCS#11 name, e.g. `CKM_EDDSA`.
    pub name: &'static str,
    /// Listed by `C_GetMechanismList`.
    pub offered: bool,
    /// `ulMinKeySize` (bits for EC mechanisms), when offered.
    pub min_key_size: Option<u64>,
    /// `ulMaxKeySize`, when offered.
    pub max_key_size: Option<u64>,
    /// CKF_GENERATE_KEY_PAIR or CKF_SIGN, whichever this mechanism is needed for.
    pub flag_present: bool,
}

/// The key the URI names.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// How many private keys matched.
    pub matches: usize,
    /// CKA_LABEL (lossy UTF-8), if one key matched.
    pub label: Option<String>,
    /// CKA_ID as hex, if one key matched.
    pub id: Option<String>,
    /// CKA_KEY_TYPE, e.g. `CKK_EC_EDWARDS`.
    pub key_type: Option<String>,
    /// The algorithm talvault would use, when supported.
    pub algorithm: Option<KeyAlgorithm>,
    /// CKA_SENSITIVE (absent: not disclosed).
    pub sensitive: Option<bool>,
    /// CKA_EXTRACTABLE.
    pub extractable: Option<bool>,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: Option<bool>,
    /// CKA_ALWAYS_SENSITIVE.
    pub always_sensitive: Option<bool>,
    /// CKA_SIGN.
    pub sign: Option<bool>,
    /// CKA_ALWAYS_AUTHENTICATE.
    pub always_authenticate: Option<bool>,
    /// Whether `HsmKey::open` would accept it with the given options and a test signature
    /// verifies under its public key object.
    pub usable: bool,
    /// One sentence: why it is or is not usable.
    pub verdict: String,
}

/// Inspects the module, the token and (if the URI names one) the key. Logs in only when the URI
/// names a key, because private objects are invisible before login (PKCS#11 v2.40 base §4.4,
/// CKA_PRIVATE).
pub fn check(uri: &Pkcs11Uri, options: &OpenOptions<'_>) -> Result<CheckReport, HsmError> {
    let connection = Connection::open(uri, options, uri.names_object())?;
    let module = connection.module();
    let info = module
        .pkcs11
        .get_library_info()
        .map_err(|e| HsmError::from_cryptoki(e, "reading the module information"))?;
    let module_report = ModuleReport {
        path: module.path.display().to_string(),
        description: info.library_description().to_owned(),
        manufacturer: info.manufacturer_id().to_owned(),
        version: version(info.library_version()),
        cryptoki_version: version(info.cryptoki_version()),
    };
    let slot = connection.token.slot;
    // Fresh token info: flags such as CKF_USER_PIN_COUNT_LOW change with the login just made.
    let token_info = module
        .pkcs11
        .get_token_info(slot)
        .map_err(|e| HsmError::from_cryptoki(e, "reading the token information"))?;
    let token = token_report(&token_info, connection.token.slot_info.slot_description());

    let offered = module
        .pkcs11
        .get_mechanism_list(slot)
        .map_err(|e| HsmError::from_cryptoki(e, "listing the token's mechanisms"))?;
    let mut algorithms = Vec::new();
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let mut mechanisms = Vec::new();
        for (index, (mechanism, name)) in algorithm.mechanisms().into_iter().enumerate() {
            mechanisms.push(mechanism_report(
                &connection,
                &offered,
                mechanism,
                name,
                index == 0,
            ));
        }
        algorithms.push(AlgorithmReport {
            algorithm,
            usable: mechanisms.iter().all(|m| m.offered && m.flag_present),
            mechanisms,
        });
    }

    let key = if uri.names_object() {
        Some(key_report(&connection, uri, options, &algorithms)?)
    } else {
        None
    };
    Ok(CheckReport {
        uri: uri.to_string(),
        module: module_report,
        token,
        algorithms,
        key,
    })
}

fn version(v: cryptoki::types::Version) -> String {
    format!("{}.{}", v.major(), v.minor())
}

fn token_report(info: &TokenInfo, slot_description: &str) -> TokenReport {
    TokenReport {
        label: info.label().to_owned(),
        manufacturer: info.manufacturer_id().to_owned(),
        model: info.model().to_owned(),
        serial: info.serial_number().to_owned(),
        slot_description: slot_description.to_owned(),
        login_required: info.login_required(),
        user_pin_initialized: info.user_pin_initialized(),
        protected_authentication_path: info.protected_authentication_path(),
        write_protected: info.write_protected(),
        user_pin_count_low: info.user_pin_count_low(),
        user_pin_final_try: info.user_pin_final_try(),
        user_pin_locked: info.user_pin_locked(),
        rng: info.rng(),
    }
}

fn mechanism_report(
    connection: &Connection,
    offered: &[MechanismType],
    mechanism: MechanismType,
    name: &'static str,
    generation: bool,
) -> MechanismReport {
    let info = offered
        .contains(&mechanism)
        .then(|| {
            connection
                .module()
                .pkcs11
                .get_mechanism_info(connection.token.slot, mechanism)
                .ok()
        })
        .flatten();
    MechanismReport {
        name,
        offered: offered.contains(&mechanism),
        min_key_size: info.as_ref().map(|i| i.min_key_size() as u64),
        max_key_size: info.as_ref().map(|i| i.max_key_size() as u64),
        flag_present: info.as_ref().is_some_and(|i| {
            if generation {
                i.generate_key_pair()
            } else {
                i.sign()
            }
        }),
    }
}

fn key_report(
    connection: &Connection,
    uri: &Pkcs11Uri,
    options: &OpenOptions<'_>,
    algorithms: &[AlgorithmReport],
) -> Result<KeyReport, HsmError> {
    let session = lock(&connection.session);
    let handles = find_private_keys(&session, uri)?;
    let mut report = KeyReport {
        matches: handles.len(),
        label: None,
        id: None,
        key_type: None,
        algorithm: None,
        sensitive: None,
        extractable: None,
        never_extractable: None,
        always_sensitive: None,
        sign: None,
        always_authenticate: None,
        usable: false,
        verdict: String::new(),
    };
    let [handle] = handles.as_slice() else {
        report.verdict = if handles.is_empty() {
            format!("no private key matches {}", uri.describe_object())
        } else {
            format!(
                "{} private keys match {}; add id= to pick one",
                handles.len(),
                uri.describe_object()
            )
        };
        return Ok(report);
    };
    let facts = PrivateKeyFacts::read(&session, *handle)?;
    report.label = facts
        .label
        .as_ref()
        .map(|l| String::from_utf8_lossy(l).into_owned());
    report.id = facts.id.as_deref().map(hex);
    report.key_type = facts.key_type.map(|t| t.to_string());
    report.sensitive = facts.sensitive;
    report.extractable = facts.extractable;
    report.never_extractable = facts.never_extractable;
    report.always_sensitive = facts.always_sensitive;
    report.sign = facts.sign;
    report.always_authenticate = facts.always_authenticate;
    // The same rules, in the same order, as HsmKey::open.
    let algorithm = match facts.algorithm() {
        Ok(algorithm) => algorithm,
        Err(reason) => {
            report.verdict = format!("unusable: {reason}");
            return Ok(report);
        }
    };
    report.algorithm = Some(algorithm);
    let signing_offered = algorithms
        .iter()
        .find(|a| a.algorithm == algorithm)
        .is_some_and(|a| a.mechanisms[1].offered);
    report.verdict = if !facts.protected() && !options.allow_extractable {
        "refused: the key can leave the token (CKA_EXTRACTABLE not false or CKA_SENSITIVE not true)"
            .to_owned()
    } else if facts.sign != Some(true) {
        "unusable: CKA_SIGN is not true".to_owned()
    } else if facts.always_authenticate == Some(true) {
        "unusable: CKA_ALWAYS_AUTHENTICATE needs a PIN per signature".to_owned()
    } else if !signing_offered {
        format!(
            "unusable: the token does not offer {}",
            algorithm.mechanisms()[1].1
        )
    } else {
        report.usable = true;
        // A test signature, checked against the public key object: the attributes can all be
        // right and the pair still mismatched.
        drop(session);
        let tested = HsmKey::assemble(connection, uri, *handle, &facts, algorithm)
            .and_then(|key| key.self_test());
        if let Err(e) = tested {
            report.usable = false;
            report.verdict = format!("unusable: a test signature failed: {e}");
            return Ok(report);
        }
        if facts.protected() {
            let history =
                if facts.never_extractable == Some(true) && facts.always_sensitive == Some(true) {
                    ", and always was (generated inside the token)"
                } else {
                    ", but was not always (imported or once extractable)"
                };
            format!("usable: {algorithm} key, sensitive and not extractable{history}")
        } else {
            format!("usable only because extractable keys are allowed: {algorithm} key")
        }
    };
    Ok(report)
}

impl CheckReport {
    /// A human-readable rendering, one fact per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let opt = |b: Option<bool>| match b {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not disclosed",
        };
        let _ = writeln!(out, "uri:        {}", self.uri);
        let _ = writeln!(
            out,
            "module:     {} ({} {}, {}; Cryptoki {})",
            self.module.path,
            self.module.description,
            self.module.version,
            self.module.manufacturer,
            self.module.cryptoki_version
        );
        let t = &self.token;
        let _ = writeln!(
            out,
            "token:      {:?} (manufacturer {:?}, model {:?}, serial {:?}, slot {:?})",
            t.label, t.manufacturer, t.model, t.serial, t.slot_description
        );
        let _ = writeln!(
            out,
            "flags:      login required {}, user PIN initialised {}, PIN pad {}, write-protected {}, \
             PIN count low {}, PIN final try {}, PIN locked {}, RNG {}",
            yes(t.login_required),
            yes(t.user_pin_initialized),
            yes(t.protected_authentication_path),
            yes(t.write_protected),
            yes(t.user_pin_count_low),
            yes(t.user_pin_final_try),
            yes(t.user_pin_locked),
            yes(t.rng)
        );
        for a in &self.algorithms {
            let _ = write!(
                out,
                "{:<12}{}:",
                format!("{}:", a.algorithm),
                if a.usable {
                    "supported"
                } else {
                    "NOT supported"
                }
            );
            for m in &a.mechanisms {
                let sizes = match (m.min_key_size, m.max_key_size) {
                    (Some(min), Some(max)) => format!(" key size {min}-{max}"),
                    _ => String::new(),
                };
                let state = if !m.offered {
                    "missing".to_owned()
                } else if !m.flag_present {
                    format!("offered without the needed flag{sizes}")
                } else {
                    format!("offered{sizes}")
                };
                let _ = write!(out, " {} {state};", m.name);
            }
            out.pop();
            out.push('\n');
        }
        if let Some(k) = &self.key {
            let _ = writeln!(
                out,
                "key:        {} match(es); label {:?}, id {}, type {}",
                k.matches,
                k.label.as_deref().unwrap_or("-"),
                k.id.as_deref().unwrap_or("-"),
                k.key_type.as_deref().unwrap_or("-")
            );
            if k.matches == 1 {
                let _ = writeln!(
                    out,
                    "            sensitive {}, extractable {}, never extractable {}, always sensitive {}, \
                     sign {}, always authenticate {}",
                    opt(k.sensitive),
                    opt(k.extractable),
                    opt(k.never_extractable),
                    opt(k.always_sensitive),
                    opt(k.sign),
                    opt(k.always_authenticate)
                );
            }
            let _ = writeln!(out, "verdict:    {}", k.verdict);
        }
        out
    }
}
