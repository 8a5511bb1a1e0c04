//! The envelope around frames on a QUIC stream: a request kind before the
//! client's frame, a reply status before each thing the server sends back.
//!
//! These are plain functions over `AsyncRead`/`AsyncWrite`, so the tests drive
//! them with in-memory streams; the layout is documented in the crate docs.

use syncline_transport::{
    Frame, FrameCodec, MAX_REASON_LEN, RefusalCode, ServiceError, Side, TransportError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Request kind: one exchange, answered by one reply.
const KIND_EXCHANGE: u8 = 0;
/// Request kind: a subscription, answered by a stream of replies.
const KIND_SUBSCRIBE: u8 = 1;

/// Reply status: a frame follows (`u32` length, body).
const STATUS_FRAME: u8 = 0;
/// Reply status: the service refused (`u16` code, `u16` reason length, reason).
const STATUS_REFUSED: u8 = 1;
/// Reply status: the request was over the server's limit (`u64` length, `u64`
/// limit).
const STATUS_REQUEST_TOO_LARGE: u8 = 2;
/// Reply status: the service's frame was over the server's limit (`u64`
/// length, `u64` limit).
const STATUS_FRAME_TOO_LARGE: u8 = 3;
/// Reply status: the subscription is open; pushed frames follow.
const STATUS_SUBSCRIBED: u8 = 4;

/// What the client asks for on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// One request, one reply.
    Exchange,
    /// One request, then pushed frames until the stream ends.
    Subscribe,
}

impl RequestKind {
    fn byte(self) -> u8 {
        match self {
            RequestKind::Exchange => KIND_EXCHANGE,
            RequestKind::Subscribe => KIND_SUBSCRIBE,
        }
    }
}

/// One message the server sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A response or a pushed frame.
    Frame(Frame),
    /// The service refused the request.
    Refused {
        /// The service's code.
        code: RefusalCode,
        /// The service's reason, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
    /// The request was over the server's frame limit; the service never saw
    /// it.
    RequestTooLarge {
        /// The request's announced length.
        len: u64,
        /// The server's limit.
        max: u64,
    },
    /// The service produced a frame over the server's limit; it was not sent.
    FrameTooLarge {
        /// The frame's length.
        len: u64,
        /// The server's limit.
        max: u64,
    },
    /// The subscription is open.
    Subscribed,
}

impl Reply {
    /// The reply carrying a service's refusal.
    pub(crate) fn refused(error: &ServiceError) -> Self {
        Reply::Refused {
            code: error.code(),
            reason: error.reason().to_owned(),
        }
    }

    /// The error a client reports when this reply ends an operation instead of
    /// the frame or acknowledgement it waited for.
    pub(crate) fn into_error(self) -> TransportError {
        match self {
            Reply::Refused { code, reason } => TransportError::Refused { code, reason },
            // The client sent the over-limit request.
            Reply::RequestTooLarge { len, max } => TransportError::FrameTooLarge {
                len: saturate(len),
                max: saturate(max),
                sender: Side::Local,
            },
            // The server's service produced the over-limit frame.
            Reply::FrameTooLarge { len, max } => TransportError::FrameTooLarge {
                len: saturate(len),
                max: saturate(max),
                sender: Side::Peer,
            },
            Reply::Frame(_) => TransportError::Protocol {
                reason: "the server sent a frame where none was expected".into(),
            },
            Reply::Subscribed => TransportError::Protocol {
                reason: "the server acknowledged a subscription that was not asked for".into(),
            },
        }
    }
}

/// Writes a request: its kind, then the frame. An over-limit frame is refused
/// before anything is written.
pub(crate) async fn write_request<W>(
    writer: &mut W,
    codec: &FrameCodec,
    kind: RequestKind,
    frame: &[u8],
) -> Result<(), TransportError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    codec.limits().check_send(frame.len())?;
    writer.write_all(&[kind.byte()]).await?;
    codec.write_frame(writer, frame).await
}

/// Reads a request; `Ok(None)` when the stream ends before one starts.
///
/// An over-limit frame is [`TransportError::FrameTooLarge`] (sent by the
/// peer), refused before its body is read; an unknown kind or a truncated
/// request is [`TransportError::Protocol`].
pub(crate) async fn read_request<R>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Option<(RequestKind, Frame)>, TransportError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let Some(kind) = read_byte(reader).await? else {
        return Ok(None);
    };
    let kind = match kind {
        KIND_EXCHANGE => RequestKind::Exchange,
        KIND_SUBSCRIBE => RequestKind::Subscribe,
        other => {
            return Err(TransportError::Protocol {
                reason: format!("unknown request kind {other}"),
            });
        }
    };
    match codec.read_frame(reader).await? {
        Some(frame) => Ok(Some((kind, frame))),
        None => Err(TransportError::Protocol {
            reason: "the stream ended after the request kind".into(),
        }),
    }
}

/// Writes one reply. A frame over the codec's limit is refused with
/// [`TransportError::FrameTooLarge`] (sent by the local side) before anything
/// is written; the caller sends [`Reply::FrameTooLarge`] instead.
pub(crate) async fn write_reply<W>(
    writer: &mut W,
    codec: &FrameCodec,
    reply: &Reply,
) -> Result<(), TransportError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut head = Vec::with_capacity(17);
    match reply {
        Reply::Frame(frame) => {
            codec.limits().check_send(frame.len())?;
            writer.write_all(&[STATUS_FRAME]).await?;
            return codec.write_frame(writer, frame).await;
        }
        Reply::Refused { code, reason } => {
            let reason = cut_reason(reason);
            head.push(STATUS_REFUSED);
            head.extend_from_slice(&code.get().to_be_bytes());
            // cut_reason keeps at most MAX_REASON_LEN (1024) bytes: fits in u16.
            head.extend_from_slice(&(reason.len() as u16).to_be_bytes());
            head.extend_from_slice(reason.as_bytes());
        }
        Reply::RequestTooLarge { len, max } => {
            head.push(STATUS_REQUEST_TOO_LARGE);
            head.extend_from_slice(&len.to_be_bytes());
            head.extend_from_slice(&max.to_be_bytes());
        }
        Reply::FrameTooLarge { len, max } => {
            head.push(STATUS_FRAME_TOO_LARGE);
            head.extend_from_slice(&len.to_be_bytes());
            head.extend_from_slice(&max.to_be_bytes());
        }
        Reply::Subscribed => head.push(STATUS_SUBSCRIBED),
    }
    writer.write_all(&head).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one reply; `Ok(None)` when the stream ends cleanly between replies.
///
/// A frame over the codec's limit is [`TransportError::FrameTooLarge`] (sent by
/// the peer), refused before its body is read; an unknown status, an overlong
/// reason or a truncated reply is [`TransportError::Protocol`].
pub(crate) async fn read_reply<R>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Option<Reply>, TransportError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let Some(status) = read_byte(reader).await? else {
        return Ok(None);
    };
    let reply = match status {
        STATUS_FRAME => match codec.read_frame(reader).await? {
            Some(frame) => Reply::Frame(frame),
            None => {
                return Err(TransportError::Protocol {
                    reason: "the stream ended after a frame status".into(),
                });
            }
        },
        STATUS_REFUSED => {
            let mut head = [0u8; 4];
            read_exact(reader, &mut head, "a refusal").await?;
            let code = RefusalCode::new(u16::from_be_bytes([head[0], head[1]]));
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            if len > MAX_REASON_LEN {
                return Err(TransportError::Protocol {
                    reason: format!(
                        "a refusal reason of {len} bytes exceeds {MAX_REASON_LEN} bytes"
                    ),
                });
            }
            let mut reason = vec![0u8; len];
            read_exact(reader, &mut reason, "a refusal reason").await?;
            Reply::Refused {
                code,
                reason: String::from_utf8_lossy(&reason).into_owned(),
            }
        }
        STATUS_REQUEST_TOO_LARGE | STATUS_FRAME_TOO_LARGE => {
            let (mut len, mut max) = ([0u8; 8], [0u8; 8]);
            read_exact(reader, &mut len, "a frame-too-large reply").await?;
            read_exact(reader, &mut max, "a frame-too-large reply").await?;
            let (len, max) = (u64::from_be_bytes(len), u64::from_be_bytes(max));
            if status == STATUS_REQUEST_TOO_LARGE {
                Reply::RequestTooLarge { len, max }
            } else {
                Reply::FrameTooLarge { len, max }
            }
        }
        STATUS_SUBSCRIBED => Reply::Subscribed,
        other => {
            return Err(TransportError::Protocol {
                reason: format!("unknown reply status {other}"),
            });
        }
    };
    Ok(Some(reply))
}

/// One byte, or `None` at the end of the stream.
async fn read_byte<R>(reader: &mut R) -> Result<Option<u8>, TransportError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut byte = [0u8; 1];
    match reader.read(&mut byte).await? {
        0 => Ok(None),
        _ => Ok(Some(byte[0])),
    }
}

/// Fills `buf`; a stream that ends first is a protocol violation, not a
/// network error.
async fn read_exact<R>(reader: &mut R, buf: &mut [u8], what: &str) -> Result<(), TransportError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(TransportError::Protocol {
                reason: format!("the stream ended inside {what}"),
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// `reason` cut to [`MAX_REASON_LEN`] bytes at a character boundary.
fn cut_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A length from the wire as a `usize`, saturating on narrow targets.
fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_transport::Limits;

    fn codec(max: usize) -> FrameCodec {
        FrameCodec::new(Limits::new().with_max_frame_len(max))
    }

    async fn round_trip(reply: Reply) -> Option<Reply> {
        let mut wire = Vec::new();
        let written = write_reply(&mut wire, &codec(100), &reply).await;
        assert!(written.is_ok(), "{written:?}");
        let read = read_reply(&mut &wire[..], &codec(100)).await;
        match read {
            Ok(reply) => reply,
            Err(error) => panic!("reading {reply:?} back failed: {error}"),
        }
    }

    #[tokio::test]
    async fn every_reply_round_trips() {
        let replies = [
            Reply::Frame(Frame::new()),
            Reply::Frame(Frame::from_static(b"hello")),
            Reply::Refused {
                code: RefusalCode::FORBIDDEN,
                reason: "read only".into(),
            },
            Reply::Refused {
                code: RefusalCode::new(999),
                reason: String::new(),
            },
            Reply::RequestTooLarge { len: 101, max: 100 },
            Reply::FrameTooLarge {
                len: u64::MAX,
                max: 100,
            },
            Reply::Subscribed,
        ];
        for reply in replies {
            assert_eq!(round_trip(reply.clone()).await, Some(reply));
        }
    }

    #[tokio::test]
    async fn several_replies_share_a_stream_and_end_cleanly() {
        let codec = codec(100);
        let mut wire = Vec::new();
        let sent = [
            Reply::Subscribed,
            Reply::Frame(Frame::from_static(b"a")),
            Reply::Frame(Frame::new()),
        ];
        for reply in &sent {
            assert!(write_reply(&mut wire, &codec, reply).await.is_ok());
        }
        let mut stream = &wire[..];
        for reply in &sent {
            let read = read_reply(&mut stream, &codec).await;
            assert!(matches!(&read, Ok(Some(r)) if r == reply), "{read:?}");
        }
        assert!(matches!(read_reply(&mut stream, &codec).await, Ok(None)));
    }

    #[tokio::test]
    async fn requests_round_trip_and_over_limit_ones_are_refused() {
        let mut wire = Vec::new();
        let codec = codec(4);
        let written = write_request(&mut wire, &codec, RequestKind::Subscribe, b"abcd").await;
        assert!(written.is_ok());
        let read = read_request(&mut &wire[..], &codec).await;
        assert!(
            matches!(&read, Ok(Some((RequestKind::Subscribe, f))) if f == "abcd"),
            "{read:?}"
        );
        assert!(matches!(read_request(&mut &[][..], &codec).await, Ok(None)));

        let mut out = Vec::new();
        let refused = write_request(&mut out, &codec, RequestKind::Exchange, b"abcde").await;
        assert!(matches!(
            refused,
            Err(TransportError::FrameTooLarge {
                len: 5,
                max: 4,
                sender: Side::Local
            })
        ));
        assert!(out.is_empty(), "nothing is written for a refused request");

        // A header announcing 5 bytes is refused before any body arrives.
        let read = read_request(&mut &[KIND_EXCHANGE, 0, 0, 0, 5][..], &codec).await;
        assert!(matches!(
            read,
            Err(TransportError::FrameTooLarge {
                len: 5,
                max: 4,
                sender: Side::Peer
            })
        ));
    }

    #[tokio::test]
    async fn an_over_limit_reply_frame_is_refused_before_writing() {
        let mut wire = Vec::new();
        let reply = Reply::Frame(Frame::from_static(b"too long"));
        let written = write_reply(&mut wire, &codec(4), &reply).await;
        assert!(matches!(
            written,
            Err(TransportError::FrameTooLarge {
                len: 8,
                max: 4,
                sender: Side::Local
            })
        ));
        assert!(wire.is_empty());
    }

    #[tokio::test]
    async fn malformed_replies_are_protocol_errors() {
        let cases: [&[u8]; 6] = [
            &[9],
            &[STATUS_FRAME],
            &[STATUS_FRAME, 0, 0],
            &[STATUS_REFUSED, 1, 147, 0],
            &[STATUS_REFUSED, 1, 147, 0, 3, b'a'],
            &[STATUS_FRAME_TOO_LARGE, 0, 0, 0],
        ];
        for case in cases {
            let read = read_reply(&mut &case[..], &codec(100)).await;
            assert!(
                matches!(read, Err(TransportError::Protocol { .. })),
                "{case:?}: {read:?}"
            );
        }
        // A reason longer than any service can give is refused unread.
        let long = [STATUS_REFUSED, 1, 147, 0x04, 0x01];
        let read = read_reply(&mut &long[..], &codec(100)).await;
        assert!(
            matches!(read, Err(TransportError::Protocol { .. })),
            "{read:?}"
        );
        let read = read_request(&mut &[7, 0, 0, 0, 0][..], &codec(100)).await;
        assert!(
            matches!(read, Err(TransportError::Protocol { .. })),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn over_limit_reply_frames_are_refused_on_receipt() {
        let read = read_reply(&mut &[STATUS_FRAME, 0, 0, 1, 0][..], &codec(100)).await;
        assert!(matches!(
            read,
            Err(TransportError::FrameTooLarge {
                len: 256,
                max: 100,
                sender: Side::Peer
            })
        ));
    }

    #[test]
    fn replies_become_the_client_errors() {
        let error = Reply::RequestTooLarge { len: 11, max: 10 }.into_error();
        assert!(matches!(
            error,
            TransportError::FrameTooLarge {
                len: 11,
                max: 10,
                sender: Side::Local
            }
        ));
        let error = Reply::FrameTooLarge { len: 11, max: 10 }.into_error();
        assert!(matches!(
            error,
            TransportError::FrameTooLarge {
                sender: Side::Peer,
                ..
            }
        ));
        let error = Reply::refused(&ServiceError::forbidden("no")).into_error();
        assert!(matches!(
            error,
            TransportError::Refused { code, reason } if code == RefusalCode::FORBIDDEN && reason == "no"
        ));
        assert!(matches!(
            Reply::Subscribed.into_error(),
            TransportError::Protocol { .. }
        ));
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let cut = cut_reason(&reason);
        assert!(cut.len() <= MAX_REASON_LEN && cut.len() >= MAX_REASON_LEN - 1);
    }
}
