//! The manual page and the shell completions, through the built binary: the page renders
//! without a warning and names every flag `--help` lists; the bash completion works in a real
//! bash for the binary's path and leaves the builtin `echo` alone.

use std::process::Command;

const ECHO: &str = env!("CARGO_BIN_EXE_echo");
const PAGE: &str = include_str!("../docs/echo.1");

fn run(args: &[&str]) -> String {
    let out = Command::new(ECHO).args(args).output().expect("runs echo");
    assert!(out.status.success(), "echo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_page_renders_without_a_warning() {
    // groff where it is (.ci/run installs groff-base), mandoc's linter where that is.
    let (program, args): (&str, &[&str]) = match Command::new("groff").arg("--version").output() {
        Ok(_) => ("groff", &["-man", "-ww", "-z", "docs/echo.1"]),
        Err(_) => ("mandoc", &["-T", "lint", "-W", "warning", "docs/echo.1"]),
    };
    let out = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|err| panic!("{program}: {err}: install groff (apt-get install groff-base)"));
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{program} on docs/echo.1:\n{warnings}");
}

#[test]
fn the_page_is_what_echo_man_prints() {
    assert!(run(&["man"]) == PAGE, "docs/echo.1 is stale: cargo run -q -- man > docs/echo.1");
}

#[test]
fn the_page_names_every_flag_help_lists() {
    for section in ["EXIT STATUS", "ENVIRONMENT", "LISTEN_FDS", "LISTEN_PID", "FILES", "EXAMPLES", "SEE ALSO"]
    {
        assert!(PAGE.contains(section), "no {section}");
    }
    for sub in ["serve", "connect", "bench", "man", "completions"] {
        assert!(PAGE.contains(&format!(".SS \"echo {sub} ")), "no section for {sub}");
        let help = run(&[sub, "--help"]);
        // The entries of `Options:`: a line starting with a flag, the flags before the gap.
        let flags: Vec<&str> = help
            .lines()
            .filter_map(|line| line.strip_prefix("  ").filter(|entry| entry.starts_with('-')))
            .flat_map(|entry| entry.split("  ").next().unwrap().split(", "))
            .filter_map(|flag| flag.split(' ').next().filter(|flag| flag.starts_with('-')))
            .collect();
        assert!(flags.contains(&"--help"), "{sub}: no flags found in {help}");
        for flag in flags {
            let roff = format!("\\fB{}\\fR", flag.replace('-', "\\-"));
            assert!(PAGE.contains(&roff), "echo {sub} --help lists {flag}, the page does not");
        }
    }
    assert!(run(&["--help"]).contains("echo(1)"), "echo --help names the page");
}

/// What bash offers after `words`, the last being the word completed, with the script that
/// `echo completions bash` prints loaded the way a user's ~/.bashrc would.
fn bash_offers(script: &str, words: &[&str]) -> (String, String) {
    let words: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let probe = format!(
        "{script}\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMPREPLY=()\n\
         spec=$(complete -p '{ECHO}') || exit 3\n\
         func=${{spec#*-F }}; func=${{func%% *}}\n\
         \"$func\" '{ECHO}' \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n\
         echo ---\n\
         complete -p echo 2>&1 || true\n",
        words = words.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash").args(["--norc", "--noprofile", "-c", &probe]).output().expect("runs bash");
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (offers, builtin) = text.split_once("---\n").unwrap();
    (offers.to_string(), builtin.to_string())
}

#[test]
fn bash_completes_the_binary_by_its_path_and_not_the_builtin() {
    let script = run(&["completions", "bash"]);
    let (offers, builtin) = bash_offers(&script, &[ECHO, "se"]);
    assert_eq!(offers.lines().collect::<Vec<_>>(), ["serve"], "{ECHO} se<TAB>");
    assert!(builtin.contains("no completion specification"), "complete -p echo: {builtin}");

    let (offers, _) = bash_offers(&script, &[ECHO, ""]);
    for sub in ["serve", "connect", "bench", "man", "completions"] {
        assert!(offers.lines().any(|offer| offer == sub), "{sub} not offered: {offers}");
    }
    let (offers, _) = bash_offers(&script, &[ECHO, "serve", "--idle"]);
    assert_eq!(offers.trim(), "--idle-timeout");
}

#[test]
fn zsh_and_fish_scripts_name_the_path_only() {
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with(&format!("#compdef {ECHO}")), "{zsh}");
    assert!(zsh.contains(&format!("compdef _smol_echo '{ECHO}'")), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains(&format!("complete -p '{ECHO}' ")) && !fish.contains("complete -c "), "{fish}");
    let out = Command::new(ECHO).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
