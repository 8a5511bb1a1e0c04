//! The serving side of sync: a [`Service`] that any transport can run.
//!
//! Every replica can serve; a hub is a replica that serves many clients.
//! Each request is checked on its own: protocol version, credentials, the
//! collections it touches, the batch digest and limits. A refused request
//! stores nothing, and the caller receives the transport's refusal
//! ([`ServiceError`]: a [`RefusalCode`] and the reason), on exchanges and
//! subscriptions alike.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use syncline_transport::{BoxFuture, Frame, PeerInfo, RefusalCode, Service, ServiceError};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::access::{Access, AccessControl, AllowAll, Credentials, Grant, Principal, Validator};
use crate::clock::Stamp;
use crate::error::{ApplyError, StorageError};
use crate::metrics::{
    self as m, CHANGES_IN, CHANGES_OUT, CONNECTED_PEERS, RECEIVED_BYTES, RequestKind, SENT_BYTES,
    SUBSCRIPTIONS,
};
use crate::model::{Change, Key, ReplicaId, Scope};
use crate::replica::Replica;
use crate::store::{CommitDurability, GroupPart, STAGED_PUSHED};
use crate::sync::protocol::{
    self, Batch, CollectionSpec, Notify, PROTOCOL_VERSION, Part, Request, RequestBody, Response,
    Verdict, synced_specs,
};

/// How a replica serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The most changes one pull answer carries (whole groups may exceed it).
    /// Default 1,000.
    pub max_pull_changes: usize,
    /// About the most bytes of changes one pull answer carries (whole groups
    /// may exceed it); keep it below the transport's frame limit. Default 4 MiB.
    pub max_pull_bytes: usize,
    /// How often a subscription with nothing new still gets a notification
    /// (the unchanged last lsn): a heartbeat, so that subscribers can tell a
    /// quiet stream from a dead one (see [`crate::SyncConfig::subscription_timeout`],
    /// which should be a few times this). `None` sends none. Default 15 s.
    pub heartbeat: Option<Duration>,
    /// Tombstones older than this are collected while serving
    /// ([`crate::Replica::collect_tombstones`]), at most once per
    /// `collect_every`; `None` never collects. Clients that stay away
    /// longer are told to resync (`RefusalCode::RESYNC_REQUIRED`) and
    /// their engines bootstrap again. Default 30 days. In a mesh where
    /// every peer serves, every peer collects: set it there only if all
    /// peers sync within it.
    pub tombstone_horizon: Option<Duration>,
    /// How often, at most, a collection pass runs. Default 1 hour.
    pub collect_every: Duration,
}

/// The most callers a server remembers as bootstrapping at once.
const MAX_BOOTSTRAPS: usize = 1 << 16;

/// The default [`ServerConfig::tombstone_horizon`]: 30 days.
pub const DEFAULT_TOMBSTONE_HORIZON: Duration = Duration::from_secs(30 * 24 * 3600);

/// The default [`ServerConfig::heartbeat`].
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_pull_changes: 1000,
            max_pull_bytes: 4 << 20,
            heartbeat: Some(DEFAULT_HEARTBEAT),
            tombstone_horizon: Some(DEFAULT_TOMBSTONE_HORIZON),
            collect_every: Duration::from_secs(3600),
        }
    }
}

/// Serves a replica's feed to callers: hand it to a transport's server.
///
/// ```
/// use std::sync::Arc;
/// use syncline::{Replica, ReplicaConfig, SyncServer, Tokens, Permissions};
///
/// let hub = Replica::in_memory(ReplicaConfig::default()).unwrap();
/// let service = SyncServer::new(hub)
///     .with_access(Tokens::new().with_token("secret", "alice", Permissions::all()))
///     .into_service();
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct SyncServer {
    replica: Replica,
    access: Arc<dyn AccessControl>,
    /// The validators of each collection.
    validators: HashMap<String, Vec<Arc<dyn Validator>>>,
    config: ServerConfig,
    /// Handle requests on the calling task instead of tokio's blocking pool
    /// (simulations only: see [`SyncServer::inline`]).
    inline_store: bool,
    /// When the last collection pass began, in ms of the replica's clock
    /// (`None`: none yet); shared by the server's clones.
    collected_at: Arc<Mutex<Option<u64>>>,
    /// The callers bootstrapping (a pull from 0), and the lsn that was last
    /// when each began: until their cursor reaches it, they get
    /// everything, their own changes included.
    bootstraps: Arc<Mutex<HashMap<Bootstrap, u64>>>,
    /// Where each caller last pulled from and when, since the last time
    /// they were written to `served-3` (every `collect_every`).
    served: Arc<Mutex<HashMap<ReplicaId, crate::ServedState>>>,
    /// The live subscriptions of each caller, for the
    /// [`CONNECTED_PEERS`] gauge; shared by the server's clones.
    subscribers: Arc<Mutex<HashMap<ReplicaId, usize>>>,
    /// Drain state shared by the server's clones ([`SyncServer::drain`]).
    drain: Arc<Drain>,
}

/// A caller bootstrapping: its id, and the scope it pulls (`None`: whole
/// collections).
type Bootstrap = (ReplicaId, Option<Scope>);

/// What [`SyncServer::drain`] needs: whether the server drains, and how
/// many exchanges are in flight.
#[derive(Debug)]
struct Drain {
    /// Set once draining; subscriptions end when it turns true.
    draining: tokio::sync::watch::Sender<bool>,
    /// Exchanges being answered.
    in_flight: tokio::sync::watch::Sender<usize>,
}

/// One exchange in flight, counted until it drops.
struct InFlight<'a>(&'a Drain);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl fmt::Debug for SyncServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncServer")
            .field("replica", &self.replica.id())
            .field("access", &self.access)
            .field("validators", &self.validators)
            .field("config", &self.config)
            .finish()
    }
}

impl SyncServer {
    /// Serves `replica` to every caller ([`AllowAll`]) with default limits.
    pub fn new(replica: Replica) -> Self {
        Self {
            replica,
            access: Arc::new(AllowAll),
            validators: HashMap::new(),
            config: ServerConfig::default(),
            inline_store: false,
            collected_at: Arc::new(Mutex::new(None)),
            bootstraps: Arc::new(Mutex::new(HashMap::new())),
            served: Arc::new(Mutex::new(HashMap::new())),
            subscribers: Arc::new(Mutex::new(HashMap::new())),
            drain: Arc::new(Drain {
                draining: tokio::sync::watch::Sender::new(false),
                in_flight: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// Drains the server, for a graceful shutdown: from the call on it
    /// refuses new requests (`RefusalCode::UNAVAILABLE`, which engines
    /// retry with backoff) and ends every subscription; the future resolves
    /// once the exchanges in flight have been answered, their commits done.
    /// Shut the transports down after it, then close the replica. Every
    /// clone of the server drains with it.
    pub fn drain(&self) -> impl Future<Output = ()> + Send + 'static {
        self.drain.draining.send_replace(true);
        let drain = self.drain.clone();
        async move {
            let mut in_flight = drain.in_flight.subscribe();
            // `drain` keeps the sender alive: the wait ends only at zero.
            let _ = in_flight.wait_for(|n| *n == 0).await;
        }
    }

    /// Whether [`SyncServer::drain`] was called.
    pub fn is_draining(&self) -> bool {
        *self.drain.draining.borrow()
    }

    /// Counts an exchange in flight, or refuses it while draining.
    fn begin_exchange(&self) -> Result<InFlight<'_>, ServiceError> {
        self.drain.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(&self.drain);
        if self.is_draining() {
            return Err(ServiceError::unavailable("the server is shutting down"));
        }
        Ok(guard)
    }

    /// Writes where callers pulled from, then runs a tombstone collection
    /// pass, if due (once per `collect_every`): called after each exchange,
    /// off the caller's answer (on the blocking pool).
    fn collect_if_due(&self) {
        let horizon = self.config.tombstone_horizon;
        let now = self.replica.config().time.now_millis();
        {
            let mut at = self.collected_at.lock().unwrap_or_else(|p| p.into_inner());
            let every = u64::try_from(self.config.collect_every.as_millis()).unwrap_or(u64::MAX);
            if at.is_some_and(|t| now.saturating_sub(t) < every) {
                return;
            }
            *at = Some(now);
        }
        let replica = self.replica.clone();
        let served: Vec<(ReplicaId, crate::ServedState)> =
            std::mem::take(&mut *self.served.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        let run = move || {
            if !served.is_empty()
                && let Err(e) = replica.record_served(&served)
            {
                tracing::warn!(error = %e, "recording callers' cursors failed");
            }
            let Some(horizon) = horizon else { return };
            match replica.collect_tombstones(horizon) {
                Ok(0) => {}
                Ok(n) => tracing::info!(collected = n, "collected tombstones"),
                Err(e) => tracing::warn!(error = %e, "tombstone collection failed"),
            }
        };
        if self.inline_store {
            run();
        } else {
            tokio::task::spawn_blocking(run);
        }
    }

    /// Handles requests on the calling task instead of tokio's blocking
    /// pool: for deterministic simulations on a current-thread runtime (it
    /// blocks the runtime while redb commits).
    #[cfg(feature = "testing")]
    pub(crate) fn inline(mut self) -> Self {
        self.inline_store = true;
        self
    }

    /// Uses `access` to authenticate and authorize callers.
    pub fn with_access(mut self, access: impl AccessControl + 'static) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// Adds `validator` to the rules that changes pushed to `collection`
    /// must pass; a change it rejects refuses its transaction group.
    pub fn with_validator(
        mut self,
        collection: impl Into<String>,
        validator: impl Validator + 'static,
    ) -> Self {
        self.validators
            .entry(collection.into())
            .or_default()
            .push(Arc::new(validator));
        self
    }

    /// Uses `config`.
    pub fn with_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// This server as a transport service.
    pub fn into_service(self) -> Arc<dyn Service> {
        Arc::new(self)
    }

    /// Handles one exchange; blocking (it reads and commits to redb). Runs
    /// in the request's span (see [`Service::exchange`]), whose fields it
    /// fills in, and counts the changes sent and the refusal. Returns the
    /// request's kind with the answer.
    fn handle(
        &self,
        peer: &PeerInfo,
        frame: &[u8],
    ) -> (RequestKind, Result<Response, ServiceError>) {
        let mut kind = RequestKind::Invalid;
        let result = self.answer(peer, frame, &mut kind);
        let span = tracing::Span::current();
        match &result {
            Ok(Response::Changes { batch, .. } | Response::Part { batch, .. }) => {
                counter!(CHANGES_OUT).increment(batch.changes.len() as u64);
                span.record("changes", batch.changes.len());
            }
            Ok(_) => {}
            Err(refusal) => {
                m::refused(refusal.code());
                span.record("refusal", refusal.code().get());
                tracing::debug!(%refusal, "refused request");
            }
        }
        (kind, result)
    }

    fn answer(
        &self,
        peer: &PeerInfo,
        frame: &[u8],
        kind: &mut RequestKind,
    ) -> Result<Response, ServiceError> {
        let request = self.decode(frame)?;
        *kind = request_kind(&request.body);
        tracing::Span::current()
            .record("kind", kind.label())
            .record("from", display(request.from));
        let principal = self.admit(peer, &request)?;
        let from = request.from;
        match request.body {
            RequestBody::Hello { clock, collections } => self.hello(clock, &collections),
            RequestBody::Pull {
                after,
                limit,
                collections,
            } => self.pull(from, &principal, after, limit, &collections, None),
            RequestBody::PullPart {
                after,
                transfer,
                next,
                collections,
            } => self.pull(
                from,
                &principal,
                after,
                1,
                &collections,
                Some((transfer, next)),
            ),
            RequestBody::PullScope {
                scope,
                after,
                limit,
                part,
            } => self.pull_scope(from, &principal, &scope, after, limit, part),
            RequestBody::Relayed => {
                // Cursors and lsns, no content: for any authenticated caller.
                let remotes = self
                    .replica
                    .relayed()
                    .map_err(|e| ServiceError::internal(e.to_string()))?
                    .into_iter()
                    .map(|(remote, pulled, at)| protocol::Relayed { remote, pulled, at })
                    .collect();
                Ok(Response::Relayed { remotes })
            }
            RequestBody::Push(batch) => self.push(from, &principal, batch),
            RequestBody::PushPart { part, batch } => self.push_part(from, &principal, part, batch),
            RequestBody::Subscribe { .. } | RequestBody::SubscribeScopes { .. } => Err(
                ServiceError::bad_request("subscribe is a stream, not an exchange"),
            ),
        }
    }

    /// Decodes a request.
    fn decode(&self, frame: &[u8]) -> Result<Request, ServiceError> {
        protocol::decode(frame).map_err(|e| {
            // A caller of another version may shape its envelope
            // otherwise: say which version it claims.
            let reason = match protocol::request_version(frame) {
                Some(v) if v != PROTOCOL_VERSION => format!(
                    "{e} (the request claims protocol version {v}; this server speaks {PROTOCOL_VERSION})"
                ),
                _ => e.to_string(),
            };
            ServiceError::bad_request(reason)
        })
    }

    /// Checks a decoded request's version and authenticates its caller.
    fn admit(&self, peer: &PeerInfo, request: &Request) -> Result<Principal, ServiceError> {
        if request.version != PROTOCOL_VERSION {
            return Err(ServiceError::new(
                RefusalCode::UPGRADE_REQUIRED,
                format!(
                    "protocol version {} is not spoken here; this server speaks {PROTOCOL_VERSION}",
                    request.version
                ),
            ));
        }
        // One token: in the request (`SyncConfig`), or in the transport's
        // bearer header (HTTP); two different ones are refused, not chosen
        // between.
        let token = match (request.token.as_deref(), peer.bearer_token.as_deref()) {
            (Some(ours), Some(header)) if ours != header => {
                return Err(ServiceError::bad_request(
                    "the request's token and the transport's bearer token differ",
                ));
            }
            (ours, header) => ours.or(header),
        };
        let credentials = Credentials {
            token,
            replica: request.from,
            peer,
        };
        let principal = self
            .access
            .authenticate(&credentials)
            .map_err(|e| ServiceError::unauthorized(e.to_string()))?;
        if request.from == self.replica.id() {
            return Err(ServiceError::bad_request(
                "the caller claims this server's own replica id",
            ));
        }
        Ok(principal)
    }

    fn hello(&self, clock: Stamp, theirs: &[CollectionSpec]) -> Result<Response, ServiceError> {
        let max = self.replica.config().max_clock_drift;
        let now = self.replica.now_millis();
        let ahead = clock.millis().saturating_sub(now);
        if u128::from(ahead) > max.as_millis() {
            return Err(ServiceError::new(
                RefusalCode::UNPROCESSABLE,
                format!(
                    "the caller's clock is {ahead} ms ahead of the server's, more than the {} ms allowed",
                    max.as_millis()
                ),
            ));
        }
        let ours = synced_specs(self.replica.collections());
        protocol::check_collections(theirs, &ours)
            .map_err(|d| ServiceError::new(RefusalCode::CONFLICT, d.to_string()))?;
        Ok(Response::Welcome {
            replica: self.replica.id(),
            clock: self.replica.clock(),
            collections: ours,
            last_lsn: self.replica.last_lsn(),
        })
    }

    fn pull(
        &self,
        from: ReplicaId,
        principal: &Principal,
        after: u64,
        limit: u32,
        wanted: &[String],
        resume: Option<(u64, u32)>,
    ) -> Result<Response, ServiceError> {
        let mut grants = Vec::with_capacity(wanted.len());
        for name in wanted {
            grants.push((name, self.check_collection(principal, name, Access::Read)?));
        }
        let limit = (limit as usize).clamp(1, self.config.max_pull_changes);
        let max_bytes = self.config.max_pull_bytes;
        // What the caller asked for, and only the records its grant covers.
        let wanted = |c: &str, k: &Key| grants.iter().any(|(w, g)| *w == c && g.allows(k));
        let peer = self.reader(from, after, None)?;
        let internal = |e: StorageError| ServiceError::internal(e.to_string());
        // A group larger than a batch goes in parts; a part names where it
        // starts, so that a caller can resume at any change. Going on with
        // one reads only the part.
        let offset = match resume {
            Some((transfer, next)) => {
                let part = self
                    .replica
                    .group_part(peer, after, &wanted, next, max_bytes)
                    .map_err(internal)?;
                match part {
                    Some(part) if part.transfer == transfer => return Ok(part_response(part)),
                    // Another group follows the cursor: start it afresh.
                    _ => 0,
                }
            }
            None => {
                let slice = self
                    .replica
                    .feed_for(peer, after, limit, max_bytes, &wanted)
                    .map_err(|e| ServiceError::internal(e.to_string()))?;
                if !slice.oversized {
                    return Ok(Response::Changes {
                        batch: Batch::new(slice.changes, slice.through),
                        has_more: slice.has_more,
                    });
                }
                0
            }
        };
        let part = self
            .replica
            .group_part(peer, after, &wanted, offset, max_bytes)
            .map_err(internal)?
            .ok_or_else(|| ServiceError::bad_request(format!("no group follows {after}")))?;
        Ok(part_response(part))
    }

    /// Who a pull from `after` (of `scope`, or of whole collections) is
    /// read for: the caller, or `None` while it bootstraps. Records where
    /// the caller pulled from, and refuses a cursor behind the tombstone
    /// horizon.
    fn reader(
        &self,
        from: ReplicaId,
        after: u64,
        scope: Option<&Scope>,
    ) -> Result<Option<ReplicaId>, ServiceError> {
        // A pull from 0 bootstraps the caller, which may hold nothing, not
        // even its own changes (a resync emptied its collections, or the
        // scope is new to it): until it reaches the lsn that was last then,
        // it gets everything, its own changes included. (Kept in memory: a
        // server restarted in the middle of a bootstrap filters the rest
        // as usual.)
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                from,
                crate::ServedState {
                    cursor: after,
                    at_ms: self.replica.config().time.now_millis(),
                },
            );
        let peer = {
            let mut bootstraps = self.bootstraps.lock().unwrap_or_else(|p| p.into_inner());
            let key = (from, scope.cloned());
            let bootstrap = if after == 0 {
                // Callers name themselves: bound what a stream of made-up
                // ids can make the server remember (one left out is served
                // as usual, at worst bootstrapping again).
                if bootstraps.len() >= MAX_BOOTSTRAPS
                    && let Some(any) = bootstraps.keys().next().cloned()
                {
                    bootstraps.remove(&any);
                }
                bootstraps.insert(key, self.replica.last_lsn());
                true
            } else {
                match bootstraps.get(&key) {
                    Some(&until) if after < until => true,
                    Some(_) => {
                        bootstraps.remove(&key);
                        false
                    }
                    None => false,
                }
            };
            (!bootstrap).then_some(from)
        };
        // A cursor below the last lsn a tombstone collection removed may
        // have missed a delete that is gone: the caller must start over
        // (a bootstrap, from 0 on, needs no delete it missed).
        let (_, collected_lsn) = self.replica.collected();
        if peer.is_some() && after < collected_lsn {
            return Err(ServiceError::new(
                RefusalCode::RESYNC_REQUIRED,
                format!(
                    "resync required: the pull cursor {after} lies behind the tombstone horizon (lsn {collected_lsn})"
                ),
            ));
        }
        Ok(peer)
    }

    /// A pull of one scope, from its own cursor: served only when the
    /// caller's read grant covers the whole scope.
    fn pull_scope(
        &self,
        from: ReplicaId,
        principal: &Principal,
        scope: &Scope,
        after: u64,
        limit: u32,
        resume: Option<(u64, u32)>,
    ) -> Result<Response, ServiceError> {
        let grant = self.check_collection(principal, &scope.collection, Access::Read)?;
        if !grant.covers(&scope.prefix) {
            return Err(ServiceError::forbidden(format!(
                "{} may not read all of {scope}",
                principal.0
            )));
        }
        let limit = (limit as usize).clamp(1, self.config.max_pull_changes);
        let max_bytes = self.config.max_pull_bytes;
        let peer = self.reader(from, after, Some(scope))?;
        let internal = |e: StorageError| ServiceError::internal(e.to_string());
        let in_scope = |c: &str, k: &Key| scope.contains(c, k);
        // A group larger than a batch goes in parts, read from the group's
        // start (the scope's cursor may lie before other groups).
        let part_of = |transfer: u64, offset: u32| -> Result<Option<GroupPart>, ServiceError> {
            let Some(before) = self.replica.before_group(transfer).map_err(internal)? else {
                return Ok(None);
            };
            let part = self
                .replica
                .group_part(peer, before.max(after), &in_scope, offset, max_bytes)
                .map_err(internal)?;
            Ok(part.filter(|p| p.transfer == transfer))
        };
        if let Some((transfer, next)) = resume
            && let Some(part) = part_of(transfer, next)?
        {
            return Ok(part_response(part));
        }
        let slice = self
            .replica
            .scope_for(peer, scope, after, limit, max_bytes)
            .map_err(internal)?;
        if slice.oversized
            && let Some(part) = part_of(slice.through, 0)?
        {
            return Ok(part_response(part));
        }
        Ok(Response::Changes {
            batch: Batch::new(slice.changes, slice.through),
            has_more: slice.has_more,
        })
    }

    /// One part of a group too large for one batch: staged, out of sight,
    /// until the last, with which the whole group is judged and applied.
    fn push_part(
        &self,
        from: ReplicaId,
        principal: &Principal,
        part: Part,
        batch: Batch,
    ) -> Result<Response, ServiceError> {
        if !batch.verify() || batch.through != part.transfer {
            return Err(ServiceError::bad_request(
                "the part's digest does not match its changes, or it names another group",
            ));
        }
        let internal = |e: StorageError| ServiceError::internal(e.to_string());
        // Each part is judged as it comes (access, checks, validators, and
        // the size a transaction may have here): a refused group stops at
        // its first bad part, and none of it stays staged.
        let limit = self.replica.config().max_batch_changes;
        let end = (part.offset as usize).saturating_add(batch.changes.len());
        let verdict = if end > limit {
            Err(ServiceError::new(
                RefusalCode::TOO_LARGE,
                format!("a group of more than {limit} changes"),
            ))
        } else {
            self.judge(principal, &batch.changes)
        };
        if let Err(refusal) = verdict {
            m::refused(refusal.code());
            tracing::Span::current().record("refused_groups", 1);
            self.replica
                .clear_staged(STAGED_PUSHED, from)
                .map_err(internal)?;
            return Ok(Response::Ack {
                through: part.transfer,
                applied: 0,
                refused: vec![Verdict {
                    group: 0,
                    code: refusal.code().get(),
                    reason: refusal.reason().to_owned(),
                }],
            });
        }
        let staged = self
            .replica
            .staged_progress(STAGED_PUSHED, from)
            .map_err(internal)?
            .filter(|(t, _)| *t == part.transfer)
            .map_or(0, |(_, n)| n);
        if !part.last || part.offset != staged {
            let next = self
                .replica
                .stage_part(
                    STAGED_PUSHED,
                    from,
                    part.transfer,
                    part.offset,
                    &batch.changes,
                )
                .map_err(internal)?;
            if !part.last || next != part.offset {
                return Ok(Response::Staged {
                    transfer: part.transfer,
                    next,
                });
            }
        }
        // The last part, every other one staged and judged: the whole
        // group in one commit, durable before the ack.
        let report = self
            .replica
            .apply_staged(
                STAGED_PUSHED,
                from,
                part.transfer,
                &batch.changes,
                None,
                CommitDurability::Immediate,
            )
            .map_err(apply_refusal)?;
        // The whole group: the parts staged before this one, and this one.
        let group = u64::from(part.offset) + batch.changes.len() as u64;
        counter!(CHANGES_IN).increment(group);
        tracing::Span::current().record("changes", group);
        Ok(Response::Ack {
            through: part.transfer,
            applied: report.applied as u64,
            refused: Vec::new(),
        })
    }

    fn push(
        &self,
        from: ReplicaId,
        principal: &Principal,
        batch: Batch,
    ) -> Result<Response, ServiceError> {
        if !batch.verify() {
            return Err(ServiceError::bad_request(
                "the batch digest does not match its changes, or its group sizes do not add up",
            ));
        }
        // Each group on its own: a refused group never holds back the others.
        let ranges = batch.group_ranges().unwrap_or_default();
        let mut accepted = Vec::with_capacity(batch.changes.len());
        let mut refused = Vec::new();
        for (index, range) in ranges.into_iter().enumerate() {
            let group = &batch.changes[range];
            match self.judge(principal, group) {
                Ok(()) => accepted.extend_from_slice(group),
                Err(refusal) => {
                    m::refused(refusal.code());
                    tracing::debug!(peer = %from, group = index, %refusal, "refused group");
                    refused.push(Verdict {
                        group: u32::try_from(index).unwrap_or(u32::MAX),
                        code: refusal.code().get(),
                        reason: refusal.reason().to_owned(),
                    });
                }
            }
        }
        let report = self
            .replica
            .apply_remote_from(Some(from), &accepted)
            .map_err(apply_refusal)?;
        counter!(CHANGES_IN).increment(accepted.len() as u64);
        let span = tracing::Span::current();
        span.record("changes", accepted.len());
        if !refused.is_empty() {
            span.record("refused_groups", refused.len());
        }
        Ok(Response::Ack {
            through: batch.through,
            applied: report.applied as u64,
            refused,
        })
    }

    /// The verdict on one pushed group: every change's collection synced
    /// here and writable by the principal (409, 403), every change valid
    /// (422), and accepted by the collection's validators (422). Stamps too
    /// far ahead are not judged here: they refuse the whole push (422) when
    /// the accepted groups are applied, and the caller retries later.
    fn judge(&self, principal: &Principal, group: &[Change]) -> Result<(), ServiceError> {
        let mut grants: Vec<(&str, Grant)> = Vec::new();
        for change in group {
            let at = match grants.iter().position(|(c, _)| *c == change.collection) {
                Some(at) => at,
                None => {
                    let grant =
                        self.check_collection(principal, &change.collection, Access::Write)?;
                    grants.push((&change.collection, grant));
                    grants.len() - 1
                }
            };
            if !grants[at].1.allows(&change.key) {
                return Err(ServiceError::forbidden(format!(
                    "{} may not write record {} of collection {:?}",
                    principal.0, change.key, change.collection
                )));
            }
        }
        self.replica
            .check_remote(group)
            .map_err(|e| ServiceError::new(RefusalCode::UNPROCESSABLE, e.to_string()))?;
        for change in group {
            for validator in self
                .validators
                .get(&change.collection)
                .into_iter()
                .flatten()
            {
                validator.validate(principal, change).map_err(|rejection| {
                    ServiceError::new(RefusalCode::UNPROCESSABLE, rejection.reason().to_owned())
                })?;
            }
        }
        Ok(())
    }

    /// The collection must exist here, be synced, and be granted, in part
    /// at least, to the principal: what of it is.
    fn check_collection(
        &self,
        principal: &Principal,
        name: &str,
        access: Access,
    ) -> Result<Grant, ServiceError> {
        match self.replica.collection_config(name) {
            Some(c) if c.sync => {}
            _ => {
                return Err(ServiceError::new(
                    RefusalCode::CONFLICT,
                    format!("no synced collection {name:?} here"),
                ));
            }
        }
        let grant = self.access.grant(principal, name, access);
        if grant.is_none() {
            return Err(ServiceError::forbidden(format!(
                "{} may not {} collection {name:?}",
                principal.0,
                verb(access)
            )));
        }
        Ok(grant)
    }
}

/// How a refusal names an access.
fn verb(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
    }
}

impl Service for SyncServer {
    /// Answers one request in a `serve` span (debug level: the peer's
    /// address; then the request's kind, the caller's replica id, and the
    /// changes sent or accepted, the groups refused or the refusal code).
    fn exchange<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
        let span = tracing::debug_span!(
            "serve",
            peer = %peer.remote,
            kind = Empty,
            from = Empty,
            changes = Empty,
            refused_groups = Empty,
            refusal = Empty,
        );
        Box::pin(async move {
            let started = Instant::now();
            counter!(RECEIVED_BYTES).increment(request.len() as u64);
            let _in_flight = self
                .begin_exchange()
                .inspect_err(|refusal| m::refused(refusal.code()))?;
            let (kind, answer) = if self.inline_store {
                span.in_scope(|| self.handle(peer, &request))
            } else {
                let this = self.clone();
                let peer_owned = peer.clone();
                let span = span.clone();
                // redb reads and durable commits block: keep them off the async workers.
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| this.handle(&peer_owned, &request))
                })
                .await
                .map_err(|e| ServiceError::internal(format!("request handler failed: {e}")))?
            };
            let answer = answer.map(|response| {
                self.collect_if_due();
                let frame = Frame::from(protocol::encode(&response));
                counter!(SENT_BYTES).increment(frame.len() as u64);
                frame
            });
            m::served(kind, started);
            answer
        })
    }

    /// Opens a subscription in a `subscription` span (info level: the
    /// peer's address and the caller's replica id), which its task keeps
    /// until the subscriber goes away.
    fn subscribe<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<Frame>, ServiceError>> {
        let span = tracing::info_span!("subscription", peer = %peer.remote, from = Empty);
        Box::pin(
            async move {
                counter!(RECEIVED_BYTES).increment(request.len() as u64);
                let opened = self.open_subscription(peer, &request);
                if let Err(refusal) = &opened {
                    m::refused(refusal.code());
                    tracing::debug!(%refusal, "refused subscription");
                }
                opened
            }
            .instrument(span),
        )
    }
}

impl SyncServer {
    /// Checks a subscribe request and starts the task that notifies the
    /// caller, in the current span.
    fn open_subscription(
        &self,
        peer: &PeerInfo,
        request: &[u8],
    ) -> Result<mpsc::Receiver<Frame>, ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::unavailable("the server is shutting down"));
        }
        let request = self.decode(request)?;
        tracing::Span::current().record("from", display(request.from));
        let principal = self.admit(peer, &request)?;
        let (after, scopes) = match request.body {
            RequestBody::Subscribe { after } => (after, Vec::new()),
            RequestBody::SubscribeScopes { after, scopes } => {
                // Every scope must be readable whole, as for a pull.
                for scope in &scopes {
                    let grant =
                        self.check_collection(&principal, &scope.collection, Access::Read)?;
                    if !grant.covers(&scope.prefix) {
                        return Err(ServiceError::forbidden(format!(
                            "{} may not read all of {scope}",
                            principal.0
                        )));
                    }
                }
                (after, scopes)
            }
            _ => return Err(ServiceError::bad_request("expected a subscribe request")),
        };
        // Notifications reveal when the feed moves: only for callers that
        // may read something here.
        let readable = synced_specs(self.replica.collections())
            .iter()
            .any(|c| self.access.authorize(&principal, &c.name, Access::Read));
        if !readable {
            return Err(ServiceError::forbidden(format!(
                "{} may not read any collection",
                principal.0
            )));
        }
        // A scoped subscription looks at what moved before it wakes its
        // caller; the replica handle is for that alone.
        let replica = (!scopes.is_empty()).then(|| self.replica.clone());
        // A notification carries only the head, so a few frames in flight
        // are plenty.
        let (tx, rx) = mpsc::channel(4);
        // The feed's head, as a watch: however many commits happen while
        // this task waits or sends, it wakes once and sends the latest
        // head (notifications coalesce; a write never queues a frame per
        // subscriber per commit).
        let mut head = self.replica.head();
        let heartbeat = self.config.heartbeat;
        let mut draining = self.drain.draining.subscribe();
        // Counted until the task ends, however it ends.
        let live = Live::open(self.subscribers.clone(), request.from);
        tokio::spawn(
            async move {
                let _live = live;
                tracing::debug!("subscription opened");
                // The feed examined through, and the last lsn told.
                let (mut seen, mut told) = (after, after);
                let mut beat = false;
                loop {
                    let last = *head.borrow_and_update();
                    let mut news = false;
                    if last > seen {
                        // Scoped: the feed moved, but maybe nowhere the
                        // caller asked for; then it hears nothing (a
                        // heartbeat repeats what it was told).
                        news = match &replica {
                            Some(replica) => replica.scopes_moved(&scopes, seen, last),
                            None => true,
                        };
                        seen = last;
                        if news {
                            told = last;
                        }
                    }
                    if news || beat {
                        let frame = Frame::from(protocol::encode(&Notify { last_lsn: told }));
                        let len = frame.len() as u64;
                        if tx.send(frame).await.is_err() {
                            break; // the subscriber went away
                        }
                        counter!(SENT_BYTES).increment(len);
                    }
                    beat = false;
                    tokio::select! {
                        biased;
                        // The subscriber or the transport went away: let go of the replica.
                        () = tx.closed() => break,
                        // Draining: end the stream (the transport ends the
                        // client's subscription when `tx` drops).
                        _ = draining.wait_for(|d| *d) => break,
                        changed = head.changed() => if changed.is_err() {
                            break; // the replica is gone
                        },
                        () = sleep_for(heartbeat) => beat = true,
                    }
                }
                tracing::debug!("subscription ended");
            }
            .in_current_span(),
        );
        Ok(rx)
    }
}

/// A live subscription, counted in [`SUBSCRIPTIONS`] and, while it is its
/// caller's only one, [`CONNECTED_PEERS`], until it is dropped.
struct Live {
    subscribers: Arc<Mutex<HashMap<ReplicaId, usize>>>,
    caller: ReplicaId,
}

impl Live {
    fn open(subscribers: Arc<Mutex<HashMap<ReplicaId, usize>>>, caller: ReplicaId) -> Self {
        gauge!(SUBSCRIPTIONS).increment(1.0);
        {
            let mut live = subscribers.lock().unwrap_or_else(|p| p.into_inner());
            let count = live.entry(caller).or_insert(0);
            *count += 1;
            if *count == 1 {
                gauge!(CONNECTED_PEERS).increment(1.0);
            }
        }
        Live {
            subscribers,
            caller,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        gauge!(SUBSCRIPTIONS).decrement(1.0);
        let mut live = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = live.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.caller);
                gauge!(CONNECTED_PEERS).decrement(1.0);
            }
        }
    }
}

/// A request's kind, as the label of its metrics and the field of its span.
fn request_kind(body: &RequestBody) -> RequestKind {
    match body {
        RequestBody::Hello { .. } => RequestKind::Hello,
        RequestBody::Pull { .. } => RequestKind::Pull,
        RequestBody::PullPart { .. } => RequestKind::PullPart,
        RequestBody::PullScope { .. } => RequestKind::PullScope,
        RequestBody::Relayed => RequestKind::Relayed,
        RequestBody::Push(_) => RequestKind::Push,
        RequestBody::PushPart { .. } => RequestKind::PushPart,
        RequestBody::Subscribe { .. } | RequestBody::SubscribeScopes { .. } => {
            RequestKind::Subscribe
        }
    }
}

/// The refusal of a push whose accepted changes did not apply: a stamp too
/// far ahead (for now: retried later), storage, or a forged duplicate.
fn apply_refusal(e: ApplyError) -> ServiceError {
    match e {
        ApplyError::ClockDrift(_) => ServiceError::new(RefusalCode::UNPROCESSABLE, e.to_string()),
        ApplyError::BeyondHorizon { .. } => {
            ServiceError::new(RefusalCode::RESYNC_REQUIRED, e.to_string())
        }
        ApplyError::Storage(_) => ServiceError::internal(e.to_string()),
        _ => ServiceError::bad_request(e.to_string()),
    }
}

/// The answer carrying one part of a group larger than a batch.
fn part_response(part: GroupPart) -> Response {
    Response::Part {
        part: Part {
            transfer: part.transfer,
            offset: part.offset,
            last: part.last,
        },
        batch: Batch::new(part.changes, part.transfer),
        has_more: part.has_more,
    }
}

/// Sleeps for `period`, or forever when there is none.
async fn sleep_for(period: Option<Duration>) {
    match period {
        Some(period) => tokio::time::sleep(period).await,
        None => std::future::pending().await,
    }
}
