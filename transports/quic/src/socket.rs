//! The UDP sockets under endpoints: bound with room for bursts.
//!
//! A hub answering a thousand subscribers at once, or a process with a
//! thousand client connections on one endpoint, receives more datagrams
//! in a burst than a default socket buffer holds (about 208 KiB on
//! Linux); the kernel drops the rest and QUIC waits out a retransmission
//! timeout for each. Endpoints here ask for [`SOCKET_BUFFER`] each way;
//! the system may grant less (`net.core.rmem_max`, `wmem_max`), which is
//! then what they get.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

/// The receive and send buffer each endpoint's socket asks for: 4 MiB.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// An endpoint on a new UDP socket bound on `addr`, with buffers of
/// [`SOCKET_BUFFER`] where the system allows; a server endpoint with
/// `server`. An IPv6 wildcard socket is made dual-stack where the system
/// allows, as quinn does for clients. Must run within a tokio runtime.
pub(crate) fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && server.is_none() {
        // Best effort, as quinn's own client sockets.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a system that caps them lower still gives its maximum.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
}
