//! EDGE: process-wide hardening and error reporting for the binary.
#![expect(
    clippy::disallowed_methods,
    reason = "EDGE: runs child processes and reads the environment"
)]

use std::io::Write as _;

/// Disables core dumps (RLIMIT_CORE = 0) so a crash cannot write decrypted secrets to disk, and
/// marks the process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`, issue 15 item 14): other
/// processes of the same user can then neither `ptrace` talvault nor read `/proc/PID/mem` while
/// it holds a key, and `/proc/PID/*` becomes owned by root. Both are best effort: a failure
/// leaves the process as it was and is not an error (the command still works, just unhardened).
pub fn harden() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let _ = setrlimit(Resource::Core, zero);
    // prctl(2): "Processes that are not dumpable can not be attached via ptrace(2)
    // PTRACE_ATTACH"; proc(5): /proc/PID/mem access is checked with PTRACE_MODE_ATTACH.
    let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
}

/// Where `program` would be run from: itself when it contains a `/`, else the first executable
/// regular file of that name in `PATH` (as `execvp` looks; `/usr/local/bin:/usr/bin:/bin` when
/// `PATH` is unset). Lets `bundle exec` refuse a missing program before the bundle is opened and
/// the use audited.
pub fn find_program(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = std::path::Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return runnable(path).then(|| path.to_path_buf());
    }
    if program.is_empty() {
        return None;
    }
    let search = std::env::var_os("PATH")
        .unwrap_or_else(|| std::ffi::OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&search)
        .map(|dir| {
            // An empty PATH entry means the current directory.
            let dir = if dir.as_os_str().is_empty() {
                std::path::PathBuf::from(".")
            } else {
                dir
            };
            dir.join(program)
        })
        .find(|candidate| runnable(candidate))
}

/// Runs `program args…`, replacing each argument that is exactly `{}` with `/dev/fd/N`, a pipe
/// from which the child reads `plaintext`. Nothing is written to disk. Returns the child's exit
/// code (128 + signal number when it was killed by a signal).
pub fn exec_with_pipes(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
    plaintext: &[u8],
) -> std::io::Result<u8> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::ExitStatusExt as _;

    use rustix::io::{FdFlags, fcntl_setfd};

    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let mut child_args = Vec::with_capacity(args.len());
    for a in args {
        if a == "{}" {
            let (reader, writer) = std::io::pipe()?;
            // std creates pipes close-on-exec; the child must inherit the read end.
            let fd = reader.as_raw_fd();
            // F_SETFD with no flags only clears FD_CLOEXEC.
            fcntl_setfd(&reader, FdFlags::empty())?;
            child_args.push(std::ffi::OsString::from(format!("/dev/fd/{fd}")));
            readers.push(reader);
            writers.push(writer);
        } else {
            child_args.push(a.clone());
        }
    }
    let mut child = std::process::Command::new(program)
        .args(&child_args)
        .spawn()?;
    // The parent's copies of the read ends must close, or a child that exits early would leave
    // the writers blocked, and readers would never see EOF.
    drop(readers);
    let feeders: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let data = crate::secret::SecretBytes::copy_from(plaintext);
            std::thread::spawn(move || {
                // A child that does not read its pipe gets EPIPE here; that is not our error.
                let _ = w.write_all(data.expose());
            })
        })
        .collect();
    let status = child.wait()?;
    for f in feeders {
        let _ = f.join();
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    })
}

/// Runs `program args…` with the one argument that is exactly `{}` replaced by `/dev/fd/N`, a
/// pipe that `feed` writes into from this thread (a stream of any size, in pieces: a decrypted
/// backup). The pipe is closed when `feed` returns, so the child sees the end; a child that stops
/// reading makes `feed`'s writes fail with a broken pipe, which `feed` decides about. Returns
/// the child's exit code (128 + signal number when killed by a signal) and what `feed` returned.
pub fn exec_with_stream<T>(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
    feed: impl FnOnce(&mut dyn std::io::Write) -> T,
) -> std::io::Result<(u8, T)> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::ExitStatusExt as _;

    let (reader, mut writer) = std::io::pipe()?;
    let fd = reader.as_raw_fd();
    // F_SETFD with no flags only clears FD_CLOEXEC, so the child inherits the read end.
    rustix::io::fcntl_setfd(&reader, rustix::io::FdFlags::empty())?;
    let child_args: Vec<std::ffi::OsString> = args
        .iter()
        .map(|a| {
            if a == "{}" {
                std::ffi::OsString::from(format!("/dev/fd/{fd}"))
            } else {
                a.clone()
            }
        })
        .collect();
    let mut child = std::process::Command::new(program)
        .args(&child_args)
        .spawn()?;
    // Our copy of the read end must close, or the writes below would never fail when the
    // child is gone, and the child would never see the end of the stream.
    drop(reader);
    let fed = feed(&mut writer);
    drop(writer);
    let status = child.wait()?;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    };
    Ok((code, fed))
}

/// Who is acting, for audit events: `--actor`, else `TALVAULT_ACTOR` (both passed in), else the
/// git user email, else the login name.
pub fn actor(explicit: Option<&str>, env_actor: Option<&str>) -> String {
    if let Some(a) = explicit.or(env_actor).filter(|a| !a.trim().is_empty()) {
        return a.trim().to_owned();
    }
    let git = std::process::Command::new("git")
        .args(["config", "user.email"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    git.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What changed between the git revision `rev` and the working tree of the repository holding
/// `root`, as `git diff --name-status` reports it, with paths relative to `root`: for
/// `audit verify --since`. Renames show as a removal and an addition.
pub fn git_changes(root: &std::path::Path, rev: &str) -> Result<Vec<(char, String)>, String> {
    if rev.starts_with('-') {
        return Err("a revision does not start with '-'".into());
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "diff",
            "--relative",
            "--no-renames",
            "--name-status",
            "--no-color",
            // Nothing a repository file or its attributes name is run.
            "--no-ext-diff",
            "--no-textconv",
        ])
        .arg(rev)
        .arg("--")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().next().unwrap_or("git failed").trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (status, path) = l.split_once('\t')?;
            Some((status.chars().next()?, path.to_owned()))
        })
        .collect())
}
