//! The `memo` command: everything is in the library ([`memo_cli::run`]), so
//! the Python package's `memo` command is the same program.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(memo_cli::run(std::env::args_os()))
}
