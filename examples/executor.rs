//! A small tool that embeds the server: it owns its `async_executor::Executor`, runs the
//! server's connections on it, and stops the server from its own shutdown future (here, once
//! its own client has talked to it).
//!
//! usage: cargo run --example executor
use std::io;
use std::time::Duration;

use async_executor::Executor;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol_echo::{EchoConfig, Server, ServerConfig};

fn main() -> io::Result<()> {
    let ex = Executor::new();
    let config = ServerConfig {
        echo: EchoConfig { idle_timeout: Some(Duration::from_secs(5)), ..EchoConfig::default() },
        ..ServerConfig::default()
    };
    // The tool's own shutdown signal: closing `stop` completes `stopped`.
    let (stop, stopped) = async_channel::bounded::<()>(1);

    let summary = async_io::block_on(ex.run(async {
        let server = Server::new(smol_echo::bind(&["127.0.0.1:0"]).await?, config);
        let addr = server.local_addrs()?[0].to_string();
        println!("listening on {addr}");
        // The tool's own work beside the server: two clients, then the shutdown signal.
        let clients = ex.spawn(async move {
            for name in ["first", "second"] {
                let mut client = async_net::TcpStream::connect(&*addr).await?;
                client.write_all(format!("hello from the {name} client\r\n.\r\n").as_bytes()).await?;
                let mut echoed = String::new();
                client.read_to_string(&mut echoed).await?;
                assert_eq!(echoed, format!("hello from the {name} client\r\n"));
                print!("{echoed}");
            }
            stop.close();
            io::Result::Ok(())
        });
        // Each connection becomes a task on this executor; the server returns once `stopped`
        // completes and its sessions have drained.
        let summary = server
            .run(|task| ex.spawn(task).detach(), async move {
                stopped.recv().await.ok();
            })
            .await;
        clients.await?;
        io::Result::Ok(summary)
    }))?;
    assert_eq!((summary.connections, summary.lines, summary.unfinished), (2, 2, 0));
    println!("served {} connections, {} lines", summary.connections, summary.lines);
    Ok(())
}
