//! Transport errors, refusals by a service, and whose fault each one is.

use std::fmt;
use std::io;
use std::sync::Arc;

/// The longest refusal reason, in bytes, that a [`ServiceError`] carries.
///
/// Longer reasons are cut at a character boundary, so every transport can put a
/// reason in one small frame.
pub const MAX_REASON_LEN: usize = 1024;

/// Whose fault an error is; it decides whether retrying can help.
///
/// One vocabulary for the whole of syncline: the transports use it, and the
/// `syncline` crate re-exports it for its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The remote peer misbehaved or failed: it broke the framing, sent an
    /// over-limit frame, or its service failed. Retrying later may help.
    Peer,
    /// The network failed: unreachable, reset, lost, timed out, or closed by the
    /// peer. Retry with backoff.
    Network,
    /// The caller asked for something that cannot work: an over-limit frame, a
    /// closed connection, a request the service refused as bad or unauthorized.
    /// The same call fails the same way again.
    Caller,
    /// A local resource failed: no runtime, no socket, a bad local setup (a
    /// clock far off, say).
    Local,
    /// The local database failed (I/O, corruption). Transports never report
    /// it; the store does.
    Storage,
}

/// One end of a connection, as seen from the side reporting an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This side.
    Local,
    /// The other side.
    Peer,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Peer => "peer",
        })
    }
}

/// An error of a transport operation: connect, exchange, subscribe, or a frame
/// read or written by a stream transport.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection could be made to `addr`: unreachable, refused, nobody
    /// listening, or the handshake failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address we tried.
        addr: String,
        /// Why it failed.
        reason: String,
    },
    /// The network failed during an operation: an I/O error, a reset, or a lost
    /// message. The underlying error is shown in the message.
    #[error("network error: {0}")]
    Network(Arc<io::Error>),
    /// The connection or the server is closed; `by` says which side closed it.
    #[error("connection closed by the {by} side")]
    Closed {
        /// [`Side::Local`] when this side called `close`, [`Side::Peer`] when
        /// the server shut down or closed the connection.
        by: Side,
    },
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// A frame is longer than the limit; `sender` says which side produced it.
    #[error("frame of {len} bytes exceeds the {max}-byte limit (sent by the {sender} side)")]
    FrameTooLarge {
        /// The frame's length in bytes.
        len: usize,
        /// The limit that refused it.
        max: usize,
        /// [`Side::Local`]: we tried to send it (refused by our limit or the
        /// peer's). [`Side::Peer`]: the peer sent or tried to send it.
        sender: Side,
    },
    /// The peer broke the framing or the transport's protocol.
    #[error("protocol violation by the peer: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// The service refused the request; this is a [`ServiceError`] delivered to
    /// the client.
    #[error("refused by the service ({code}): {reason}")]
    Refused {
        /// The refusal code the service chose.
        code: RefusalCode,
        /// The service's reason, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// A local resource failed: no async runtime, a socket that cannot be
    /// bound, an address already in use, a bad local configuration.
    #[error("local transport failure: {reason}")]
    Local {
        /// What failed.
        reason: String,
    },
}

impl TransportError {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            TransportError::Connect { .. }
            | TransportError::Network(_)
            | TransportError::Timeout
            | TransportError::Closed { by: Side::Peer } => Fault::Network,
            TransportError::Closed { by: Side::Local } => Fault::Caller,
            TransportError::FrameTooLarge { sender, .. } => match sender {
                Side::Local => Fault::Caller,
                Side::Peer => Fault::Peer,
            },
            TransportError::Protocol { .. } => Fault::Peer,
            TransportError::Refused { code, .. } => code.fault(),
            TransportError::Local { .. } => Fault::Local,
        }
    }

    /// A [`TransportError::Network`] error with a message and no underlying I/O
    /// error, for transports that lose messages without a socket (loopback).
    pub fn network(message: impl Into<String>) -> Self {
        TransportError::Network(Arc::new(io::Error::other(message.into())))
    }
}

impl From<io::Error> for TransportError {
    fn from(error: io::Error) -> Self {
        TransportError::Network(Arc::new(error))
    }
}

impl From<ServiceError> for TransportError {
    fn from(error: ServiceError) -> Self {
        TransportError::Refused {
            code: error.code,
            reason: error.reason,
        }
    }
}

/// Why a service refused a request: a code and a reason, delivered to the
/// client as [`TransportError::Refused`].
///
/// The codes follow HTTP status codes, so the HTTP transport maps them one to
/// one; other transports carry the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct ServiceError {
    code: RefusalCode,
    reason: String,
}

impl ServiceError {
    /// A refusal with `code` and `reason`; the reason is cut to
    /// [`MAX_REASON_LEN`] bytes at a character boundary.
    pub fn new(code: RefusalCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_LEN {
            let mut end = MAX_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        ServiceError { code, reason }
    }

    /// A malformed or unexpected request ([`RefusalCode::BAD_REQUEST`]).
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(RefusalCode::BAD_REQUEST, reason)
    }

    /// A request without valid credentials ([`RefusalCode::UNAUTHORIZED`]).
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(RefusalCode::UNAUTHORIZED, reason)
    }

    /// A request the peer is not allowed to make ([`RefusalCode::FORBIDDEN`]).
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(RefusalCode::FORBIDDEN, reason)
    }

    /// The service failed while handling the request ([`RefusalCode::INTERNAL`]).
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(RefusalCode::INTERNAL, reason)
    }

    /// The service cannot take requests now ([`RefusalCode::UNAVAILABLE`]).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(RefusalCode::UNAVAILABLE, reason)
    }

    /// The refusal code.
    pub fn code(&self) -> RefusalCode {
        self.code
    }

    /// The reason, at most [`MAX_REASON_LEN`] bytes.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The code of a refusal, numbered like HTTP status codes.
///
/// Codes 400-499 (except 408 and 429) are the caller's fault; every other code
/// is the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefusalCode(u16);

impl RefusalCode {
    /// The request is malformed or unexpected.
    pub const BAD_REQUEST: Self = Self(400);
    /// The request has no valid credentials.
    pub const UNAUTHORIZED: Self = Self(401);
    /// The peer is not allowed to make this request.
    pub const FORBIDDEN: Self = Self(403);
    /// The requested thing does not exist.
    pub const NOT_FOUND: Self = Self(404);
    /// The service gave up waiting for the request.
    pub const TIMEOUT: Self = Self(408);
    /// The request conflicts with the service's state (syncline: the
    /// collections or their merge policies differ).
    pub const CONFLICT: Self = Self(409);
    /// The request is larger than the service accepts.
    pub const TOO_LARGE: Self = Self(413);
    /// The request is well formed but cannot be applied (syncline: a clock
    /// or a stamp too far ahead of the service's time).
    pub const UNPROCESSABLE: Self = Self(422);
    /// What the caller asks for is gone (syncline: its cursor, or the
    /// changes it pushes, lie behind the service's tombstone horizon; it
    /// must resync from current state).
    pub const RESYNC_REQUIRED: Self = Self(410);
    /// The caller speaks another protocol version.
    pub const UPGRADE_REQUIRED: Self = Self(426);
    /// The peer sends too many requests; retry later.
    pub const TOO_MANY_REQUESTS: Self = Self(429);
    /// The service failed.
    pub const INTERNAL: Self = Self(500);
    /// The service does not implement this kind of request.
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// The service cannot take requests now.
    pub const UNAVAILABLE: Self = Self(503);

    /// A code from its number.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The code's number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whose fault a refusal with this code is.
    pub fn fault(self) -> Fault {
        match self.0 {
            408 | 429 => Fault::Peer,
            400..=499 => Fault::Caller,
            _ => Fault::Peer,
        }
    }

    /// The code's name, for the known codes.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            400 => "bad request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not found",
            408 => "timeout",
            409 => "conflict",
            413 => "too large",
            422 => "unprocessable",
            426 => "upgrade required",
            429 => "too many requests",
            500 => "internal error",
            501 => "not implemented",
            503 => "unavailable",
            _ => return None,
        })
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}, {}", self.0),
            None => write!(f, "code {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_sender_and_the_code() {
        let too_large = |sender| TransportError::FrameTooLarge {
            len: 2,
            max: 1,
            sender,
        };
        assert_eq!(too_large(Side::Local).fault(), Fault::Caller);
        assert_eq!(too_large(Side::Peer).fault(), Fault::Peer);
        assert_eq!(
            TransportError::Closed { by: Side::Local }.fault(),
            Fault::Caller
        );
        assert_eq!(
            TransportError::Closed { by: Side::Peer }.fault(),
            Fault::Network
        );
        assert_eq!(TransportError::network("lost").fault(), Fault::Network);
        let refused = |code| TransportError::from(ServiceError::new(code, "no")).fault();
        assert_eq!(refused(RefusalCode::FORBIDDEN), Fault::Caller);
        assert_eq!(refused(RefusalCode::TOO_MANY_REQUESTS), Fault::Peer);
        assert_eq!(refused(RefusalCode::INTERNAL), Fault::Peer);
        assert_eq!(refused(RefusalCode::new(999)), Fault::Peer);
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let error = ServiceError::forbidden(reason);
        assert!(error.reason().len() <= MAX_REASON_LEN);
        assert!(error.reason().len() >= MAX_REASON_LEN - 1);
        assert!(error.reason().chars().all(|c| c == 'é'));
    }

    #[test]
    fn messages_are_lowercase_and_name_the_parts() {
        let error = TransportError::from(ServiceError::forbidden("read only"));
        assert_eq!(
            error.to_string(),
            "refused by the service (forbidden, 403): read only"
        );
        let error = TransportError::FrameTooLarge {
            len: 11,
            max: 10,
            sender: Side::Peer,
        };
        assert_eq!(
            error.to_string(),
            "frame of 11 bytes exceeds the 10-byte limit (sent by the peer side)"
        );
    }
}
