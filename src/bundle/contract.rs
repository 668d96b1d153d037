//! PURE: Talos version contracts (`--talos-version`), parsed and compared as Talos does.
//!
//! siderolabs/talos: pkg/machinery/config/contract.go `ParseContractFromVersion` matches
//! `^v(\d+)\.(\d+)($|\.)` after talosctl prefixes a missing `v`; a nil contract (and `v0.0`)
//! means "current", greater than every named contract.

use std::fmt;

use thiserror::Error;

/// A Talos version contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionContract {
    /// The current contract of the Talos release talvault follows.
    Current,
    /// A named contract `vMAJOR.MINOR`.
    Named {
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
    },
}

/// The newest Talos minor release whose formats talvault reproduces.
pub const CURRENT_RELEASE: (u32, u32) = (1, 14);

/// A version string Talos would not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("error parsing version {0:?}")]
pub struct ContractParseError(pub String);

impl VersionContract {
    /// Parses `v?MAJOR.MINOR[.…]` as talosctl does. `v0.0` is the current contract.
    pub fn parse(input: &str) -> Result<Self, ContractParseError> {
        let v = input.strip_prefix('v').unwrap_or(input);
        // talosctl prefixes a missing `v` before parsing, so the message shows it with one.
        let err = || ContractParseError(format!("v{v}"));
        let (major, rest) = v.split_once('.').ok_or_else(err)?;
        let minor_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (minor, tail) = rest.split_at(minor_len);
        if major.is_empty()
            || !major.bytes().all(|b| b.is_ascii_digit())
            || minor.is_empty()
            || !(tail.is_empty() || tail.starts_with('.'))
        {
            return Err(err());
        }
        let major: u32 = major.parse().map_err(|_| err())?;
        let minor: u32 = minor.parse().map_err(|_| err())?;
        Ok(if major == 0 && minor == 0 {
            Self::Current
        } else {
            Self::Named { major, minor }
        })
    }

    /// Talos's `Greater`: is this contract newer than `major.minor`? Current is newer than all.
    pub fn greater(self, major: u32, minor: u32) -> bool {
        match self {
            Self::Current => true,
            Self::Named { major: a, minor: b } => (a, b) > (major, minor),
        }
    }

    /// Secretbox (contract ≥ 1.3) rather than AES-CBC (≤ 1.2) etcd encryption
    /// (bundle.go `populate`: `versionContract.Greater(TalosVersion1_2)`).
    pub fn uses_secretbox(self) -> bool {
        self.greater(1, 2)
    }

    /// Whether nodes of this contract read `machine.acceptedCAs` (Talos 1.7 and later), which
    /// issuer mode needs.
    pub fn has_accepted_cas(self) -> bool {
        self.greater(1, 6)
    }

    /// RSA-4096 rather than ECDSA P-256 service-account key
    /// (`UseRSAServiceAccountKey` = `Greater(TalosVersion1_6)`, Talos 1.7).
    pub fn uses_rsa_service_account_key(self) -> bool {
        self.greater(1, 6)
    }
}

impl fmt::Display for VersionContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current => write!(f, "current (v{}.{})", CURRENT_RELEASE.0, CURRENT_RELEASE.1),
            Self::Named { major, minor } => write!(f, "v{major}.{minor}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_talos() {
        let named = |major, minor| VersionContract::Named { major, minor };
        assert_eq!(VersionContract::parse("v1.7"), Ok(named(1, 7)));
        assert_eq!(VersionContract::parse("1.7"), Ok(named(1, 7)));
        assert_eq!(VersionContract::parse("v1.7.3"), Ok(named(1, 7)));
        assert_eq!(VersionContract::parse("v1.14.0-beta.1"), Ok(named(1, 14)));
        assert_eq!(VersionContract::parse("v0.0"), Ok(VersionContract::Current));
        for bad in [
            "v1.7-beta",
            "v1",
            "",
            "vx.1",
            "v1.",
            "v.1",
            "v1.7x",
            "latest",
        ] {
            assert!(VersionContract::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            VersionContract::parse("v1.7-beta").unwrap_err().to_string(),
            "error parsing version \"v1.7-beta\""
        );
    }

    #[test]
    fn contract_decisions() {
        let c = |s| VersionContract::parse(s).unwrap();
        assert!(!c("v1.2").uses_secretbox());
        assert!(c("v1.3").uses_secretbox());
        assert!(!c("v1.6").uses_rsa_service_account_key());
        assert!(c("v1.7").uses_rsa_service_account_key());
        assert!(VersionContract::Current.uses_rsa_service_account_key());
        assert!(!c("v0.14").uses_secretbox());
    }
}
