//! An in-memory stream for protocol tests: scripted reads, recorded writes.
//!
//! The read side plays a list of [`Step`]s, one per read call (a chunk bigger than the reader's
//! buffer is delivered over several calls), then an [`Ending`]. The write side records every byte
//! and takes them as its [`Sink`] allows, so a test can play a fast, slow, trickling or stuck
//! reader. Pass `&mut stream` to the code under test and inspect the stream afterwards.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{FutureExt, ready};

/// What the read side does after its last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every later read returns 0: the peer half-closed.
    Eof,
    /// Every later read is pending forever and never wakes: the peer went quiet.
    Silent,
    /// Every later read fails with this kind of error.
    Error(io::ErrorKind),
}

/// What one read call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Delivers these bytes (over several reads if the reader's buffer is smaller).
    Data(Vec<u8>),
    /// Is pending for this long, then goes on; a timer wakes the reader.
    Pause(Duration),
    /// Is pending once and wakes the reader at once, as a socket does between two segments.
    Yield,
    /// Delivers the same chunk to this many reads in a row, never pending: a peer that floods.
    Flood(Vec<u8>, usize),
}

/// How input bytes are cut into reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunking {
    /// Everything in one read.
    Whole,
    /// One byte per read.
    Bytes,
    /// Reads of 1 to 32 bytes, sizes drawn from this seed.
    Random(u64),
    /// Reads of these sizes, repeated as often as needed; a zero counts as one.
    Sizes(Vec<usize>),
}

impl Chunking {
    /// The whole input, one read, one byte at a time, and three random cuttings.
    pub fn all() -> [Chunking; 5] {
        [Chunking::Whole, Chunking::Bytes, Chunking::Random(1), Chunking::Random(2), Chunking::Random(3)]
    }

    /// Cuts `input` into chunks, one per read.
    pub fn split(&self, input: &[u8]) -> Vec<Vec<u8>> {
        let mut rng = SplitMix(match self {
            Chunking::Random(seed) => *seed,
            _ => 0,
        });
        let mut sizes = (0..).map(|i| match self {
            Chunking::Whole => input.len().max(1),
            Chunking::Bytes => 1,
            Chunking::Random(_) => 1 + (rng.next() % 32) as usize,
            Chunking::Sizes(sizes) if sizes.is_empty() => input.len().max(1),
            Chunking::Sizes(sizes) => sizes[i % sizes.len()].max(1),
        });
        let mut chunks = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizes.next().unwrap().min(rest.len()));
            chunks.push(chunk.to_vec());
            rest = tail;
        }
        chunks
    }
}

/// How the write side takes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Everything at once.
    All,
    /// At most this many bytes per write call, never pending.
    AtMost(usize),
    /// Every other write call is pending (and wakes the writer at once); the others take at most
    /// this many bytes.
    Slow(usize),
    /// One byte per interval: a peer that reads a trickle.
    Trickle(Duration),
    /// Pending forever, never waking: a peer that does not read.
    Stuck,
}

/// A duplex stream over scripted input; see the module docs.
#[derive(Debug)]
pub struct MemStream {
    steps: VecDeque<Step>,
    ending: Ending,
    sink: Sink,
    read_timer: Option<Timer>,
    write_timer: Option<Timer>,
    /// For [`Sink::Slow`]: whether the next write call takes bytes.
    slow_turn: bool,
    /// Bytes delivered to the reader so far.
    pub read: usize,
    /// Everything written, in order.
    pub written: Vec<u8>,
    /// Write calls that took at least one byte.
    pub writes: usize,
    /// Whether `poll_close` was called.
    pub closed: bool,
}

impl MemStream {
    /// A stream that delivers `chunks`, one per read, then `ending`; it takes all writes.
    pub fn new(chunks: Vec<Vec<u8>>, ending: Ending) -> MemStream {
        MemStream::scripted(chunks.into_iter().map(Step::Data).collect(), ending)
    }

    /// A stream that delivers `input` cut by `chunking`, then `ending`.
    pub fn chunked(input: &[u8], chunking: &Chunking, ending: Ending) -> MemStream {
        MemStream::new(chunking.split(input), ending)
    }

    /// A stream that plays `steps`, then `ending`; it takes all writes.
    pub fn scripted(steps: Vec<Step>, ending: Ending) -> MemStream {
        MemStream {
            steps: steps.into(),
            ending,
            sink: Sink::All,
            read_timer: None,
            write_timer: None,
            slow_turn: false,
            read: 0,
            written: Vec::new(),
            writes: 0,
            closed: false,
        }
    }

    /// The same stream with another write side.
    pub fn with_sink(self, sink: Sink) -> MemStream {
        MemStream { sink, ..self }
    }

    /// The same stream, pending once (and waking at once) before each step.
    pub fn yielding(mut self) -> MemStream {
        self.steps = self.steps.into_iter().flat_map(|step| [Step::Yield, step]).collect();
        self
    }
}

impl AsyncRead for MemStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match this.steps.front_mut() {
                Some(Step::Data(data)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    data.drain(..n);
                    if data.is_empty() {
                        this.steps.pop_front();
                    }
                    this.read += n;
                    return Poll::Ready(Ok(n));
                }
                Some(Step::Pause(pause)) => {
                    let pause = *pause;
                    ready!(this.read_timer.get_or_insert_with(|| Timer::after(pause)).poll(cx));
                    this.read_timer = None;
                    this.steps.pop_front();
                }
                Some(Step::Flood(_, 0)) => {
                    this.steps.pop_front();
                }
                Some(Step::Flood(chunk, reads)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    *reads -= 1;
                    if *reads == 0 {
                        this.steps.pop_front();
                    }
                    this.read += n;
                    return Poll::Ready(Ok(n));
                }
                Some(Step::Yield) => {
                    this.steps.pop_front();
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => {
                    return match this.ending {
                        Ending::Eof => Poll::Ready(Ok(0)),
                        Ending::Silent => Poll::Pending,
                        Ending::Error(kind) => Poll::Ready(Err(kind.into())),
                    };
                }
            }
        }
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        assert!(!this.closed, "write after close");
        let n = match this.sink {
            Sink::All => buf.len(),
            Sink::AtMost(k) => buf.len().min(k),
            Sink::Slow(k) => {
                this.slow_turn = !this.slow_turn;
                if this.slow_turn {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                buf.len().min(k)
            }
            Sink::Trickle(every) => {
                ready!(this.write_timer.get_or_insert_with(|| Timer::after(every)).poll(cx));
                this.write_timer = None;
                buf.len().min(1)
            }
            Sink::Stuck => return Poll::Pending,
        };
        this.written.extend_from_slice(&buf[..n]);
        if n > 0 {
            this.writes += 1;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

/// A small, seedable generator for chunk sizes (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
