//! Transports: byte pipes that carry sync exchanges. They know frames,
//! connections and addresses, never records.
//!
//! The traits come from `syncline-transport`; each transport crate is
//! re-exported here behind its cargo feature, so switching transports is a
//! one-line change in Cargo.toml.

pub use syncline_transport::{
    BoxFuture, Connection, Connector, Fault, Frame, Limits, PeerInfo, ServerHandle, Service,
    ServiceError, Subscription, TransportError,
};

/// The in-process loopback transport, with seeded fault injection
/// (feature `loopback`, on by default).
#[cfg(feature = "loopback")]
pub use syncline_loopback as loopback;

/// The QUIC transport: quinn over rustls (feature `quic`).
#[cfg(feature = "quic")]
pub use syncline_quic as quic;

/// The HTTP transport: an HTTP/1.1 and HTTP/2 server and client, HTTPS through
/// rustls (feature `http`).
#[cfg(feature = "http")]
pub use syncline_http as http;
