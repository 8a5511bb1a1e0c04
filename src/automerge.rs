//! The automerge merge policy (feature `automerge`).

use crate::merge::RecordState;
use crate::model::Change;

/// Folds an automerge change into a record's document.
pub(crate) fn merge(current: Option<&RecordState>, change: &Change) -> Option<RecordState> {
    let _ = (current, change);
    None
}
