//! The transport conformance kit: one suite that every transport runs from its
//! own tests, as rustls runs its API tests once per crypto provider.
//!
//! A transport implements [`Harness`] (start a server for a service, return a
//! connector to it) and runs the checks, either one test per check with
//! [`conformance_tests!`](crate::conformance_tests) or all at once with
//! [`run_all`]:
//!
//! ```
//! # mod demo {
//! use std::sync::Arc;
//! use syncline_transport::conformance::{Endpoints, Harness};
//! use syncline_transport::{BoxFuture, Limits, Service, TransportError};
//!
//! struct MyTransport;
//!
//! impl Harness for MyTransport {
//!     fn start(
//!         &self,
//!         service: Arc<dyn Service>,
//!         server_limits: Limits,
//!         client_limits: Limits,
//!     ) -> BoxFuture<'_, Result<Endpoints, TransportError>> {
//!         Box::pin(async move {
//!             // Start a server for `service` on 127.0.0.1 port 0, and build a
//!             // connector to it with `client_limits`.
//! #           let _ = (service, server_limits, client_limits);
//!             todo!()
//!         })
//!     }
//! }
//!
//! // In tests/conformance.rs: one #[test] per check.
//! syncline_transport::conformance_tests!(MyTransport);
//! # }
//! ```
//!
//! Each check starts its own server with a fresh [`TestService`], asserts with
//! panics that name the check, waits at most [`SAFETY_TIMEOUT`] for anything
//! (a transport that hangs fails instead of blocking the test run), and shuts
//! its server down.

mod checks;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{BoxFuture, Connector};
use crate::error::TransportError;
use crate::frame::Limits;
use crate::server::{ServerHandle, Service};

pub use checks::{
    close_and_reconnect, concurrent_exchanges, dropped_subscription_releases_service,
    frame_at_limit_both_ways, oversized_push_ends_subscription,
    oversized_request_refused_by_client, oversized_request_refused_by_server,
    oversized_response_refused_by_client, oversized_response_refused_by_server,
    peer_info_reaches_service, refusal_reaches_client, round_trips, server_shutdown_fails_clients,
    subscription_burst_in_order, subscription_live_push_and_end,
};
pub use service::{TestRequest, TestService, burst_frame, pattern};

/// The longest any check waits for one step; reaching it fails the check.
pub const SAFETY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server and a connector to it, as a [`Harness`] returns them.
#[derive(Debug)]
pub struct Endpoints {
    /// The server; the check shuts it down.
    pub server: Box<dyn ServerHandle>,
    /// A connector to the server, with the client's limits.
    pub connector: Arc<dyn Connector>,
}

/// How the kit starts a transport: a server for a service and a client that
/// reaches it.
pub trait Harness: Send + Sync {
    /// Starts a server for `service` enforcing `server_limits`, and returns it
    /// with a connector to it whose connections enforce `client_limits`. Each
    /// call starts an independent server.
    fn start(
        &self,
        service: Arc<dyn Service>,
        server_limits: Limits,
        client_limits: Limits,
    ) -> BoxFuture<'_, Result<Endpoints, TransportError>>;
}

/// Runs `future` to completion on a new current-thread tokio runtime with every
/// driver the build has (time, and I/O when tokio's `net` feature is on).
///
/// # Panics
///
/// If the runtime cannot be built (the kit is test code).
pub fn block_on<F: Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => panic!("conformance: cannot build a tokio runtime: {error}"),
    }
}

/// Runs every check in turn against `harness`, panicking at the first failure.
pub async fn run_all(harness: &dyn Harness) {
    round_trips(harness).await;
    frame_at_limit_both_ways(harness).await;
    oversized_request_refused_by_client(harness).await;
    oversized_request_refused_by_server(harness).await;
    oversized_response_refused_by_server(harness).await;
    oversized_response_refused_by_client(harness).await;
    concurrent_exchanges(harness).await;
    subscription_burst_in_order(harness).await;
    subscription_live_push_and_end(harness).await;
    oversized_push_ends_subscription(harness).await;
    dropped_subscription_releases_service(harness).await;
    refusal_reaches_client(harness).await;
    peer_info_reaches_service(harness).await;
    close_and_reconnect(harness).await;
    server_shutdown_fails_clients(harness).await;
}

/// Expands to one `#[test]` per conformance check, each running the check
/// against the harness `$harness` (an expression, evaluated once per test) on
/// its own runtime.
///
/// Use it at the top level (or in a module) of a transport's integration test.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_test_fns!(
            $harness;
            round_trips,
            frame_at_limit_both_ways,
            oversized_request_refused_by_client,
            oversized_request_refused_by_server,
            oversized_response_refused_by_server,
            oversized_response_refused_by_client,
            concurrent_exchanges,
            subscription_burst_in_order,
            subscription_live_push_and_end,
            oversized_push_ends_subscription,
            dropped_subscription_releases_service,
            refusal_reaches_client,
            peer_info_reaches_service,
            close_and_reconnect,
            server_shutdown_fails_clients,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    ($harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::block_on(async {
                    let harness = $harness;
                    $crate::conformance::$check(&harness).await;
                });
            }
        )*
    };
}
