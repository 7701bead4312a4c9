//! One echo session over any byte stream: the line protocol ([`echo`]) or RFC 862
//! ([`echo_raw`]), on one engine.
//!
//! The two protocols differ only in how much of what was read is echoed at once and when the
//! session must end: [`line`] finds complete lines with the framing scanner, [`raw`] echoes
//! every byte. The rest is shared by the engine: the wait for input, the idle, write and grace
//! [`Deadlines`](deadlines::Deadlines), the drain after shutdown, the half-close and the linger.
//!
//! The engine does not read through a `BufReader` with `read_until`, the usual shape of a line
//! server (and the simplest one, fine for a handful of clients):
//!
//! - a `BufReader` owns its buffer for the whole session, while here a waiting session holds
//!   none ([`pool`] lends one for the read that wakes it);
//! - `read_until` hands over one line at a time, each then written on its own, while here every
//!   complete line already read goes back with one write;
//! - `read_until` searches from the start of what it holds on every call, while the scanner
//!   resumes where the last search stopped, so a line dripped byte by byte costs linear time;
//! - `read_until(b'\n')` ends a line at any LF, while here a bare LF is data and only CR LF
//!   ends a line.

mod alarm;
mod config;
mod deadlines;
mod engine;
mod framing;
mod line;
mod mode;
mod outcome;
mod pool;
mod raw;
mod rx;

pub(crate) use config::in_range;
pub use config::{EchoConfig, MAX_DURATION, check_duration};
pub use line::echo;
pub use mode::Mode;
pub use outcome::{CloseReason, Session};
pub use raw::echo_raw;
