//! The metrics syncline records, through the `metrics` facade crate.
//!
//! syncline records into whatever recorder the application installs (a
//! Prometheus exporter, say); with none installed, recording is a
//! thread-local and an atomic load, and nothing else. Call
//! [`describe_metrics`] after installing a recorder so that it knows each
//! metric's unit and help text.
//!
//! | name | type | labels | what it counts |
//! | --- | --- | --- | --- |
//! | [`CONNECTED_PEERS`] | gauge | | callers (by replica id) holding at least one live subscription to a [`SyncServer`](crate::SyncServer) |
//! | [`SUBSCRIPTIONS`] | gauge | | live subscriptions served |
//! | [`REQUESTS`] | counter | `kind` | exchanges served, by request kind |
//! | [`REQUEST_SECONDS`] | histogram | `kind` | time to answer an exchange, store work included |
//! | [`CHANGES_IN`] | counter | | changes of pushed groups a server accepted and committed |
//! | [`CHANGES_OUT`] | counter | | changes a server sent in pull answers |
//! | [`REFUSALS`] | counter | `code` | requests and pushed groups a server refused, by refusal code |
//! | [`RECEIVED_BYTES`] | counter | | request frame bytes a server received |
//! | [`SENT_BYTES`] | counter | | response and subscription frame bytes a server sent |
//! | [`COMMIT_SECONDS`] | histogram | `durability` | time a store commit took, waiting for the write lock included |
//! | [`ENGINE_ROUNDS`] | counter | | sync rounds an engine finished, successful or not |
//! | [`ENGINE_ERRORS`] | counter | `fault` | sync rounds that failed, by whose fault |
//! | [`ENGINE_PUSHED`] | counter | | local changes a remote acknowledged |
//! | [`ENGINE_PULLED`] | counter | | remote changes applied for the first time |
//! | [`ENGINE_CONFLICTS`] | counter | | conflicts pulled changes recorded |
//! | [`ENGINE_REJECTED`] | counter | | pushed groups a remote refused |
//!
//! Label values are few and fixed: `kind` is one of `hello`, `pull`,
//! `pull_part`, `pull_scope`, `relayed`, `push`, `push_part`, `subscribe` or `invalid` (undecodable);
//! `code` is a [`RefusalCode`] number (`"403"`); `durability` is
//! `immediate` or `deferred`; `fault` is `peer`, `network`, `caller`,
//! `local`, `storage` or `other`. Every metric is the sum over all servers, engines
//! and replicas of the process: none carries a replica or collection label.
//!
//! A transport's own connections are not visible to a server (a
//! [`Service`](syncline_transport::Service) sees requests), so
//! [`CONNECTED_PEERS`] counts subscribers: an automatic
//! [`SyncEngine`](crate::SyncEngine) keeps one subscription open while it
//! is online, while an on-demand engine, or a caller that only exchanges,
//! is not counted.

use std::time::Instant;

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};
use syncline_transport::{Fault, RefusalCode};

/// Gauge: callers (by replica id) holding at least one live subscription.
pub const CONNECTED_PEERS: &str = "syncline_connected_peers";
/// Gauge: live subscriptions served.
pub const SUBSCRIPTIONS: &str = "syncline_subscriptions";
/// Counter, label `kind`: exchanges served.
pub const REQUESTS: &str = "syncline_requests_total";
/// Histogram in seconds, label `kind`: time to answer an exchange.
pub const REQUEST_SECONDS: &str = "syncline_request_seconds";
/// Counter: changes of pushed groups a server accepted and committed (new
/// ones, ones already held and ones superseded alike).
pub const CHANGES_IN: &str = "syncline_changes_in_total";
/// Counter: changes a server sent in pull answers. (Subscription frames
/// carry no changes, only the server's last lsn.)
pub const CHANGES_OUT: &str = "syncline_changes_out_total";
/// Counter, label `code`: whole requests and single pushed groups refused.
pub const REFUSALS: &str = "syncline_refusals_total";
/// Counter in bytes: request frames a server received (exchanges and
/// subscription requests).
pub const RECEIVED_BYTES: &str = "syncline_received_bytes_total";
/// Counter in bytes: frames a server sent (exchange answers and
/// subscription notifications; refusals are not frames).
pub const SENT_BYTES: &str = "syncline_sent_bytes_total";
/// Histogram in seconds, label `durability`: store commits (local
/// transactions, remote batches, cursors), from the call to its return.
pub const COMMIT_SECONDS: &str = "syncline_commit_seconds";
/// Counter: sync rounds an engine finished.
pub const ENGINE_ROUNDS: &str = "syncline_engine_rounds_total";
/// Counter, label `fault`: sync rounds that failed.
pub const ENGINE_ERRORS: &str = "syncline_engine_errors_total";
/// Counter: local changes the remote acknowledged.
pub const ENGINE_PUSHED: &str = "syncline_engine_pushed_total";
/// Counter: remote changes an engine applied for the first time.
pub const ENGINE_PULLED: &str = "syncline_engine_pulled_total";
/// Counter: conflicts that pulled changes recorded.
pub const ENGINE_CONFLICTS: &str = "syncline_engine_conflicts_total";
/// Counter: pushed transaction groups the remote refused.
pub const ENGINE_REJECTED: &str = "syncline_engine_rejected_total";

/// The three kinds of metric.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric's name, kind, unit and help text, in the order of the table
/// above.
const ALL: [(&str, Kind, Unit, &str); 16] = [
    (
        CONNECTED_PEERS,
        Kind::Gauge,
        Unit::Count,
        "Callers (by replica id) holding at least one live subscription.",
    ),
    (
        SUBSCRIPTIONS,
        Kind::Gauge,
        Unit::Count,
        "Live subscriptions served.",
    ),
    (
        REQUESTS,
        Kind::Counter,
        Unit::Count,
        "Exchanges served, by kind.",
    ),
    (
        REQUEST_SECONDS,
        Kind::Histogram,
        Unit::Seconds,
        "Time to answer an exchange, store work included.",
    ),
    (
        CHANGES_IN,
        Kind::Counter,
        Unit::Count,
        "Changes of pushed groups accepted and committed.",
    ),
    (
        CHANGES_OUT,
        Kind::Counter,
        Unit::Count,
        "Changes sent in pull answers.",
    ),
    (
        REFUSALS,
        Kind::Counter,
        Unit::Count,
        "Requests and pushed groups refused, by refusal code.",
    ),
    (
        RECEIVED_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Request frame bytes received.",
    ),
    (
        SENT_BYTES,
        Kind::Counter,
        Unit::Bytes,
        "Response and subscription frame bytes sent.",
    ),
    (
        COMMIT_SECONDS,
        Kind::Histogram,
        Unit::Seconds,
        "Store commit time, waiting for the write lock included.",
    ),
    (
        ENGINE_ROUNDS,
        Kind::Counter,
        Unit::Count,
        "Sync rounds finished.",
    ),
    (
        ENGINE_ERRORS,
        Kind::Counter,
        Unit::Count,
        "Sync rounds failed, by whose fault.",
    ),
    (
        ENGINE_PUSHED,
        Kind::Counter,
        Unit::Count,
        "Local changes the remote acknowledged.",
    ),
    (
        ENGINE_PULLED,
        Kind::Counter,
        Unit::Count,
        "Remote changes applied for the first time.",
    ),
    (
        ENGINE_CONFLICTS,
        Kind::Counter,
        Unit::Count,
        "Conflicts recorded by pulled changes.",
    ),
    (
        ENGINE_REJECTED,
        Kind::Counter,
        Unit::Count,
        "Pushed groups the remote refused.",
    ),
];

/// Tells the installed recorder each metric's type, unit and help text.
/// Call it once after installing the recorder; recording works without it.
pub fn describe_metrics() {
    for (name, kind, unit, help) in ALL {
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
        }
    }
}

/// What kind of request a server answered: the `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Hello,
    Pull,
    PullPart,
    PullScope,
    Relayed,
    Push,
    PushPart,
    Subscribe,
    /// A request that did not decode.
    Invalid,
}

impl RequestKind {
    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Pull => "pull",
            Self::PullPart => "pull_part",
            Self::PullScope => "pull_scope",
            Self::Relayed => "relayed",
            Self::Push => "push",
            Self::PushPart => "push_part",
            Self::Subscribe => "subscribe",
            Self::Invalid => "invalid",
        }
    }
}

/// An exchange of `kind` answered (or refused), received at `started`.
pub(crate) fn served(kind: RequestKind, started: Instant) {
    let elapsed = started.elapsed();
    // Literal labels make static keys: nothing is allocated per request.
    macro_rules! record {
        ($label:literal) => {{
            counter!(REQUESTS, "kind" => $label).increment(1);
            histogram!(REQUEST_SECONDS, "kind" => $label).record(elapsed);
        }};
    }
    match kind {
        RequestKind::Hello => record!("hello"),
        RequestKind::Pull => record!("pull"),
        RequestKind::PullPart => record!("pull_part"),
        RequestKind::PullScope => record!("pull_scope"),
        RequestKind::Relayed => record!("relayed"),
        RequestKind::Push => record!("push"),
        RequestKind::PushPart => record!("push_part"),
        RequestKind::Subscribe => record!("subscribe"),
        RequestKind::Invalid => record!("invalid"),
    }
}

/// A refusal of a whole request or of one pushed group.
pub(crate) fn refused(code: RefusalCode) {
    counter!(REFUSALS, "code" => code.get().to_string()).increment(1);
}

/// A store commit that began at `started`.
pub(crate) fn committed(started: Instant, durable: bool) {
    let elapsed = started.elapsed();
    if durable {
        histogram!(COMMIT_SECONDS, "durability" => "immediate").record(elapsed);
    } else {
        histogram!(COMMIT_SECONDS, "durability" => "deferred").record(elapsed);
    }
}

/// A sync round an engine finished, failed with `fault` if it failed.
pub(crate) fn round_finished(failed: Option<Fault>) {
    counter!(ENGINE_ROUNDS).increment(1);
    let Some(fault) = failed else { return };
    match fault {
        Fault::Peer => counter!(ENGINE_ERRORS, "fault" => "peer").increment(1),
        Fault::Network => counter!(ENGINE_ERRORS, "fault" => "network").increment(1),
        Fault::Caller => counter!(ENGINE_ERRORS, "fault" => "caller").increment(1),
        Fault::Local => counter!(ENGINE_ERRORS, "fault" => "local").increment(1),
        Fault::Storage => counter!(ENGINE_ERRORS, "fault" => "storage").increment(1),
        _ => counter!(ENGINE_ERRORS, "fault" => "other").increment(1),
    }
}

/// Changes an engine pushed and pulled, conflicts its pulls recorded and
/// groups the remote refused, since it last said.
pub(crate) fn engine_moved(pushed: u64, pulled: u64, conflicts: u64, rejected: u64) {
    if pushed > 0 {
        counter!(ENGINE_PUSHED).increment(pushed);
    }
    if pulled > 0 {
        counter!(ENGINE_PULLED).increment(pulled);
    }
    if conflicts > 0 {
        counter!(ENGINE_CONFLICTS).increment(conflicts);
    }
    if rejected > 0 {
        counter!(ENGINE_REJECTED).increment(rejected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        for (name, kind, unit, help) in ALL {
            assert!(name.starts_with("syncline_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
            match unit {
                Unit::Seconds => assert!(name.ends_with("_seconds"), "{name}"),
                Unit::Bytes => assert!(name.ends_with("_bytes_total"), "{name}"),
                _ => assert!(!name.contains("_seconds") && !name.contains("_bytes")),
            }
        }
        let mut names: Vec<_> = ALL.iter().map(|m| m.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is listed twice");
    }
}
