//! EDGE: asking for a passphrase or PIN on the terminal without echo.
//!
//! Reads from `/dev/tty`, never from argv; the answer is returned as a zeroizing secret and the
//! terminal's echo setting is restored even when reading fails.
#![expect(clippy::disallowed_methods, reason = "EDGE: talks to the terminal")]

use std::io::Write as _;

use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};

use crate::secret::SecretText;

/// Prompts on the controlling terminal and reads one line with echo off.
pub fn read_hidden(prompt: &str) -> std::io::Result<SecretText> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let result = (|| {
        let mut out = &tty;
        out.write_all(prompt.as_bytes())?;
        out.flush()?;
        // Byte by byte into a fixed zeroizing buffer: a BufReader would keep the passphrase in
        // its own buffer, and a growing String would leave copies behind; both are freed
        // unwiped. The terminal hands over the whole line at once anyway.
        const MAX: usize = 1024;
        let mut line = zeroize::Zeroizing::new(Vec::with_capacity(MAX));
        let mut byte = zeroize::Zeroizing::new([0u8; 1]);
        let mut input = &tty;
        while std::io::Read::read(&mut input, &mut byte[..])? == 1 && byte[0] != b'\n' {
            if line.len() == MAX {
                return Err(std::io::Error::other(
                    "the passphrase is longer than 1024 bytes",
                ));
            }
            line.push(byte[0]);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| std::io::Error::other("the passphrase is not UTF-8"))?;
        Ok(SecretText::from(text))
    })();
    // Restores the attributes saved above, whatever happened while reading.
    let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    result
}

/// age plugin and ssh-key callbacks on the terminal: messages to stderr, questions on
/// `/dev/tty` (none when there is no terminal, so automation fails instead of hanging).
#[derive(Clone, Copy, Debug)]
pub struct TerminalCallbacks;

impl age::Callbacks for TerminalCallbacks {
    fn display_message(&self, message: &str) {
        let _ = writeln!(std::io::stderr(), "{message}");
    }

    fn confirm(&self, message: &str, yes_string: &str, no_string: Option<&str>) -> Option<bool> {
        let choices = match no_string {
            Some(no) => format!("{message} [{yes_string}/{no}]: "),
            None => format!("{message} [{yes_string}]: "),
        };
        let answer = read_hidden(&choices).ok()?;
        Some(answer.expose().trim().eq_ignore_ascii_case(yes_string))
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        read_hidden(&format!("{description}: "))
            .ok()
            .map(|s| s.expose().to_owned())
    }

    fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
        read_hidden(&format!("{description}: "))
            .ok()
            .map(|s| age::secrecy::SecretString::from(s.expose().to_owned()))
    }
}
