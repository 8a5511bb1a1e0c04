//! The transport conformance suite over real QUIC: UDP sockets on 127.0.0.1,
//! real TLS. Run once with a pinned self-signed certificate and once with a
//! certificate issued by a CA the client trusts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use syncline_quic::{
    QuicClientConfig, QuicConnector, QuicServer, QuicServerConfig, SelfSigned, ServerTrust,
};
use syncline_transport::conformance::{Endpoints, Harness};
use syncline_transport::{BoxFuture, Limits, Service, TransportError};

use common::TestCa;

/// How the client trusts the server in a run.
#[derive(Clone, Copy)]
enum Trust {
    Pinned,
    Roots,
}

struct Quic {
    trust: Trust,
}

impl Harness for Quic {
    fn start(
        &self,
        service: Arc<dyn Service>,
        server_limits: Limits,
        client_limits: Limits,
    ) -> BoxFuture<'_, Result<Endpoints, TransportError>> {
        Box::pin(async move {
            let (identity, trust) = match self.trust {
                Trust::Pinned => {
                    let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
                    (cert.identity(), ServerTrust::pinned(cert.fingerprint()))
                }
                Trust::Roots => {
                    let local = |error: rcgen::Error| TransportError::Local {
                        reason: error.to_string(),
                    };
                    let ca = TestCa::new("conformance CA").map_err(local)?;
                    let leaf = ca.issue(&["localhost"]).map_err(local)?;
                    (
                        leaf.identity()?,
                        ServerTrust::roots_from_pem(ca.pem().as_bytes())?,
                    )
                }
            };
            let server = QuicServer::bind(
                ([127, 0, 0, 1], 0).into(),
                service,
                QuicServerConfig::new(identity).with_limits(server_limits),
            )?;
            // A connect to a server that is gone waits for this long; the kit
            // allows 10 s for any step.
            let client = QuicClientConfig::new(trust)
                .with_limits(client_limits)
                .with_connect_timeout(Duration::from_secs(2));
            let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;
            Ok(Endpoints {
                server: Box::new(server),
                connector: Arc::new(connector),
            })
        })
    }
}

mod pinned {
    use super::*;

    syncline_transport::conformance_tests!(Quic {
        trust: Trust::Pinned
    });
}

mod roots {
    use super::*;

    syncline_transport::conformance_tests!(Quic {
        trust: Trust::Roots
    });
}

#[test]
fn run_all_passes_on_a_multi_thread_runtime() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot build a runtime: {error}"),
    };
    runtime.block_on(syncline_transport::conformance::run_all(&Quic {
        trust: Trust::Pinned,
    }));
}
