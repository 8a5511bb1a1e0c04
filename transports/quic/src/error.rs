//! Mapping quinn's errors to [`TransportError`]s that say whose fault they are.

use std::io;
use std::sync::Arc;

use quinn::{ConnectionError, ReadError, TransportErrorCode, WriteError};
use syncline_transport::{Side, TransportError};

/// Application close code: the client closed its connection.
pub(crate) const CLOSE_BY_CLIENT: u32 = 0;
/// Application close code: the server shut down.
pub(crate) const CLOSE_SHUTDOWN: u32 = 1;
/// Stream error code: the reader is no longer interested (a dropped
/// subscription, an abandoned or refused request).
pub(crate) const STREAM_CANCELLED: u32 = 0;

/// Why a connection attempt failed, as a [`TransportError::Connect`].
pub(crate) fn connect_failed(addr: &str, error: &ConnectionError) -> TransportError {
    let reason = match error {
        ConnectionError::TimedOut => "the server did not answer".to_owned(),
        ConnectionError::TransportError(error) if is_tls(error.code) => {
            format!("TLS handshake failed: {}", error.reason)
        }
        ConnectionError::ConnectionClosed(close) if is_tls(close.error_code) => {
            format!("{} ({close})", refusal_by_server(close.error_code))
        }
        ConnectionError::ApplicationClosed(close)
            if u64::from(close.error_code) == u64::from(CLOSE_SHUTDOWN) =>
        {
            "the server is shutting down".to_owned()
        }
        other => other.to_string(),
    };
    TransportError::Connect {
        addr: addr.to_owned(),
        reason,
    }
}

/// What an operation reports when the connection under it is gone.
pub(crate) fn connection_lost(addr: &str, error: &ConnectionError) -> TransportError {
    match error {
        ConnectionError::LocallyClosed => TransportError::Closed { by: Side::Local },
        ConnectionError::ApplicationClosed(_) => TransportError::Closed { by: Side::Peer },
        // With TLS 1.3 the client finishes its handshake before the server has
        // judged the client's certificate: a refusal arrives after `connect`.
        ConnectionError::ConnectionClosed(close) if is_tls(close.error_code) => {
            connect_failed(addr, error)
        }
        ConnectionError::TransportError(inner) if is_tls(inner.code) => connect_failed(addr, error),
        ConnectionError::ConnectionClosed(close) => network(
            io::ErrorKind::ConnectionAborted,
            format!("the peer aborted the connection: {close}"),
        ),
        ConnectionError::Reset => network(
            io::ErrorKind::ConnectionReset,
            "the peer reset the connection".to_owned(),
        ),
        ConnectionError::TimedOut => network(
            io::ErrorKind::TimedOut,
            "the connection timed out: the peer stopped answering".to_owned(),
        ),
        ConnectionError::TransportError(inner) => TransportError::Protocol {
            reason: inner.to_string(),
        },
        ConnectionError::VersionMismatch => TransportError::Protocol {
            reason: "the peer supports no QUIC version we do".to_owned(),
        },
        ConnectionError::CidsExhausted => TransportError::Local {
            reason: "no connection IDs left".to_owned(),
        },
    }
}

/// Replaces a network error from a stream with what actually happened: the
/// connection's fate once it is closed, or the quinn stream error inside the
/// I/O error. Other errors pass through.
pub(crate) fn refine(
    addr: &str,
    connection: &quinn::Connection,
    error: TransportError,
) -> TransportError {
    let TransportError::Network(io_error) = &error else {
        return error;
    };
    if let Some(reason) = connection.close_reason() {
        return connection_lost(addr, &reason);
    }
    let Some(inner) = io_error.get_ref() else {
        return error;
    };
    if let Some(read) = inner.downcast_ref::<ReadError>() {
        return match read {
            ReadError::ConnectionLost(lost) => connection_lost(addr, lost),
            ReadError::Reset(code) => network(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the stream (code {code})"),
            ),
            _ => error,
        };
    }
    if let Some(write) = inner.downcast_ref::<WriteError>() {
        return match write {
            WriteError::ConnectionLost(lost) => connection_lost(addr, lost),
            WriteError::Stopped(code) => network(
                io::ErrorKind::ConnectionReset,
                format!("the peer stopped reading the stream (code {code})"),
            ),
            _ => error,
        };
    }
    error
}

/// Whether `error` came from a stream the peer stopped reading: the server
/// refused a request before reading all of it, and its reply says why.
pub(crate) fn is_stopped(error: &TransportError) -> bool {
    match error {
        TransportError::Network(io_error) => io_error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WriteError>())
            .is_some_and(|write| matches!(write, WriteError::Stopped(_))),
        _ => false,
    }
}

/// What a TLS alert sent by the server means for this client.
fn refusal_by_server(code: TransportErrorCode) -> &'static str {
    // TLS alert numbers (RFC 8446, section 6), carried as 0x100 + alert.
    match u64::from(code).saturating_sub(0x100) {
        116 => "the server requires a client certificate (mutual TLS)",
        42..=46 | 48 | 49 => "the server does not accept our client certificate",
        120 => "the server does not speak syncline/1 (ALPN)",
        _ => "the server refused the TLS handshake",
    }
}

/// A QUIC error code carrying a TLS alert (RFC 9001, section 4.8).
fn is_tls(code: TransportErrorCode) -> bool {
    (0x100..=0x1ff).contains(&u64::from(code))
}

fn network(kind: io::ErrorKind, message: String) -> TransportError {
    TransportError::Network(Arc::new(io::Error::new(kind, message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_transport::Fault;

    #[test]
    fn lost_connections_blame_the_network_or_the_caller() {
        let addr = "127.0.0.1:1";
        assert!(matches!(
            connection_lost(addr, &ConnectionError::LocallyClosed),
            TransportError::Closed { by: Side::Local }
        ));
        for error in [ConnectionError::TimedOut, ConnectionError::Reset] {
            assert_eq!(connection_lost(addr, &error).fault(), Fault::Network);
        }
        let timed_out = connect_failed(addr, &ConnectionError::TimedOut);
        assert!(
            matches!(&timed_out, TransportError::Connect { addr: a, .. } if a == addr),
            "{timed_out:?}"
        );
        assert_eq!(timed_out.fault(), Fault::Network);
    }

    #[test]
    fn tls_alert_codes_are_recognised() {
        assert!(is_tls(TransportErrorCode::crypto(42)));
        assert!(!is_tls(TransportErrorCode::PROTOCOL_VIOLATION));
    }

    #[test]
    fn stream_errors_inside_io_errors_are_recognised() {
        let stopped: io::Error = WriteError::Stopped(quinn::VarInt::from_u32(0)).into();
        let stopped = TransportError::Network(Arc::new(stopped));
        assert!(is_stopped(&stopped));
        assert!(!is_stopped(&TransportError::network("lost")));
    }
}
