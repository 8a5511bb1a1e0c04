//! A hub: one replica serving clients over QUIC, HTTP and/or HTTPS until
//! Ctrl-C.
//!
//! ```sh
//! cargo run --example hub --features quic,http -- --http 127.0.0.1:8080 --quic 127.0.0.1:4433
//! curl http://127.0.0.1:8080/health
//! ```
//!
//! Options: `--db PATH` (default `hub.redb`), `--token SECRET` (require this
//! bearer token; without it every caller is allowed), `--http ADDR`,
//! `--https ADDR`, `--quic ADDR`, `--collection NAME` (default `todos`;
//! repeatable).
//!
//! QUIC and HTTPS present a self-signed development certificate, kept as PEM
//! next to the database (`hub.cert.pem` and `hub.key.pem` for `hub.redb`) so
//! that its fingerprint, which the hub prints for clients to pin, stays the
//! same across restarts.

use std::net::SocketAddr;
use std::path::Path;

use syncline::transport::http::{ClientAuth, HttpServer, HttpServerConfig};
use syncline::transport::quic::{Identity, QuicServer, QuicServerConfig};
use syncline::{CollectionConfig, Permissions, Replica, ReplicaConfig, SyncServer, Tokens};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = "hub.redb".to_string();
    let mut token = None;
    let mut http: Option<SocketAddr> = None;
    let mut https: Option<SocketAddr> = None;
    let mut quic: Option<SocketAddr> = None;
    let mut collections = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => db = value()?,
            "--token" => token = Some(value()?),
            "--http" => http = Some(value()?.parse()?),
            "--https" => https = Some(value()?.parse()?),
            "--quic" => quic = Some(value()?.parse()?),
            "--collection" => collections.push(value()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if collections.is_empty() {
        collections.push("todos".to_string());
    }
    if http.is_none() && https.is_none() && quic.is_none() {
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
    let identity = if https.is_some() || quic.is_some() {
        let (cert, key) = (
            Path::new(&db).with_extension("cert.pem"),
            Path::new(&db).with_extension("key.pem"),
        );
        let identity = Identity::load_or_generate(&cert, &key, vec!["localhost".to_string()])?;
        println!(
            "tls: {} (server name localhost, pin {})",
            cert.display(),
            identity.fingerprint()
        );
        Some(identity)
    } else {
        None
    };
    let https_server = match (https, &identity) {
        (Some(addr), Some(identity)) => {
            let config = HttpServerConfig::new().with_tls(identity.clone(), ClientAuth::none());
            let s = HttpServer::bind(addr, server.clone().into_service(), config).await?;
            println!("https: {}", s.url());
            Some(s)
        }
        _ => None,
    };
    let quic_server = match (quic, identity) {
        (Some(addr), Some(identity)) => {
            let config = QuicServerConfig::new(identity);
            let s = QuicServer::bind(addr, server.into_service(), config)?;
            println!("quic: {}", s.local_addr());
            Some(s)
        }
        _ => None,
    };

    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    if let Some(s) = http_server {
        s.shutdown().await;
    }
    if let Some(s) = https_server {
        s.shutdown().await;
    }
    if let Some(s) = quic_server {
        s.shutdown().await;
    }
    Ok(())
}
