//! One test network over any transport, so that a scenario is written once
//! and runs over loopback, QUIC and HTTP.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use syncline::transport::loopback::LoopbackNetwork;
use syncline::transport::{Connector, Limits, ServerHandle, Service};

/// Which transport a scenario runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// In-process channels.
    Loopback,
    /// QUIC on 127.0.0.1 with a pinned self-signed certificate.
    #[cfg(feature = "quic")]
    Quic,
    /// Plain HTTP on 127.0.0.1.
    #[cfg(feature = "http")]
    Http,
}

/// Servers by name; a server restarted under a name keeps its address.
pub struct TestNet {
    kind: Kind,
    loopback: LoopbackNetwork,
    addrs: Mutex<HashMap<String, SocketAddr>>,
    #[cfg(feature = "quic")]
    cert: syncline::transport::quic::SelfSigned,
}

impl TestNet {
    pub fn new(kind: Kind, seed: u64) -> Self {
        Self {
            kind,
            loopback: LoopbackNetwork::new(seed),
            addrs: Mutex::new(HashMap::new()),
            #[cfg(feature = "quic")]
            cert: syncline::transport::quic::SelfSigned::generate(vec!["localhost".to_string()])
                .expect("self-signed certificate"),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The address `name` had, or port 0 for a first start.
    fn addr(&self, name: &str) -> SocketAddr {
        let addrs = self.addrs.lock().unwrap();
        addrs
            .get(name)
            .copied()
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())
    }

    fn remember(&self, name: &str, addr: SocketAddr) {
        self.addrs.lock().unwrap().insert(name.to_string(), addr);
    }

    /// Starts serving `service` as `name` with `limits`.
    pub async fn serve(
        &self,
        name: &str,
        service: Arc<dyn Service>,
        limits: Limits,
    ) -> Box<dyn ServerHandle> {
        match self.kind {
            Kind::Loopback => Box::new(self.loopback.serve(name, service, limits).unwrap()),
            #[cfg(feature = "quic")]
            Kind::Quic => {
                use syncline::transport::quic::{QuicServer, QuicServerConfig};
                let config = QuicServerConfig::new(self.cert.identity()).with_limits(limits);
                // A server shut down a moment ago may still hold the UDP
                // port until quinn's endpoint task notices: retry the bind
                // while the port is taken, for a few seconds at most.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                let server = loop {
                    match QuicServer::bind(self.addr(name), service.clone(), config.clone()) {
                        Ok(server) => break server,
                        Err(e)
                            if e.to_string().contains("in use")
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("bind: {e}"),
                    }
                };
                self.remember(name, server.local_addr());
                Box::new(server)
            }
            #[cfg(feature = "http")]
            Kind::Http => {
                use syncline::transport::http::{HttpServer, HttpServerConfig};
                let config = HttpServerConfig::new().with_limits(limits);
                let server = HttpServer::bind(self.addr(name), service, config)
                    .await
                    .unwrap();
                self.remember(name, server.local_addr());
                Box::new(server)
            }
        }
    }

    /// A connector from node `from` to the server `to` (started already).
    pub fn connector(&self, from: &str, to: &str, limits: Limits) -> Arc<dyn Connector> {
        match self.kind {
            Kind::Loopback => self.loopback.connector_with_limits(from, to, limits),
            #[cfg(feature = "quic")]
            Kind::Quic => {
                use syncline::transport::quic::{QuicClientConfig, QuicConnector, ServerTrust};
                let config = QuicClientConfig::new(ServerTrust::pinned(self.cert.fingerprint()))
                    .with_limits(limits);
                Arc::new(QuicConnector::new(self.addr(to), "localhost", config).unwrap())
            }
            #[cfg(feature = "http")]
            Kind::Http => {
                use syncline::transport::http::{HttpClient, HttpClientConfig};
                let url = format!("http://{}", self.addr(to));
                Arc::new(
                    HttpClient::new(&url, HttpClientConfig::new().with_limits(limits)).unwrap(),
                )
            }
        }
    }
}
