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
//! Over HTTPS, a server can require mutual TLS with
//! [`ServerTlsConfig::with_client_roots_pem`]: clients present a certificate
//! issued by one of those CAs
//! ([`HttpClientConfig::with_client_identity_pem`]), and its DER reaches the
//! service as
//! [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity)
//! with every request on that connection.
//!
//! The health check works with any HTTP client:
//!
//! ```text
//! curl -i http://127.0.0.1:8080/health
//! ```
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
//! For HTTPS, give the server a [`ServerTlsConfig`] and the client a root
//! store ([`HttpClientConfig::with_root_certificates_pem`]) or, for a
//! development server with a self-signed certificate, its fingerprint
//! ([`HttpClientConfig::with_pinned_certificate_sha256`] with
//! [`sha256_fingerprint`]). Without either the client trusts the Mozilla
//! root certificates. HTTP/2 is negotiated through ALPN over HTTPS; plain
//! HTTP uses HTTP/1.1.
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
pub use tls::{ServerTlsConfig, sha256_fingerprint};
pub use wire::{EXCHANGE_PATH, HEALTH_PATH, SUBSCRIBE_PATH};
