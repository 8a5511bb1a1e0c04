//! A hub: one replica serving clients over QUIC and/or HTTP until Ctrl-C.
//!
//! ```sh
//! cargo run --example hub --features quic,http -- --http 127.0.0.1:8080 --quic 127.0.0.1:4433
//! curl http://127.0.0.1:8080/health
//! ```
//!
//! Options: `--db PATH` (default `hub.redb`), `--token SECRET` (require this
//! bearer token; without it every caller is allowed), `--http ADDR`,
//! `--quic ADDR` (a development certificate is generated and its
//! fingerprint printed for clients to pin), `--collection NAME` (default
//! `todos`; repeatable).

use std::net::SocketAddr;

use syncline::transport::http::{HttpServer, HttpServerConfig};
use syncline::transport::quic::{QuicServer, QuicServerConfig, SelfSigned};
use syncline::{CollectionConfig, Permissions, Replica, ReplicaConfig, SyncServer, Tokens};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = "hub.redb".to_string();
    let mut token = None;
    let mut http: Option<SocketAddr> = None;
    let mut quic: Option<SocketAddr> = None;
    let mut collections = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => db = value()?,
            "--token" => token = Some(value()?),
            "--http" => http = Some(value()?.parse()?),
            "--quic" => quic = Some(value()?.parse()?),
            "--collection" => collections.push(value()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if collections.is_empty() {
        collections.push("todos".to_string());
    }
    if http.is_none() && quic.is_none() {
        http = Some("127.0.0.1:8080".parse()?);
    }

    let replica = Replica::open(&db, ReplicaConfig::default())?;
    for name in &collections {
        replica.define_collection(name, CollectionConfig::default())?;
    }
    let mut server = SyncServer::new(replica.clone());
    if let Some(token) = token {
        server = server.with_access(Tokens::new().with_token(token, "client", Permissions::all()));
    }
    println!("hub {} serving {collections:?} from {db}", replica.id());

    let http_server = match http {
        Some(addr) => {
            let s = HttpServer::bind(addr, server.clone().into_service(), HttpServerConfig::new())
                .await?;
            println!("http: {} (health: {}/health)", s.url(), s.url());
            Some(s)
        }
        None => None,
    };
    let quic_server = match quic {
        Some(addr) => {
            let cert = SelfSigned::generate(vec!["localhost".to_string()])?;
            let s = QuicServer::bind(
                addr,
                server.into_service(),
                QuicServerConfig::new(cert.identity()),
            )?;
            println!(
                "quic: {} (server name localhost, pin {})",
                s.local_addr(),
                cert.fingerprint()
            );
            Some(s)
        }
        None => None,
    };

    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    if let Some(s) = http_server {
        s.shutdown().await;
    }
    if let Some(s) = quic_server {
        s.shutdown().await;
    }
    Ok(())
}
