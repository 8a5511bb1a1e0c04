//! The client side's UDP socket: a quinn endpoint that a connector binds on
//! its first connect, or that the caller binds once and shares.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use syncline_transport::TransportError;

use crate::socket;

/// A client QUIC endpoint: one UDP socket from which any number of
/// [`QuicConnector`](crate::QuicConnector)s open their connections.
///
/// A connector made with [`QuicConnector::new`](crate::QuicConnector::new)
/// binds an endpoint of its own on its first connect and keeps it for every
/// later connection and reconnection. Bind one explicitly and hand it to
/// [`QuicConnector::with_endpoint`](crate::QuicConnector::with_endpoint) to
/// share one socket across connectors: a process that syncs with several
/// hubs, or a load test holding thousands of client connections, then uses
/// one UDP port instead of one per connection.
///
/// Cloning is cheap and shares the socket. Every connection holds a handle
/// too, so closing a connection never closes the endpoint, and connections
/// outlive the connectors and endpoint handles that made them. The socket is
/// released once the last handle is dropped and the last connection has
/// closed and drained.
///
/// Every server's replies arrive at this one socket: open thousands of
/// connections in waves (tens of handshakes at a time), as a burst of a few
/// hundred handshakes overflows a default UDP receive buffer (about 200 KiB
/// on Linux) and lost handshake packets are resent only after a second or
/// more.
///
/// An IPv4 endpoint reaches IPv4 servers only. An IPv6 endpoint on the
/// unspecified address (`[::]`) is made dual-stack where the system allows,
/// and then also reaches IPv4 servers; one on a specific IPv6 address reaches
/// IPv6 servers only. [`for_server`](QuicClientEndpoint::for_server) picks the
/// family that reaches a given server.
///
/// ```
/// use syncline_quic::{QuicClientConfig, QuicClientEndpoint, QuicConnector, SelfSigned, ServerTrust};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
/// # let trust = ServerTrust::pinned(cert.fingerprint());
/// let endpoint = QuicClientEndpoint::bind("0.0.0.0:0".parse()?)?;
/// let config = QuicClientConfig::new(trust);
/// let hub_a = QuicConnector::with_endpoint(
///     endpoint.clone(),
///     "127.0.0.1:4433".parse()?,
///     "localhost",
///     config.clone(),
/// )?;
/// let hub_b = QuicConnector::with_endpoint(
///     endpoint.clone(),
///     "127.0.0.1:4434".parse()?,
///     "localhost",
///     config,
/// )?;
/// // Both connect from the same UDP port.
/// assert_eq!(hub_a.local_addr(), Some(endpoint.local_addr()));
/// assert_eq!(hub_b.local_addr(), Some(endpoint.local_addr()));
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct QuicClientEndpoint {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
}

impl QuicClientEndpoint {
    /// Binds a UDP socket on `addr` (port 0 picks a free port) for client
    /// connections.
    ///
    /// Must be called within a tokio runtime, which runs the endpoint's task;
    /// connections made from it may then run on any tokio runtime while that
    /// one lives. Fails with [`TransportError::Local`] when there is no
    /// runtime or the address cannot be bound.
    pub fn bind(addr: SocketAddr) -> Result<Self, TransportError> {
        require_runtime("QuicClientEndpoint::bind")?;
        let endpoint = socket::endpoint(addr, None).map_err(|error| TransportError::Local {
            reason: format!("cannot open a UDP socket on {addr}: {error}"),
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|error| TransportError::Local {
                reason: format!("cannot read the bound address: {error}"),
            })?;
        Ok(QuicClientEndpoint {
            endpoint,
            local_addr,
        })
    }

    /// Binds a UDP socket on the unspecified address of `server_addr`'s family
    /// (`0.0.0.0` or `[::]`) and a free port: an endpoint that reaches that
    /// server and any other of its family.
    ///
    /// Fails as [`bind`](QuicClientEndpoint::bind) does.
    pub fn for_server(server_addr: SocketAddr) -> Result<Self, TransportError> {
        let addr: SocketAddr = if server_addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        Self::bind(addr)
    }

    /// The socket address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many connections the endpoint holds, of every connector that shares
    /// it. A closed connection counts until it has drained (a few round-trip
    /// times).
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    /// Waits until every connection on the endpoint has closed and drained,
    /// so that the servers have heard of the closes. Connections still open
    /// are waited for too: close them first.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }

    /// Fails with [`TransportError::Local`] if this endpoint cannot reach a
    /// server at `server_addr`, naming the endpoint to bind instead.
    pub(crate) fn check_reaches(&self, server_addr: SocketAddr) -> Result<(), TransportError> {
        let reason = match (self.local_addr, server_addr) {
            (SocketAddr::V4(_), SocketAddr::V6(_)) => format!(
                "the client endpoint on {} is IPv4 and cannot reach the IPv6 server {server_addr}: \
                 bind one on [::]:0",
                self.local_addr
            ),
            (SocketAddr::V6(local), SocketAddr::V4(_)) if !local.ip().is_unspecified() => format!(
                "the client endpoint on {} is bound to an IPv6 address and cannot reach the \
                 IPv4 server {server_addr}: bind one on 0.0.0.0:0",
                self.local_addr
            ),
            _ => return Ok(()),
        };
        Err(TransportError::Local { reason })
    }

    /// The quinn endpoint.
    pub(crate) fn quinn(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

/// Fails with [`TransportError::Local`] outside a tokio runtime, where quinn
/// could not spawn its tasks.
pub(crate) fn require_runtime(what: &str) -> Result<(), TransportError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(TransportError::Local {
            reason: format!("{what} must be called within a tokio runtime"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(addr: &str) -> QuicClientEndpoint {
        let addr = match addr.parse() {
            Ok(addr) => addr,
            Err(error) => panic!("{addr}: {error}"),
        };
        match QuicClientEndpoint::bind(addr) {
            Ok(endpoint) => endpoint,
            Err(error) => panic!("{error}"),
        }
    }

    fn reaches(endpoint: &QuicClientEndpoint, server: &str) -> Result<(), TransportError> {
        match server.parse() {
            Ok(server) => endpoint.check_reaches(server),
            Err(error) => panic!("{server}: {error}"),
        }
    }

    #[tokio::test]
    async fn an_endpoint_reaches_servers_of_its_family() {
        let v4 = endpoint("127.0.0.1:0");
        assert!(reaches(&v4, "192.0.2.1:4433").is_ok());
        let refused = reaches(&v4, "[2001:db8::1]:4433");
        assert!(
            matches!(&refused, Err(TransportError::Local { reason }) if reason.contains("[::]:0")),
            "{refused:?}"
        );
        // IPv6 may be unavailable where the tests run; the rule is the same.
        if let Ok(v6) = QuicClientEndpoint::bind((Ipv6Addr::LOCALHOST, 0).into()) {
            assert!(reaches(&v6, "[2001:db8::1]:4433").is_ok());
            let refused = reaches(&v6, "192.0.2.1:4433");
            assert!(
                matches!(&refused, Err(TransportError::Local { reason }) if reason.contains("0.0.0.0:0")),
                "{refused:?}"
            );
        }
        if let Ok(any) = QuicClientEndpoint::bind((Ipv6Addr::UNSPECIFIED, 0).into()) {
            assert!(reaches(&any, "192.0.2.1:4433").is_ok());
            assert!(reaches(&any, "[2001:db8::1]:4433").is_ok());
        }
    }

    #[tokio::test]
    async fn for_server_picks_the_family() {
        let server: SocketAddr = ([192, 0, 2, 1], 4433).into();
        let endpoint = match QuicClientEndpoint::for_server(server) {
            Ok(endpoint) => endpoint,
            Err(error) => panic!("{error}"),
        };
        assert!(endpoint.local_addr().ip().is_unspecified());
        assert!(endpoint.local_addr().is_ipv4());
        assert_ne!(endpoint.local_addr().port(), 0);
        assert!(endpoint.check_reaches(server).is_ok());
    }

    #[test]
    fn binding_outside_a_runtime_is_a_local_error() {
        let bound = QuicClientEndpoint::bind(([127, 0, 0, 1], 0).into());
        assert!(
            matches!(&bound, Err(TransportError::Local { reason }) if reason.contains("tokio runtime")),
            "{bound:?}"
        );
    }
}
