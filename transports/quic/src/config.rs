//! Client and server configuration: TLS trust and identity, frame limits,
//! keep-alive and timeouts.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{
    QuicClientConfig as QuinnClientCrypto, QuicServerConfig as QuinnServerCrypto,
};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use syncline_transport::tls::{self, ClientAuth, Identity, ServerTrust};
use syncline_transport::{Limits, TransportError};

use crate::ALPN;

/// QUIC carries TLS 1.3 only (RFC 9001).
const TLS_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The default keep-alive interval of clients and servers: 5 seconds.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);
/// The default idle timeout: a connection with no traffic (keep-alives count)
/// for 30 seconds is dead.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a client waits for a connection's handshake: 10 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of streams (exchanges and subscriptions) one client may
/// have open at once on one connection: 256. Further ones wait for a slot.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;

/// How a [`QuicConnector`](crate::QuicConnector) connects: whom it trusts,
/// what it presents, its limits and timers.
#[derive(Debug, Clone)]
pub struct QuicClientConfig {
    trust: ServerTrust,
    identity: Option<Identity>,
    limits: Limits,
    keep_alive: Option<Duration>,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl QuicClientConfig {
    /// A client that trusts servers by `trust`, presents no certificate, and
    /// uses the default limits and timers.
    pub fn new(trust: ServerTrust) -> Self {
        QuicClientConfig {
            trust,
            identity: None,
            limits: Limits::new(),
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Presents `identity` to servers that ask for a client certificate
    /// (mutual TLS).
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Sets the frame limits the client enforces on what it sends and receives.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how often an otherwise idle connection sends a keep-alive; `None`
    /// sends none (the connection then dies after the idle timeout without
    /// traffic).
    pub fn with_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets how long a connection may go without hearing from the server
    /// before it counts as dead. The smaller of the client's and the server's
    /// timeouts applies.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how long `connect` waits for the handshake before failing.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The frame limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The keep-alive interval.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The quinn configuration this describes.
    pub(crate) fn quinn_config(&self) -> Result<quinn::ClientConfig, TransportError> {
        let crypto =
            tls::client_config(&self.trust, self.identity.as_ref(), &[ALPN], TLS_VERSIONS)?;
        let crypto =
            QuinnClientCrypto::try_from(crypto).map_err(|error| TransportError::Local {
                reason: format!("the TLS configuration cannot carry QUIC: {error}"),
            })?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        // The server opens no streams to the client.
        config.transport_config(Arc::new(transport_config(
            self.keep_alive,
            self.idle_timeout,
            0,
        )?));
        Ok(config)
    }
}

/// How a [`QuicServer`](crate::QuicServer) serves: its identity, whom it asks
/// for a client certificate, its limits and timers.
#[derive(Debug, Clone)]
pub struct QuicServerConfig {
    identity: Identity,
    client_auth: ClientAuth,
    limits: Limits,
    keep_alive: Option<Duration>,
    idle_timeout: Duration,
    max_concurrent_streams: u32,
}

impl QuicServerConfig {
    /// A server presenting `identity`, asking clients for no certificate, with
    /// the default limits and timers.
    pub fn new(identity: Identity) -> Self {
        QuicServerConfig {
            identity,
            client_auth: ClientAuth::none(),
            limits: Limits::new(),
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        }
    }

    /// Sets whether clients must present a certificate, and which are
    /// accepted (mutual TLS).
    pub fn with_client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Sets the frame limits the server enforces on what it receives and sends.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how often an otherwise idle connection sends a keep-alive; `None`
    /// sends none.
    pub fn with_keep_alive(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Sets how long a connection may go without hearing from the client
    /// before the server drops it.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how many streams (exchanges and subscriptions) one client may have
    /// open at once on one connection; at least 1.
    pub fn with_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams.max(1);
        self
    }

    /// The frame limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The keep-alive interval.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// How many streams one connection may have open at once.
    pub fn max_concurrent_streams(&self) -> u32 {
        self.max_concurrent_streams
    }

    /// The quinn configuration this describes.
    pub(crate) fn quinn_config(&self) -> Result<quinn::ServerConfig, TransportError> {
        let crypto = tls::server_config(&self.identity, &self.client_auth, &[ALPN], TLS_VERSIONS)?;
        let crypto =
            QuinnServerCrypto::try_from(crypto).map_err(|error| TransportError::Local {
                reason: format!("the TLS configuration cannot carry QUIC: {error}"),
            })?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(Arc::new(transport_config(
            self.keep_alive,
            self.idle_timeout,
            self.max_concurrent_streams,
        )?));
        Ok(config)
    }
}

/// Transport parameters shared by both sides: the peer may open
/// `bidi_streams` bidirectional streams at once and no unidirectional ones.
fn transport_config(
    keep_alive: Option<Duration>,
    idle_timeout: Duration,
    bidi_streams: u32,
) -> Result<TransportConfig, TransportError> {
    let idle = IdleTimeout::try_from(idle_timeout).map_err(|_| TransportError::Local {
        reason: format!("idle timeout {idle_timeout:?} is too long for QUIC"),
    })?;
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(Some(idle))
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SelfSigned;

    #[test]
    fn defaults_and_builders() {
        let cert = match SelfSigned::generate(vec!["localhost".to_owned()]) {
            Ok(cert) => cert,
            Err(error) => panic!("{error}"),
        };
        let client = QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint()));
        assert_eq!(client.keep_alive(), Some(DEFAULT_KEEP_ALIVE));
        assert_eq!(client.idle_timeout(), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(client.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        assert!(client.quinn_config().is_ok());
        let client = client
            .with_keep_alive(None)
            .with_connect_timeout(Duration::from_secs(1))
            .with_limits(Limits::new().with_max_frame_len(10));
        assert_eq!(client.keep_alive(), None);
        assert_eq!(client.limits().max_frame_len(), 10);

        let server = QuicServerConfig::new(cert.identity()).with_max_concurrent_streams(0);
        assert_eq!(server.max_concurrent_streams(), 1);
        assert!(server.quinn_config().is_ok());
        let too_long = server.with_idle_timeout(Duration::MAX).quinn_config();
        assert!(matches!(too_long, Err(TransportError::Local { .. })));
    }
}
