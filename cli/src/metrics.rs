//! The hub's metrics in Prometheus text format: `GET /metrics` on its HTTP
//! listeners, and on a listener of its own when `[listen] metrics` is set.
//! The names, types and labels are listed in `syncline::metrics`.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use syncline::transport::http::HttpServerConfig;

/// Histogram buckets for the latencies, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The installed recorder.
#[derive(Debug)]
pub(crate) struct Metrics {
    handle: PrometheusHandle,
    own: Option<SocketAddr>,
}

impl Metrics {
    /// The address of the listener that serves only `/metrics`, if any.
    pub(crate) fn own_listener(&self) -> Option<SocketAddr> {
        self.own
    }
}

/// Installs the Prometheus recorder as the process's; with `own`, also a
/// listener for `/metrics` there. Must run inside the tokio runtime.
pub(crate) fn install(own: Option<SocketAddr>) -> Result<Metrics, String> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?;
    let handle = match own {
        Some(addr) => {
            let (recorder, exporter) = builder
                .with_http_listener(addr)
                .build()
                .map_err(|e| format!("metrics listener on {addr}: {e}"))?;
            let handle = recorder.handle();
            tokio::spawn(exporter);
            metrics::set_global_recorder(recorder).map_err(|e| format!("metrics recorder: {e}"))?;
            handle
        }
        None => builder
            .install_recorder()
            .map_err(|e| format!("metrics recorder: {e}"))?,
    };
    syncline::describe_metrics();
    Ok(Metrics { handle, own })
}

/// `config` with `GET /metrics`.
pub(crate) fn route(config: HttpServerConfig, metrics: &Metrics) -> HttpServerConfig {
    let handle = metrics.handle.clone();
    config.with_metrics(move || handle.render())
}
