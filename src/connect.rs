//! Transports chosen by URL: [`connect`] turns `quic://`, `http://`,
//! `https://` and `loopback://` addresses into a [`Connector`], and
//! [`sync_once`] syncs a replica with one of them and returns.
//!
//! Switching transports is one URL and one cargo feature: the code that
//! builds the engine does not change.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use syncline_transport::{Connector, Limits, TransportError};

use crate::replica::Replica;
use crate::sync::config::SyncConfig;
use crate::sync::engine::SyncEngine;
use crate::sync::error::SyncError;
use crate::sync::status::SyncReport;

/// How [`connect`] builds a connector, beyond what the URL says. The
/// defaults suit a client that trusts the Mozilla roots over HTTPS and
/// pins the server's certificate over QUIC (`?pin=` in the URL).
#[derive(Clone, Default)]
pub struct ConnectConfig {
    limits: Option<Limits>,
    connect_timeout: Option<Duration>,
    #[cfg(any(feature = "quic", feature = "http"))]
    identity: Option<syncline_transport::tls::Identity>,
    #[cfg(any(feature = "quic", feature = "http"))]
    trust: Option<syncline_transport::tls::ServerTrust>,
    #[cfg(feature = "loopback")]
    network: Option<syncline_loopback::LoopbackNetwork>,
    #[cfg(feature = "quic")]
    quic_endpoint: Option<syncline_quic::QuicClientEndpoint>,
    name: Option<String>,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("limits", &self.limits)
            .field("connect_timeout", &self.connect_timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ConnectConfig {
    /// The defaults: each transport's own limits and timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frame limits for the connection (default: each transport's).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// How long a connection attempt may take (QUIC and HTTP; default:
    /// each transport's).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// A client certificate for servers that ask for one (QUIC and HTTPS).
    #[cfg(any(feature = "quic", feature = "http"))]
    pub fn with_identity(mut self, identity: syncline_transport::tls::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// How to trust the server when the URL has no `pin`: for QUIC, which
    /// otherwise requires a pin, and for HTTPS, which otherwise trusts the
    /// Mozilla roots.
    #[cfg(any(feature = "quic", feature = "http"))]
    pub fn with_trust(mut self, trust: syncline_transport::tls::ServerTrust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// The network `loopback://` URLs reach (default: the process's own,
    /// [`syncline_loopback::LoopbackNetwork::process`]).
    #[cfg(feature = "loopback")]
    pub fn with_network(mut self, network: syncline_loopback::LoopbackNetwork) -> Self {
        self.network = Some(network);
        self
    }

    /// The UDP socket `quic://` connectors share (default: each connector
    /// binds its own on its first connect, and shares it among its
    /// connections). One endpoint for many connectors keeps a process
    /// that syncs with many hubs, or a load test of thousands of clients,
    /// on one socket.
    #[cfg(feature = "quic")]
    pub fn with_quic_endpoint(mut self, endpoint: syncline_quic::QuicClientEndpoint) -> Self {
        self.quic_endpoint = Some(endpoint);
        self
    }

    /// The name a `loopback://` client takes on its network (default
    /// `client`): what the server sees as the peer's address, and what
    /// partitions name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Why [`connect`] could not build a connector. Nothing was connected:
/// connectors connect when first used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse as `scheme://address`.
    #[error("bad sync URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No transport serves this scheme.
    #[error("unknown scheme {scheme:?} in {url:?} (quic://, http://, https:// or loopback://)")]
    UnknownScheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The scheme's transport is behind a cargo feature this build lacks.
    #[error("{scheme}:// URLs need syncline's `{feature}` cargo feature, which this build lacks")]
    FeatureDisabled {
        /// The scheme.
        scheme: &'static str,
        /// The feature that brings it.
        feature: &'static str,
    },
    /// The host did not resolve to an address.
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve {
        /// The host and port.
        host: String,
        /// Why.
        reason: String,
    },
    /// The transport refused its configuration (a bad server name, TLS
    /// material rustls cannot use).
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A connector for the sync server at `url`; the transport is chosen by
/// the scheme:
///
/// | URL | transport | feature |
/// | --- | --- | --- |
/// | `quic://host:port?pin=HEX` | QUIC, trusting the certificate with that SHA-256 fingerprint | `quic` |
/// | `http://host:port[/prefix]` | HTTP/1.1 or HTTP/2 | `http` |
/// | `https://host:port[/prefix][?pin=HEX]` | HTTPS, trusting the Mozilla roots, or the pinned certificate | `http` |
/// | `loopback://name` | the in-process network ([`ConnectConfig::with_network`]) | `loopback` (default) |
///
/// QUIC also takes `server_name=NAME` (the name the certificate must
/// carry; default the URL's host) and needs a `pin` unless
/// [`ConnectConfig::with_trust`] says how to trust the server. A URL
/// whose scheme needs a missing feature fails with
/// [`ConnectError::FeatureDisabled`], naming it. Host names resolve here,
/// once (QUIC); nothing connects until the connector is used.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use syncline::transport::loopback::LoopbackNetwork;
/// use syncline::{CollectionConfig, Replica, ReplicaConfig, SyncConfig, SyncServer};
///
/// let hub = Replica::in_memory(ReplicaConfig::default())?;
/// hub.define_collection("todos", CollectionConfig::default())?;
/// hub.collection("todos")?.put("milk", "buy milk")?;
/// let _server = LoopbackNetwork::process().serve(
///     "docs-hub",
///     SyncServer::new(hub).into_service(),
///     Default::default(),
/// )?;
///
/// let phone = Replica::in_memory(ReplicaConfig::default())?;
/// phone.define_collection("todos", CollectionConfig::default())?;
/// // The same call with "quic://hub.example:4433?pin=..." or
/// // "https://hub.example" syncs over QUIC or HTTPS instead.
/// let report = syncline::sync_once(&phone, "loopback://docs-hub", SyncConfig::default()).await?;
/// assert_eq!(report.pulled, 1);
/// # Ok(()) }
/// ```
pub fn connect(url: &str, config: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    let parsed = SyncUrl::parse(url)?;
    match parsed.scheme.as_str() {
        "quic" => quic(&parsed, config),
        "http" | "https" => http(&parsed, config),
        "loopback" => loopback(&parsed, config),
        _ => Err(ConnectError::UnknownScheme {
            url: url.to_owned(),
            scheme: parsed.scheme.clone(),
        }),
    }
}

/// A connector that fails over: it connects to the first of its
/// connectors that answers, starting from the one that answered last, and
/// moves on to the next when one is unreachable. For clients of several
/// hubs that peer with each other ([`connect_any`]).
///
/// The engine on top sees another remote when it moves: it keeps a pull
/// and a push cursor per hub (a hub it never synced with starts from
/// zero: a bootstrap of what the client asks for, its own changes sent
/// again as duplicates), and goes back to a hub's cursors when it returns.
#[derive(Debug)]
pub struct Failover {
    connectors: Vec<Arc<dyn Connector>>,
    /// The connector that answered last.
    current: std::sync::atomic::AtomicUsize,
    addr: String,
}

impl Failover {
    /// Fails over among `connectors`, in order. With none, every connect
    /// fails with a network error.
    pub fn new(connectors: Vec<Arc<dyn Connector>>) -> Self {
        let addr = connectors
            .iter()
            .map(|c| c.addr())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            connectors,
            current: std::sync::atomic::AtomicUsize::new(0),
            addr,
        }
    }

    /// The index of the connector that answered last (the first at start).
    pub fn current(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Connector for Failover {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn connect(
        &self,
    ) -> syncline_transport::BoxFuture<
        '_,
        Result<Box<dyn syncline_transport::Connection>, TransportError>,
    > {
        Box::pin(async move {
            let start = self.current();
            let count = self.connectors.len();
            let mut last = None;
            for step in 0..count {
                let at = (start + step) % count;
                match self.connectors[at].connect().await {
                    Ok(connection) => {
                        if at != start {
                            tracing::info!(
                                from = self.connectors[start].addr(),
                                to = self.connectors[at].addr(),
                                "failed over"
                            );
                        }
                        self.current.store(at, std::sync::atomic::Ordering::Relaxed);
                        return Ok(connection);
                    }
                    Err(e) => {
                        tracing::debug!(addr = self.connectors[at].addr(), error = %e, "unreachable");
                        last = Some(e);
                    }
                }
            }
            Err(last.unwrap_or_else(|| TransportError::network("no connector")))
        })
    }
}

/// A connector for several hubs that peer with each other: the URLs in
/// order of preference, each as [`connect`] takes it, behind a
/// [`Failover`]. Fails if any URL does.
pub fn connect_any(
    urls: &[&str],
    config: &ConnectConfig,
) -> Result<Arc<dyn Connector>, ConnectError> {
    let connectors = urls
        .iter()
        .map(|url| connect(url, config))
        .collect::<Result<Vec<_>, _>>()?;
    if connectors.is_empty() {
        return Err(ConnectError::InvalidUrl {
            url: String::new(),
            reason: "no URL given".to_owned(),
        });
    }
    Ok(Arc::new(Failover::new(connectors)))
}

/// Why [`sync_once`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncOnceError {
    /// The URL named no usable transport.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The sync round failed; what it committed before it failed stays,
    /// and the next sync resumes from there.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// Syncs `replica` with the server at `url` once: pushes what the server
/// lacks and pulls until caught up with the server's feed as it stood when
/// the round began, then stops the engine (which makes the pulled batches
/// durable). For scripts, tests and command-line tools; an app keeps a
/// [`SyncEngine`] running instead. `config.on_demand` is forced on.
pub async fn sync_once(
    replica: &Replica,
    url: &str,
    config: SyncConfig,
) -> Result<SyncReport, SyncOnceError> {
    let connector = connect(url, &ConnectConfig::default())?;
    Ok(sync_once_with(replica, connector, config).await?)
}

/// [`sync_once`] through a connector made elsewhere.
pub async fn sync_once_with(
    replica: &Replica,
    connector: Arc<dyn Connector>,
    config: SyncConfig,
) -> Result<SyncReport, SyncError> {
    let config = SyncConfig {
        on_demand: true,
        ..config
    };
    let engine = SyncEngine::start(replica.clone(), connector, config);
    let report = engine.sync_now().await;
    engine.stop().await;
    report
}

/// A sync URL taken apart: `scheme://authority/path?query`.
#[derive(Debug)]
#[cfg_attr(
    not(any(feature = "quic", feature = "http", feature = "loopback")),
    allow(dead_code)
)]
struct SyncUrl<'a> {
    url: &'a str,
    scheme: String,
    authority: &'a str,
    /// Everything from the first `/` after the authority, query excluded.
    path: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

#[cfg_attr(
    not(any(feature = "quic", feature = "http", feature = "loopback")),
    allow(dead_code)
)]
impl<'a> SyncUrl<'a> {
    fn parse(url: &'a str) -> Result<Self, ConnectError> {
        let invalid = |reason: &str| ConnectError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("no scheme (quic://, http://, https:// or loopback://)"))?;
        if scheme.is_empty() {
            return Err(invalid("empty scheme"));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(invalid("no host or name"));
        }
        let mut params = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.push((name, value));
        }
        Ok(SyncUrl {
            url,
            scheme: scheme.to_ascii_lowercase(),
            authority,
            path,
            params,
        })
    }

    /// The value of query parameter `name`.
    #[cfg_attr(not(any(feature = "quic", feature = "http")), allow(dead_code))]
    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find_map(|(n, v)| (*n == name).then_some(*v))
    }

    /// Fails on a query parameter not in `known`, so a typo is not ignored.
    fn only_params(&self, known: &[&str]) -> Result<(), ConnectError> {
        match self.params.iter().find(|(n, _)| !known.contains(n)) {
            Some((name, _)) => Err(ConnectError::InvalidUrl {
                url: self.url.to_owned(),
                reason: if known.is_empty() {
                    format!("unexpected query parameter {name:?}")
                } else {
                    format!(
                        "unknown query parameter {name:?} (known: {})",
                        known.join(", ")
                    )
                },
            }),
            None => Ok(()),
        }
    }

    #[cfg(any(feature = "quic", feature = "http"))]
    fn pin(&self) -> Result<Option<syncline_transport::tls::Fingerprint>, ConnectError> {
        self.param("pin")
            .map(|pin| {
                pin.parse().map_err(|e| ConnectError::InvalidUrl {
                    url: self.url.to_owned(),
                    reason: format!("bad pin: {e}"),
                })
            })
            .transpose()
    }
}

#[cfg(feature = "quic")]
fn quic(url: &SyncUrl<'_>, config: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    use std::net::ToSocketAddrs;
    use syncline_quic::{QuicClientConfig, QuicConnector, ServerTrust};

    url.only_params(&["pin", "server_name"])?;
    if !url.path.is_empty() && url.path != "/" {
        return Err(ConnectError::InvalidUrl {
            url: url.url.to_owned(),
            reason: "a quic:// URL has no path".to_owned(),
        });
    }
    let trust = match (url.pin()?, &config.trust) {
        (Some(pin), _) => ServerTrust::pinned(pin),
        (None, Some(trust)) => trust.clone(),
        (None, None) => {
            return Err(ConnectError::InvalidUrl {
                url: url.url.to_owned(),
                reason: "a quic:// URL needs ?pin=FINGERPRINT (the hub prints it), \
                         or ConnectConfig::with_trust"
                    .to_owned(),
            });
        }
    };
    let addr = url
        .authority
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve {
            host: url.authority.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConnectError::Resolve {
            host: url.authority.to_owned(),
            reason: "no address".to_owned(),
        })?;
    let server_name = match url.param("server_name") {
        Some(name) => name.to_owned(),
        None => host_of(url.authority).to_owned(),
    };
    let mut quic = QuicClientConfig::new(trust);
    if let Some(identity) = &config.identity {
        quic = quic.with_identity(identity.clone());
    }
    if let Some(limits) = config.limits {
        quic = quic.with_limits(limits);
    }
    if let Some(timeout) = config.connect_timeout {
        quic = quic.with_connect_timeout(timeout);
    }
    Ok(Arc::new(match &config.quic_endpoint {
        Some(endpoint) => QuicConnector::with_endpoint(endpoint.clone(), addr, server_name, quic)?,
        None => QuicConnector::new(addr, server_name, quic)?,
    }))
}

#[cfg(not(feature = "quic"))]
fn quic(_: &SyncUrl<'_>, _: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: "quic",
        feature: "quic",
    })
}

/// The host of `host:port`, without an IPv6 address's brackets.
#[cfg(feature = "quic")]
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(feature = "http")]
fn http(url: &SyncUrl<'_>, config: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    use syncline_http::{HttpClient, HttpClientConfig, ServerTrust};

    let https = url.scheme == "https";
    url.only_params(if https { &["pin"] } else { &[] })?;
    let mut http = HttpClientConfig::new();
    if https {
        match (url.pin()?, &config.trust) {
            (Some(pin), _) => http = http.with_server_trust(ServerTrust::pinned(pin)),
            (None, Some(trust)) => http = http.with_server_trust(trust.clone()),
            (None, None) => {}
        }
        if let Some(identity) = &config.identity {
            http = http.with_identity(identity.clone());
        }
    }
    if let Some(limits) = config.limits {
        http = http.with_limits(limits);
    }
    if let Some(timeout) = config.connect_timeout {
        http = http.with_connect_timeout(timeout);
    }
    let base = format!("{}://{}{}", url.scheme, url.authority, url.path);
    Ok(Arc::new(HttpClient::new(&base, http)?))
}

#[cfg(not(feature = "http"))]
fn http(url: &SyncUrl<'_>, _: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: if url.scheme == "https" {
            "https"
        } else {
            "http"
        },
        feature: "http",
    })
}

#[cfg(feature = "loopback")]
fn loopback(url: &SyncUrl<'_>, config: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    use syncline_loopback::LoopbackNetwork;

    url.only_params(&[])?;
    if !url.path.is_empty() {
        return Err(ConnectError::InvalidUrl {
            url: url.url.to_owned(),
            reason: "a loopback:// URL is a server name, with no path".to_owned(),
        });
    }
    let network = config
        .network
        .clone()
        .unwrap_or_else(LoopbackNetwork::process);
    let from = config.name.as_deref().unwrap_or("client");
    Ok(match config.limits {
        Some(limits) => network.connector_with_limits(from, url.authority, limits),
        None => network.connector(from, url.authority),
    })
}

#[cfg(not(feature = "loopback"))]
fn loopback(_: &SyncUrl<'_>, _: &ConnectConfig) -> Result<Arc<dyn Connector>, ConnectError> {
    Err(ConnectError::FeatureDisabled {
        scheme: "loopback",
        feature: "loopback",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str) -> ConnectError {
        connect(url, &ConnectConfig::new()).unwrap_err()
    }

    #[test]
    fn urls_that_name_no_transport_are_refused_with_the_reason() {
        assert!(matches!(error("hub:4433"), ConnectError::InvalidUrl { .. }));
        assert!(matches!(error("quic://"), ConnectError::InvalidUrl { .. }));
        assert!(matches!(
            error("ftp://hub"),
            ConnectError::UnknownScheme { scheme, .. } if scheme == "ftp"
        ));
    }

    #[cfg(feature = "quic")]
    #[test]
    fn quic_urls_need_a_pin_and_take_no_unknown_parameter() {
        let pin = "ab".repeat(32);
        assert!(
            connect(
                &format!("quic://127.0.0.1:4433?pin={pin}"),
                &ConnectConfig::new()
            )
            .is_ok()
        );
        assert!(
            connect(
                &format!("quic://[::1]:4433?pin={pin}&server_name=localhost"),
                &ConnectConfig::new()
            )
            .is_ok()
        );
        let no_pin = error("quic://127.0.0.1:4433");
        assert!(no_pin.to_string().contains("pin"), "{no_pin}");
        let typo = error(&format!("quic://127.0.0.1:4433?pinn={pin}"));
        assert!(typo.to_string().contains("pinn"), "{typo}");
        assert!(matches!(
            error("quic://127.0.0.1:4433?pin=xyz"),
            ConnectError::InvalidUrl { .. }
        ));
        assert!(matches!(
            error(&format!("quic://127.0.0.1?pin={pin}")),
            ConnectError::Resolve { .. }
        ));
        assert_eq!(host_of("[::1]:4433"), "::1");
        assert_eq!(host_of("hub.example:4433"), "hub.example");
    }

    #[cfg(feature = "http")]
    #[test]
    fn http_urls_keep_their_prefix_and_refuse_a_pin_without_tls() {
        assert!(connect("http://127.0.0.1:8080/sync", &ConnectConfig::new()).is_ok());
        assert!(
            connect(
                &format!("https://127.0.0.1:8443?pin={}", "ab".repeat(32)),
                &ConnectConfig::new()
            )
            .is_ok()
        );
        assert!(matches!(
            error(&format!("http://127.0.0.1:8080?pin={}", "ab".repeat(32))),
            ConnectError::InvalidUrl { .. }
        ));
    }

    #[tokio::test]
    async fn a_failover_with_no_connector_fails_to_connect() {
        let failover = Failover::new(Vec::new());
        assert!(failover.connect().await.is_err());
        assert!(matches!(
            connect_any(&[], &ConnectConfig::new()),
            Err(ConnectError::InvalidUrl { .. })
        ));
    }

    #[cfg(not(feature = "quic"))]
    #[test]
    fn a_missing_feature_is_named() {
        let e = error("quic://127.0.0.1:4433?pin=00");
        assert!(e.to_string().contains("`quic` cargo feature"), "{e}");
    }
}
