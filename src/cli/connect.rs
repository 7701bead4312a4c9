//! `echo connect`: the interactive and pipe-friendly client, over TCP, a Unix socket or UDP.

use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll, ready};
use std::thread;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use async_signal::{Signal, Signals};
use futures_lite::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use futures_lite::{FutureExt, Stream, StreamExt};
use smol::Unblock;
use smol_echo::Mode;
use smol_echo::client::{
    ConnectOptions, Conversation, Ending, MAX_DATAGRAM, UdpClient, UdpReply, reader_gone,
};
use smol_echo::error::context;
use smol_echo::proxy::Version;

use super::{DEFAULT_ADDR, in_duration_range, parse_addr, parse_duration, tls, udp_addr};

/// Bytes in flight between standard output and its thread. Unblock's default, 8 MiB, is no
/// faster for a 40 MB file and makes the process five times bigger.
const PIPE: usize = 256 * 1024;

/// Bytes of standard input read at once, and chunks of them in flight to the client.
const STDIN_CHUNK: usize = 64 * 1024;
const STDIN_CHUNKS: usize = 4;

/// Standard input, read by a thread of its own and handed over chunk by chunk.
///
/// Not `smol::Unblock`: its reading thread reads on after a short read until a read returns 0,
/// and then reports only the bytes it had. On a terminal, where Ctrl-D makes one read return 0
/// and the next wait for more typing, that end would be lost and Ctrl-D would have to be
/// pressed twice.
struct Stdin {
    /// Boxed: a receiver waiting for a chunk cannot move.
    chunks: Pin<Box<async_channel::Receiver<io::Result<Vec<u8>>>>>,
    chunk: Vec<u8>,
    taken: usize,
}

impl Stdin {
    /// Starts the reading thread. Call once: two threads would split the input between them.
    fn start() -> Stdin {
        let (sender, chunks) = async_channel::bounded(STDIN_CHUNKS);
        thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut chunk = vec![0; STDIN_CHUNK];
                let read = match stdin.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        Ok(chunk)
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => Err(err),
                };
                let failed = read.is_err();
                // The client has stopped reading (the server closed): nothing more to do.
                if sender.send_blocking(read).is_err() || failed {
                    break;
                }
            }
        });
        Stdin { chunks: Box::pin(chunks), chunk: Vec::new(), taken: 0 }
    }
}

impl AsyncRead for Stdin {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.taken == this.chunk.len() {
            match ready!(this.chunks.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => (this.chunk, this.taken) = (chunk, 0),
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => return Poll::Ready(Ok(0)),
            }
        }
        let n = buf.len().min(this.chunk.len() - this.taken);
        buf[..n].copy_from_slice(&this.chunk[this.taken..this.taken + n]);
        this.taken += n;
        Poll::Ready(Ok(n))
    }
}

/// The exit status when standard output is closed by its reader: 128 + SIGPIPE, what the shell
/// reports for a filter that SIGPIPE ended.
const OUTPUT_CLOSED: u8 = 141;

/// How long `--udp` waits for each echo unless `--timeout` says otherwise.
const UDP_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(FromArgs, ArgsInfo, Debug)]
/// Connect to an echo server (also: client): send each line of standard input with CR LF and
/// print its echo. The line "." ends the session. End of input (Ctrl-D) half-closes the
/// connection, without sending ".", and waits for the last echoes. Exit 0 when the server
/// closes the connection, 1 when it cannot be reached or resets the connection. --mode raw
/// sends and prints bytes unchanged (RFC 862). --udp sends each line as a datagram, waits
/// --timeout for its echo and prints a summary; exit 1 when no echo came back.
#[argh(subcommand, name = "connect")]
pub(crate) struct ConnectArgs {
    /// server address, host:port, [v6addr]:port, tls:host:port or unix:/path (default
    /// localhost:8007)
    #[argh(positional, from_str_fn(parse_addr))]
    addr: Option<String>,
    /// give up connecting after this long: 250ms, 30s, 2m or seconds (default 10s)
    #[argh(option, from_str_fn(parse_duration), default = "Duration::from_secs(10)")]
    connect_timeout: Duration,
    /// protocol: line (lines sent with CR LF, echoes printed with LF) or raw (RFC 862: bytes
    /// sent and printed unchanged) (default line)
    #[argh(option)]
    mode: Option<Mode>,
    /// send each line as one UDP datagram (without its line end) and print each echo as a
    /// line; host:port only
    #[argh(switch)]
    udp: bool,
    /// with a tls: address: trust the CA certificates in this PEM file instead of the
    /// system's trust store
    #[argh(option)]
    tls_ca: Option<PathBuf>,
    /// with a tls: address: the name to verify the certificate against and to send (SNI),
    /// when the address does not name the server
    #[argh(option)]
    tls_server_name: Option<String>,
    /// with a tls: address: do not verify the server's certificate (encrypted, but not
    /// authenticated; a warning says so)
    #[argh(switch)]
    tls_insecure: bool,
    /// with --udp: how long to wait for each echo before counting the datagram lost
    /// (default 1s)
    #[argh(option, from_str_fn(parse_duration))]
    timeout: Option<Duration>,
    /// first send a PROXY protocol header naming the connection's own addresses, v1 (text) or
    /// v2 (binary), as a balancer would: to try a server run with --proxy-protocol by hand
    #[argh(option)]
    proxy_protocol: Option<Version>,
}

impl ConnectArgs {
    /// Checks the combinations argh cannot.
    pub(crate) fn validate(&self) -> Result<(), String> {
        in_duration_range("--connect-timeout", self.connect_timeout)?;
        self.verify().check(self.addr.as_deref().unwrap_or(DEFAULT_ADDR))?;
        if let Some(timeout) = self.timeout {
            in_duration_range("--timeout", timeout)?;
        }
        if self.udp {
            udp_addr(self.addr.as_deref())?;
            if self.mode.is_some() {
                return Err("--mode cannot be used with --udp: each line is one datagram".into());
            }
            if self.proxy_protocol.is_some() {
                return Err("--proxy-protocol is for stream connections, not --udp".into());
            }
        } else if self.timeout.is_some() {
            return Err(
                "--timeout is for --udp; over TCP the echoes are awaited until the server closes".into()
            );
        }
        Ok(())
    }

    fn verify(&self) -> tls::Verify {
        tls::Verify {
            ca: self.tls_ca.clone(),
            server_name: self.tls_server_name.clone(),
            insecure: self.tls_insecure,
        }
    }
}

/// Connects to `addr` as the flags say: the PROXY header first if asked for, then for a `tls:`
/// address the handshake, so that a server behind a balancer reads the header before the TLS it
/// terminates.
async fn open(args: &ConnectArgs, addr: &str) -> io::Result<smol_echo::client::Stream> {
    let options = ConnectOptions {
        #[cfg(feature = "tls")]
        tls: match addr.parse()? {
            smol_echo::client::Address::Tls(_) => {
                Some(smol_echo::tls::TlsConnector::new(&args.verify().config())?)
            }
            _ => None,
        },
        proxy: args.proxy_protocol,
        ..ConnectOptions::new(args.connect_timeout)
    };
    smol_echo::client::connect_with(addr, &options).await
}

pub(crate) fn run(args: ConnectArgs) -> ExitCode {
    let addr = args.addr.as_deref().unwrap_or(DEFAULT_ADDR);
    if args.udp {
        return run_udp(addr, args.connect_timeout, args.timeout.unwrap_or(UDP_TIMEOUT));
    }
    args.verify().warn();
    smol::block_on(async {
        let stream = match open(&args, addr).await {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("echo: cannot connect to {addr}: {err}");
                return ExitCode::FAILURE;
            }
        };
        let stdin = Stdin::start();
        let mut stdout = Unblock::with_capacity(PIPE, io::stdout());
        let terminal = io::stdout().is_terminal();
        let ended = match args.mode.unwrap_or_default() {
            Mode::Line => smol_echo::converse(stream, stdin, &mut stdout, terminal).await,
            Mode::Raw => smol_echo::client::converse_raw(stream, stdin, &mut stdout, terminal).await,
            // The library's enums are non-exhaustive; a mode it gains needs a client here first.
            mode => unreachable!("no client for {mode:?}"),
        };
        // The conversation flushed if it ended well; after a failure, print what can be printed.
        stdout.flush().await.ok();
        let owed = match args.mode.unwrap_or_default() {
            Mode::Raw => "byte(s)",
            _ => "line(s)",
        };
        // On a terminal the user may be halfway through typing a line: the note starts a line.
        let note_start = if io::stdin().is_terminal() { "\n" } else { "" };
        match ended {
            // The reader of the output left: stop quietly, as a filter killed by SIGPIPE does.
            Ok(Conversation { ending: Ending::OutputClosed, .. }) => ExitCode::from(OUTPUT_CLOSED),
            Ok(Conversation { ending: Ending::Reset, .. }) => {
                eprintln!("echo: connection reset");
                ExitCode::FAILURE
            }
            Ok(Conversation { ending, unechoed: unechoed @ 1.. }) => {
                let start = if ending == Ending::ServerClosed { note_start } else { "" };
                eprintln!("{start}echo: the server closed the connection with {unechoed} {owed} not echoed");
                ExitCode::FAILURE
            }
            Ok(Conversation { ending: Ending::ServerClosed, .. }) => {
                eprintln!("{note_start}echo: the server closed the connection");
                ExitCode::SUCCESS
            }
            Ok(Conversation { ending: Ending::InputEnded | Ending::Sentinel, .. }) => ExitCode::SUCCESS,
            Ok(talk) => unreachable!("no exit status for {:?}", talk.ending),
            Err(err) => {
                eprintln!("echo: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `--udp`: one datagram per line, each waiting for its echo; a summary at the end of input or
/// on SIGINT, like ping. Exit 0 when an echo came back or nothing was sent.
fn run_udp(addr: &str, connect_timeout: Duration, timeout: Duration) -> ExitCode {
    smol::block_on(async {
        let mut client = match UdpClient::connect(addr, connect_timeout).await {
            Ok(client) => client,
            Err(err) => {
                eprintln!("echo: cannot connect to {addr}: {err}");
                return ExitCode::FAILURE;
            }
        };
        let mut signals = match Signals::new([Signal::Int]) {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("echo: cannot handle SIGINT: {err}");
                return ExitCode::FAILURE;
            }
        };
        let mut stdin = BufReader::with_capacity(STDIN_CHUNK, Stdin::start());
        let mut stdout = Unblock::with_capacity(PIPE, io::stdout());
        let terminal = io::stdout().is_terminal();
        let talked = talk_udp(&mut client, &mut stdin, &mut stdout, terminal, timeout);
        // Ctrl-C ends the input as Ctrl-D does: the summary is what the user is waiting for.
        let interrupted = async {
            signals.next().await;
            Ok(Ending::InputEnded)
        };
        let talked = talked.or(interrupted).await;
        let flushed = stdout.flush().await;
        // The reader of the output left: stop quietly, as over TCP.
        if matches!(talked, Ok(Ending::OutputClosed)) || flushed.as_ref().is_err_and(reader_gone) {
            return ExitCode::from(OUTPUT_CLOSED);
        }
        let result = talked.map(drop).and(flushed.map_err(|err| context(err, "cannot write the output")));
        if let Err(err) = &result {
            eprintln!("echo: {err}");
        }
        let stats = client.stats();
        eprintln!("{stats}");
        if result.is_ok() && (stats.sent == 0 || stats.received > 0) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// Sends each line of `input` as a datagram and prints its echo; notes each datagram without
/// one on stderr. Ends at the end of input ([`Ending::InputEnded`]), when the output's reader
/// leaves ([`Ending::OutputClosed`]) or on the first error.
async fn talk_udp<I, O>(
    client: &mut UdpClient,
    input: &mut I,
    output: &mut O,
    flush_each_line: bool,
    timeout: Duration,
) -> io::Result<Ending>
where
    I: AsyncBufRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        // A payload and its CR LF at most: anything longer cannot be sent, and is not buffered.
        let limit = MAX_DATAGRAM as u64 + 2;
        let read = (&mut *input)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|err| context(err, "cannot read the input"))?;
        if read == 0 {
            break;
        }
        let payload = match line.strip_suffix(b"\n") {
            Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
            None => &line,
        };
        if payload.len() > MAX_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("line {number} is longer than a UDP datagram can carry ({MAX_DATAGRAM} bytes)"),
            ));
        }
        match client.ping(payload, timeout).await? {
            UdpReply::Echoed(_) => {
                let printed = async {
                    output.write_all(payload).await?;
                    output.write_all(b"\n").await?;
                    if flush_each_line {
                        output.flush().await?;
                    }
                    io::Result::Ok(())
                };
                match printed.await {
                    Err(err) if reader_gone(&err) => return Ok(Ending::OutputClosed),
                    printed => printed.map_err(|err| context(err, "cannot write the output"))?,
                }
            }
            UdpReply::TimedOut => eprintln!("echo: no reply to datagram {number} within {timeout:?}"),
            UdpReply::Refused => eprintln!("echo: no reply to datagram {number}: connection refused"),
            reply => unreachable!("no message for {reply:?}"),
        }
    }
    Ok(Ending::InputEnded)
}
