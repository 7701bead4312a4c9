//! Property test: the real session against the reference model (tests/common/model.rs) on
//! random inputs, biased toward the bytes and lengths where the protocol has edges, cut into
//! random reads and written to readers of every speed.

mod common;
#[path = "common/model.rs"]
mod model;

use std::io;
use std::time::Duration;

use common::mem::{Chunking, Ending, MemStream, Sink};
use common::within;
use model::{End, Expected, expected};
use proptest::prelude::*;
use smol_echo::{CloseReason, EchoConfig, Session, echo};

/// One line of input: a body of bytes where the protocol has edges (or a run that brings the
/// line near the maximum length), mostly ended by CR LF; sometimes the sentinel.
fn line(max_line: usize) -> impl Strategy<Value = Vec<u8>> {
    let edge = prop::sample::select(vec![b'\r', b'\n', b'.', 0, 0xFF, b' ', b'a']);
    let byte = prop_oneof![4 => edge, 1 => any::<u8>()];
    let body = prop_oneof![
        4 => prop::collection::vec(byte, 0..6),
        // With CR LF, a line of max_line - 1 to max_line + 1 bytes.
        1 => (max_line.saturating_sub(3)..=max_line.saturating_sub(1)).prop_map(|n| vec![b'x'; n]),
    ];
    let end = prop_oneof![8 => Just(&b"\r\n"[..]), 1 => Just(&b""[..]), 1 => Just(&b"\r"[..])];
    prop_oneof![
        12 => (body, end).prop_map(|(body, end)| [&body[..], end].concat()),
        1 => Just(b".\r\n".to_vec()),
    ]
}

/// How a case runs: how the input ends, how the peer reads, and the session's config.
#[derive(Debug, Clone)]
struct Peer {
    ending: Ending,
    sink: Sink,
    /// Whether each read is preceded by one that is pending.
    yielding: bool,
    idle_timeout: Option<Duration>,
}

fn peer() -> impl Strategy<Value = Peer> {
    let sink =
        prop_oneof![Just(Sink::All), (1..6usize).prop_map(Sink::AtMost), (1..6usize).prop_map(Sink::Slow)];
    let ending = prop_oneof![
        4 => Just(Ending::Eof),
        1 => Just(Ending::Error(io::ErrorKind::ConnectionReset)),
        1 => Just(Ending::Error(io::ErrorKind::Other)),
    ];
    // Timing cannot change these outcomes: nothing waits on a clock.
    let untimed = (ending, sink, any::<bool>()).prop_map(|(ending, sink, yielding)| Peer {
        ending,
        sink,
        yielding,
        idle_timeout: None,
    });
    // A quiet peer needs the idle timeout. Reads and writes are never pending before the input
    // runs out, and the timer only races pending ones, so even 1 ms is deterministic.
    let quiet = prop_oneof![Just(Sink::All), (1..6usize).prop_map(Sink::AtMost)].prop_map(|sink| Peer {
        ending: Ending::Silent,
        sink,
        yielding: false,
        idle_timeout: Some(Duration::from_millis(1)),
    });
    prop_oneof![5 => untimed, 1 => quiet]
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        1 => Just(Chunking::Whole),
        1 => Just(Chunking::Bytes),
        4 => prop::collection::vec(1..24usize, 1..6).prop_map(Chunking::Sizes),
    ]
}

fn case() -> impl Strategy<Value = (usize, Vec<u8>, Chunking, Peer)> {
    prop_oneof![6 => 8usize..=40, 1 => 1usize..8].prop_flat_map(|max_line| {
        let input = prop::collection::vec(line(max_line), 0..12).prop_map(|lines| lines.concat());
        (Just(max_line), input, chunking(), peer())
    })
}

fn model_end(ending: Ending) -> End {
    match ending {
        Ending::Eof => End::Eof,
        Ending::Silent => End::Silent,
        Ending::Error(kind) => End::Error(kind),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_session_does_what_the_model_says((max_line, input, chunking, peer) in case()) {
        let want = expected(&input, max_line, model_end(peer.ending));
        let mut stream = MemStream::chunked(&input, &chunking, peer.ending).with_sink(peer.sink);
        if peer.yielding {
            stream = stream.yielding();
        }
        let config = EchoConfig { idle_timeout: peer.idle_timeout, max_line, grace: Duration::ZERO };
        let session = within(Duration::from_secs(10), echo(&mut stream, &config, std::future::pending()));
        prop_assert_eq!(&stream.written, &want.output);
        prop_assert_eq!(session, Session { lines: want.lines, bytes: want.output.len() as u64, reason: want.reason });
    }
}

/// The model itself, on cases read straight from docs/protocol.md.
#[test]
fn the_model_follows_the_spec() {
    let case = |input: &[u8], end, output: &[u8], lines, reason| {
        assert_eq!(
            expected(input, 10, end),
            Expected { output: output.to_vec(), lines, reason },
            "{input:?}"
        );
    };
    case(b"a\r\nb\nc\rd\r\n", End::Eof, b"a\r\nb\nc\rd\r\n", 2, CloseReason::Eof);
    case(b"a\r\n.\r\nb\r\n", End::Eof, b"a\r\n", 1, CloseReason::Sentinel);
    case(b"a\r\n.\n\r\n", End::Eof, b"a\r\n.\n\r\n", 2, CloseReason::Eof);
    case(b"12345678\r\n", End::Eof, b"12345678\r\n", 1, CloseReason::Eof);
    case(b"a\r\n123456789\r\n", End::Eof, b"a\r\n", 1, CloseReason::LineTooLong);
    case(b"a\r\n12345678901", End::Silent, b"a\r\n", 1, CloseReason::LineTooLong);
    case(b"a\r\nb\r", End::Eof, b"a\r\nb\r", 2, CloseReason::Eof);
    case(b"a\r\nb\r", End::Silent, b"a\r\n", 1, CloseReason::IdleTimeout);
    case(b"a\r\nb", End::Error(io::ErrorKind::ConnectionReset), b"a\r\n", 1, CloseReason::Reset);
}
