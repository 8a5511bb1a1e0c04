//! The transport conformance suite, run against the HTTP transport over plain
//! HTTP/1.1 and over HTTPS (HTTP/2 through ALPN), on real sockets.

mod common;

use std::sync::Arc;

use syncline_http::{
    ClientAuth, HttpClient, HttpClientConfig, HttpServer, HttpServerConfig, Identity, ServerTrust,
};
use syncline_transport::conformance::{Endpoints, Harness};
use syncline_transport::{BoxFuture, Limits, Service, TransportError};

/// Starts each server on 127.0.0.1 port 0; with `tls`, over HTTPS with a fresh
/// self-signed certificate the client trusts through a root store.
struct Http {
    tls: bool,
}

impl Harness for Http {
    fn start(
        &self,
        service: Arc<dyn Service>,
        server_limits: Limits,
        client_limits: Limits,
    ) -> BoxFuture<'_, Result<Endpoints, TransportError>> {
        Box::pin(async move {
            let mut server_config = HttpServerConfig::new().with_limits(server_limits);
            let mut client_config = HttpClientConfig::new().with_limits(client_limits);
            if self.tls {
                let cert = common::self_signed();
                let identity =
                    Identity::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())?;
                server_config = server_config.with_tls(identity, ClientAuth::none());
                let trust = ServerTrust::roots_from_pem(cert.cert_pem.as_bytes())?;
                client_config = client_config.with_server_trust(trust);
            }
            let server = HttpServer::bind(common::loopback(), service, server_config).await?;
            let client = HttpClient::new(&server.url(), client_config)?;
            Ok(Endpoints {
                server: Box::new(server),
                connector: Arc::new(client),
            })
        })
    }
}

mod plain_http {
    use super::*;

    syncline_transport::conformance_tests!(Http { tls: false });
}

mod https {
    use super::*;

    syncline_transport::conformance_tests!(Http { tls: true });
}

#[test]
fn run_all_passes_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(syncline_transport::conformance::run_all(&Http {
        tls: false,
    }));
}
