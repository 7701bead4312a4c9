//! `echo serve --log-format json` (docs/serving.md, "JSON logs"): every stderr line is one JSON
//! object with the text line's fields, and -q and -v keep the same lines as in text.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{ECHO, ServerProcess, connect};
use rustix::process::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(5);

/// Runs `echo serve --listen 127.0.0.1:0 ARGS` through one session (two lines and the
/// sentinel) and a SIGTERM, and returns every stderr line.
fn session_log(args: &[&str], json: bool) -> Vec<String> {
    let mut command = Command::new(ECHO);
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    command.args(if json { &["--log-format", "json"][..] } else { &[] });
    // Its listening lines are read here: in JSON they are objects.
    let mut server = ServerProcess::start_command(&mut command, 0);
    let listening = server
        .wait_for_line("listening on ", LIMIT)
        .unwrap_or_else(|| panic!("no listening line in {:#?}", server.log()));
    let addr = match json {
        true => serde_json::from_str::<Value>(&listening).unwrap()["addr"].as_str().unwrap().to_string(),
        false => listening.trim_start_matches("listening on ").to_string(),
    };
    let mut client = connect(addr.parse().unwrap());
    client.write_all(b"a\r\nbb\r\n.\r\n").unwrap();
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed, b"a\r\nbb\r\n");
    if !args.contains(&"-q") {
        server
            .wait_for_line("close ", LIMIT)
            .unwrap_or_else(|| panic!("no close line in {:#?}", server.log()));
    }
    server.signal(Signal::TERM);
    let exited = server.wait_exit(LIMIT);
    assert!(exited.is_some(), "still running after SIGTERM: {:#?}", server.log());
    // The last line; once it is read, the log is whole.
    server.summary();
    server.log()
}

/// Each line as a JSON object, checked for the members every line has.
fn parsed(log: &[String]) -> Vec<Value> {
    log.iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
            let ts = value["ts"].as_str().unwrap_or_else(|| panic!("no ts: {line}"));
            // 2026-03-01T12:34:56.789Z
            let shape: String = ts.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect();
            assert_eq!(shape, "0000-00-00T00:00:00.000Z", "{line}");
            for key in ["level", "event", "msg"] {
                assert!(value[key].is_string(), "no {key}: {line}");
            }
            value
        })
        .collect()
}

fn events(values: &[Value]) -> Vec<&str> {
    values.iter().map(|value| value["event"].as_str().unwrap()).collect()
}

/// Digits masked, so that two runs' lines compare whatever their ports and durations.
fn masked(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        match c.is_ascii_digit() {
            true if out.ends_with('#') => {}
            true => out.push('#'),
            false => out.push(c),
        }
    }
    out
}

#[test]
fn every_json_line_parses_and_carries_the_text_line_s_fields() {
    // An address that cannot be bound here gives a warning beside the listening line.
    let log = session_log(&["--listen", "192.0.2.1:1", "--metrics", "127.0.0.1:0"], true);
    let values = parsed(&log);
    assert_eq!(
        events(&values),
        ["warn", "listening", "metrics", "open", "close", "signal", "summary"],
        "{log:#?}"
    );
    let by_event = |event: &str| values.iter().find(|value| value["event"] == event).unwrap();
    let warn = by_event("warn");
    assert_eq!(warn["level"], "warn");
    assert!(warn["msg"].as_str().unwrap().contains("192.0.2.1:1"), "{warn}");
    assert!(by_event("metrics")["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));

    let close = by_event("close");
    assert_eq!((close["lines"].as_u64(), close["bytes"].as_u64()), (Some(2), Some(7)), "{close}");
    assert_eq!(close["reason"], "sentinel");
    assert_eq!(close["peer"], by_event("open")["peer"]);
    let duration_s = close["duration_s"].as_f64().unwrap_or_else(|| panic!("duration_s: {close}"));
    // The same fields as the text line, which is its msg.
    let text = format!(
        "close {} lines=2 bytes=7 duration={duration_s:.3}s reason=sentinel",
        close["peer"].as_str().unwrap()
    );
    assert_eq!(close["msg"], text.as_str());

    let summary = by_event("summary");
    assert_eq!(summary["connections"], 1);
    assert_eq!(summary["lines"], 2);
    assert_eq!(summary["bytes"], 7);
    assert_eq!(summary["unfinished"], 0);
    assert_eq!(summary["refused"], 0);
    assert_eq!(summary["msg"], "shutdown: 1 connections, 2 lines, 7 bytes echoed");
    assert_eq!(by_event("signal")["signal"], "SIGTERM");
}

#[test]
fn quiet_and_verbose_keep_the_same_lines_in_json_as_in_text() {
    for filter in [&["-q"][..], &[], &["-v"]] {
        let text = session_log(filter, false);
        let json = session_log(filter, true);
        let values = parsed(&json);
        let msgs: Vec<String> = values.iter().map(|value| masked(value["msg"].as_str().unwrap())).collect();
        // The text's level prefixes are the json's levels.
        let unprefixed: Vec<String> = text
            .iter()
            .map(|line| masked(line.trim_start_matches("debug: ").trim_start_matches("warning: ")))
            .collect();
        assert_eq!(msgs, unprefixed, "{filter:?}");
        let events = events(&values);
        match filter {
            ["-q"] => assert_eq!(events, ["listening", "summary"]),
            [] => assert_eq!(events, ["listening", "open", "close", "signal", "summary"]),
            _ => assert!(events.contains(&"debug") && events.contains(&"close"), "{events:?}"),
        }
    }
}
