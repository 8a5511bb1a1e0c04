//! Client UDP sockets over real QUIC: a connector opens every connection from
//! one socket, many connectors share one `QuicClientEndpoint`, and the socket
//! survives closed connections, dropped connectors and server restarts, and
//! goes with its last handle. The server sees each client's port, so "one
//! socket" is checked from both ends.

use std::collections::BTreeSet;
use std::error::Error;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use syncline_quic::{
    QuicClientConfig, QuicClientEndpoint, QuicConnector, QuicServer, QuicServerConfig, SelfSigned,
    ServerTrust,
};
use syncline_transport::{
    BoxFuture, Connection, Connector, Fault, Frame, PeerInfo, Service, ServiceError, Side,
    TransportError,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

type TestResult = Result<(), Box<dyn Error>>;

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("gave up after {WAIT:?} waiting for {what}"),
    }
}

/// Echoes requests and records the UDP port of every client it answers.
#[derive(Debug, Default)]
struct Ports {
    seen: Mutex<Vec<u16>>,
}

impl Ports {
    /// The distinct client ports seen so far.
    fn distinct(&self) -> BTreeSet<u16> {
        self.lock().iter().copied().collect()
    }

    /// How many requests were answered.
    fn exchanges(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u16>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Service for Ports {
    fn exchange<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
        Box::pin(async move {
            let addr: SocketAddr = peer
                .remote
                .parse()
                .map_err(|_| ServiceError::bad_request("unparsable peer address"))?;
            self.lock().push(addr.port());
            Ok(request)
        })
    }
}

/// A server with a pinned self-signed certificate, which it keeps across
/// restarts on the same address.
struct Hub {
    cert: SelfSigned,
    server: QuicServer,
    service: Arc<Ports>,
}

impl Hub {
    fn start() -> Result<Self, Box<dyn Error>> {
        let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
        Self::start_on(cert, localhost(0))
    }

    fn start_on(cert: SelfSigned, addr: SocketAddr) -> Result<Self, Box<dyn Error>> {
        let service = Arc::new(Ports::default());
        let server = QuicServer::bind(
            addr,
            service.clone(),
            QuicServerConfig::new(cert.identity()),
        )?;
        Ok(Hub {
            cert,
            server,
            service,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn config(&self) -> QuicClientConfig {
        QuicClientConfig::new(ServerTrust::pinned(self.cert.fingerprint()))
    }

    /// A connector that binds its own socket.
    fn connector(&self) -> Result<QuicConnector, TransportError> {
        QuicConnector::new(self.addr(), "localhost", self.config())
    }

    /// A connector that connects from `endpoint`.
    fn connector_on(&self, endpoint: &QuicClientEndpoint) -> Result<QuicConnector, TransportError> {
        QuicConnector::with_endpoint(endpoint.clone(), self.addr(), "localhost", self.config())
    }

    /// Shuts the server down and starts a new one on the same address with
    /// the same certificate, once the old socket is gone.
    async fn restart(self) -> Result<Self, Box<dyn Error>> {
        let addr = self.addr();
        let Hub { cert, server, .. } = self;
        within("shutdown", server.shutdown()).await;
        within("the server's socket to be released", released(addr)).await?;
        Self::start_on(cert, addr)
    }

    async fn shutdown(self) {
        within("shutdown", self.server.shutdown()).await;
    }
}

fn localhost(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Returns once `addr` can be bound again: the socket that held it has been
/// dropped by its endpoint's task. Polls, yielding to that task in between.
async fn released(addr: SocketAddr) -> std::io::Result<()> {
    loop {
        match UdpSocket::bind(addr) {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::task::yield_now().await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Exchanges a frame naming `n` and checks the echo.
async fn echo(conn: &dyn Connection, n: usize) -> Result<(), TransportError> {
    let request = Frame::from(format!("request {n}").into_bytes());
    let reply = within("an exchange", conn.exchange(request.clone())).await?;
    assert_eq!(reply, request);
    Ok(())
}

fn port_of(connector: &QuicConnector) -> Result<u16, Box<dyn Error>> {
    Ok(connector
        .local_addr()
        .ok_or("the connector has no socket after connecting")?
        .port())
}

#[tokio::test]
async fn connections_from_one_connector_share_one_udp_port() -> TestResult {
    const CONNECTIONS: usize = 20;
    let hub = Hub::start()?;
    let connector = hub.connector()?;
    assert_eq!(
        connector.local_addr(),
        None,
        "bound before the first connect"
    );

    let mut conns = Vec::new();
    for n in 0..CONNECTIONS {
        let conn = within("a connection", connector.connect()).await?;
        echo(&*conn, n).await?;
        conns.push(conn);
    }
    let port = port_of(&connector)?;
    assert_eq!(hub.service.exchanges(), CONNECTIONS);
    assert_eq!(hub.service.distinct(), BTreeSet::from([port]));

    // They are separate connections: closing one leaves the others open.
    conns[0].close();
    assert!(conns[0].is_closed());
    for (n, conn) in conns.iter().enumerate().skip(1) {
        assert!(!conn.is_closed());
        echo(&**conn, n).await?;
    }

    // Reconnecting after every connection is gone reuses the socket.
    for conn in &conns {
        conn.close();
    }
    drop(conns);
    let conn = within("a reconnection", connector.connect()).await?;
    echo(&*conn, CONNECTIONS).await?;
    assert_eq!(port_of(&connector)?, port);
    assert_eq!(hub.service.distinct(), BTreeSet::from([port]));
    conn.close();
    hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connectors_share_one_endpoint() -> TestResult {
    const CONNECTORS: usize = 200;
    const HANDSHAKES: usize = 20;
    let hub = Hub::start()?;
    let endpoint = QuicClientEndpoint::bind(localhost(0))?;

    // Handshakes are ramped up, HANDSHAKES at a time: a burst of 200 overflows
    // the default UDP receive buffers (about 200 KiB on Linux) at both ends,
    // and a handshake's lost packets are resent only after a second or more.
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let mut tasks = JoinSet::new();
    for n in 0..CONNECTORS {
        let connector = hub.connector_on(&endpoint)?;
        assert_eq!(connector.local_addr(), Some(endpoint.local_addr()));
        let handshakes = handshakes.clone();
        tasks.spawn(async move {
            let conn = {
                let _slot = handshakes.acquire().await;
                connector.connect().await?
            };
            echo(&*conn, n).await?;
            Ok::<_, TransportError>((connector, conn))
        });
    }
    let mut clients = Vec::new();
    while let Some(joined) = within("the clients", tasks.join_next()).await {
        clients.push(joined??);
    }
    assert_eq!(clients.len(), CONNECTORS);
    assert_eq!(endpoint.open_connections(), CONNECTORS);
    assert_eq!(hub.service.exchanges(), CONNECTORS);
    assert_eq!(
        hub.service.distinct(),
        BTreeSet::from([endpoint.local_addr().port()])
    );

    // Every connection is still usable, concurrently.
    let clients: Vec<_> = clients
        .into_iter()
        .map(|(_, conn)| Arc::from(conn))
        .collect();
    let mut tasks = JoinSet::new();
    for (n, conn) in clients.iter().enumerate() {
        let conn: Arc<dyn Connection> = Arc::clone(conn);
        tasks.spawn(async move { echo(&*conn, CONNECTORS + n).await });
    }
    while let Some(joined) = within("the second round", tasks.join_next()).await {
        joined??;
    }
    assert_eq!(hub.service.exchanges(), 2 * CONNECTORS);
    for conn in &clients {
        conn.close();
    }
    within("the closes to drain", endpoint.wait_idle()).await;
    assert_eq!(endpoint.open_connections(), 0);
    hub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn closing_a_connection_or_dropping_a_connector_leaves_the_socket_open() -> TestResult {
    let hub = Hub::start()?;
    let endpoint = QuicClientEndpoint::bind(localhost(0))?;
    let a = hub.connector_on(&endpoint)?;
    let b = hub.connector_on(&endpoint)?;
    let conn_a = within("a connection", a.connect()).await?;
    let conn_b = within("a connection", b.connect()).await?;
    echo(&*conn_a, 0).await?;
    echo(&*conn_b, 1).await?;

    // Closing one connector's connection closes neither the endpoint nor the
    // other connector's connection.
    conn_a.close();
    match within("an exchange", conn_a.exchange(Frame::from_static(b"x"))).await {
        Err(TransportError::Closed { by: Side::Local }) => {}
        other => panic!("expected a locally closed connection, got {other:?}"),
    }
    echo(&*conn_b, 2).await?;
    let conn_a = within("a reconnection", a.connect()).await?;
    echo(&*conn_a, 3).await?;

    // Connections outlive their connectors and the caller's endpoint handle.
    drop((a, b, endpoint));
    echo(&*conn_a, 4).await?;
    echo(&*conn_b, 5).await?;

    // The same for a connector's own socket.
    let own = hub.connector()?;
    let conn_own = within("a connection", own.connect()).await?;
    let own_port = port_of(&own)?;
    drop(own);
    echo(&*conn_own, 6).await?;

    assert_eq!(hub.service.distinct().len(), 2);
    assert!(hub.service.distinct().contains(&own_port));
    hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_the_server_restarts_reuses_the_socket() -> TestResult {
    let hub = Hub::start()?;
    let endpoint = QuicClientEndpoint::bind(localhost(0))?;
    let shared = hub.connector_on(&endpoint)?;
    let own = hub.connector()?;
    let before_shared = within("a connection", shared.connect()).await?;
    let before_own = within("a connection", own.connect()).await?;
    echo(&*before_shared, 0).await?;
    echo(&*before_own, 1).await?;
    let own_port = port_of(&own)?;

    let hub = hub.restart().await?;
    for conn in [&before_shared, &before_own] {
        match within("an exchange after the restart", conn.exchange(Frame::new())).await {
            Err(error) => assert_eq!(error.fault(), Fault::Network, "{error}"),
            Ok(reply) => panic!("an old connection reached the new server: {reply:?}"),
        }
    }

    let after_shared = within("a reconnection", shared.connect()).await?;
    let after_own = within("a reconnection", own.connect()).await?;
    echo(&*after_shared, 2).await?;
    echo(&*after_own, 3).await?;
    assert_eq!(shared.local_addr(), Some(endpoint.local_addr()));
    assert_eq!(port_of(&own)?, own_port);
    assert_eq!(
        hub.service.distinct(),
        BTreeSet::from([endpoint.local_addr().port(), own_port])
    );
    hub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_socket_goes_with_its_last_handle() -> TestResult {
    let hub = Hub::start()?;

    // A shared endpoint: drained, then dropped by the caller.
    let endpoint = QuicClientEndpoint::bind(localhost(0))?;
    let local = endpoint.local_addr();
    let connector = hub.connector_on(&endpoint)?;
    let conn = within("a connection", connector.connect()).await?;
    echo(&*conn, 0).await?;
    conn.close();
    drop((conn, connector));
    within("the close to drain", endpoint.wait_idle()).await;
    drop(endpoint);
    within("the shared socket to be released", released(local)).await?;

    // A connector's own socket goes once the connector and its connections
    // are gone and the connections have drained.
    let connector = hub.connector()?;
    let conn = within("a connection", connector.connect()).await?;
    echo(&*conn, 1).await?;
    let local = connector.local_addr().ok_or("no socket after connecting")?;
    conn.close();
    drop((conn, connector));
    within("the connector's socket to be released", released(local)).await?;
    hub.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_endpoint_of_the_wrong_family_is_refused() -> TestResult {
    let hub = Hub::start()?;
    let endpoint = QuicClientEndpoint::bind(localhost(0))?;
    let v6_server: SocketAddr = "[::1]:4433".parse()?;
    match QuicConnector::with_endpoint(endpoint, v6_server, "localhost", hub.config()) {
        Err(TransportError::Local { reason }) => {
            assert!(
                reason.contains("IPv4") && reason.contains("[::]:0"),
                "{reason}"
            );
        }
        other => panic!("expected a local error, got {other:?}"),
    }
    hub.shutdown().await;
    Ok(())
}

/// A connector's own socket lives on the runtime of its first connect; used
/// again from another runtime after that one is gone, it binds a new socket.
/// A shared endpoint whose runtime is gone is the caller's to replace.
#[test]
fn a_socket_whose_runtime_is_gone_is_replaced_or_reported() -> TestResult {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let hub_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let hub = hub_runtime.block_on(async { Hub::start() })?;
    let own = hub.connector()?;

    let first = runtime()?;
    let shared = first.block_on(async {
        let conn = within("a connection", own.connect()).await?;
        echo(&*conn, 0).await?;
        conn.close();
        let endpoint = QuicClientEndpoint::bind(localhost(0))?;
        Ok::<_, Box<dyn Error>>(hub.connector_on(&endpoint)?)
    })?;
    drop(first);

    runtime()?.block_on(async {
        let conn = within("a connection", own.connect()).await?;
        echo(&*conn, 1).await?;
        conn.close();
        match within("a connection", shared.connect()).await {
            Err(TransportError::Local { reason }) => {
                assert!(reason.contains("has stopped"), "{reason}");
            }
            Err(other) => panic!("expected a local error, got {other:?}"),
            Ok(_) => panic!("connected from an endpoint whose runtime is gone"),
        }
        Ok::<_, Box<dyn Error>>(())
    })?;
    assert_eq!(hub.service.exchanges(), 2);
    hub_runtime.block_on(hub.shutdown());
    Ok(())
}
