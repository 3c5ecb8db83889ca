//! The `l7mark` binary: parse the command line, dispatch (see `l7mark::cli`).

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    l7mark::cli::dispatch(l7mark::cli::Cli::parse())
}
