//! The automerge methods of [`Collection`] (feature `automerge`): reading a
//! record's document and storing edits of it. The merge rule itself is in
//! `src/merge/automerge.rs`.

use ::automerge::{AutoCommit, AutomergeError};

use super::Collection;
use crate::error::{ReadError, WriteError};
use crate::merge::automerge::{actor_of, materialize, stored_log};
use crate::merge::{OpError, OpKind};
use crate::model::{Key, MergePolicy};

/// Automerge collections ([`MergePolicy::Automerge`], feature `automerge`).
impl Collection {
    /// The automerge document of a record; `None` if it never existed or is
    /// deleted.
    ///
    /// The document holds every change of the record that automerge can
    /// apply (one that it refuses, such as a second change with the same
    /// actor and sequence number, is left out with the changes that depend
    /// on it, the same way on every replica). Its actor is this replica's,
    /// but changes made to it are not stored: write with
    /// [`Collection::automerge_change`].
    ///
    /// The record's value, as [`Collection::get`] returns it, is
    /// [`crate::Value::Bytes`]: the record's automerge changes, each once, sorted
    /// bytewise and concatenated. Replicas that hold the same changes hold
    /// the same bytes, whatever order the changes came in, and automerge's
    /// `AutoCommit::load` reads them. A delete newer than every automerge
    /// change of the record hides it (a tombstone); a change newer than the
    /// delete brings the document back with all of its history.
    ///
    /// Fails with [`ReadError::Op`] on a collection that does not use the
    /// automerge policy.
    pub fn automerge_doc(&self, key: impl Into<Key>) -> Result<Option<AutoCommit>, ReadError> {
        self.require_automerge()?;
        Ok(match self.record(key)? {
            Some(state) if !state.is_tombstone() => Some(materialize(
                &stored_log(&state),
                actor_of(self.replica().id()),
            )),
            _ => None,
        })
    }

    /// Edits a record's automerge document and stores the edit, durably,
    /// as one change that syncs like any other.
    ///
    /// `f` gets the current document (a new, empty one if the record does
    /// not exist; the whole history if it is deleted, which the write brings
    /// back) with this replica's actor. The changes it makes, committed or
    /// not, are stored as one [`crate::Op::Automerge`]; if it makes none, nothing
    /// is stored. Writes on one replica are serialized: `f` must not call
    /// `automerge_change` on the same replica.
    ///
    /// Fails with [`WriteError::Op`] on a collection that does not use the
    /// automerge policy, or with [`WriteError::Automerge`] carrying the
    /// error `f` returns (and then stores nothing).
    ///
    /// ```
    /// # use syncline::{CollectionConfig, MergePolicy, Replica, ReplicaConfig};
    /// use syncline::automerge::{ObjType, ROOT, ReadDoc, transaction::Transactable};
    ///
    /// # fn main() -> Result<(), syncline::Error> {
    /// let replica = Replica::in_memory(ReplicaConfig::default())?;
    /// let notes = replica.define_collection(
    ///     "notes",
    ///     CollectionConfig::default().with_policy(MergePolicy::Automerge),
    /// )?;
    /// notes.automerge_change("n1", |doc| {
    ///     let text = doc.put_object(ROOT, "text", ObjType::Text)?;
    ///     doc.splice_text(&text, 0, 0, "hello")
    /// })?;
    /// let doc = notes.automerge_doc("n1")?.expect("written");
    /// let (_, text) = doc.get(ROOT, "text").unwrap().expect("a text");
    /// assert_eq!(doc.text(&text).unwrap(), "hello");
    /// # Ok(()) }
    /// ```
    pub fn automerge_change<T>(
        &self,
        key: impl Into<Key>,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, AutomergeError>,
    ) -> Result<T, WriteError> {
        self.require_automerge()?;
        let key = key.into();
        let replica = self.replica();
        // Two writes that loaded the same document would give two different
        // changes the same actor and sequence number, which automerge cannot
        // merge: one automerge write at a time per replica.
        let _guard = replica.automerge_lock();
        let log = self
            .record(&key)
            .map_err(read_to_write)?
            .map(|state| stored_log(&state))
            .unwrap_or_default();
        let mut doc = materialize(&log, actor_of(replica.id()));
        let heads = doc.get_heads();
        let out = f(&mut doc).map_err(WriteError::Automerge)?;
        doc.commit();
        let changes = doc.get_changes(&heads);
        if changes.is_empty() {
            return Ok(out);
        }
        let bytes: Vec<u8> = changes
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect();
        let mut txn = replica.transaction();
        txn.automerge(self.name(), key, bytes);
        txn.commit()?;
        Ok(out)
    }

    /// Refuses collections of other policies: an automerge change is not
    /// allowed there.
    fn require_automerge(&self) -> Result<(), OpError> {
        match self.config().policy {
            MergePolicy::Automerge => Ok(()),
            policy => Err(OpError::NotAllowed {
                op: OpKind::Automerge,
                policy,
            }),
        }
    }
}

/// A read's error in a write: the key and the collection were the caller's.
fn read_to_write(e: ReadError) -> WriteError {
    match e {
        ReadError::Key(k) => WriteError::Key(k),
        ReadError::Storage(s) => WriteError::Storage(s),
        ReadError::UnknownCollection(c) => WriteError::UnknownCollection(c),
        ReadError::Value(v) => WriteError::Value(v),
        ReadError::Op(o) => WriteError::Op(o),
    }
}
