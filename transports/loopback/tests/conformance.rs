//! The transport conformance suite, run against the loopback transport with no
//! faults and again with latency and reordering (which must not break any
//! guarantee).

use std::sync::Arc;
use std::time::Duration;

use syncline_loopback::{Faults, LoopbackNetwork};
use syncline_transport::conformance::{Endpoints, Harness};
use syncline_transport::{BoxFuture, Limits, Service, TransportError};

/// Starts each server on its own network, with `faults`.
struct Loopback {
    faults: Faults,
}

impl Harness for Loopback {
    fn start(
        &self,
        service: Arc<dyn Service>,
        server_limits: Limits,
        client_limits: Limits,
    ) -> BoxFuture<'_, Result<Endpoints, TransportError>> {
        Box::pin(async move {
            let network = LoopbackNetwork::new(7);
            network.set_faults(self.faults);
            let server = network.serve("server", service, server_limits)?;
            let connector = network.connector_with_limits("client", "server", client_limits);
            Ok(Endpoints {
                server: Box::new(server),
                connector,
            })
        })
    }
}

mod no_faults {
    use super::*;

    syncline_transport::conformance_tests!(Loopback {
        faults: Faults::none()
    });
}

mod latency_and_reordering {
    use super::*;

    syncline_transport::conformance_tests!(Loopback {
        faults: Faults::none()
            .with_latency(Duration::ZERO, Duration::from_millis(2))
            .with_reorder(true),
    });
}

#[test]
fn run_all_passes() {
    syncline_transport::conformance::block_on(syncline_transport::conformance::run_all(
        &Loopback {
            faults: Faults::none(),
        },
    ));
}

#[test]
fn run_all_passes_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime can be built");
    runtime.block_on(syncline_transport::conformance::run_all(&Loopback {
        faults: Faults::none().with_latency(Duration::ZERO, Duration::from_millis(1)),
    }));
}
