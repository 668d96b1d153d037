//! PKCS#11 modules: where talvault looks for one, loading it at run time (dlopen through
//! cryptoki), and the process-wide registry that keeps one initialised `Pkcs11` per module and one
//! open session per token.
//!
//! # Search order
//!
//! 1. `module-path=/abs/lib.so` in the URI: that file and nothing else.
//! 2. `module-name=NAME`: p11-kit's module registrations, the way p11-kit itself resolves them
//!    (p11-kit `pkcs11.conf(5)`): `/etc/pkcs11/modules/NAME.module`, then
//!    `/usr/share/p11-kit/modules/NAME.module` (their `module:` line; a relative file name is
//!    looked up in the module directories below); then `NAME.so` and `libNAME.so` in the module
//!    directories `/usr/lib/<multiarch>/pkcs11` (Debian's p11-kit module path), `/usr/lib64/pkcs11`,
//!    `/usr/lib/pkcs11`, `/usr/local/lib/pkcs11`. Per-user p11-kit configuration is not read.
//! 3. Neither: the p11-kit proxy (`p11-kit-proxy.so`, which exposes every registered module) in
//!    `/usr/lib/<multiarch>`, `/usr/lib64`, `/usr/lib`; then SoftHSM2's usual places
//!    (`/usr/lib/softhsm/libsofthsm2.so`, `/usr/lib/<multiarch>/softhsm/libsofthsm2.so`,
//!    `/usr/lib64/pkcs11/libsofthsm2.so`, `/usr/local/lib/softhsm/libsofthsm2.so`).
//!
//! Only paths that exist are handed to dlopen, so the dynamic linker's own search (LD_LIBRARY_PATH
//! and friends) never picks the module. When nothing is found the error lists every path tried.
//!
//! # One initialisation per process
//!
//! PKCS#11 v2.40 base §5.4 (C_Initialize): a second `C_Initialize` in the same process fails with
//! CKR_CRYPTOKI_ALREADY_INITIALIZED, so each module (keyed by its canonical path, so two symlinks to
//! one library count once) is loaded and initialised once and kept for the life of the process;
//! CKR_CRYPTOKI_ALREADY_INITIALIZED from another user of the library in the process is tolerated.
//! `C_Finalize` is never called: the registry lives until exit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use crate::error::{HsmError, rv_of};
use crate::uri::Pkcs11Uri;

/// A loaded, initialised module.
pub(crate) struct Module {
    /// The library as found (before symlinks are resolved), for reports.
    pub(crate) path: PathBuf,
    pub(crate) pkcs11: Pkcs11,
    /// One session per slot for the life of the process. PKCS#11 v2.40 base §5.6: login state
    /// belongs to the application and ends when its last session on the token closes, so the
    /// session kept here is what keeps the login alive.
    sessions: Mutex<HashMap<u64, Arc<Mutex<Session>>>>,
}

impl Module {
    /// The process-wide session on `slot`, opened on first use (read/write when the token allows,
    /// else read-only).
    pub(crate) fn session(&self, slot: Slot) -> Result<Arc<Mutex<Session>>, HsmError> {
        let mut sessions = lock(&self.sessions);
        if let Some(session) = sessions.get(&slot.id()) {
            return Ok(Arc::clone(session));
        }
        let session = match self.pkcs11.open_rw_session(slot) {
            Err(e) if rv_of(&e) == Some(RvError::TokenWriteProtected) => {
                self.pkcs11.open_ro_session(slot)
            }
            other => other,
        }
        .map_err(|e| {
            HsmError::from_cryptoki(e, format!("opening a session on slot {}", slot.id()))
        })?;
        let session = Arc::new(Mutex::new(session));
        sessions.insert(slot.id(), Arc::clone(&session));
        Ok(session)
    }
}

/// Locks a mutex, taking the data even if another thread panicked while holding it: the PKCS#11
/// session stays valid, and a half-done operation surfaces as CKR_OPERATION_ACTIVE on next use.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// Finds, loads and initialises the module the URI asks for (once per process).
pub(crate) fn load(uri: &Pkcs11Uri) -> Result<Arc<Module>, HsmError> {
    let path = locate(uri, &SearchPath::system())?;
    let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let mut modules = lock(MODULES.get_or_init(Default::default));
    if let Some(module) = modules.get(&key) {
        return Ok(Arc::clone(module));
    }
    let pkcs11 = Pkcs11::new(&path).map_err(|e| match e {
        CkError::LibraryLoading(e) => HsmError::NotAPkcs11Module {
            path: path.clone(),
            reason: format!("dlopen failed: {e}"),
        },
        CkError::MissingSymbol(symbol) => HsmError::NotAPkcs11Module {
            path: path.clone(),
            reason: format!("it exports no {symbol}"),
        },
        other => HsmError::from_cryptoki(other, format!("loading {}", path.display())),
    })?;
    // OS_LOCKING_OK: the library may use OS mutexes, because HsmKey is shared across threads.
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => {
            return Err(HsmError::from_cryptoki(
                e,
                format!("initialising {}", path.display()),
            ));
        }
    }
    let module = Arc::new(Module {
        path,
        pkcs11,
        sessions: Mutex::default(),
    });
    modules.insert(key, Arc::clone(&module));
    Ok(module)
}

/// Where to look; [`SearchPath::system`] in production, temporary directories in tests.
pub(crate) struct SearchPath {
    /// p11-kit module registration directories, highest priority first.
    pub(crate) registrations: Vec<PathBuf>,
    /// Directories holding module libraries (p11-kit's module path and its usual peers).
    pub(crate) module_dirs: Vec<PathBuf>,
    /// Tried in order when the URI names no module.
    pub(crate) defaults: Vec<PathBuf>,
}

impl SearchPath {
    pub(crate) fn system() -> Self {
        let lib = |p: &str| PathBuf::from(p);
        let multiarch = multiarch_lib_dir();
        let mut module_dirs = Vec::new();
        let mut defaults = Vec::new();
        if let Some(dir) = &multiarch {
            module_dirs.push(dir.join("pkcs11"));
            defaults.push(dir.join("p11-kit-proxy.so"));
        }
        module_dirs.extend(
            [
                "/usr/lib64/pkcs11",
                "/usr/lib/pkcs11",
                "/usr/local/lib/pkcs11",
            ]
            .map(lib),
        );
        defaults.extend(["/usr/lib64/p11-kit-proxy.so", "/usr/lib/p11-kit-proxy.so"].map(lib));
        defaults.push(lib("/usr/lib/softhsm/libsofthsm2.so"));
        if let Some(dir) = &multiarch {
            defaults.push(dir.join("softhsm/libsofthsm2.so"));
        }
        defaults.extend(
            [
                "/usr/lib64/pkcs11/libsofthsm2.so",
                "/usr/local/lib/softhsm/libsofthsm2.so",
            ]
            .map(lib),
        );
        SearchPath {
            registrations: ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"]
                .map(lib)
                .into(),
            module_dirs,
            defaults,
        }
    }
}

/// Debian/Ubuntu's multiarch library directory, e.g. `/usr/lib/x86_64-linux-gnu`.
fn multiarch_lib_dir() -> Option<PathBuf> {
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        Some(PathBuf::from(format!(
            "/usr/lib/{}-linux-gnu",
            std::env::consts::ARCH
        )))
    } else {
        None
    }
}

/// The module library for `uri` (see the module documentation for the order).
pub(crate) fn locate(uri: &Pkcs11Uri, search: &SearchPath) -> Result<PathBuf, HsmError> {
    let mut tried = Vec::new();
    let found = |path: PathBuf, tried: &mut Vec<PathBuf>| {
        let exists = path.is_file();
        tried.push(path.clone());
        exists.then_some(path)
    };
    if let Some(path) = uri.module_path() {
        return found(PathBuf::from(path), &mut tried).ok_or(HsmError::ModuleNotFound { tried });
    }
    if let Some(name) = uri.module_name() {
        let mut names = vec![name.to_owned()];
        // RFC 7512 §2.3: module-name is case-insensitive.
        if name.to_ascii_lowercase() != name {
            names.push(name.to_ascii_lowercase());
        }
        for name in &names {
            for dir in &search.registrations {
                let registration = dir.join(format!("{name}.module"));
                tried.push(registration.clone());
                if let Some(module) = registered_module(&registration) {
                    for candidate in resolve_relative(&module, &search.module_dirs) {
                        if let Some(path) = found(candidate, &mut tried) {
                            return Ok(path);
                        }
                    }
                }
            }
        }
        for name in &names {
            for dir in &search.module_dirs {
                for file in [format!("{name}.so"), format!("lib{name}.so")] {
                    if let Some(path) = found(dir.join(file), &mut tried) {
                        return Ok(path);
                    }
                }
            }
        }
        return Err(HsmError::ModuleNotFound { tried });
    }
    for candidate in &search.defaults {
        if let Some(path) = found(candidate.clone(), &mut tried) {
            return Ok(path);
        }
    }
    Err(HsmError::ModuleNotFound { tried })
}

/// The `module:` value of a p11-kit `.module` file (pkcs11.conf(5): `key: value` lines, `#`
/// comments), if the file exists and has one.
fn registered_module(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "module").then(|| value.trim().to_owned())
        })
        .filter(|value| !value.is_empty())
}

/// p11-kit resolves a relative `module:` value against its module path.
fn resolve_relative(module: &str, module_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let path = Path::new(module);
    if path.is_absolute() {
        vec![path.to_path_buf()]
    } else {
        module_dirs.iter().map(|dir| dir.join(path)).collect()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests write fixture files")]
mod tests {
    use super::*;

    fn uri(s: &str) -> Pkcs11Uri {
        Pkcs11Uri::parse(s).unwrap()
    }

    fn search(root: &Path) -> SearchPath {
        SearchPath {
            registrations: vec![root.join("etc"), root.join("share")],
            module_dirs: vec![root.join("lib/pkcs11"), root.join("lib64/pkcs11")],
            defaults: vec![root.join("proxy.so"), root.join("softhsm.so")],
        }
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn module_path_is_used_alone() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("vendor.so");
        let u = uri(&format!("pkcs11:?module-path={}", lib.display()));
        let e = locate(&u, &search(dir.path())).unwrap_err();
        assert_eq!(
            e,
            HsmError::ModuleNotFound {
                tried: vec![lib.clone()]
            }
        );
        touch(&lib);
        assert_eq!(locate(&u, &search(dir.path())).unwrap(), lib);
    }

    #[test]
    fn module_name_follows_p11_kit_registrations_then_directories() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        let u = uri("pkcs11:?module-name=Vendor");
        let e = locate(&u, &s).unwrap_err();
        let HsmError::ModuleNotFound { tried } = &e else {
            panic!("{e}")
        };
        // Registrations (both spellings), then NAME.so / libNAME.so in each module directory.
        let shown = e.to_string();
        for want in [
            "etc/Vendor.module",
            "share/vendor.module",
            "lib/pkcs11/Vendor.so",
            "lib64/pkcs11/libvendor.so",
        ] {
            assert!(shown.contains(want), "{want} missing from {shown}");
        }
        assert_eq!(tried.len(), 4 + 2 * 2 * 2);

        // A library in a module directory is found ...
        touch(&dir.path().join("lib64/pkcs11/libvendor.so"));
        assert_eq!(
            locate(&u, &s).unwrap(),
            dir.path().join("lib64/pkcs11/libvendor.so")
        );
        // ... but a p11-kit registration wins, and a relative module: is resolved against the
        // module directories.
        std::fs::create_dir_all(dir.path().join("share")).unwrap();
        std::fs::write(
            dir.path().join("share/vendor.module"),
            "# comment\nmodule: vendor-pkcs11.so\ncritical: no\n",
        )
        .unwrap();
        touch(&dir.path().join("lib/pkcs11/vendor-pkcs11.so"));
        assert_eq!(
            locate(&u, &s).unwrap(),
            dir.path().join("lib/pkcs11/vendor-pkcs11.so")
        );
        let abs = dir.path().join("opt/vendor/lib.so");
        touch(&abs);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/Vendor.module"),
            format!("module: {}\n", abs.display()),
        )
        .unwrap();
        assert_eq!(locate(&u, &s).unwrap(), abs);
    }

    #[test]
    fn defaults_are_tried_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        let u = uri("pkcs11:token=x");
        assert_eq!(
            locate(&u, &s).unwrap_err(),
            HsmError::ModuleNotFound {
                tried: vec![dir.path().join("proxy.so"), dir.path().join("softhsm.so")]
            }
        );
        touch(&dir.path().join("softhsm.so"));
        assert_eq!(locate(&u, &s).unwrap(), dir.path().join("softhsm.so"));
        touch(&dir.path().join("proxy.so"));
        assert_eq!(locate(&u, &s).unwrap(), dir.path().join("proxy.so"));
    }

    #[test]
    fn system_search_path_has_debian_locations() {
        let s = SearchPath::system();
        let shown = format!("{:?} {:?}", s.module_dirs, s.defaults);
        assert!(shown.contains("/usr/lib/softhsm/libsofthsm2.so"), "{shown}");
        if cfg!(all(
            target_os = "linux",
            target_env = "gnu",
            target_arch = "x86_64"
        )) {
            assert!(
                shown.contains("/usr/lib/x86_64-linux-gnu/pkcs11"),
                "{shown}"
            );
            assert!(
                shown.contains("/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_a_library_is_not_a_module() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake.so");
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let e = load(&uri(&format!("pkcs11:?module-path={}", fake.display())))
            .err()
            .unwrap();
        match &e {
            HsmError::NotAPkcs11Module { path, reason } => {
                assert_eq!(path, &fake);
                assert!(reason.starts_with("dlopen failed"), "{reason}");
            }
            other => panic!("{other}"),
        }
        assert!(e.hint().unwrap().contains("module-path"));
    }
}
