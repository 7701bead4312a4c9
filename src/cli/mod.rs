//! Arguments of every subcommand, and their conversion into the library's configs.

use std::process::ExitCode;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use smol_echo::client::Address;

mod bench;
mod completions;
mod connect;
mod logger;
mod man;
mod serve;
mod signals;
mod stdio;
mod tls;

/// The default address of every subcommand.
const DEFAULT_ADDR: &str = "localhost:8007";

#[derive(FromArgs, ArgsInfo, Debug)]
/// A CRLF line echo server, client and load generator.
#[argh(note = "The manual page is echo(1), which the man subcommand prints: read it with\n\
            man -l <(~/.cargo/bin/echo man). docs/ in the source is the full manual.")]
struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand)]
pub(crate) enum Command {
    Serve(serve::ServeArgs),
    Connect(connect::ConnectArgs),
    Bench(bench::BenchArgs),
    Man(man::ManArgs),
    Completions(completions::CompletionsArgs),
}

impl Command {
    /// Runs the subcommand to its end.
    pub(crate) fn run(self) -> ExitCode {
        match self {
            Command::Serve(args) => serve::run(args),
            Command::Connect(args) => connect::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Man(args) => man::run(args),
            Command::Completions(args) => completions::run(args),
        }
    }
}

/// Parses the whole command line (`argv[0]` first). Help and version are printed here and come
/// back as `Err(success)`; a usage error is printed with a hint and comes back as status 2.
pub(crate) fn parse(argv: Vec<String>) -> Result<Command, ExitCode> {
    let name = "echo";
    let mut args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    // Users type -h; argh knows only --help.
    for arg in &mut args {
        if *arg == "-h" {
            *arg = "--help";
        }
    }
    // argh has no aliases for subcommands: accept the other names by rewriting the word.
    if let Some(word) = args.first_mut() {
        *word = match *word {
            "server" => "serve",
            "client" => "connect",
            other => other,
        };
    }
    let cli = match Cli::from_args(&[name], &args) {
        Ok(cli) => cli,
        Err(exit) if exit.status.is_ok() => {
            println!("{}", exit.output);
            return Err(ExitCode::SUCCESS);
        }
        Err(exit) => return Err(usage_error(exit.output.trim_end(), &hint(&args))),
    };
    if cli.version {
        println!("echo {}", env!("CARGO_PKG_VERSION"));
        return Err(ExitCode::SUCCESS);
    }
    let Some(command) = cli.command else {
        let help = Cli::from_args(&[name], &["--help"]).err().map(|exit| exit.output).unwrap_or_default();
        eprintln!("{}", help.trim_end());
        return Err(ExitCode::from(2));
    };
    if let Err(message) = command.validate() {
        return Err(usage_error(&message, &hint(&args)));
    }
    Ok(command)
}

impl Command {
    /// Checks what argh cannot: ranges and combinations.
    fn validate(&self) -> Result<(), String> {
        match self {
            Command::Serve(args) => args.validate(),
            Command::Connect(args) => args.validate(),
            Command::Bench(args) => args.validate(),
            Command::Man(_) | Command::Completions(_) => Ok(()),
        }
    }
}

/// `echo serve --help` for a serve error, `echo --help` when no subcommand was recognised.
fn hint(args: &[&str]) -> String {
    match args.first() {
        Some(&sub @ ("serve" | "connect" | "bench" | "man" | "completions")) => format!("echo {sub} --help"),
        _ => "echo --help".to_string(),
    }
}

fn usage_error(message: &str, hint: &str) -> ExitCode {
    // argh starts its messages with a capital and ends some with a newline; keep one line.
    let message = message.lines().next().unwrap_or_default();
    eprintln!("echo: {message}");
    eprintln!("run {hint} for usage");
    ExitCode::from(2)
}

/// Parses `250ms`, `30s`, `2m`, `1h` or a plain number of seconds (fractions allowed).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration '{text}': use a number with ms, s, m or h, e.g. 250ms, 30s");
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    if !value.is_finite() || value < 0.0 || number.starts_with('+') {
        return Err(invalid());
    }
    Duration::try_from_secs_f64(value * unit_secs).map_err(|_| invalid())
}

/// Checks `host:port`, `[v6addr]:port`, `tls:host:port` or `unix:/path` without resolving it, so that a
/// malformed address is a usage error (status 2) and not a failure to connect or bind (status 1).
pub(crate) fn parse_addr(text: &str) -> Result<String, String> {
    let addr: Address = text.parse().map_err(|err: std::io::Error| err.to_string())?;
    Ok(addr.to_string())
}

/// Checks `host:port` or `[v6addr]:port`: the addresses of UDP, which has no Unix form here.
pub(crate) fn parse_inet_addr(text: &str) -> Result<String, String> {
    let addr = Address::inet(text).map_err(|err| err.to_string())?;
    Ok(addr.to_string())
}

/// Checks the address of `--udp` for `connect` and `bench`: it was parsed as any address, and
/// UDP has no Unix form.
pub(crate) fn udp_addr(addr: Option<&str>) -> Result<(), String> {
    match addr {
        Some(text) if matches!(text.parse(), Ok(Address::Unix(_))) => {
            Err(format!("--udp needs host:port, not a Unix socket ('{text}')"))
        }
        Some(text) if matches!(text.parse(), Ok(Address::Tls(_))) => {
            Err(format!("--udp needs host:port: TLS is not served over UDP ('{text}')"))
        }
        _ => Ok(()),
    }
}

/// A duration flag of a command without a library config: more than 0, at most
/// `smol_echo::MAX_DURATION`, as the configs' own checks say.
fn in_duration_range(flag: &str, value: Duration) -> Result<(), String> {
    smol_echo::check_duration(flag, value, Duration::from_nanos(1)).map_err(|err| err.to_string())
}

/// Lifts the soft limit on open files to the hard limit: each connection is a descriptor.
pub(crate) fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => log::debug!("open file limit raised to {:?}", limit.current),
            Err(err) => log::warn!("cannot raise the open file limit: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_every_documented_form() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["banana", "", "ms", "-1s", "1d", "inf", "NaN", "1e400", "+3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn parse_ok(args: &[&str]) -> Command {
        let argv = ["echo"].iter().chain(args).map(|s| s.to_string()).collect();
        parse(argv).expect("parses")
    }

    #[test]
    fn addresses_need_a_host_and_a_numeric_port() {
        for good in ["localhost:8007", "127.0.0.1:0", "[::1]:8007", "example.org:65535", "unix:/run/e.sock"] {
            assert_eq!(parse_addr(good).as_deref(), Ok(good));
        }
        for bad in [
            "localhost",
            "localhost:",
            ":8007",
            "localhost:http",
            "host:65536",
            "::1:8007",
            "[::1:8007",
            "[nope]:1",
            "unix:",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
        assert!(parse_inet_addr("unix:/run/e.sock").is_err());
        assert_eq!(
            parse_addr("[::1]"),
            Err("invalid address '[::1]': the port is missing, e.g. [::1]:8007".into())
        );
        assert_eq!(parse_inet_addr("[::1]:7").as_deref(), Ok("[::1]:7"));
    }

    /// The message of a usage error in `args`, from argh or from the range checks.
    fn validated(args: &[&str]) -> Result<(), String> {
        let cli = Cli::from_args(&["echo"], args).map_err(|exit| exit.output)?;
        cli.command.expect("a subcommand").validate()
    }

    #[test]
    fn every_numeric_flag_takes_its_whole_range_and_nothing_past_it() {
        let week = "604800";
        let past_week = "604800.001";
        // Before the flag; then the flag, its lowest and highest values, the values just past
        // them (none below 0 for durations that take it: -1 is not a duration), and the range
        // the message must give.
        for (command, flag, lowest, highest, below, above, range) in [
            (
                &["serve"][..],
                "--max-line",
                "3",
                "1073741824",
                Some("2"),
                "1073741825",
                "from 3 to 1073741824",
            ),
            (&["serve"], "--max-connections", "1", "1000000", Some("0"), "1000001", "from 1 to 1000000"),
            (&["serve"], "--max-per-source", "0", "1000000", None, "1000001", "from 0 to 1000000"),
            (&["serve"], "--threads", "1", "1024", Some("0"), "1025", "from 1 to 1024"),
            (&["serve"], "--idle-timeout", "0", week, None, past_week, "from 0 to 7 days"),
            (&["serve"], "--grace", "0", week, None, past_week, "from 0 to 7 days"),
            (
                &["connect"],
                "--connect-timeout",
                "1ms",
                week,
                Some("0"),
                past_week,
                "more than 0 and at most 7 days",
            ),
            (
                &["connect", "--udp"],
                "--timeout",
                "1ms",
                week,
                Some("0"),
                past_week,
                "more than 0 and at most 7 days",
            ),
            (&["bench"], "-c", "1", "1000000", Some("0"), "1000001", "from 1 to 1000000"),
            (&["bench"], "-p", "1", "65536", Some("0"), "65537", "from 1 to 65536"),
            (&["bench"], "-s", "8", "16777216", Some("7"), "16777217", "from 8 to 16777216"),
            (&["bench", "--udp"], "-s", "8", "65507", Some("7"), "65508", "from 8 to"),
            (&["bench"], "-n", "1", "18446744073709551615", Some("0"), "18446744073709551616", "-n"),
            (&["bench"], "--rate", "1", "1000000000", Some("0"), "1000000001", "from 1 to 1000000000"),
            (
                &["bench"],
                "--churn",
                "1",
                "18446744073709551615",
                Some("0"),
                "18446744073709551616",
                "--churn",
            ),
            (&["bench"], "-d", "1ms", week, Some("0"), past_week, "more than 0 and at most 7 days"),
            (&["bench"], "--timeout", "1ms", week, Some("0"), past_week, "more than 0 and at most 7 days"),
            (
                &["bench"],
                "--connect-timeout",
                "1ms",
                week,
                Some("0"),
                past_week,
                "more than 0 and at most 7 days",
            ),
        ] {
            let with =
                |value: &'static str| -> Vec<&str> { command.iter().copied().chain([flag, value]).collect() };
            for good in [lowest, highest] {
                assert_eq!(validated(&with(good)), Ok(()), "{flag} {good}");
            }
            for bad in below.into_iter().chain([above]) {
                let message = validated(&with(bad)).expect_err(bad);
                assert!(message.contains(flag) && message.contains(range), "{flag} {bad}: {message}");
            }
        }
    }

    #[test]
    fn server_and_client_are_other_names() {
        assert!(matches!(parse_ok(&["server"]), Command::Serve(_)));
        assert!(matches!(parse_ok(&["client"]), Command::Connect(_)));
    }
}
