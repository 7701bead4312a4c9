//! The per-connection line protocol (docs/protocol.md, "The line protocol", rules 1-8), proved
//! on in-memory streams: every case runs with the whole input in one read, one byte per read and
//! random cuttings.

mod common;

use std::future::{self, Future};
use std::io;
use std::time::{Duration, Instant};

use async_io::Timer;
use common::mem::{Chunking, Ending, MemStream, Sink, Step};
use common::within;
use smol_echo::{CloseReason, EchoConfig, Mode, Session, echo};

/// Longer than any case should take; a hang fails the test instead of stalling the suite.
const LIMIT: Duration = Duration::from_secs(10);

/// What a session did to its stream.
#[derive(Debug)]
struct Outcome {
    session: Session,
    stream: MemStream,
    elapsed: Duration,
}

/// A config with no timeouts: cases that must end do so on their own, or `LIMIT` fails them.
fn untimed(max_line: usize) -> EchoConfig {
    EchoConfig { idle_timeout: None, max_line, grace: Duration::from_secs(5) }
}

fn idle(timeout: Duration) -> EchoConfig {
    EchoConfig { idle_timeout: Some(timeout), ..untimed(1024) }
}

fn run_with(mut stream: MemStream, config: &EchoConfig, shutdown: impl Future<Output = ()>) -> Outcome {
    let start = Instant::now();
    let session = within(LIMIT, echo(&mut stream, config, shutdown));
    Outcome { session, stream, elapsed: start.elapsed() }
}

fn run(stream: MemStream, config: &EchoConfig) -> Outcome {
    run_with(stream, config, future::pending())
}

/// Runs `input` under every chunking and checks the echo, the counters and the reason.
fn check(input: &[u8], config: &EchoConfig, ending: Ending, echoed: &[u8], lines: u64, reason: CloseReason) {
    for chunking in Chunking::all() {
        let out = run(MemStream::chunked(input, &chunking, ending), config);
        let context = format!("{chunking:?}, input {:?}", String::from_utf8_lossy(input));
        assert_eq!(
            String::from_utf8_lossy(&out.stream.written),
            String::from_utf8_lossy(echoed),
            "{context}"
        );
        assert_eq!(out.stream.written, echoed, "{context}");
        let want = Session { lines, bytes: echoed.len() as u64, reason: reason.clone() };
        assert_eq!(out.session, want, "{context}");
        // Every end but a failed connection flushes and half-closes.
        if !matches!(reason, CloseReason::Reset | CloseReason::Error(_)) {
            assert!(out.stream.closed, "not closed: {context}");
        }
    }
}

fn lines(count: usize) -> Vec<u8> {
    (0..count).flat_map(|i| format!("line {i}\r\n").into_bytes()).collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// Rule 1: line ends, opaque bytes.

#[test]
fn cr_and_lf_in_different_reads_end_a_line() {
    check(b"ab\r\ncd\r\n\r\n", &untimed(64), Ending::Eof, b"ab\r\ncd\r\n\r\n", 3, CloseReason::Eof);
    let stream = MemStream::new(vec![b"ab\r".to_vec(), b"\n\r".to_vec(), b"\n".to_vec()], Ending::Eof);
    let out = run(stream, &untimed(64));
    assert_eq!(out.stream.written, b"ab\r\n\r\n");
    assert_eq!(out.session, Session { lines: 2, bytes: 6, reason: CloseReason::Eof });
}

#[test]
fn bare_lf_and_bare_cr_are_part_of_the_line() {
    let input = b"a\nb\rc\r\n\n\r\n\r\r\n\n\n\r\r\r\n";
    check(input, &untimed(64), Ending::Eof, input, 4, CloseReason::Eof);
    // With no CR LF at all, nothing is a line until end of input.
    check(b"a\nb\n\rc\r", &untimed(64), Ending::Eof, b"a\nb\n\rc\r", 1, CloseReason::Eof);
}

#[test]
fn any_byte_value_is_echoed_untouched() {
    let input = cat(&[b"\0\xff\xfe\x80\0\r\n", &(0..=255u8).collect::<Vec<_>>(), b"\r\n"]);
    check(&input, &untimed(1024), Ending::Eof, &input, 2, CloseReason::Eof);
}

// Rules 2 and 3: echo, sentinel.

#[test]
fn sentinel_ends_the_session_and_what_follows_is_ignored() {
    // The input never ends (Silent, no timeout): the sentinel alone must end the session.
    let input = b"one\r\ntwo\r\n.\r\nthree\r\n.\r\n";
    check(input, &untimed(64), Ending::Silent, b"one\r\ntwo\r\n", 2, CloseReason::Sentinel);
    check(b".\r\nafter\r\n", &untimed(64), Ending::Silent, b"", 0, CloseReason::Sentinel);
}

#[test]
fn near_sentinels_are_ordinary_lines() {
    for near in [&b"..\r\n"[..], b" .\r\n", b".\n\r\n", b". \r\n", b".\r\r\n", b"\n.\r\n"] {
        let input = cat(&[near, b"x\r\n"]);
        check(&input, &untimed(64), Ending::Eof, &input, 2, CloseReason::Eof);
    }
    // `.` and `.\r` at end of input are a tail, not the sentinel.
    check(b"a\r\n.", &untimed(64), Ending::Eof, b"a\r\n.", 2, CloseReason::Eof);
    check(b"a\r\n.\r", &untimed(64), Ending::Eof, b"a\r\n.\r", 2, CloseReason::Eof);
}

// Rule 6: maximum line length.

/// A line of `len` bytes, CR LF included.
fn line_of(len: usize) -> Vec<u8> {
    cat(&[&vec![b'x'; len - 2], b"\r\n"])
}

#[test]
fn a_line_of_exactly_the_maximum_is_echoed_one_byte_more_closes() {
    for max in [10, 65536, 100_000] {
        let exact = line_of(max);
        let over = line_of(max + 1);
        let config = untimed(max);
        check(
            &cat(&[b"ok\r\n", &exact]),
            &config,
            Ending::Eof,
            &cat(&[b"ok\r\n", &exact]),
            2,
            CloseReason::Eof,
        );
        // Silent input: the session must not wait for more.
        let input = cat(&[b"ok\r\n", &exact, &over, b"after\r\n"]);
        check(&input, &config, Ending::Silent, &cat(&[b"ok\r\n", &exact]), 2, CloseReason::LineTooLong);
    }
}

#[test]
fn a_partial_line_past_the_maximum_closes_without_waiting_for_crlf() {
    let input = cat(&[b"ok\r\n", &[b'y'; 11]]);
    check(&input, &untimed(10), Ending::Silent, b"ok\r\n", 1, CloseReason::LineTooLong);
    // A CR as the byte past the limit does not save it either.
    let input = cat(&[b"ok\r\n", &[b'y'; 10], b"\r"]);
    check(&input, &untimed(10), Ending::Silent, b"ok\r\n", 1, CloseReason::LineTooLong);
    // A partial line of exactly the maximum may still end: at end of input it is the tail.
    let input = cat(&[b"ok\r\n", &[b'y'; 10]]);
    check(&input, &untimed(10), Ending::Eof, &input, 2, CloseReason::Eof);
}

// Rule 7: end of input.

#[test]
fn end_of_input_echoes_the_unterminated_tail() {
    check(b"a\r\nbc", &untimed(64), Ending::Eof, b"a\r\nbc", 2, CloseReason::Eof);
    check(b"a\r\nbc\r", &untimed(64), Ending::Eof, b"a\r\nbc\r", 2, CloseReason::Eof);
    check(b"a\r\n", &untimed(64), Ending::Eof, b"a\r\n", 1, CloseReason::Eof);
    check(b"", &untimed(64), Ending::Eof, b"", 0, CloseReason::Eof);
}

#[test]
fn a_long_stream_crosses_the_read_buffer_many_times() {
    // About 170 KiB of lines of varied lengths: reads end mid-line, so the session keeps a partial
    // line across reads, moves it to the front of its buffer and goes on.
    let input: Vec<u8> = (0..10_000)
        .flat_map(|i| [&b"w".repeat(i % 31)[..], format!("{i}\r\n").as_bytes()].concat())
        .collect();
    check(&input, &untimed(64), Ending::Eof, &input, 10_000, CloseReason::Eof);
    let out =
        run(MemStream::chunked(&input, &Chunking::Sizes(vec![65535, 3, 70000]), Ending::Eof), &untimed(64));
    assert_eq!(out.stream.written, input);
}

// Rule 4: idle timeout.

#[test]
fn a_quiet_peer_is_closed_after_the_idle_timeout_without_its_tail() {
    let timeout = Duration::from_millis(100);
    for chunking in Chunking::all() {
        let out = run(MemStream::chunked(b"a\r\nb", &chunking, Ending::Silent), &idle(timeout));
        assert_eq!(out.stream.written, b"a\r\n", "{chunking:?}");
        assert_eq!(out.session, Session { lines: 1, bytes: 3, reason: CloseReason::IdleTimeout });
        assert!(out.elapsed >= timeout, "{:?}", out.elapsed);
        assert!(out.elapsed < timeout * 2, "{:?}", out.elapsed);
        assert!(out.stream.closed);
    }
}

#[test]
fn each_complete_line_restarts_the_idle_timeout() {
    let timeout = Duration::from_millis(100);
    let gap = Duration::from_millis(60);
    let steps = (0..4).flat_map(|_| [Step::Data(b"hi\r\n".to_vec()), Step::Pause(gap)]).collect();
    let out = run(MemStream::scripted(steps, Ending::Silent), &idle(timeout));
    assert_eq!(out.stream.written, b"hi\r\n".repeat(4));
    assert_eq!(out.session.reason, CloseReason::IdleTimeout);
    // The last line came after 3 gaps; the timeout counts from it.
    assert!(out.elapsed >= gap * 3 + timeout, "{:?}", out.elapsed);
}

#[test]
fn a_drip_of_bytes_without_a_line_end_does_not_hold_the_connection() {
    let timeout = Duration::from_millis(150);
    let drip = Duration::from_millis(30);
    // 20 drips would take 600 ms; the timeout must cut them at 150 ms.
    let steps = (0..20).flat_map(|_| [Step::Data(b"z".to_vec()), Step::Pause(drip)]).collect();
    let out = run(MemStream::scripted(steps, Ending::Silent), &idle(timeout));
    assert_eq!(out.session, Session { lines: 0, bytes: 0, reason: CloseReason::IdleTimeout });
    assert!(out.stream.written.is_empty());
    assert!(out.elapsed >= timeout, "{:?}", out.elapsed);
    assert!(out.elapsed < timeout * 2, "{:?}", out.elapsed);
}

// Rule 5: write timeout, bounded memory.

#[test]
fn a_peer_that_never_reads_gets_the_write_timeout() {
    let timeout = Duration::from_millis(100);
    let chunks = vec![b"a\r\n".to_vec(); 50];
    let out = run(MemStream::new(chunks, Ending::Silent).with_sink(Sink::Stuck), &idle(timeout));
    assert_eq!(out.session, Session { lines: 0, bytes: 0, reason: CloseReason::WriteTimeout });
    assert!(out.elapsed >= timeout, "{:?}", out.elapsed);
    assert!(out.elapsed < timeout * 2, "{:?}", out.elapsed);
    // While an echo is owed the session reads no more: memory stays bounded.
    assert_eq!(out.stream.read, 3);
}

#[test]
fn a_peer_that_reads_a_trickle_gets_the_write_timeout() {
    let timeout = Duration::from_millis(150);
    // 200 bytes at one per 10 ms would take 2 s.
    let input = line_of(200);
    let stream = MemStream::new(vec![input], Ending::Eof).with_sink(Sink::Trickle(Duration::from_millis(10)));
    let out = run(stream, &EchoConfig { idle_timeout: Some(timeout), ..untimed(1024) });
    assert_eq!(out.session.reason, CloseReason::WriteTimeout);
    assert!(out.elapsed >= timeout, "{:?}", out.elapsed);
    assert!(out.elapsed < timeout * 2, "{:?}", out.elapsed);
    assert!(!out.stream.written.is_empty() && out.stream.written.len() < 50, "{}", out.stream.written.len());
}

#[test]
fn a_slow_reader_that_keeps_up_gets_everything() {
    let input = cat(&[&lines(100), b"tail"]);
    for sink in [Sink::AtMost(1), Sink::AtMost(7), Sink::Slow(1), Sink::Slow(64)] {
        for chunking in Chunking::all() {
            let stream = MemStream::chunked(&input, &chunking, Ending::Eof).with_sink(sink);
            let out = run(stream, &idle(Duration::from_secs(5)));
            assert_eq!(out.stream.written, input, "{sink:?} {chunking:?}");
            assert_eq!(
                out.session,
                Session { lines: 101, bytes: input.len() as u64, reason: CloseReason::Eof }
            );
        }
    }
}

// Rule 8: errors.

#[test]
fn a_reset_ends_the_session_with_what_was_echoed() {
    let reset = Ending::Error(io::ErrorKind::ConnectionReset);
    check(b"a\r\nb\r\npart", &untimed(64), reset, b"a\r\nb\r\n", 2, CloseReason::Reset);
    let other = Ending::Error(io::ErrorKind::Other);
    check(b"a\r\npart", &untimed(64), other, b"a\r\n", 1, CloseReason::Error(io::ErrorKind::Other));
}

// Batching: complete lines already read go out in one write.

#[test]
fn lines_read_together_are_echoed_with_one_write() {
    let input = lines(100);
    let out = run(MemStream::new(vec![input.clone()], Ending::Eof), &untimed(64));
    assert_eq!(out.stream.written, input);
    assert_eq!(out.stream.writes, 1);
    assert_eq!(out.session, Session { lines: 100, bytes: input.len() as u64, reason: CloseReason::Eof });
}

#[test]
fn a_sentinel_inside_a_batch_cuts_it() {
    let before = lines(50);
    let input = cat(&[&before, b".\r\n", &lines(49)]);
    let out = run(MemStream::new(vec![input], Ending::Silent), &untimed(64));
    assert_eq!(out.stream.written, before);
    assert_eq!(out.stream.writes, 1);
    assert_eq!(out.session, Session { lines: 50, bytes: before.len() as u64, reason: CloseReason::Sentinel });
}

#[test]
fn a_partial_line_waits_for_its_end_and_goes_out_with_the_next_batch() {
    let chunks = vec![b"a\r\nb\r\nc".to_vec(), b"c\r\nd\r\n".to_vec()];
    let out = run(MemStream::new(chunks, Ending::Eof), &untimed(64));
    assert_eq!(out.stream.written, b"a\r\nb\r\ncc\r\nd\r\n");
    assert_eq!(out.stream.writes, 2);
}

// Shutdown.

fn grace(grace: Duration) -> EchoConfig {
    EchoConfig { grace, ..untimed(64) }
}

#[test]
fn shutdown_echoes_the_complete_lines_that_are_readable_then_closes() {
    // The first read is pending, so the session sees the shutdown first; then three reads
    // are ready at once, the last one with a partial line.
    let steps = vec![
        Step::Yield,
        Step::Data(b"a\r\n".to_vec()),
        Step::Data(b"b\r\nc".to_vec()),
        Step::Data(b"c\r\npart".to_vec()),
    ];
    let out = run_with(MemStream::scripted(steps, Ending::Silent), &grace(Duration::from_secs(5)), async {});
    assert_eq!(out.stream.written, b"a\r\nb\r\ncc\r\n");
    assert_eq!(out.session, Session { lines: 3, bytes: 10, reason: CloseReason::Shutdown });
    assert!(out.stream.closed);
    // It reads what is readable, without waiting: not for the grace period.
    assert!(out.elapsed < Duration::from_secs(1), "{:?}", out.elapsed);
}

#[test]
fn after_a_shutdown_either_mode_reads_on_until_the_peer_pauses_so_that_no_reset_drops_its_echo() {
    // The peer sends on after the session has ended, in bursts closer together than the quiet
    // pause a lingering session waits for. Closing with those bytes unread would make the kernel
    // reset the connection and throw away the echo still in the send buffer.
    let after: Vec<Step> =
        (0..5).flat_map(|_| [Step::Pause(Duration::from_millis(30)), Step::Data(b"more".to_vec())]).collect();
    for mode in [Mode::Line, Mode::Raw] {
        let steps = [vec![Step::Yield, Step::Data(b"ab\r\n".to_vec())], after.clone()].concat();
        let mut stream = MemStream::scripted(steps, Ending::Silent);
        let session = within(LIMIT, mode.echo(&mut stream, &grace(Duration::from_secs(5)), async {}));
        assert_eq!(
            session,
            Session { lines: u64::from(mode == Mode::Line), bytes: 4, reason: CloseReason::Shutdown }
        );
        assert_eq!(stream.written, b"ab\r\n", "{mode:?}");
        assert_eq!(stream.read, 4 + 5 * 4, "{mode:?}: closed with the peer's bytes unread");
        assert!(stream.closed, "{mode:?}");
    }
}

#[test]
fn shutdown_does_not_wait_for_lines_that_are_not_readable_yet() {
    let steps = vec![Step::Yield, Step::Data(b"a\r\n".to_vec()), Step::Pause(Duration::from_secs(2))];
    let stream = MemStream::scripted(steps, Ending::Eof);
    let out = run_with(stream, &grace(Duration::from_secs(5)), async {});
    assert_eq!(out.stream.written, b"a\r\n");
    assert_eq!(out.session.reason, CloseReason::Shutdown);
    assert!(out.elapsed < Duration::from_secs(1), "{:?}", out.elapsed);
}

#[test]
fn shutdown_with_zero_grace_ends_at_once() {
    let steps = vec![Step::Yield, Step::Data(b"a\r\nb\r\n".to_vec())];
    let out = run_with(MemStream::scripted(steps, Ending::Silent), &grace(Duration::ZERO), async {});
    assert_eq!(out.session, Session { lines: 0, bytes: 0, reason: CloseReason::Shutdown });
    assert!(out.stream.written.is_empty());
}

#[test]
fn shutdown_while_waiting_for_input_ends_the_session() {
    let steps = vec![Step::Data(b"a\r\nb".to_vec())];
    let shutdown = async {
        Timer::after(Duration::from_millis(50)).await;
    };
    let out = run_with(MemStream::scripted(steps, Ending::Silent), &grace(Duration::from_secs(5)), shutdown);
    assert_eq!(out.stream.written, b"a\r\n");
    assert_eq!(out.session, Session { lines: 1, bytes: 3, reason: CloseReason::Shutdown });
    assert!(out.elapsed >= Duration::from_millis(50) && out.elapsed < Duration::from_secs(1));
}

#[test]
fn shutdown_during_a_blocked_write_ends_within_the_grace_period() {
    let grace_period = Duration::from_millis(100);
    let stream = MemStream::new(vec![b"a\r\n".to_vec()], Ending::Silent).with_sink(Sink::Stuck);
    let config = EchoConfig { idle_timeout: Some(Duration::from_secs(5)), ..grace(grace_period) };
    let shutdown = async {
        Timer::after(Duration::from_millis(50)).await;
    };
    let out = run_with(stream, &config, shutdown);
    assert_eq!(out.session.reason, CloseReason::Shutdown);
    assert!(out.elapsed >= Duration::from_millis(150), "{:?}", out.elapsed);
    assert!(out.elapsed < Duration::from_millis(400), "{:?}", out.elapsed);
}

/// A flood of reads that are never pending, long enough (seconds) that a session which only
/// looks at its clocks when a read is pending visibly overstays; finite so that it cannot hang.
fn flood() -> Step {
    Step::Flood(b"flood\r\n".to_vec(), 5_000_000)
}

#[test]
fn shutdown_with_zero_grace_ends_at_once_even_when_input_never_pauses() {
    // `--grace 0` must close at once, dropping what is not yet echoed, even when the peer keeps
    // the read side ready.
    let out = run_with(MemStream::scripted(vec![flood()], Ending::Eof), &grace(Duration::ZERO), async {});
    assert_eq!(out.session.reason, CloseReason::Shutdown);
    assert!(out.session.lines < 100, "echoed {} lines after shutdown", out.session.lines);
    assert!(out.elapsed < Duration::from_millis(500), "ended after {:?}", out.elapsed);
}

#[test]
fn a_peer_that_keeps_sending_cannot_hold_an_ending_session_open() {
    // After the sentinel or an over-long line the session may read and discard what follows for
    // a while, but not for as long as the peer goes on.
    let timeout = Duration::from_millis(100);
    let too_long = cat(&[b"ok\r\n", &[b'y'; 100]]);
    for (first, reason) in
        [(&b"ok\r\n.\r\n"[..], CloseReason::Sentinel), (&too_long[..], CloseReason::LineTooLong)]
    {
        let steps = vec![Step::Data(first.to_vec()), flood()];
        let out = run(MemStream::scripted(steps, Ending::Eof), &EchoConfig { max_line: 64, ..idle(timeout) });
        assert_eq!(out.session, Session { lines: 1, bytes: 4, reason: reason.clone() });
        assert_eq!(out.stream.written, b"ok\r\n");
        assert!(out.elapsed < timeout * 5, "{reason:?}: ended after {:?}", out.elapsed);
    }
}
