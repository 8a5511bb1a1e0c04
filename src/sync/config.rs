//! How an engine syncs with one remote.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use syncline_transport::BoxFuture;

use crate::model::{Key, Scope};

/// Which way changes flow between this replica and the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send local changes only.
    Push,
    /// Receive remote changes only.
    Pull,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether local changes are sent.
    pub fn pushes(self) -> bool {
        matches!(self, Self::Push | Self::Both)
    }

    /// Whether remote changes are received.
    pub fn pulls(self) -> bool {
        matches!(self, Self::Pull | Self::Both)
    }
}

/// How an engine syncs with one remote.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Which way changes flow. Default both.
    pub direction: Direction,
    /// The token presented to the server, if it wants one. A
    /// [`SyncConfig::token_provider`], when set, supplies it instead.
    pub token: Option<String>,
    /// Supplies the token at each connect, and once more when the remote
    /// refuses it as unauthenticated (with `refresh`), before the round
    /// fails: for tokens that expire. Default none.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// The most changes per push or pull batch (whole transactions may
    /// exceed it). Default 1,000.
    pub batch_size: usize,
    /// About the most bytes of changes per push batch (whole transactions
    /// may exceed it); keep it below the transport's frame limit. Default 4 MiB.
    pub max_batch_bytes: usize,
    /// How long pulled batches may go without an fsync. A pulled batch
    /// commits with its pull cursor, atomically, but only the last batch of
    /// a pull and the first one this long after the last durable commit
    /// (or the round's start) wait for the disk; the others reach it with
    /// the next durable commit. A crash loses at most those batches, with
    /// their cursor, and the next pull fetches them again. Local writes,
    /// pushes the remote acknowledges, and everything this replica serves
    /// are always durable. [`crate::SyncEngine::stop`] makes everything
    /// durable too. Zero makes every pulled batch durable. Default 1 s.
    pub durable_interval: Duration,
    /// Keep a subscription open so remote changes arrive in milliseconds.
    /// Default on.
    pub live: bool,
    /// How long a subscription may stay silent before it is presumed dead
    /// (say, a network path that died without closing the connection) and
    /// replaced: the engine reconnects as after any failure. Servers send a
    /// heartbeat every [`crate::ServerConfig::heartbeat`] (15 s by default),
    /// so keep this a few times that. `None` trusts the stream forever.
    /// Default 45 s.
    pub subscription_timeout: Option<Duration>,
    /// Also sync on this interval, as a safety net. Default 30 s.
    pub poll_interval: Option<Duration>,
    /// Sync only when asked ([`crate::SyncEngine::sync_now`], `push`,
    /// `pull`): no connection at start, no subscription, no polling, no
    /// retries, and local writes wait for the next call. Default off.
    pub on_demand: bool,
    /// The first retry delay after a failure; it doubles up to `backoff_max`,
    /// with jitter. Default 100 ms.
    pub backoff_initial: Duration,
    /// The longest retry delay. Default 30 s.
    pub backoff_max: Duration,
    /// How many times to retry after failures in a row before giving up:
    /// then the status stays [`crate::Status::Error`] and nothing happens
    /// until [`crate::SyncEngine::sync_now`] (or `push`, `pull`) or
    /// [`crate::SyncEngine::reconnect_now`]. `None` retries forever.
    /// Default `None`.
    pub max_retry_attempts: Option<u32>,
    /// Seed of the jitter, for reproducible simulations; `None` draws one.
    pub seed: Option<u64>,
    /// What to sync: parts of the replica's synced collections (whole
    /// collections, [`Scope::collection`], or the records under a key
    /// prefix, [`Scope::prefix`]). Empty, the default: every synced
    /// collection, whole. With scopes, the engine pushes only the changes
    /// inside them, pulls each scope with a cursor of its own (stored in
    /// the commit that applies its changes), and syncs only the
    /// collections they name; a scope the remote refuses (its collection
    /// is missing there, or the grant does not cover it) is reported
    /// ([`crate::SyncEvent::ScopeRefused`]) while the others sync, and a
    /// scope that is no longer asked for, or no longer granted, has its
    /// records dropped here, locally, with no effect on any other replica
    /// (records another scope still covers stay).
    pub scopes: Vec<Scope>,
    /// How often, at most, to ask the remote (a hub) how far it has pulled
    /// the other hubs it peers with, after a round that pulled: a client
    /// that fails over to one of them ([`crate::Failover`]) then starts
    /// there from what it is proven to hold, instead of from nothing.
    /// `None` never asks. Default 60 s.
    pub relay_interval: Option<Duration>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            direction: Direction::Both,
            token: None,
            token_provider: None,
            batch_size: 1000,
            max_batch_bytes: 4 << 20,
            durable_interval: Duration::from_secs(1),
            live: true,
            subscription_timeout: Some(Duration::from_secs(45)),
            poll_interval: Some(Duration::from_secs(30)),
            on_demand: false,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_retry_attempts: None,
            seed: None,
            scopes: Vec::new(),
            relay_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl SyncConfig {
    /// This config syncing `scopes` ([`SyncConfig::scopes`]).
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// This config with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// This config with a token provider.
    pub fn with_token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.token_provider = Some(Arc::new(provider));
        self
    }

    /// This config with a direction.
    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
}

/// Supplies the token an engine presents, for credentials that expire.
///
/// The engine asks at each connect (`refresh` false) and, when the remote
/// refuses the token as unauthenticated, once more (`refresh` true) before
/// it gives the round up; `None` presents no token.
///
/// ```
/// use syncline::TokenProvider;
/// use syncline::transport::BoxFuture;
///
/// #[derive(Debug)]
/// struct FromEnv;
///
/// impl TokenProvider for FromEnv {
///     fn token(&self, _refresh: bool) -> BoxFuture<'_, Option<String>> {
///         Box::pin(async { std::env::var("SYNC_TOKEN").ok() })
///     }
/// }
/// ```
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// The token to present; `refresh` is true when the remote just
    /// refused the last one.
    fn token(&self, refresh: bool) -> BoxFuture<'_, Option<String>>;
}

/// Whether a change of `collection` at `key` goes to a remote the engine
/// syncs `collections` with, within `scopes` (empty: the whole
/// collections).
pub(crate) fn wants(collections: &[String], scopes: &[Scope], collection: &str, key: &Key) -> bool {
    collections.iter().any(|c| c == collection)
        && (scopes.is_empty() || scopes.iter().any(|s| s.contains(collection, key)))
}
