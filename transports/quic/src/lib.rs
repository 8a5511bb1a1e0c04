//! QUIC transport for syncline: quinn over rustls (ring), ALPN `syncline/1`.
//!
//! A [`QuicServer`] serves a [`Service`](syncline_transport::Service) on a
//! UDP socket; a [`QuicConnector`] opens QUIC connections to it, each carrying
//! any number of concurrent exchanges and subscriptions, one bidirectional
//! stream each. TLS is mandatory: the server presents an [`Identity`] (a real
//! certificate chain from PEM, or a [`SelfSigned`] one for development), the
//! client trusts it through a [`ServerTrust`] (CA roots, or a pinned
//! [`Fingerprint`]), and a server can require client certificates
//! ([`ClientAuth`]), whose end-entity DER reaches the service as
//! [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity).
//! These TLS types are [`syncline_transport::tls`]'s, re-exported here: the
//! HTTP transport takes the same ones.
//!
//! ```
//! use std::sync::Arc;
//! use syncline_quic::{
//!     QuicClientConfig, QuicConnector, QuicServer, QuicServerConfig, SelfSigned, ServerTrust,
//! };
//! use syncline_transport::{
//!     BoxFuture, Connector, Frame, PeerInfo, RefusalCode, Service, ServiceError, TransportError,
//! };
//!
//! /// Echoes requests, and refuses empty ones.
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
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Development TLS: a self-signed certificate, pinned by the client.
//! let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
//! let server = QuicServer::bind(
//!     "127.0.0.1:0".parse()?,
//!     Arc::new(Echo),
//!     QuicServerConfig::new(cert.identity()),
//! )?;
//! let client = QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint()));
//! let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;
//!
//! let conn = connector.connect().await?;
//! assert_eq!(conn.exchange(Frame::from_static(b"ping")).await?, "ping");
//! match conn.exchange(Frame::new()).await {
//!     Err(TransportError::Refused { code, reason }) => {
//!         assert_eq!((code, reason.as_str()), (RefusalCode::BAD_REQUEST, "empty request"));
//!     }
//!     other => panic!("expected a refusal, got {other:?}"),
//! }
//! server.shutdown().await;
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Sockets
//!
//! A server listens on one UDP socket for all its clients. A connector, too,
//! opens all its connections (and reconnections) from one UDP socket, which
//! it binds on its first connect. To share one socket among many connectors,
//! bind a [`QuicClientEndpoint`] and give it to each with
//! [`QuicConnector::with_endpoint`]: a process that syncs with several hubs,
//! or a load test holding thousands of client connections, then uses one UDP
//! port. Connections keep their socket alive; it is released once the last
//! connector, endpoint handle and connection using it are gone.
//!
//! A hub that should keep its development certificate (and so its
//! fingerprint) across restarts keeps it in PEM files next to its database
//! with [`Identity::load_or_generate`]. For a deployment, load a certificate
//! chain and key with [`Identity::from_pem_files`] and give clients the CA
//! with [`ServerTrust::roots_from_pem_file`].
//!
//! # Wire format
//!
//! Every exchange and every subscription is one bidirectional QUIC stream
//! opened by the client. Integers are big-endian; a *frame* is the
//! [`FrameCodec`](syncline_transport::FrameCodec) encoding, a `u32` length
//! then that many bytes, bounded by each side's
//! [`Limits`](syncline_transport::Limits).
//!
//! The client writes one byte of request kind, then the request frame, and
//! finishes its side of the stream:
//!
//! | kind | meaning |
//! |------|---------|
//! | `0`  | exchange: the server answers with one reply, then finishes |
//! | `1`  | subscription: the server answers with `4`, then a reply per pushed frame, and finishes when the service ends the subscription |
//!
//! The server writes replies, each a status byte and its body:
//!
//! | status | body | client sees |
//! |--------|------|-------------|
//! | `0` | a frame | the response, or a pushed frame |
//! | `1` | `u16` refusal code, `u16` reason length (at most 1024), UTF-8 reason | `TransportError::Refused` |
//! | `2` | `u64` length, `u64` limit: the request was over the server's limit (it stops reading it) | `FrameTooLarge`, sent by the local side |
//! | `3` | `u64` length, `u64` limit: the service's frame was over the server's limit and was not sent; ends a subscription | `FrameTooLarge`, sent by the peer |
//! | `4` | nothing: the subscription is open | (the `Subscription`) |
//!
//! A receiver refuses an over-limit frame from its header, before reading or
//! allocating the body, and stops the stream. A client drops a subscription by
//! stopping its stream (`STOP_SENDING`, code 0); the server then drops the
//! service's receiver. The client closes its connection with application code
//! 0; a server that shuts down closes every connection with code 1, which
//! clients report as [`TransportError::Closed`](syncline_transport::TransportError::Closed)
//! by the peer.
//!
//! # Errors
//!
//! Connection failures, TLS failures included (an untrusted or mismatched
//! certificate, a client certificate the server refuses), are
//! [`TransportError::Connect`](syncline_transport::TransportError::Connect)
//! with the reason. With TLS 1.3 a client learns that the server refused its
//! certificate only after its handshake completes, so that refusal may
//! surface on the first exchange instead of on `connect`; it is still a
//! `Connect` error. A lost or timed-out connection is a network error; bad
//! certificate or key files, a bad configuration or a socket that cannot be
//! bound are [`TlsError`]s or local errors.
//!
//! # Cargo features
//!
//! None. quinn runs on tokio; rustls, quinn and rcgen all use the ring crypto
//! provider, which this crate passes explicitly (no process-wide default is
//! installed or needed).

mod client;
mod config;
mod endpoint;
mod error;
mod server;
mod socket;
mod wire;

pub use client::QuicConnector;
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_CONCURRENT_STREAMS, QuicClientConfig, QuicServerConfig,
};
pub use endpoint::QuicClientEndpoint;
pub use server::QuicServer;
pub use socket::SOCKET_BUFFER;
pub use syncline_transport::tls::{
    ClientAuth, Fingerprint, Identity, Material, ParseFingerprintError, SelfSigned, ServerTrust,
    TlsError,
};

/// The ALPN protocol name both sides require: `syncline/1`.
pub const ALPN: &[u8] = b"syncline/1";
