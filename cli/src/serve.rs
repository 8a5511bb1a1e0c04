//! `syncline serve`: a hub from a config file, until SIGTERM or Ctrl-C.
//!
//! At start it prints one line per listener on standard output, each a URL
//! clients can use as it is:
//!
//! ```text
//! syncline hub 5f0c… serving todos, profiles from ./hub.redb
//! listening quic://127.0.0.1:4433?pin=3f1c…
//! listening http://127.0.0.1:8080
//! ```
//!
//! On SIGTERM or Ctrl-C it drains (exchanges in flight are answered,
//! subscriptions end, new requests are told to come back later), stops its
//! listeners, makes everything durable, closes the file and exits 0.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use syncline::transport::http::{ClientAuth, HttpServer, HttpServerConfig};
use syncline::transport::quic::{Identity, QuicServer, QuicServerConfig};
use syncline::{CollectionConfig, Replica, ReplicaConfig, SyncServer};

use crate::Failure;
use crate::config::HubConfig;

/// How long a drain may take unless the config says otherwise.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the hub `config_path` describes until a signal stops it.
pub(crate) async fn run(config_path: &Path) -> Result<u8, Failure> {
    let config = HubConfig::load(config_path).map_err(Failure::usage)?;
    let access = config.access().map_err(Failure::usage)?;
    let limits = config.limits();
    let metrics = crate::metrics::install(config.listen.metrics).map_err(Failure::failed)?;

    let db = &config.database;
    let replica = Replica::open(db, ReplicaConfig::default())
        .map_err(|e| Failure::failed(format!("cannot open {}: {e}", db.display())))?;
    for c in &config.collections {
        let wanted = CollectionConfig::default()
            .with_policy(c.policy.policy())
            .with_history(c.history);
        replica
            .define_collection(&c.name, wanted)
            .map_err(|e| Failure::usage(format!("collection {:?}: {e}", c.name)))?;
    }
    let mut server = SyncServer::new(replica.clone()).with_config(config.server());
    match access {
        Some(tokens) => server = server.with_access(tokens),
        None => tracing::warn!("no [[token]] in the config: every caller may read and write"),
    }
    let names: Vec<&str> = config.collections.iter().map(|c| c.name.as_str()).collect();
    say(format_args!(
        "syncline hub {} serving {} from {}",
        replica.id(),
        names.join(", "),
        db.display()
    ));

    let identity = if config.listen.quic.is_some() || config.listen.https.is_some() {
        Some(identity(&config)?)
    } else {
        None
    };
    let bind_error = |what: &str, addr: std::net::SocketAddr, e: &dyn std::fmt::Display| {
        Failure::failed(format!("cannot listen for {what} on {addr}: {e}"))
    };

    let mut http_servers = Vec::new();
    if let Some(addr) = config.listen.http {
        let http = HttpServerConfig::new().with_limits(limits);
        let http = crate::metrics::route(http, &metrics);
        let s = HttpServer::bind(addr, server.clone().into_service(), http)
            .await
            .map_err(|e| bind_error("http", addr, &e))?;
        say(format_args!("listening {}", s.url()));
        http_servers.push(s);
    }
    if let (Some(addr), Some(identity)) = (config.listen.https, &identity) {
        let https = HttpServerConfig::new()
            .with_limits(limits)
            .with_tls(identity.clone(), ClientAuth::none());
        let https = crate::metrics::route(https, &metrics);
        let s = HttpServer::bind(addr, server.clone().into_service(), https)
            .await
            .map_err(|e| bind_error("https", addr, &e))?;
        say(format_args!(
            "listening {}?pin={}",
            s.url(),
            identity.fingerprint()
        ));
        http_servers.push(s);
    }
    let mut quic_server = None;
    if let (Some(addr), Some(identity)) = (config.listen.quic, &identity) {
        let quic = QuicServerConfig::new(identity.clone()).with_limits(limits);
        let s = QuicServer::bind(addr, server.clone().into_service(), quic)
            .map_err(|e| bind_error("quic", addr, &e))?;
        say(format_args!(
            "listening quic://{}?pin={}",
            s.local_addr(),
            identity.fingerprint()
        ));
        quic_server = Some(s);
    }
    if let Some(addr) = metrics.own_listener() {
        say(format_args!("listening metrics http://{addr}/metrics"));
    }
    tracing::info!(replica = %replica.id(), "hub started");

    let signal = shutdown_signal().await;
    tracing::info!(signal, "draining");
    let grace = config
        .server
        .shutdown_grace
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
    if tokio::time::timeout(grace, server.drain()).await.is_err() {
        tracing::warn!(
            ?grace,
            "exchanges still in flight after the grace; cutting them"
        );
    }
    for s in http_servers {
        s.shutdown().await;
    }
    if let Some(s) = quic_server {
        s.shutdown().await;
    }
    drop(server);
    replica
        .close()
        .map_err(|e| Failure::failed(format!("closing {}: {e}", db.display())))?;
    say(format_args!("stopped"));
    Ok(0)
}

/// The identity QUIC and HTTPS present: the config's PEM files, or a
/// development certificate made once and kept next to the database.
fn identity(config: &HubConfig) -> Result<Identity, Failure> {
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key).map_err(|e| {
            Failure::usage(format!(
                "[tls] {} and {}: {e}",
                cert.display(),
                key.display()
            ))
        }),
        _ => {
            let cert = config.database.with_extension("cert.pem");
            let key = config.database.with_extension("key.pem");
            let names = if config.tls.names.is_empty() {
                vec!["localhost".to_owned()]
            } else {
                config.tls.names.clone()
            };
            let identity = Identity::load_or_generate(&cert, &key, names).map_err(|e| {
                Failure::failed(format!("development identity {}: {e}", cert.display()))
            })?;
            tracing::info!(cert = %cert.display(), "development identity (self-signed; pin it)");
            Ok(identity)
        }
    }
}

/// A line on standard output, flushed at once (tests and scripts read it
/// while the hub runs).
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Waits for SIGTERM or Ctrl-C; returns which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
