//! `echo`: the command line of smol-echo. Parses arguments, runs the subcommand, and turns its
//! result into an exit status; the behaviour lives in the `smol_echo` library.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::parse(std::env::args().collect()) {
        Ok(command) => command.run(),
        Err(exit) => exit,
    }
}
