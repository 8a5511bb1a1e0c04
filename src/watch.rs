//! Streams of committed changes.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::model::{Change, ReplicaId};

/// A change that was committed, locally or from a remote batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// Its lsn in this replica's feed.
    pub lsn: u64,
    /// The change.
    pub change: Change,
    /// The peer it came from; `None` for a change made on this replica
    /// (and for remote batches applied without naming their source).
    pub source: Option<ReplicaId>,
}

/// A watch fell behind or its replica is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The watcher fell behind and this many events were dropped; read the
    /// feed from the last lsn seen to catch up.
    #[error("watch lagged behind by {0} changes")]
    Lagged(u64),
    /// Every handle on the replica was dropped.
    #[error("replica closed")]
    Closed,
}

/// A stream of committed changes, from the moment it was made, in commit order.
///
/// Events are delivered after the commit that made them durable. A slow
/// reader that falls more than `watch_capacity` events behind gets
/// [`WatchError::Lagged`] once and then continues with newer events.
#[derive(Debug)]
pub struct Watch {
    rx: broadcast::Receiver<Arc<ChangeEvent>>,
    collection: Option<String>,
}

impl Watch {
    pub(crate) fn new(
        rx: broadcast::Receiver<Arc<ChangeEvent>>,
        collection: Option<String>,
    ) -> Self {
        Self { rx, collection }
    }

    /// Waits for the next committed change.
    pub async fn recv(&mut self) -> Result<Arc<ChangeEvent>, WatchError> {
        loop {
            match self.rx.recv().await {
                Ok(event) if self.wants(&event) => return Ok(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Err(WatchError::Lagged(n)),
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// The next committed change if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Result<Option<Arc<ChangeEvent>>, WatchError> {
        loop {
            match self.rx.try_recv() {
                Ok(event) if self.wants(&event) => return Ok(Some(event)),
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    return Err(WatchError::Lagged(n));
                }
                Err(broadcast::error::TryRecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    fn wants(&self, event: &ChangeEvent) -> bool {
        self.collection
            .as_deref()
            .is_none_or(|c| c == event.change.collection)
    }
}
