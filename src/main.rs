//! The talvault binary: parse arguments, run one command, print the error with a hint, exit.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    talvault::process::harden();
    let cli = talvault::cli::Cli::parse();
    match talvault::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            talvault::cli::report(&e);
            std::process::ExitCode::from(e.code)
        }
    }
}
