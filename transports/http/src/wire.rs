//! What travels on the wire: the endpoint paths, the headers both sides
//! understand, the records of a subscription stream, and reading bodies with a
//! limit.
//!
//! A subscription's response body is a sequence of records, each a one-byte
//! tag and what the tag announces:
//!
//! | tag | record | followed by |
//! | --- | --- | --- |
//! | `F` | a pushed frame | a frame header (big-endian `u32` length) and the body |
//! | `E` | the service ended the stream | nothing; the stream is over |
//! | `T` | the server refused to push an over-limit frame | the frame's length and the server's limit, big-endian `u64` each; the stream is over |
//! | `S` | the server is shutting down | nothing; the stream is over |
//!
//! A stream that stops without one of the three closing records was cut.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use http_body::Body;
use syncline_transport::{
    FRAME_HEADER_LEN, Frame, FrameCodec, Limits, TransportError, encode_frame_header,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The path of request/response exchanges: `POST` a request frame, get the
/// response frame.
pub const EXCHANGE_PATH: &str = "/v1/exchange";
/// The path of subscriptions: `POST` a request frame, get a stream of pushed
/// frames.
pub const SUBSCRIBE_PATH: &str = "/v1/subscribe";
/// The path of the health check: `GET` answers `200 ok` while the server runs.
pub const HEALTH_PATH: &str = "/health";
/// The path of the metrics, when the server has a renderer
/// ([`HttpServerConfig::with_metrics`](crate::HttpServerConfig::with_metrics)):
/// `GET` answers `200` with the rendered text.
pub const METRICS_PATH: &str = "/metrics";

/// The media type of frames and frame streams.
pub(crate) const FRAME_MEDIA_TYPE: &str = "application/octet-stream";
/// The media type of metrics: Prometheus' text exposition format.
pub(crate) const METRICS_MEDIA_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Marks a response as the transport's own error rather than a service's
/// refusal; the value is one of the `ERROR_*` constants.
pub(crate) const ERROR_HEADER: &str = "syncline-error";
/// The request body was over the server's frame limit (status 413).
pub(crate) const ERROR_REQUEST_TOO_LARGE: &str = "request-too-large";
/// The service's response was over the server's frame limit (status 500).
pub(crate) const ERROR_RESPONSE_TOO_LARGE: &str = "response-too-large";
/// The server is shutting down and dropped the request (status 503).
pub(crate) const ERROR_SHUTTING_DOWN: &str = "shutting-down";
/// The server's frame limit, sent with the too-large errors.
pub(crate) const MAX_FRAME_LEN_HEADER: &str = "syncline-max-frame-len";
/// The length of the frame a too-large error refused.
pub(crate) const FRAME_LEN_HEADER: &str = "syncline-frame-len";
/// The refusal code of a service's refusal, which the status carries too when
/// it is a valid error status (400-599).
pub(crate) const REFUSAL_CODE_HEADER: &str = "syncline-refusal-code";

/// Tag of a record carrying a pushed frame.
const RECORD_FRAME: u8 = b'F';
/// Tag of the record ending a stream because the service dropped its sender.
const RECORD_END: u8 = b'E';
/// Tag of the record ending a stream because a pushed frame was over the
/// server's limit.
const RECORD_TOO_LARGE: u8 = b'T';
/// Tag of the record ending a stream because the server is shutting down.
const RECORD_SHUTDOWN: u8 = b'S';

/// How much of a body is allocated before its bytes arrive, when its declared
/// length is larger; the buffer grows with the bytes received.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// One record of a subscription stream, as the client reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A pushed frame.
    Frame(Frame),
    /// The service ended the stream.
    End,
    /// The server refused to push a frame of `len` bytes over its `max`.
    TooLarge {
        /// The refused frame's length.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// The server is shutting down.
    Shutdown,
}

/// The record header announcing a pushed frame of `len` bytes, or
/// [`TransportError::FrameTooLarge`] if `len` is over `limits`.
pub(crate) fn frame_record_header(len: usize, limits: &Limits) -> Result<Bytes, TransportError> {
    let header = encode_frame_header(len, limits)?;
    let mut record = Vec::with_capacity(1 + FRAME_HEADER_LEN);
    record.push(RECORD_FRAME);
    record.extend_from_slice(&header);
    Ok(Bytes::from(record))
}

/// The record ending a stream whose service dropped its sender.
pub(crate) fn end_record() -> Bytes {
    Bytes::from_static(&[RECORD_END])
}

/// The record ending a stream because the server is shutting down.
pub(crate) fn shutdown_record() -> Bytes {
    Bytes::from_static(&[RECORD_SHUTDOWN])
}

/// The record ending a stream because a pushed frame of `len` bytes was over
/// the server's `max`.
pub(crate) fn too_large_record(len: usize, max: usize) -> Bytes {
    let mut record = Vec::with_capacity(17);
    record.push(RECORD_TOO_LARGE);
    record.extend_from_slice(&(len as u64).to_be_bytes());
    record.extend_from_slice(&(max as u64).to_be_bytes());
    Bytes::from(record)
}

/// Reads the next record of a subscription stream; the codec's limits refuse
/// an over-limit frame before its body is read.
///
/// A stream that ends without a closing record, an unknown tag or a truncated
/// record is [`TransportError::Protocol`]; an I/O error is
/// [`TransportError::Network`].
pub(crate) async fn read_record<R>(
    reader: &mut R,
    codec: &FrameCodec,
) -> Result<Record, TransportError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut tag = [0u8; 1];
    if reader.read(&mut tag).await? == 0 {
        return Err(protocol("the frame stream ended without an end record"));
    }
    match tag[0] {
        RECORD_FRAME => match codec.read_frame(reader).await? {
            Some(frame) => Ok(Record::Frame(frame)),
            None => Err(protocol("the frame stream ended inside a frame record")),
        },
        RECORD_END => Ok(Record::End),
        RECORD_SHUTDOWN => Ok(Record::Shutdown),
        RECORD_TOO_LARGE => {
            let mut numbers = [0u8; 16];
            reader
                .read_exact(&mut numbers)
                .await
                .map_err(|_| protocol("the frame stream ended inside a too-large record"))?;
            let (len, max) = numbers.split_at(8);
            Ok(Record::TooLarge {
                len: be_usize(len),
                max: be_usize(max),
            })
        }
        other => Err(protocol(&format!(
            "unknown record tag {other:#04x} in the frame stream"
        ))),
    }
}

/// A big-endian `u64` of exactly 8 bytes as a `usize`, saturating.
fn be_usize(bytes: &[u8]) -> usize {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(bytes);
    usize::try_from(u64::from_be_bytes(buf)).unwrap_or(usize::MAX)
}

/// The bearer token of an `Authorization: Bearer <token>` header; the scheme
/// is case-insensitive, and an empty or non-text token counts as none.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The exact length a body announces (its `Content-Length`), if any.
pub(crate) fn content_length_hint<B: Body>(body: &B) -> Option<u64> {
    body.size_hint().exact()
}

/// A number in a header, if present and valid.
pub(crate) fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Why reading a body with a limit failed.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is over the limit: `len` is its declared length, or what had
    /// arrived when it passed the limit.
    TooLarge {
        /// The declared or received length.
        len: usize,
    },
    /// The body could not be read; the text says why.
    Failed(String),
}

/// Reads a whole body of at most `max` bytes.
///
/// A declared length over `max` is refused before anything is read; a body
/// without one is refused as soon as its bytes pass `max`. The buffer grows
/// with the bytes received, so a large declared length costs little memory up
/// front.
pub(crate) async fn read_body<B>(body: &mut B, max: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: StdError + 'static,
{
    let declared = body.size_hint().exact();
    if let Some(len) = declared
        && len > max as u64
    {
        return Err(BodyError::TooLarge {
            len: usize::try_from(len).unwrap_or(usize::MAX),
        });
    }
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Err(error)) => return Err(BodyError::Failed(error_chain(&error))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers carry nothing a frame needs.
                Err(_) => continue,
            },
        };
        let so_far = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if so_far + data.len() > max {
            return Err(BodyError::TooLarge {
                len: so_far + data.len(),
            });
        }
        // The common case is a body in one chunk: keep it without copying.
        if first.is_none() && buf.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            let hint = declared.map_or(0, |len| len as usize);
            buf.reserve(
                hint.min(INITIAL_BODY_CAPACITY)
                    .max(first.len() + data.len()),
            );
            buf.extend_from_slice(&first);
        }
        buf.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and drops up to `max` bytes of a body; true if the body ended within
/// them.
pub(crate) async fn drain_body<B>(mut body: B, max: usize) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut drained = 0usize;
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return true,
            Some(Err(_)) => return false,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    drained = drained.saturating_add(data.len());
                    if drained > max {
                        return false;
                    }
                }
            }
        }
    }
}

/// Reads up to `max` bytes of a body as text, for a refusal's reason; bytes
/// that are not UTF-8 are replaced.
pub(crate) async fn read_text<B>(mut body: B, max: usize) -> String
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut text = Vec::new();
    while text.len() < max {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = max - text.len();
                    text.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            None | Some(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// An [`AsyncRead`] over a body's data, so a frame stream can be read with
/// [`FrameCodec`]. Trailers are skipped; a body error is an I/O error.
#[derive(Debug)]
pub(crate) struct BodyReader<B> {
    body: B,
    chunk: Bytes,
    ended: bool,
}

impl<B> BodyReader<B> {
    /// A reader over `body`.
    pub(crate) fn new(body: B) -> Self {
        BodyReader {
            body,
            chunk: Bytes::new(),
            ended: false,
        }
    }
}

impl<B> AsyncRead for BodyReader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: StdError + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = buf.remaining().min(this.chunk.len());
                buf.put_slice(&this.chunk.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.ended || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
                Some(Err(error)) => {
                    this.ended = true;
                    return Poll::Ready(Err(io::Error::other(error_chain(&error))));
                }
                None => this.ended = true,
            }
        }
    }
}

/// An error and its sources, joined with `": "`: hyper's errors say little on
/// their own ("client error (Connect)") and the cause sits in the sources.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn protocol(reason: &str) -> TransportError {
    TransportError::Protocol {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use syncline_transport::Side;

    fn limits(max: usize) -> Limits {
        Limits::new().with_max_frame_len(max)
    }

    #[tokio::test]
    async fn records_round_trip() {
        let mut wire = Vec::new();
        for frame in [&b""[..], b"a", b"hello"] {
            let header = frame_record_header(frame.len(), &limits(10));
            assert!(matches!(&header, Ok(h) if h.len() == 5));
            wire.extend_from_slice(&header.unwrap_or_default());
            wire.extend_from_slice(frame);
        }
        wire.extend_from_slice(&too_large_record(11, 10));
        wire.extend_from_slice(&shutdown_record());
        wire.extend_from_slice(&end_record());
        let codec = FrameCodec::new(limits(10));
        let mut reader = &wire[..];
        let mut records = Vec::new();
        for _ in 0..6 {
            let record = read_record(&mut reader, &codec).await;
            assert!(record.is_ok(), "{record:?}");
            records.extend(record.ok());
        }
        assert_eq!(
            records,
            vec![
                Record::Frame(Frame::new()),
                Record::Frame(Frame::from_static(b"a")),
                Record::Frame(Frame::from_static(b"hello")),
                Record::TooLarge { len: 11, max: 10 },
                Record::Shutdown,
                Record::End,
            ]
        );
        // A stream that stops without a closing record was cut.
        let cut = read_record(&mut reader, &codec).await;
        assert!(
            matches!(cut, Err(TransportError::Protocol { .. })),
            "{cut:?}"
        );
    }

    #[tokio::test]
    async fn over_limit_frame_record_is_refused_by_the_reader() {
        let header = frame_record_header(11, &limits(100)).unwrap_or_default();
        let codec = FrameCodec::new(limits(10));
        let read = read_record(&mut &header[..], &codec).await;
        assert!(matches!(
            read,
            Err(TransportError::FrameTooLarge {
                len: 11,
                max: 10,
                sender: Side::Peer
            })
        ));
        assert!(frame_record_header(11, &limits(10)).is_err());
    }

    #[tokio::test]
    async fn malformed_records_are_protocol_errors() {
        let codec = FrameCodec::new(limits(10));
        for wire in [&b"X"[..], b"F\0\0", b"F\0\0\0\x05ab", b"T\0\0\0"] {
            let read = read_record(&mut &wire[..], &codec).await;
            assert!(
                matches!(read, Err(TransportError::Protocol { .. })),
                "{wire:?}: {read:?}"
            );
        }
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        let token = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            bearer_token(&headers)
        };
        assert_eq!(token("Bearer abc"), Some("abc".to_owned()));
        assert_eq!(token("bearer  abc "), Some("abc".to_owned()));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
