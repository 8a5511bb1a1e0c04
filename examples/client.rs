//! A client: writes a record, syncs once with a hub over HTTP or QUIC, and
//! prints what it holds.
//!
//! ```sh
//! cargo run --example client --features quic,http -- --http http://127.0.0.1:8080 --put milk="buy milk"
//! cargo run --example client --features quic,http -- --quic 127.0.0.1:4433 --pin 3f1c... --db phone.redb
//! ```
//!
//! Options: `--db PATH` (default `client.redb`), `--token SECRET`,
//! `--http URL` (an `https://` URL trusts the Mozilla roots, or the
//! certificate `--pin` names) or `--quic ADDR --pin FINGERPRINT`,
//! `--put KEY=VALUE` (repeatable), `--delete KEY` (repeatable). The
//! fingerprint is the hex the hub prints (colons between bytes are fine).

use std::sync::Arc;

use syncline::transport::Connector;
use syncline::transport::http::{HttpClient, HttpClientConfig};
use syncline::transport::quic::{Fingerprint, QuicClientConfig, QuicConnector, ServerTrust};
use syncline::{CollectionConfig, Replica, ReplicaConfig, Scan, SyncConfig, SyncEngine};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = "client.redb".to_string();
    let mut token = None;
    let (mut http, mut quic, mut pin) = (None, None, None);
    let (mut puts, mut deletes) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => db = value()?,
            "--token" => token = Some(value()?),
            "--http" => http = Some(value()?),
            "--quic" => quic = Some(value()?),
            "--pin" => pin = Some(value()?),
            "--put" => {
                let v = value()?;
                let (k, v) = v.split_once('=').ok_or("--put takes KEY=VALUE")?;
                puts.push((k.to_string(), v.to_string()));
            }
            "--delete" => deletes.push(value()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let connector: Arc<dyn Connector> = match (http, quic) {
        (Some(url), None) => {
            let mut config = HttpClientConfig::new();
            if let Some(t) = &token {
                config = config.with_bearer_token(t.clone());
            }
            if let Some(pin) = pin {
                let pin: Fingerprint = pin.parse()?;
                config = config.with_server_trust(ServerTrust::pinned(pin));
            }
            Arc::new(HttpClient::new(&url, config)?)
        }
        (None, Some(addr)) => {
            let pin: Fingerprint = pin
                .ok_or("--quic needs --pin (printed by the hub)")?
                .parse()?;
            let config = QuicClientConfig::new(ServerTrust::pinned(pin));
            Arc::new(QuicConnector::new(addr.parse()?, "localhost", config)?)
        }
        _ => return Err("give exactly one of --http URL or --quic ADDR".into()),
    };

    let replica = Replica::open(&db, ReplicaConfig::default())?;
    let todos = replica.define_collection("todos", CollectionConfig::default())?;
    for (k, v) in puts {
        todos.put(k, v.as_str())?;
    }
    for k in deletes {
        todos.delete(k)?;
    }
    let config = SyncConfig {
        on_demand: true,
        token,
        ..SyncConfig::default()
    };
    let engine = SyncEngine::start(replica.clone(), connector, config);
    let report = engine.sync_now().await?;
    println!("synced: pushed {}, pulled {}", report.pushed, report.pulled);
    for (key, value) in todos.scan(Scan::all())? {
        println!("  {key}: {value:?}");
    }
    engine.stop().await;
    Ok(())
}
