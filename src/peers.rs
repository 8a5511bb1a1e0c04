//! What a replica remembers of each peer it syncs with: cursors in `peers-1`.

use redb::{ReadableTable, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{ReadError, StorageError};
use crate::model::{Change, ReplicaId};
use crate::replica::Replica;
use crate::tables::{self, FEED, PEERS};

/// The sync cursors kept for one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The peer's lsn that this replica has pulled and applied through.
    pub pulled: u64,
    /// This replica's lsn that the peer has acknowledged holding through.
    pub pushed: u64,
    /// When the peer was last heard from, in milliseconds since the epoch.
    pub last_seen_ms: u64,
}

/// A slice of the feed prepared for one peer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FeedSlice {
    /// The changes to send, whole groups only.
    pub(crate) changes: Vec<Change>,
    /// The lsn the slice covers through (skipped entries included).
    pub(crate) through: u64,
    /// Whether the feed goes on after `through`.
    pub(crate) has_more: bool,
}

/// Reads, changes and writes the state of `peer` inside `txn`.
pub(crate) fn update(
    txn: &WriteTransaction,
    peer: ReplicaId,
    change: impl FnOnce(&mut PeerState),
) -> Result<(), StorageError> {
    let mut table = txn.open_table(PEERS)?;
    let mut state = match table.get(peer.as_bytes())? {
        Some(g) => tables::decode(PEERS.name(), g.value())?,
        None => PeerState::default(),
    };
    change(&mut state);
    table.insert(peer.as_bytes(), codec::encode(&state).as_slice())?;
    Ok(())
}

impl Replica {
    /// The cursors kept for `peer` (zeros if it was never synced).
    pub fn peer_state(&self, peer: ReplicaId) -> Result<PeerState, ReadError> {
        let read = self.begin_read()?;
        let table = read.open_table(PEERS).map_err(StorageError::from)?;
        match table.get(peer.as_bytes()).map_err(StorageError::from)? {
            Some(g) => Ok(tables::decode(PEERS.name(), g.value())?),
            None => Ok(PeerState::default()),
        }
    }

    /// Records that `peer` acknowledged holding this replica's feed through `pushed`.
    pub(crate) fn record_pushed(
        &self,
        peer: ReplicaId,
        pushed: u64,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let _guard = self.lock_write();
        let txn = self.begin_write()?;
        // Entries right after the acknowledged ones that came from the peer
        // itself never need pushing: step over them too, so that nothing
        // counts as pending when nothing is.
        let mut through = pushed;
        {
            let feed = txn.open_table(FEED)?;
            tables::walk_feed::<StorageError>(&feed, pushed, |lsn, source, item, _| {
                if source != Some(peer) && item.origin()? != peer {
                    return Ok(false);
                }
                through = lsn;
                Ok(true)
            })?;
        }
        update(&txn, peer, |p| {
            p.pushed = p.pushed.max(through);
            p.last_seen_ms = now_ms;
        })?;
        txn.commit()?;
        Ok(())
    }

    /// The feed after `after` as `peer` should see it: at most about `limit`
    /// changes and `max_bytes` (whole groups), leaving out what came from `peer` and
    /// collections not in `wanted`.
    pub(crate) fn feed_for(
        &self,
        peer: ReplicaId,
        after: u64,
        limit: usize,
        max_bytes: usize,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<FeedSlice, ReadError> {
        let entries = self.feed_scan(after, limit.max(1), max_bytes)?;
        let through = entries.last().map_or(after, |e| e.lsn);
        let has_more = through < self.last_lsn();
        let changes = entries
            .into_iter()
            .filter(|e| e.source != Some(peer) && e.change.id.origin != peer)
            .filter(|e| wanted(&e.change.collection))
            .map(|e| e.change)
            .collect();
        Ok(FeedSlice {
            changes,
            through,
            has_more,
        })
    }
}
