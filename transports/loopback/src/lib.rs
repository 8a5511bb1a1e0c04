//! An in-process transport for syncline: servers and clients on one
//! [`LoopbackNetwork`] talk over tokio channels, with seeded fault injection
//! (latency, loss, duplicates, reordering, partitions) for simulation.
//!
//! It implements the [`syncline_transport`] traits and passes their
//! conformance suite, enforcing frame limits like a real transport.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use syncline_loopback::{Faults, LoopbackNetwork};
//! use syncline_transport::{
//!     BoxFuture, Fault, Frame, Limits, PeerInfo, Service, ServiceError, TransportError,
//! };
//!
//! /// Greets whoever calls.
//! #[derive(Debug)]
//! struct Hello;
//!
//! impl Service for Hello {
//!     fn exchange<'a>(
//!         &'a self,
//!         peer: &'a PeerInfo,
//!         _request: Frame,
//!     ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
//!         Box::pin(async move { Ok(Frame::from(format!("hello {}", peer.remote))) })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), TransportError> {
//! let network = LoopbackNetwork::new(42);
//! let server = network.serve("hub", Arc::new(Hello), Limits::default())?;
//! let connector = network.connector("alice", "hub");
//!
//! let conn = connector.connect().await?;
//! assert_eq!(conn.exchange(Frame::new()).await?, "hello alice");
//!
//! // Latency follows tokio's clock; a partition kills the connection.
//! network.set_faults(Faults::none().with_latency(Duration::from_millis(1), Duration::from_millis(5)));
//! network.partition("alice", "hub");
//! let cut = conn.exchange(Frame::new()).await.unwrap_err();
//! assert_eq!(cut.fault(), Fault::Network);
//! network.heal("alice", "hub");
//! let conn = connector.connect().await?;
//! assert_eq!(conn.exchange(Frame::new()).await?, "hello alice");
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Every fault decision is drawn from the network's seed when an operation is
//! called, a fixed number of draws per operation, so a simulation that makes
//! the same calls in the same order sees the same faults.
//!
//! # Cargo features
//!
//! None.

mod link;
mod network;
mod rng;
mod server;

pub use network::{Faults, LoopbackNetwork, NetworkStats};
pub use server::LoopbackServer;
