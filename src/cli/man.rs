//! `echo man`: the manual page, `echo.1` in roff. The prose is `man.roff`; the synopsis and
//! every subcommand's flags come from the argh definitions, so the page cannot drift from
//! `--help`. `docs/echo.1` is this output, and a test keeps it so.

use std::process::ExitCode;

use argh::{ArgsInfo, FlagInfoKind, FromArgs, Optionality};

use super::Cli;

#[derive(FromArgs, ArgsInfo, Debug)]
/// Print the manual page, echo.1, in roff: man -l <(echo man), or save it as
/// ~/.local/share/man/man1/echo.1.
#[argh(subcommand, name = "man")]
pub(crate) struct ManArgs {}

pub(crate) fn run(_: ManArgs) -> ExitCode {
    print!("{}", page());
    ExitCode::SUCCESS
}

/// The whole page.
pub(crate) fn page() -> String {
    let info = Cli::get_args_info();
    let mut synopsis = String::new();
    let mut commands = String::new();
    for sub in &info.commands {
        let command = &sub.command;
        let usage = usage(sub.name, command.positionals);
        synopsis.push_str(&format!(".B echo {}\n{}\n.br\n", sub.name, usage));
        commands.push_str(&format!(".SS \"echo {} {}\"\n", sub.name, usage.replace('"', "")));
        commands.push_str(&text(command.description));
        for positional in command.positionals {
            commands.push_str(&format!(".TP\n.I {}\n{}", positional.name, text(positional.description)));
        }
        for flag in command.flags {
            let short = flag.short.map(|c| format!("\\fB\\-{c}\\fR, ")).unwrap_or_default();
            let value = match flag.kind {
                FlagInfoKind::Option { arg_name } => format!(" \\fI{}\\fR", escape(arg_name)),
                FlagInfoKind::Switch => String::new(),
            };
            commands.push_str(&format!(
                ".TP\n{short}\\fB{}\\fR{value}\n{}",
                escape(flag.long),
                text(flag.description)
            ));
        }
    }
    synopsis.push_str(".B echo\n.RB [ \\-V | \\-\\-version | \\-h | \\-\\-help ]\n");
    include_str!("man.roff")
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@SYNOPSIS@\n", &synopsis)
        .replace("@COMMANDS@\n", &commands)
}

/// `[options] [addr]` for a subcommand, in roff.
fn usage(name: &str, positionals: &[argh::PositionalInfo<'_>]) -> String {
    let mut usage = String::from("[\\fIoptions\\fR]");
    if name == "completions" {
        // The one positional whose values are few enough to list.
        return usage + " \\fBbash\\fR|\\fBzsh\\fR|\\fBfish\\fR";
    }
    for positional in positionals {
        match positional.optionality {
            Optionality::Required => usage.push_str(&format!(" \\fI{}\\fR", positional.name)),
            _ => usage.push_str(&format!(" [\\fI{}\\fR]", positional.name)),
        }
    }
    usage
}

/// A paragraph of argh's text (the doc comment, lines kept), as roff lines.
fn text(description: &str) -> String {
    let mut out = String::new();
    for line in description.lines() {
        let line = escape(line.trim());
        if line.is_empty() {
            continue;
        }
        // A line starting with a dot or a quote would be read as a request.
        if line.starts_with(['.', '\'']) {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Backslashes and hyphens as roff wants them: `\-` is a minus that can be typed back.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_page_is_the_generated_one() {
        let committed = include_str!("../../docs/echo.1");
        assert!(
            committed == page(),
            "docs/echo.1 is stale: regenerate it with `cargo run -q -- man > docs/echo.1`"
        );
    }

    #[test]
    fn text_cannot_make_a_request() {
        assert_eq!(text("a --b\n.c\n'd \\e"), "a \\-\\-b\n\\&.c\n\\&'d \\ee\n");
    }
}
