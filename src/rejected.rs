//! Groups of changes a remote refused: listed, pushed again, or discarded
//! with compensating changes.

use std::collections::BTreeSet;

use syncline_transport::RefusalCode;

use crate::error::{ReadError, WriteError};
use crate::merge::merge_all;
use crate::model::{Change, Key, MergePolicy, ReplicaId};
use crate::replica::Replica;
use crate::value::Value;

/// A transaction group a remote refused when this replica pushed it. Its
/// changes stay here, merged as before; nothing of them reached the remote.
/// The push went on with the groups after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The remote that refused it.
    pub remote: ReplicaId,
    /// The group's name: the lsn that ends it in this replica's feed.
    pub group: u64,
    /// Why, as the remote's code: 403 (may not write the collection), 409
    /// (the collection is not synced there), 422 (a validator or the
    /// change's checks refused it).
    pub code: RefusalCode,
    /// The remote's reason.
    pub reason: String,
    /// When the refusal arrived, in ms since the epoch.
    pub at_ms: u64,
    /// The changes the group carried to the remote.
    pub changes: Vec<Change>,
}

impl Replica {
    /// The groups remotes refused and the app has not retried or
    /// discarded, in (remote, group) order.
    pub fn rejected(&self) -> Result<Vec<Rejected>, ReadError> {
        let store = self.store();
        let mut out = Vec::new();
        for g in store.rejected()? {
            if g.body.discarded {
                continue;
            }
            out.push(Rejected {
                remote: g.peer,
                group: g.lsn,
                code: RefusalCode::new(g.body.code),
                reason: g.body.reason,
                at_ms: g.body.at_ms,
                changes: g.body.changes,
            });
        }
        Ok(out)
    }

    /// Pushes a refused group again (say, after the remote's permissions
    /// changed): its changes go back into the feed, so every engine pushes
    /// them at its next round, and the refusal is forgotten. If the remote
    /// refuses them again, they are listed again. False when `remote`
    /// refused no group `group` (or it was discarded).
    pub fn retry_rejected(&self, remote: ReplicaId, group: u64) -> Result<bool, WriteError> {
        Ok(self.store().retry_rejected(remote, group)?)
    }

    /// Discards a refused group: for every record it touched, writes the
    /// compensating change that brings the record back to what it would be
    /// without the changes remotes refused, which, once the remote's own
    /// changes are pulled, is what the remote holds. The refusal is no
    /// longer listed. False when `remote` refused no group `group`.
    ///
    /// Pull before discarding, so that the state written back is current:
    /// the compensating change is newer than anything held here. A record
    /// whose state already matches needs no change, so discarding the
    /// refusal of a compensating change (a collection this replica may not
    /// write refuses that too) writes nothing more. Records of automerge
    /// collections are left as they are. The refusal is marked discarded
    /// after the compensating changes commit; a crash in between leaves it
    /// listed, and discarding it again writes nothing more.
    pub fn discard_rejected(&self, remote: ReplicaId, group: u64) -> Result<bool, WriteError> {
        let all = self.store().rejected()?;
        let Some(target) = all.iter().find(|g| g.peer == remote && g.lsn == group) else {
            return Ok(false);
        };
        if target.body.discarded {
            return Ok(false);
        }
        // Every change any remote refused is left out, discarded ones too,
        // so that compensations never bring one back.
        let slot = |c: &Change| (c.collection.clone(), c.key.clone(), c.stamp, c.id.origin);
        let refused: BTreeSet<_> = all
            .iter()
            .flat_map(|g| g.body.changes.iter().map(slot))
            .collect();
        let touched: BTreeSet<(String, Key)> = target
            .body
            .changes
            .iter()
            .map(|c| (c.collection.clone(), c.key.clone()))
            .collect();
        let mut txn = self.transaction();
        for (collection, key) in touched {
            let Some((config, rule)) = self.collection_rule(&collection) else {
                continue;
            };
            if config.policy == MergePolicy::Automerge {
                continue;
            }
            let kept: Vec<Change> = self
                .store()
                .history(&collection, &key, true)?
                .into_iter()
                .filter(|c| !refused.contains(&slot(c)))
                .collect();
            let wanted: Option<Value> = merge_all(&rule, &kept).and_then(|s| s.value);
            let now = self
                .store()
                .record(&collection, &key)?
                .and_then(|s| s.value);
            if now == wanted {
                continue;
            }
            match (wanted, &config.policy) {
                (None, _) => {
                    txn.delete(&collection, key);
                }
                // A field-level put keeps fields it does not name: clear
                // the record first, then write the fields back.
                (Some(value), MergePolicy::FieldLww) => {
                    txn.delete(&collection, key.clone());
                    txn.put(&collection, key, value);
                }
                (Some(value), _) => {
                    txn.put(&collection, key, value);
                }
            }
        }
        txn.commit()?;
        Ok(self.store().mark_discarded(remote, group)?)
    }
}
