//! `echo`: the command line of smol-echo. Parses arguments, runs the subcommand, and turns its
//! result into an exit status; the behaviour lives in the `smol_echo` library.

// argh shows doc comments as --help text, where `[v6addr]:port` is meant literally, not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::parse(std::env::args().collect()) {
        Ok(command) => command.run(),
        Err(exit) => exit,
    }
}
