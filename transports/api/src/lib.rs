//! Transport traits for syncline: byte pipes that know frames, connections and
//! addresses, never records.
//!
//! A client holds an `Arc<dyn` [`Connector`]`>`, connects, and runs
//! request/response [`Connection::exchange`]s and server-push
//! [`Connection::subscribe`] streams on the [`Connection`]. A server hands each
//! request to a [`Service`] together with what it knows of the peer
//! ([`PeerInfo`]); a service refuses with a [`ServiceError`], which reaches the
//! client as [`TransportError::Refused`]. Frames are bounded by [`Limits`] on
//! both sides, and stream transports frame them with [`FrameCodec`] (a
//! big-endian `u32` length, then the body). Every [`TransportError`] says whose
//! [`Fault`] it is.
//!
//! ```
//! use std::sync::Arc;
//! use syncline_transport::{
//!     BoxFuture, Frame, FrameCodec, Limits, PeerInfo, Service, ServiceError, TransportError,
//! };
//!
//! /// Answers every request with its own bytes, and refuses empty ones.
//! #[derive(Debug)]
//! struct Echo;
//!
//! impl Service for Echo {
//!     fn exchange<'a>(
//!         &'a self,
//!         _peer: &'a PeerInfo,
//!         request: Frame,
//!     ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
//!         Box::pin(async move {
//!             if request.is_empty() {
//!                 return Err(ServiceError::bad_request("empty request"));
//!             }
//!             Ok(request)
//!         })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), TransportError> {
//! let service: Arc<dyn Service> = Arc::new(Echo);
//! let reply = service.exchange(&PeerInfo::new("alice"), Frame::from_static(b"ping")).await?;
//! assert_eq!(reply, "ping");
//!
//! // A stream transport frames the reply and refuses what is over the limit.
//! let codec = FrameCodec::new(Limits::new().with_max_frame_len(8));
//! let mut wire = Vec::new();
//! codec.write_frame(&mut wire, &reply).await?;
//! assert_eq!(wire, b"\0\0\0\x04ping");
//! assert_eq!(codec.read_frame(&mut &wire[..]).await?, Some(reply));
//! assert!(codec.write_frame(&mut wire, &[0; 9]).await.is_err());
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Cargo features
//!
//! - `conformance` (off by default): the `conformance` module, a test suite that
//!   every transport runs from its own tests through a small harness, with the
//!   `conformance_tests!` macro that turns it into one test per check.
//! - `tls` (off by default): the `tls` module, the TLS vocabulary the QUIC and
//!   HTTP transports share (identities, fingerprints, server trust, client
//!   authentication, rustls configurations), on rustls and rcgen with the ring
//!   provider.

mod client;
mod codec;
mod error;
mod frame;
mod server;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{BoxFuture, Connection, Connector, Subscription};
pub use codec::FrameCodec;
pub use error::{Fault, MAX_REASON_LEN, RefusalCode, ServiceError, Side, TransportError};
pub use frame::{
    DEFAULT_MAX_FRAME_LEN, DEFAULT_SUBSCRIPTION_BUFFER, FRAME_HEADER_LEN, Frame, Limits,
    decode_frame_header, encode_frame_header,
};
pub use server::{PeerInfo, ServerHandle, Service};
