//! `echo completions`: shell completion scripts, generated from the argh definitions by
//! `argh_complete` and registered for this binary's own path.
//!
//! `echo` is also a shell builtin. A completion registered for the word `echo` would change
//! how the builtin completes, so the scripts name the binary by the path it was run by (as
//! typed, and as the kernel resolved it), and their functions by `smol_echo`.

use std::process::ExitCode;

use argh::{ArgsInfo, FromArgs};
use argh_complete::Generator;
use argh_complete::bash::Bash;
use argh_complete::fish::Fish;
use argh_complete::zsh::Zsh;

use super::Cli;

#[derive(FromArgs, ArgsInfo, Debug)]
/// Print a completion script for bash, zsh or fish, registered for this binary's path (never
/// for the shell's builtin echo), e.g. source <(~/.cargo/bin/echo completions bash).
#[argh(subcommand, name = "completions")]
pub(crate) struct CompletionsArgs {
    /// the shell: bash, zsh or fish
    #[argh(positional, from_str_fn(parse_shell))]
    shell: Shell,
}

/// The shells a script can be written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn parse_shell(text: &str) -> Result<Shell, String> {
    match text {
        "bash" => Ok(Shell::Bash),
        "zsh" => Ok(Shell::Zsh),
        "fish" => Ok(Shell::Fish),
        _ => Err(format!("unknown shell '{text}': use bash, zsh or fish")),
    }
}

pub(crate) fn run(args: CompletionsArgs) -> ExitCode {
    let paths = own_paths();
    if paths.is_empty() {
        eprintln!("echo: cannot tell this binary's path, so no completion can name it");
        return ExitCode::FAILURE;
    }
    print!("{}", script(args.shell, &paths));
    ExitCode::SUCCESS
}

/// The paths this binary answers to: `argv[0]` as typed when it names a path, and the
/// executable the kernel ran. Never the bare word `echo`.
fn own_paths() -> Vec<String> {
    let typed = std::env::args().next().filter(|arg0| arg0.contains('/'));
    let resolved = std::env::current_exe().ok().and_then(|path| path.into_os_string().into_string().ok());
    let mut paths: Vec<String> = typed.into_iter().chain(resolved).collect();
    // The shell expands `~/.cargo/bin/echo` before running it, but may look up the
    // completion of the word as typed: name that form too.
    if let Some(home) = std::env::var("HOME").ok().filter(|home| home.starts_with('/')) {
        let tilde: Vec<String> = paths
            .iter()
            .filter_map(|path| path.strip_prefix(&home)?.strip_prefix('/').map(|rest| format!("~/{rest}")))
            .collect();
        paths.extend(tilde);
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|path| seen.insert(path.clone()));
    paths
}

/// The script for `shell`, registered for `paths` (each containing a `/`).
pub(crate) fn script(shell: Shell, paths: &[String]) -> String {
    let info = Cli::get_args_info();
    // argh_complete names everything after the command: generate for `echo` (its bash
    // script recognises the command word as `echo` or `*/echo`), then rename the functions
    // and replace the registration for the word `echo` with one for the paths.
    match shell {
        Shell::Bash => {
            let generated = Bash::generate("echo", &info);
            let body = generated
                .trim_end()
                .strip_suffix("complete -F _echo -o bashdefault -o default echo")
                .expect("argh_complete's bash script ends with its registration");
            format!(
                "{}complete -F _smol_echo -o bashdefault -o default {}\n",
                body.replacen("_echo() {", "_smol_echo() {", 1),
                quoted(paths)
            )
        }
        Shell::Zsh => {
            let generated = Zsh::generate("echo", &info).replace("_echo", "_smol_echo");
            let body = generated
                .strip_prefix("#compdef echo\n")
                .expect("argh_complete's zsh script starts with #compdef")
                .replace(
                    "    compdef _smol_echo echo\n",
                    &format!("    compdef _smol_echo {}\n", quoted(paths)),
                );
            // The `#compdef` line serves autoloading from $fpath, which splits it at spaces.
            let plain: Vec<&str> =
                paths.iter().filter(|path| !path.contains(' ')).map(String::as_str).collect();
            format!("#compdef {}\n{body}", plain.join(" "))
        }
        Shell::Fish => {
            let generated = Fish::generate("echo", &info)
                .replace("__fish_echo_using_command", "__fish_smol_echo_using_command")
                // `-x` is fish 3.8's; `-o` does the same job in the fish of current distributions.
                .replace("commandline -xpc", "commandline -opc");
            // `-p` matches the program's path; `-c echo` would complete the builtin.
            let absolute: Vec<&String> = paths.iter().filter(|path| path.starts_with('/')).collect();
            let mut out = String::new();
            for line in generated.lines() {
                match line.strip_prefix("complete -c echo ") {
                    Some(rest) => {
                        for path in &absolute {
                            out.push_str(&format!("complete -p {} {rest}\n", sh_quote(path)));
                        }
                    }
                    None => {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
            out
        }
    }
}

/// Every path, quoted, separated by spaces.
fn quoted(paths: &[String]) -> String {
    paths.iter().map(|path| sh_quote(path)).collect::<Vec<_>>().join(" ")
}

/// `text` in single quotes, as bash, zsh and fish read it.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: [&str; 2] = ["./target/release/echo", "/home/me/.cargo/bin/echo"];

    fn paths() -> Vec<String> {
        PATHS.iter().map(|path| path.to_string()).collect()
    }

    #[test]
    fn no_script_registers_the_bare_word() {
        let bash = script(Shell::Bash, &paths());
        let registration = bash.lines().last().unwrap();
        assert_eq!(
            registration,
            "complete -F _smol_echo -o bashdefault -o default './target/release/echo' '/home/me/.cargo/bin/echo'"
        );
        assert!(!bash.lines().any(|line| line.starts_with("_echo")), "{bash}");

        let zsh = script(Shell::Zsh, &paths());
        assert!(zsh.starts_with("#compdef ./target/release/echo /home/me/.cargo/bin/echo\n"), "{zsh}");
        assert!(
            zsh.contains("compdef _smol_echo './target/release/echo' '/home/me/.cargo/bin/echo'\n"),
            "{zsh}"
        );
        assert!(!zsh.contains(" _echo") && !zsh.contains("compdef _smol_echo echo"), "{zsh}");

        let fish = script(Shell::Fish, &paths());
        assert!(!fish.contains("complete -c"), "{fish}");
        assert!(fish.contains("complete -p '/home/me/.cargo/bin/echo' "), "{fish}");
        assert!(!fish.contains("complete -p './target"), "fish -p takes absolute paths: {fish}");
    }

    #[test]
    fn every_script_offers_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell, &paths());
            for sub in ["serve", "connect", "bench", "man", "completions"] {
                assert!(text.contains(sub), "{shell:?} lacks {sub}");
            }
            assert!(text.contains("idle-timeout"), "{shell:?} lacks serve's flags");
        }
    }

    #[test]
    fn quoting_survives_a_quote() {
        assert_eq!(sh_quote("/a b/it's/echo"), r"'/a b/it'\''s/echo'");
    }
}
