//! One session of the line protocol over an in-memory pipe, with no executor at all:
//! `futures_lite::future::block_on` drives both ends, and async-io's own thread runs the timers.
//!
//! usage: cargo run --example pipe
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol_echo::{CloseReason, EchoConfig};

/// One end of a two-way in-memory pipe: reads from one `piper` pipe, writes into the other.
struct End {
    reader: piper::Reader,
    writer: piper::Writer,
}

/// Two ends connected to each other, like the two sides of a socket.
fn duplex() -> (End, End) {
    let (a_reader, b_writer) = piper::pipe(64 * 1024);
    let (b_reader, a_writer) = piper::pipe(64 * 1024);
    (End { reader: a_reader, writer: a_writer }, End { reader: b_reader, writer: b_writer })
}

impl AsyncRead for End {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for End {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_close(cx)
    }
}

fn main() -> io::Result<()> {
    let (server_end, mut client) = duplex();
    let session = smol_echo::echo(server_end, &EchoConfig::default(), future::pending());
    let talk = async {
        client.write_all(b"hello\r\nwith a bare \n inside\r\n.\r\nnot echoed\r\n").await?;
        let mut echoed = Vec::new();
        client.reader.read_to_end(&mut echoed).await?;
        io::Result::Ok(echoed)
    };
    let (session, echoed) = future::block_on(future::zip(session, talk));
    let echoed = echoed?;
    assert_eq!(echoed, b"hello\r\nwith a bare \n inside\r\n");
    assert_eq!((session.lines, &session.reason), (2, &CloseReason::Sentinel));
    print!("{}", String::from_utf8_lossy(&echoed));
    println!("session: {} lines, {} bytes, ended by {}", session.lines, session.bytes, session.reason);
    Ok(())
}
