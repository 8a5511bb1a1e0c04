//! Authentication and authorization hooks of the serving side.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use syncline_transport::PeerInfo;

use crate::model::{Change, Key, ReplicaId, Scope};

/// Who a caller is, as decided by [`AccessControl::authenticate`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal(pub String);

/// What a caller wants to do with a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Pull its changes.
    Read,
    /// Push changes to it.
    Write,
}

/// What a server knows of a caller when it authenticates it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Credentials<'a> {
    /// The token the caller sent (in the request, or the transport's bearer header).
    pub token: Option<&'a str>,
    /// The replica id the caller claims.
    pub replica: ReplicaId,
    /// What the transport knows of the caller (address, TLS client identity).
    pub peer: &'a PeerInfo,
}

/// Why [`AccessControl::authenticate`] refused a caller. The server refuses
/// the request with [`syncline_transport::RefusalCode::UNAUTHORIZED`] and
/// this error's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The caller sent no token, and one is required.
    #[error("a token is required")]
    MissingToken,
    /// The caller's token is not known here.
    #[error("unknown token")]
    UnknownToken,
    /// The caller presented no TLS client certificate, and one is required.
    #[error("a client certificate is required")]
    MissingCertificate,
    /// The caller's TLS client certificate is not accepted here.
    #[error("unknown client certificate")]
    UnknownCertificate,
    /// Refused for a reason of the implementation's own.
    #[error("{0}")]
    Denied(String),
}

/// The serving side's hooks: map credentials to a principal, then allow or
/// deny each collection read and write.
///
/// A denied push stores nothing, and the caller receives the reason.
pub trait AccessControl: Send + Sync + fmt::Debug {
    /// Decides who the caller is, or refuses it.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, AuthError>;

    /// Whether `principal` may read or write `collection`, or some part of
    /// it. Allows all by default.
    fn authorize(&self, principal: &Principal, collection: &str, access: Access) -> bool {
        let _ = (principal, collection, access);
        true
    }

    /// Which records of `collection` `principal` may read or write: all,
    /// those under some key prefixes, or none. By default the whole
    /// collection when [`AccessControl::authorize`] allows it, none
    /// otherwise. A server sends a caller only the records its read grant
    /// covers, serves a scope only when the grant covers all of it, and
    /// refuses a pushed transaction with a change outside the write grant
    /// (that transaction alone, with a verdict).
    fn grant(&self, principal: &Principal, collection: &str, access: Access) -> Grant {
        if self.authorize(principal, collection, access) {
            Grant::All
        } else {
            Grant::none()
        }
    }
}

/// The records of one collection a principal may read or write
/// ([`AccessControl::grant`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every record.
    All,
    /// The records whose key starts with one of these prefixes (none:
    /// no record).
    Prefixes(Vec<Key>),
}

impl Grant {
    /// No record.
    pub fn none() -> Self {
        Self::Prefixes(Vec::new())
    }

    /// Whether no record is granted.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::Prefixes(p) if p.is_empty())
    }

    /// Whether the record with `key` is granted.
    pub fn allows(&self, key: &Key) -> bool {
        match self {
            Self::All => true,
            Self::Prefixes(prefixes) => prefixes
                .iter()
                .any(|p| key.as_bytes().starts_with(p.as_bytes())),
        }
    }

    /// Whether every record under `prefix` is granted.
    pub fn covers(&self, prefix: &Key) -> bool {
        match self {
            Self::All => true,
            Self::Prefixes(prefixes) => prefixes
                .iter()
                .any(|p| prefix.as_bytes().starts_with(p.as_bytes())),
        }
    }
}

/// A server-side rule on the content of pushed changes, beside
/// [`AccessControl`]: registered per collection with
/// [`crate::SyncServer::with_validator`]. A change it rejects refuses its
/// whole transaction group (code 422, with the rejection's reason); the
/// push's other groups are judged on their own.
///
/// ```
/// use syncline::{Change, Op, Principal, Rejection, Validator, Value};
///
/// /// Titles are strings of at most 100 bytes.
/// #[derive(Debug)]
/// struct ShortTitles;
///
/// impl Validator for ShortTitles {
///     fn validate(&self, _who: &Principal, change: &Change) -> Result<(), Rejection> {
///         match &change.op {
///             Op::Put(Value::String(s)) if s.len() <= 100 => Ok(()),
///             Op::Delete => Ok(()),
///             _ => Err(Rejection::new("titles are strings of at most 100 bytes")),
///         }
///     }
/// }
/// ```
pub trait Validator: Send + Sync + fmt::Debug {
    /// Accepts a change `principal` pushed, or rejects it with a reason.
    fn validate(&self, principal: &Principal, change: &Change) -> Result<(), Rejection>;
}

/// Why a [`Validator`] rejected a change: a reason for people, sent to
/// the caller with the verdict on its group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    reason: String,
}

impl Rejection {
    /// A rejection with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Lets every caller read and write every synced collection, without a
/// token. The default, for development and trusted networks; use
/// [`Tokens`] or your own [`AccessControl`] for anything exposed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AccessControl for AllowAll {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, AuthError> {
        Ok(Principal(credentials.replica.to_string()))
    }
}

/// A set of collections, or of parts of collections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collections {
    /// Every collection.
    All,
    /// These collections only (empty: none).
    Only(BTreeSet<String>),
    /// These scopes only: whole collections ([`Scope::collection`]) or the
    /// records under a key prefix ([`Scope::prefix`]).
    Scopes(Vec<Scope>),
}

impl Collections {
    /// No collection.
    pub fn none() -> Self {
        Self::Only(BTreeSet::new())
    }

    /// These collections.
    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self::Only(names.into_iter().map(Into::into).collect())
    }

    /// These scopes.
    pub fn scopes<I: IntoIterator<Item = Scope>>(scopes: I) -> Self {
        Self::Scopes(scopes.into_iter().collect())
    }

    /// The part of `collection` in the set.
    pub fn grant(&self, collection: &str) -> Grant {
        match self {
            Self::All => Grant::All,
            Self::Only(set) if set.contains(collection) => Grant::All,
            Self::Only(_) => Grant::none(),
            Self::Scopes(scopes) => {
                let mut prefixes = Vec::new();
                for s in scopes.iter().filter(|s| s.collection == collection) {
                    if s.is_whole() {
                        return Grant::All;
                    }
                    prefixes.push(s.prefix.clone());
                }
                Grant::Prefixes(prefixes)
            }
        }
    }
}

/// What a principal may read and write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Collections it may pull.
    pub read: Collections,
    /// Collections it may push to.
    pub write: Collections,
}

impl Permissions {
    /// Read and write everything.
    pub fn all() -> Self {
        Self {
            read: Collections::All,
            write: Collections::All,
        }
    }

    /// Read everything, write nothing.
    pub fn read_only() -> Self {
        Self {
            read: Collections::All,
            write: Collections::none(),
        }
    }
}

/// Static bearer tokens, each naming a principal with its permissions.
///
/// ```
/// use syncline::{Collections, Permissions, Tokens};
///
/// let access = Tokens::new()
///     .with_token("alice-secret", "alice", Permissions::all())
///     .with_token("viewer-secret", "viewer", Permissions::read_only())
///     .with_token("bot-secret", "bot", Permissions {
///         read: Collections::only(["todos"]),
///         write: Collections::only(["todos"]),
///     });
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: HashMap<String, Principal>,
    permissions: HashMap<Principal, Permissions>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("Tokens")
            .field("principals", &self.permissions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tokens {
    /// No tokens: every caller is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token for `principal` with `permissions`.
    pub fn with_token(
        mut self,
        token: impl Into<String>,
        principal: impl Into<String>,
        permissions: Permissions,
    ) -> Self {
        let principal = Principal(principal.into());
        self.tokens.insert(token.into(), principal.clone());
        self.permissions.insert(principal, permissions);
        self
    }
}

impl AccessControl for Tokens {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, AuthError> {
        let token = credentials.token.ok_or(AuthError::MissingToken)?;
        // Compare every token in full so the time taken does not leak how much
        // of a guess matched.
        let mut found = None;
        for (known, principal) in &self.tokens {
            if constant_time_eq(known.as_bytes(), token.as_bytes()) {
                found = Some(principal.clone());
            }
        }
        found.ok_or(AuthError::UnknownToken)
    }

    fn authorize(&self, principal: &Principal, collection: &str, access: Access) -> bool {
        !self.grant(principal, collection, access).is_none()
    }

    fn grant(&self, principal: &Principal, collection: &str, access: Access) -> Grant {
        match self.permissions.get(principal) {
            Some(p) => match access {
                Access::Read => p.read.grant(collection),
                Access::Write => p.write.grant(collection),
            },
            None => Grant::none(),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_principals_and_permissions() {
        let access = Tokens::new()
            .with_token("a", "alice", Permissions::all())
            .with_token("v", "viewer", Permissions::read_only());
        let peer = PeerInfo::new("x");
        let creds = |token| Credentials {
            token,
            replica: ReplicaId::from_bytes([0; 16]),
            peer: &peer,
        };
        assert_eq!(
            access.authenticate(&creds(None)),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            access.authenticate(&creds(Some("nope"))),
            Err(AuthError::UnknownToken)
        );
        let viewer = access.authenticate(&creds(Some("v"))).unwrap();
        assert_eq!(viewer, Principal("viewer".into()));
        assert!(access.authorize(&viewer, "todos", Access::Read));
        assert!(!access.authorize(&viewer, "todos", Access::Write));
        assert!(!format!("{access:?}").contains("\"a\""));
    }
}
