//! HTTP transport for syncline: a hyper server and a hyper-util client that
//! carry frames over HTTP/1.1 or HTTP/2, with HTTPS through rustls (ring).
//!
//! It implements the [`syncline_transport`] traits: [`HttpServer`] serves a
//! [`Service`](syncline_transport::Service) and implements
//! [`ServerHandle`](syncline_transport::ServerHandle); [`HttpClient`] is a
//! [`Connector`](syncline_transport::Connector) whose connections share one
//! pool of HTTP connections. It passes the transport conformance suite.
//!
//! # Endpoints
//!
//! | endpoint | request | answer |
//! | --- | --- | --- |
//! | `POST /v1/exchange` | the request frame as the body | `200` with the response frame as the body |
//! | `POST /v1/subscribe` | the request frame as the body | `200` with a stream of length-prefixed frames, until the service ends it |
//! | `GET /health` | nothing | `200` with `ok` |
//! | `GET /metrics` | nothing | `200` with the text of the server's metrics renderer ([`HttpServerConfig::with_metrics`]), content type `text/plain; version=0.0.4`; `404` when the server has none |
//!
//! A service's refusal is answered with its
//! [`RefusalCode`](syncline_transport::RefusalCode) as the status and its
//! reason as a text body; the client gets
//! [`TransportError::Refused`](syncline_transport::TransportError::Refused).
//! A request body over the server's
//! [`Limits::max_frame_len`](syncline_transport::Limits::max_frame_len) is
//! answered `413` without reaching the service. A bearer token
//! (`Authorization: Bearer <token>`) reaches the service as
//! [`PeerInfo::bearer_token`](syncline_transport::PeerInfo::bearer_token); the
//! service decides what it allows.
//!
//! Over HTTPS, a server can require mutual TLS with a [`ClientAuth`]: clients
//! present a certificate ([`HttpClientConfig::with_identity`]), and its DER
//! reaches the service as
//! [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity)
//! with every request on that connection.
//!
//! The health check and the metrics work with any HTTP client:
//!
//! ```text
//! curl -i http://127.0.0.1:8080/health
//! curl http://127.0.0.1:8080/metrics
//! ```
//!
//! The transport keeps no metrics of its own: `/metrics` answers whatever
//! the renderer given to [`HttpServerConfig::with_metrics`] returns (a
//! Prometheus exporter's text, say), to any caller that reaches the
//! listener, without asking for a token.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use syncline_http::{HttpClient, HttpClientConfig, HttpServer, HttpServerConfig};
//! use syncline_transport::{
//!     BoxFuture, Connector, Frame, PeerInfo, RefusalCode, Service, ServiceError, TransportError,
//! };
//!
//! /// Answers every request with its own bytes, to callers with the token.
//! #[derive(Debug)]
//! struct Echo;
//!
//! impl Service for Echo {
//!     fn exchange<'a>(
//!         &'a self,
//!         peer: &'a PeerInfo,
//!         request: Frame,
//!     ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
//!         Box::pin(async move {
//!             match peer.bearer_token.as_deref() {
//!                 Some("s3cret") => Ok(request),
//!                 _ => Err(ServiceError::unauthorized("who are you?")),
//!             }
//!         })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), TransportError> {
//! // Port 0 picks a free port; `server.url()` says which.
//! let addr = SocketAddr::from(([127, 0, 0, 1], 0));
//! let server = HttpServer::bind(addr, Arc::new(Echo), HttpServerConfig::new()).await?;
//!
//! let config = HttpClientConfig::new().with_bearer_token("s3cret");
//! let client = HttpClient::new(&server.url(), config)?;
//! let conn = client.connect().await?;
//! assert_eq!(conn.exchange(Frame::from_static(b"ping")).await?, "ping");
//!
//! // Without the token the service refuses, and the client gets its code.
//! let stranger = HttpClient::new(&server.url(), HttpClientConfig::new())?;
//! let refused = stranger.connect().await?.exchange(Frame::new()).await;
//! assert!(matches!(
//!     refused,
//!     Err(TransportError::Refused { code: RefusalCode::UNAUTHORIZED, .. })
//! ));
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_all()
//! #     .build()
//! #     .expect("a runtime")
//! #     .block_on(demo())
//! #     .expect("the demo runs");
//! ```
//!
//! For HTTPS, give the server an [`Identity`] and a [`ClientAuth`]
//! ([`HttpServerConfig::with_tls`]) and the client a [`ServerTrust`]
//! ([`HttpClientConfig::with_server_trust`]): CA roots, or for a development
//! server with a [`SelfSigned`] certificate its pinned [`Fingerprint`].
//! Without one the client trusts the Mozilla root certificates. These TLS
//! types are [`syncline_transport::tls`]'s, re-exported here: the QUIC
//! transport takes the same ones. HTTP/2 is negotiated through ALPN over
//! HTTPS; plain HTTP uses HTTP/1.1.
//!
//! ```
//! use std::net::SocketAddr;
//! # use std::sync::Arc;
//! use syncline_http::{
//!     ClientAuth, HttpClient, HttpClientConfig, HttpServer, HttpServerConfig, SelfSigned,
//!     ServerTrust,
//! };
//! # use syncline_transport::{BoxFuture, Connector, Frame, PeerInfo, Service, ServiceError};
//! # #[derive(Debug)]
//! # struct Echo;
//! # impl Service for Echo {
//! #     fn exchange<'a>(&'a self, _: &'a PeerInfo, request: Frame)
//! #         -> BoxFuture<'a, Result<Frame, ServiceError>> {
//! #         Box::pin(async move { Ok(request) })
//! #     }
//! # }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
//! let config = HttpServerConfig::new().with_tls(cert.identity(), ClientAuth::none());
//! let server = HttpServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::new(Echo), config)
//!     .await?;
//!
//! let trust = ServerTrust::pinned(cert.fingerprint());
//! let client = HttpClient::new(&server.url(), HttpClientConfig::new().with_server_trust(trust))?;
//! let conn = client.connect().await?;
//! assert_eq!(conn.exchange(Frame::from_static(b"sealed")).await?, "sealed");
//! server.shutdown().await;
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_all()
//! #     .build()
//! #     .expect("a runtime")
//! #     .block_on(demo())
//! #     .expect("the demo runs");
//! ```
//!
//! # Cargo features
//!
//! None: HTTP/1.1, HTTP/2 and HTTPS are always built, with rustls on its ring
//! provider (never aws-lc-rs).

mod body;
mod client;
mod server;
mod tls;
mod wire;

pub use client::{HttpClient, HttpClientConfig};
pub use server::{HttpServer, HttpServerConfig};
pub use syncline_transport::tls::{
    ClientAuth, Fingerprint, Identity, Material, ParseFingerprintError, SelfSigned, ServerTrust,
    TlsError,
};
pub use wire::{EXCHANGE_PATH, HEALTH_PATH, METRICS_PATH, SUBSCRIBE_PATH};
