//! The echo server in the design's shape, to read in a minute: a smol TCP listener, a task per
//! connection, CR LF lines read with `read_until`, the `.` sentinel, and the idle disconnect as
//! the line read raced against a timer. What the library's session adds is in docs/library.md.
//!
//! usage: cargo run --example minimal -- [ADDR] [IDLE_MS]   (127.0.0.1:8007, 30000)
use std::{io, time::Duration};

use async_io::Timer;
use futures_lite::{AsyncBufReadExt, AsyncWriteExt, FutureExt, StreamExt, io::BufReader};
use smol::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    let idle_ms = args.next().map_or(Ok(30_000), |ms| ms.parse()).expect("IDLE_MS: milliseconds");
    smol::block_on(async {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let mut incoming = listener.incoming();
        while let Some(stream) = incoming.next().await {
            smol::spawn(session(stream?, Duration::from_millis(idle_ms))).detach();
        }
        Ok(())
    })
}

async fn session(stream: TcpStream, idle: Duration) -> io::Result<()> {
    let (mut reader, mut writer) = (BufReader::new(stream.clone()), stream);
    let mut line = Vec::new();
    loop {
        // A bare LF does not end a line: read on until CR LF or the end of input.
        let read_line = async {
            while reader.read_until(b'\n', &mut line).await? > 0 && !line.ends_with(b"\r\n") {}
            io::Result::Ok(())
        };
        let idle_out = async {
            Timer::after(idle).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        read_line.or(idle_out).await?;
        if line == b".\r\n" {
            return Ok(());
        }
        writer.write_all(&line).await?;
        if !line.ends_with(b"\r\n") {
            return Ok(()); // the end of input, after echoing its unterminated tail
        }
        line.clear();
    }
}
