//! The automerge merge policy (feature `automerge`).
//!
//! A record of a [`crate::MergePolicy::Automerge`] collection is an automerge
//! document. Every write is an [`Op::Automerge`]: one or more automerge
//! changes, each an *uncompressed* change chunk (what
//! `automerge::Change::raw_bytes` returns), concatenated. The store keeps the
//! record's state as the **set** of automerge changes it has seen, so that
//! replicas holding the same changes hold the same bytes whatever order the
//! changes arrived in. This is the pure rule; the collection methods that
//! read and write documents are in `src/collection/automerge.rs`.
//!
//!
//! - a live record's value is [`Value::Bytes`]: every change chunk of the
//!   record, each once, sorted bytewise (which orders them by their checksum,
//!   the first four bytes of their hash) and concatenated. automerge's
//!   `AutoCommit::load` reads these bytes as they are, although
//!   `Collection::automerge_doc` is the better way to read the document: it
//!   also copes with changes that automerge refuses (see below).
//!   `AutoCommit::save` is *not* used: its output depends on the order in
//!   which changes were applied.
//! - A [`Op::Delete`] newer than every automerge change of the record makes
//!   it a tombstone (`value: None`). The record keeps its changes while
//!   deleted, hex-encoded in the single key of [`RecordState::fields`] (its
//!   version is the delete's), because a change older than the delete may
//!   still arrive and must be kept. An automerge change newer than the
//!   delete brings the document back **with all of its history**: the
//!   changes from before the delete, as well as the new one, and edits made
//!   after the delete apply on top of the old content. (Clear the document
//!   in the first write after a delete to start afresh.)
//! - [`RecordState::version`] is the greatest version among the record's
//!   changes (deletes included), [`RecordState::tombstone`] the newest
//!   delete, [`RecordState::seen`] the greatest base.
//!
//! Malformed automerge bytes are refused when a change is stored, locally or
//! from a peer, by [`validate`]: the store calls it for every
//! [`Op::Automerge`] through [`super::check_op`], so a remote batch holding
//! one is refused whole with [`crate::ApplyError::InvalidChange`] and nothing
//! is stored. Well-formed changes that automerge still cannot apply (two
//! different changes with the same actor and sequence number, changes that
//! make automerge fail or panic) cannot be told apart without the rest of
//! the document, so they are stored and skipped when the document is
//! materialized: `Collection::automerge_doc` first applies all changes at
//! once and, if automerge fails, applies them one at a time in causal order
//! (ties broken by bytes), leaving out every change that fails and the
//! changes that depend on it. The result is again a function of the set of
//! changes. Materializing catches automerge's panics, so a build with
//! `panic = "abort"` loses that protection.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use ::automerge::{ActorId, AutoCommit, Change as AmChange, ChangeHash};

use super::RecordState;
use crate::model::{Change, Op, ReplicaId};
use crate::value::Value;

/// The four bytes every automerge chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The chunk type of an uncompressed change.
const CHANGE_CHUNK: u8 = 1;
/// The chunk type of a deflated change.
const COMPRESSED_CHUNK: u8 = 2;

/// Folds a change into a record's set of automerge changes.
///
/// Deterministic and order-independent: the state is a function of the set
/// of changes folded in (see the module docs for its layout). Returns `None`
/// when the change alters nothing. Puts and patches, which the store refuses
/// on automerge collections, are ignored; an automerge op that [`validate`]
/// would refuse counts as an empty edit.
pub(crate) fn merge(current: Option<&RecordState>, change: &Change) -> Option<RecordState> {
    let v = change.version();
    let log = current.map(stored_log).unwrap_or_default();
    let mut set: BTreeSet<&[u8]> = split_chunks(&log).unwrap_or_default().into_iter().collect();
    let mut tombstone = current.and_then(|c| c.tombstone);
    match &change.op {
        Op::Delete => tombstone = tombstone.max(Some(v)),
        Op::Automerge(bytes) => {
            if let Ok(chunks) = parse_op(bytes) {
                set.extend(chunks);
            }
        }
        // Refused on automerge collections (check_op).
        Op::Put(_) | Op::Patch(_) | Op::Purge => return None,
    }
    let version = current.map_or(v, |c| c.version.max(v));
    let seen = current.map_or(change.base, |c| c.seen.max(change.base));
    let log: Vec<u8> = set.into_iter().flatten().copied().collect();
    let (value, fields) = if tombstone == Some(version) {
        let fields = if log.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([(hex(&log), version)])
        };
        (None, fields)
    } else {
        (Some(Value::Bytes(log)), BTreeMap::new())
    };
    let next = RecordState {
        version,
        value,
        fields,
        tombstone,
        seen,
    };
    (current != Some(&next)).then_some(next)
}

/// Why the bytes of an [`Op::Automerge`] are refused; `chunk` counts the
/// op's chunks from 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutomergeOpError {
    /// The op holds no bytes at all.
    #[error("an automerge op holds no change")]
    Empty,
    /// A chunk does not start with automerge's magic bytes and a header.
    #[error("automerge chunk {chunk}: no chunk header")]
    NoHeader {
        /// The chunk's index.
        chunk: usize,
    },
    /// A chunk's length is not a minimal LEB128 number.
    #[error("automerge chunk {chunk}: bad length")]
    BadLength {
        /// The chunk's index.
        chunk: usize,
    },
    /// A chunk runs past the end of the bytes.
    #[error("automerge chunk {chunk}: truncated")]
    Truncated {
        /// The chunk's index.
        chunk: usize,
    },
    /// A deflated change chunk: a peer's could inflate far past the size limit.
    #[error("automerge chunk {chunk}: compressed change chunks are not accepted; send raw_bytes()")]
    Compressed {
        /// The chunk's index.
        chunk: usize,
    },
    /// A chunk of another type (a document, a bundle).
    #[error("automerge chunk {chunk}: chunk type {kind} is not a change")]
    NotAChange {
        /// The chunk's index.
        chunk: usize,
        /// Its type byte.
        kind: u8,
    },
    /// automerge cannot read the change.
    #[error("automerge chunk {chunk}: {source}")]
    Unreadable {
        /// The chunk's index.
        chunk: usize,
        /// automerge's error.
        source: ::automerge::LoadChangeError,
    },
    /// The checksum in the header is not the change's hash.
    #[error("automerge chunk {chunk}: bad checksum")]
    BadChecksum {
        /// The chunk's index.
        chunk: usize,
    },
    /// automerge reads the change, but would write it as other bytes.
    #[error("automerge chunk {chunk}: not in canonical form")]
    NotCanonical {
        /// The chunk's index.
        chunk: usize,
    },
}

/// Checks the bytes of an [`Op::Automerge`]: one or more uncompressed
/// automerge change chunks, concatenated, each with a valid checksum and
/// columns automerge can read. Document chunks, bundles and compressed
/// (deflated) changes are refused: the store keeps changes as they come, and
/// a compressed chunk from a peer could inflate to far more than the size
/// limit. The error says what is wrong.
///
/// Called by [`super::check_op`] for local writes and remote batches alike.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), AutomergeOpError> {
    parse_op(bytes).map(drop)
}

/// The change chunks of an op, checked as [`validate`] says.
fn parse_op(bytes: &[u8]) -> Result<Vec<&[u8]>, AutomergeOpError> {
    if bytes.is_empty() {
        return Err(AutomergeOpError::Empty);
    }
    let chunks = split_chunks(bytes)?;
    for (i, chunk) in chunks.iter().enumerate() {
        match chunk[8] {
            CHANGE_CHUNK => {}
            COMPRESSED_CHUNK => return Err(AutomergeOpError::Compressed { chunk: i }),
            kind => return Err(AutomergeOpError::NotAChange { chunk: i, kind }),
        }
        let change = AmChange::try_from(*chunk)
            .map_err(|source| AutomergeOpError::Unreadable { chunk: i, source })?;
        if chunk[4..8] != change.hash().0[..4] {
            return Err(AutomergeOpError::BadChecksum { chunk: i });
        }
        if change.raw_bytes() != *chunk {
            return Err(AutomergeOpError::NotCanonical { chunk: i });
        }
    }
    Ok(chunks)
}

/// Splits bytes into automerge chunks by their headers (magic, checksum,
/// type, minimal unsigned LEB128 length), without reading their contents.
fn split_chunks(mut bytes: &[u8]) -> Result<Vec<&[u8]>, AutomergeOpError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let chunk = out.len();
        if bytes.len() < 10 || bytes[..4] != MAGIC {
            return Err(AutomergeOpError::NoHeader { chunk });
        }
        let (len, leb) = read_uleb(&bytes[9..]).ok_or(AutomergeOpError::BadLength { chunk })?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(9 + leb))
            .filter(|end| *end <= bytes.len())
            .ok_or(AutomergeOpError::Truncated { chunk })?;
        out.push(&bytes[..end]);
        bytes = &bytes[end..];
    }
    Ok(out)
}

/// A minimal unsigned LEB128 and its length in bytes.
fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            // A trailing zero byte would encode the same number at another length.
            return (i == 0 || *b != 0).then_some((value, i + 1));
        }
    }
    None
}

/// The concatenated change chunks a state holds, live or deleted.
pub(crate) fn stored_log(state: &RecordState) -> Vec<u8> {
    match &state.value {
        Some(Value::Bytes(bytes)) => bytes.clone(),
        Some(_) => Vec::new(),
        None => state
            .fields
            .keys()
            .filter_map(|k| unhex(k))
            .flatten()
            .collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The automerge document of a set of change chunks (see the module docs):
/// every change automerge accepts, in a result that depends only on the set.
pub(crate) fn materialize(log: &[u8], actor: ActorId) -> AutoCommit {
    let changes: Vec<AmChange> = split_chunks(log)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|chunk| AmChange::try_from(chunk).ok())
        .collect();
    let fast = guarded(|| {
        let mut doc = AutoCommit::new();
        doc.apply_changes(changes.clone()).ok().map(|()| doc)
    });
    let mut doc = fast.unwrap_or_else(|| one_by_one(changes));
    doc.set_actor(actor);
    doc
}

/// Runs `f`, turning a panic into `None`.
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

/// Applies `changes` one at a time in causal order (ties in the order given),
/// skipping each change automerge refuses and every change depending on it.
fn one_by_one(changes: Vec<AmChange>) -> AutoCommit {
    let mut applied: HashSet<ChangeHash> = HashSet::new();
    let mut accepted: Vec<AmChange> = Vec::new();
    let mut pending = changes;
    let mut doc = AutoCommit::new();
    loop {
        let mut progress = false;
        let mut rest = Vec::with_capacity(pending.len());
        for change in pending {
            if applied.contains(&change.hash()) {
                continue;
            }
            if !change.deps().iter().all(|d| applied.contains(d)) {
                rest.push(change);
                continue;
            }
            progress = true;
            let ok = guarded(|| doc.apply_changes([change.clone()]).ok()).is_some();
            if ok {
                applied.insert(change.hash());
                accepted.push(change);
            } else {
                // The failed attempt may have left the document half changed.
                doc = guarded(|| {
                    let mut fresh = AutoCommit::new();
                    for c in &accepted {
                        fresh.apply_changes([c.clone()]).ok()?;
                    }
                    Some(fresh)
                })
                .unwrap_or_default();
            }
        }
        pending = rest;
        if !progress {
            return doc;
        }
    }
}

/// The automerge actor of a replica's writes: its id's 16 bytes, so that
/// replicas never share an actor.
pub(crate) fn actor_of(replica: ReplicaId) -> ActorId {
    ActorId::from(&replica.as_bytes()[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Stamp;
    use crate::merge::{Rule, merge_all, merge_one};
    use crate::model::ChangeId;
    use ::automerge::transaction::Transactable;
    use ::automerge::{ObjType, ROOT, ReadDoc, ScalarValue};

    fn syncline_change(stamp: u64, origin: u8, op: Op) -> Change {
        Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([origin; 16]),
                seq: stamp,
            },
            collection: "docs".into(),
            key: "k".into(),
            stamp: Stamp::from_u64(stamp),
            base: Stamp::ZERO,
            op,
        }
    }

    fn raw(changes: &[AmChange]) -> Vec<u8> {
        changes
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect()
    }

    /// A base document and two concurrent edits of it, by actors 1 and 2:
    /// (base, edit by 1, edit by 2).
    fn concurrent() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut a = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
        let text = a.put_object(ROOT, "text", ObjType::Text).unwrap();
        a.splice_text(&text, 0, 0, "middle").unwrap();
        a.put(ROOT, "n", ScalarValue::counter(0)).unwrap();
        a.commit();
        let base_heads = a.get_heads();
        let base = raw(&a.get_changes(&[]));
        let mut b = a.fork().with_actor(ActorId::from(&[2u8; 16][..]));
        a.splice_text(&text, 0, 0, "Hello ").unwrap();
        a.increment(ROOT, "n", 1).unwrap();
        a.commit();
        b.splice_text(&text, 6, 0, " world").unwrap();
        b.increment(ROOT, "n", 2).unwrap();
        b.commit();
        (
            base,
            raw(&a.get_changes(&base_heads)),
            raw(&b.get_changes(&base_heads)),
        )
    }

    fn text_of(state: &RecordState) -> String {
        let doc = materialize(&stored_log(state), ActorId::from(&[9u8; 16][..]));
        let (_, text) = doc.get(ROOT, "text").unwrap().unwrap();
        doc.text(&text).unwrap()
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn any_order_and_duplicates_give_the_same_bytes() {
        let (base, a, b) = concurrent();
        let changes = [
            syncline_change(1, 1, Op::Automerge(base.clone())),
            syncline_change(2, 1, Op::Automerge(a)),
            syncline_change(3, 2, Op::Automerge(b)),
            // The same automerge change carried twice.
            syncline_change(4, 3, Op::Automerge(base)),
        ];
        let rule = Rule::Automerge;
        let reference = merge_all(&rule, &changes).unwrap();
        assert_eq!(text_of(&reference), "Hello middle world");
        assert_eq!(reference.version, changes[3].version());
        for p in permutations(changes.len()) {
            let state = merge_all(&rule, p.iter().map(|&i| &changes[i])).unwrap();
            assert_eq!(state, reference, "order {p:?}");
            for c in &changes {
                assert!(merge_one(&rule, Some(&state), c).is_none());
            }
        }
    }

    #[test]
    fn delete_hides_then_newer_edit_restores_with_history() {
        let (base, a, b) = concurrent();
        let rule = Rule::Automerge;
        let c1 = syncline_change(1, 1, Op::Automerge(base));
        let c2 = syncline_change(2, 1, Op::Automerge(a));
        let del = syncline_change(5, 2, Op::Delete);
        let late_old = syncline_change(4, 2, Op::Automerge(b));
        let dead_orders = permutations(4);
        let all = [&c1, &c2, &del, &late_old];
        let dead = merge_all(&rule, all).unwrap();
        assert!(dead.is_tombstone());
        assert_eq!(dead.tombstone, Some(del.version()));
        for p in &dead_orders {
            assert_eq!(merge_all(&rule, p.iter().map(|&i| all[i])).unwrap(), dead);
        }

        let mut doc = materialize(&stored_log(&dead), ActorId::from(&[3u8; 16][..]));
        let heads = doc.get_heads();
        doc.put(ROOT, "back", true).unwrap();
        doc.commit();
        let newer = syncline_change(9, 3, Op::Automerge(raw(&doc.get_changes(&heads))));
        let all = [&c1, &c2, &del, &late_old, &newer];
        let alive = merge_all(&rule, all).unwrap();
        assert!(!alive.is_tombstone());
        assert_eq!(text_of(&alive), "Hello middle world");
        for p in permutations(5) {
            assert_eq!(merge_all(&rule, p.iter().map(|&i| all[i])).unwrap(), alive);
        }
        // A delete older than the newest edit changes only the tombstone mark.
        let old_del = syncline_change(8, 4, Op::Delete);
        let state = merge_one(&rule, Some(&alive), &old_del).unwrap();
        assert_eq!(state.value, alive.value);
    }

    #[test]
    fn validate_refuses_malformed_bytes() {
        let (base, a, _) = concurrent();
        assert!(validate(&base).is_ok());
        let both = [base.clone(), a.clone()].concat();
        assert!(validate(&both).is_ok());
        assert!(validate(&[]).is_err());
        assert!(validate(&MAGIC).is_err());
        assert!(validate(&base[..base.len() - 1]).is_err());
        assert!(validate(&[base.as_slice(), &[0]].concat()).is_err());
        let mut bad_sum = base.clone();
        bad_sum[5] ^= 1;
        assert!(
            validate(&bad_sum)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        let mut bad_body = base.clone();
        let n = bad_body.len();
        bad_body[n - 3] ^= 0x55;
        assert!(validate(&bad_body).is_err());
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "x", 1).unwrap();
        assert!(
            validate(&doc.save())
                .unwrap_err()
                .to_string()
                .contains("not a change")
        );
        let mut big = AutoCommit::new();
        let text = big.put_object(ROOT, "t", ObjType::Text).unwrap();
        big.splice_text(&text, 0, 0, &"abcdefgh".repeat(200))
            .unwrap();
        big.commit();
        let mut change = big.get_last_local_change().unwrap();
        let compressed = change.bytes().to_vec();
        assert_eq!(compressed[8], COMPRESSED_CHUNK);
        assert!(
            validate(&compressed)
                .unwrap_err()
                .to_string()
                .contains("compressed")
        );
        assert!(validate(change.raw_bytes()).is_ok());
    }

    #[test]
    fn a_merge_of_refused_bytes_is_deterministic() {
        let rule = Rule::Automerge;
        let junk = syncline_change(1, 1, Op::Automerge(vec![0x85, 0x6f, 0x4a, 0x83]));
        let state = merge_one(&rule, None, &junk).unwrap();
        assert_eq!(state.value, Some(Value::Bytes(Vec::new())));
        assert!(merge_one(&rule, None, &syncline_change(1, 1, Op::Put(Value::Int(1)))).is_none());
    }

    #[test]
    fn duplicate_actor_seq_is_skipped_deterministically() {
        let (base, a, b) = concurrent();
        // Another change by actor 1 with the sequence number of `a`.
        let mut doc = materialize(&base, ActorId::from(&[1u8; 16][..]));
        let heads = doc.get_heads();
        doc.put(ROOT, "rogue", 1).unwrap();
        doc.commit();
        let rogue = raw(&doc.get_changes(&heads));
        assert!(validate(&rogue).is_ok());
        let changes = [
            syncline_change(1, 1, Op::Automerge(base)),
            syncline_change(2, 1, Op::Automerge(a)),
            syncline_change(3, 2, Op::Automerge(b)),
            syncline_change(4, 3, Op::Automerge(rogue)),
        ];
        let state = merge_all(&Rule::Automerge, &changes).unwrap();
        let mut doc = materialize(&stored_log(&state), ActorId::from(&[9u8; 16][..]));
        let (_, text) = doc.get(ROOT, "text").unwrap().unwrap();
        let text = doc.text(&text).unwrap();
        // One of the two clashing changes is left out, the same one always.
        assert!(text.contains("middle world"), "{text}");
        let heads = doc.get_heads();
        for p in permutations(4) {
            let s = merge_all(&Rule::Automerge, p.iter().map(|&i| &changes[i])).unwrap();
            let mut d = materialize(&stored_log(&s), ActorId::from(&[9u8; 16][..]));
            assert_eq!(d.get_heads(), heads);
        }
    }

    #[test]
    fn changes_that_break_automerge_are_skipped() {
        // Mutated changes with a repaired checksum pass validation; some of
        // them make automerge fail or panic. Reading must do neither, and
        // must give the same document whatever the order of delivery.
        let (base, a, b) = concurrent();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut broken = 0;
        for _ in 0..3000 {
            let mut m = b.clone();
            let p = 10 + (rnd() as usize) % (m.len() - 10);
            m[p] ^= 1 << (rnd() % 8);
            let Ok(c) = AmChange::try_from(m.as_slice()) else {
                continue;
            };
            m[4..8].copy_from_slice(&c.hash().0[..4]);
            if validate(&m).is_err() {
                continue;
            }
            let parsed: Vec<AmChange> = [&base, &a, &m]
                .iter()
                .map(|c| AmChange::try_from(c.as_slice()).unwrap())
                .collect();
            let fast_ok = guarded(|| AutoCommit::new().apply_changes(parsed).ok()).is_some();
            if fast_ok {
                continue;
            }
            broken += 1;
            let changes = [
                syncline_change(1, 1, Op::Automerge(base.clone())),
                syncline_change(2, 1, Op::Automerge(a.clone())),
                syncline_change(3, 2, Op::Automerge(m)),
            ];
            let mut heads = Vec::new();
            for p in permutations(3) {
                let s = merge_all(&Rule::Automerge, p.iter().map(|&i| &changes[i])).unwrap();
                let mut doc = materialize(&stored_log(&s), ActorId::from(&[9u8; 16][..]));
                heads.push(doc.get_heads());
            }
            assert!(heads.windows(2).all(|w| w[0] == w[1]));
            if broken >= 20 {
                break;
            }
        }
        assert!(broken > 0, "no mutation broke automerge");
    }

    /// A random history of one record: three actors edit a text and a
    /// counter, merge each other's documents now and then, and ship their
    /// changes (sometimes with a change of another actor bundled in); some
    /// syncline changes are deletes.
    fn random_history(seed: u64) -> Vec<Change> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut first = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
        let text = first.put_object(ROOT, "t", ObjType::Text).unwrap();
        first.put(ROOT, "n", ScalarValue::counter(0)).unwrap();
        first.commit();
        let mut out = vec![syncline_change(
            1,
            1,
            Op::Automerge(raw(&first.get_changes(&[]))),
        )];
        let mut docs = [first.fork(), first.fork(), first];
        for (i, d) in docs.iter_mut().enumerate() {
            d.set_actor(ActorId::from(&[i as u8 + 1; 16][..]));
        }
        let mut shipped: Vec<Vec<u8>> = Vec::new();
        for step in 0..14u64 {
            let i = rnd(3) as usize;
            let stamp = 2 + step * 3 + rnd(4);
            match rnd(5) {
                0 => {
                    let j = rnd(3) as usize;
                    let mut other = docs[j].fork();
                    docs[i].merge(&mut other).unwrap();
                }
                1 => out.push(syncline_change(stamp, i as u8 + 1, Op::Delete)),
                _ => {
                    let d = &mut docs[i];
                    let heads = d.get_heads();
                    let len = d.length(&text);
                    let at = rnd(len as u64 + 1) as usize;
                    if len > 0 && rnd(3) == 0 {
                        d.splice_text(&text, at.min(len - 1), 1, "").unwrap();
                    } else {
                        d.splice_text(&text, at, 0, &step.to_string()).unwrap();
                    }
                    d.increment(ROOT, "n", 1).unwrap();
                    d.commit();
                    let mut bytes = raw(&d.get_changes(&heads));
                    if !shipped.is_empty() && rnd(3) == 0 {
                        bytes.extend(&shipped[rnd(shipped.len() as u64) as usize]);
                    }
                    shipped.push(bytes.clone());
                    out.push(syncline_change(stamp, i as u8 + 1, Op::Automerge(bytes)));
                }
            }
        }
        out
    }

    /// A shuffle of `items` drawn from `seed`.
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
        let mut v = items.to_vec();
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn random_histories_obey_the_merge_laws() {
        let rule = Rule::Automerge;
        for seed in 0..40 {
            let changes = random_history(seed);
            let reference = merge_all(&rule, &changes).unwrap();
            let doc_of = |s: &RecordState| {
                let mut d = materialize(&stored_log(s), ActorId::from(&[9u8; 16][..]));
                (d.get_heads(), d.length(ROOT))
            };
            let reference_doc = doc_of(&reference);
            for round in 0..6 {
                // Commutativity and idempotence: any order, with repeats.
                let mut order = shuffled(&changes, seed * 100 + round);
                order.extend(shuffled(&changes, seed * 100 + round + 50)[..3].to_vec());
                let state = merge_all(&rule, &order).unwrap();
                assert_eq!(state, reference, "seed {seed} round {round}");
                // Associativity: a prefix folded first, the rest onto it.
                let at = (seed + round) as usize % changes.len();
                let prefix = merge_all(&rule, &order[..at]);
                let mut state = prefix;
                for c in &order[at..] {
                    if let Some(next) = merge_one(&rule, state.as_ref(), c) {
                        state = Some(next);
                    }
                }
                assert_eq!(
                    state.as_ref(),
                    Some(&reference),
                    "seed {seed} round {round}"
                );
            }
            if !reference.is_tombstone() {
                assert_eq!(doc_of(&reference), reference_doc);
            }
            #[cfg(feature = "testing")]
            crate::testing::laws::check_merge_laws(|s, c| merge_one(&rule, s, c), &changes, seed)
                .unwrap();
        }
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn uleb_is_minimal() {
        assert_eq!(read_uleb(&[0x05]), Some((5, 1)));
        assert_eq!(read_uleb(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(read_uleb(&[0x85, 0x00]), None);
        assert_eq!(read_uleb(&[0x80]), None);
        assert_eq!(read_uleb(&[0xff; 11]), None);
    }
}
