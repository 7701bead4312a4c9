//! Fuzzes one echo session against the reference model of the line protocol.
//!
//! Input layout: byte 0 picks the maximum line length (1 to 48), byte 1 how the input ends and how
//! the peer reads, bytes 2 to 4 the sizes of the reads (repeated), the rest is what the peer sends.
#![no_main]

#[allow(dead_code)] // the fuzz target uses only part of the test stream
#[path = "../../tests/common/mem.rs"]
mod mem;
#[path = "../../tests/common/model.rs"]
mod model;

use std::io;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mem::{Chunking, Ending, MemStream, Sink};
use model::{End, expected};
use smol_echo::{EchoConfig, Session, echo};

fuzz_target!(|data: &[u8]| {
    let [max_line, flags, s1, s2, s3, input @ ..] = data else { return };
    let max_line = 1 + usize::from(*max_line % 48);
    let k = 1 + usize::from(flags >> 6);
    let (ending, end) = match flags & 3 {
        0 | 1 => (Ending::Eof, End::Eof),
        2 if flags & 0x20 == 0 => {
            let kind = io::ErrorKind::ConnectionReset;
            (Ending::Error(kind), End::Error(kind))
        }
        2 => (Ending::Error(io::ErrorKind::Other), End::Error(io::ErrorKind::Other)),
        _ => (Ending::Silent, End::Silent),
    };
    let quiet = ending == Ending::Silent;
    // A quiet peer needs the idle timeout, which only races pending reads and writes: with none
    // pending before the input runs out, even 1 µs gives the same outcome every time.
    let sink = match (flags >> 2) & 3 {
        1 => Sink::AtMost(k),
        2 if !quiet => Sink::Slow(k),
        _ => Sink::All,
    };
    let chunking = Chunking::Sizes(vec![usize::from(*s1), usize::from(*s2), usize::from(*s3)]);
    let mut stream = MemStream::chunked(input, &chunking, ending).with_sink(sink);
    if flags & 0x10 != 0 && !quiet {
        stream = stream.yielding();
    }
    let config =
        EchoConfig { idle_timeout: quiet.then(|| Duration::from_micros(1)), max_line, grace: Duration::ZERO };

    let session = async_io::block_on(echo(&mut stream, &config, std::future::pending()));

    let want = expected(input, max_line, end);
    assert_eq!(stream.written, want.output, "max_line {max_line}, {chunking:?}, {ending:?}, {sink:?}");
    assert_eq!(session, Session { lines: want.lines, bytes: want.output.len() as u64, reason: want.reason });
    assert!(stream.written.len() <= input.len());
});
