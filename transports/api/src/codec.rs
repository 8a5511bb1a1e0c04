//! Reading and writing length-prefixed frames on byte streams, for the stream
//! transports (QUIC streams, TCP).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::TransportError;
use crate::frame::{FRAME_HEADER_LEN, Frame, Limits, decode_frame_header, encode_frame_header};

/// How much of a frame body is allocated before its bytes arrive; the buffer
/// then grows with the bytes actually received, so a peer that announces a large
/// frame and sends nothing costs little memory.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Reads and writes frames as a big-endian `u32` length followed by the body,
/// enforcing [`Limits`] on both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCodec {
    limits: Limits,
}

impl FrameCodec {
    /// A codec enforcing `limits`.
    pub const fn new(limits: Limits) -> Self {
        FrameCodec { limits }
    }

    /// The limits this codec enforces.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Reads one frame; `Ok(None)` when the stream ends cleanly before a frame
    /// starts.
    ///
    /// An over-limit length is refused with [`TransportError::FrameTooLarge`]
    /// before the body is read or allocated; a stream that ends inside a frame
    /// is a [`TransportError::Protocol`] error; an I/O error is
    /// [`TransportError::Network`]. After an error the stream is not at a frame
    /// boundary: stop reading it.
    pub async fn read_frame<R>(&self, reader: &mut R) -> Result<Option<Frame>, TransportError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut header = [0u8; FRAME_HEADER_LEN];
        let mut filled = 0;
        while filled < FRAME_HEADER_LEN {
            let n = reader.read(&mut header[filled..]).await?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(TransportError::Protocol {
                    reason: format!("stream ended after {filled} bytes of a frame header"),
                });
            }
            filled += n;
        }
        let len = decode_frame_header(header, &self.limits)?;

        let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
        // `len` fits in u64: it is at most the limit, itself at most u32::MAX.
        let mut rest = (&mut *reader).take(len as u64);
        while body.len() < len {
            if body.len() == body.capacity() {
                let grow = body.capacity().max(INITIAL_BODY_CAPACITY);
                body.reserve_exact(grow.min(len - body.len()));
            }
            if rest.read_buf(&mut body).await? == 0 {
                return Err(TransportError::Protocol {
                    reason: format!(
                        "stream ended after {} of {len} bytes of a frame",
                        body.len()
                    ),
                });
            }
        }
        Ok(Some(Frame::from(body)))
    }

    /// Writes one frame and flushes the writer.
    ///
    /// An over-limit frame is refused with [`TransportError::FrameTooLarge`]
    /// before anything is written; an I/O error is [`TransportError::Network`].
    pub async fn write_frame<W>(&self, writer: &mut W, frame: &[u8]) -> Result<(), TransportError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let header = encode_frame_header(frame.len(), &self.limits)?;
        writer.write_all(&header).await?;
        writer.write_all(frame).await?;
        writer.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn codec(max: usize) -> FrameCodec {
        FrameCodec::new(Limits::new().with_max_frame_len(max))
    }

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let codec = codec(300_000);
        let (mut a, mut b) = tokio::io::duplex(1024);
        let frames: Vec<Vec<u8>> = vec![vec![], vec![7], (0..300_000).map(|i| i as u8).collect()];
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            for frame in &sent {
                codec.write_frame(&mut a, frame).await?;
            }
            Ok::<_, TransportError>(())
        });
        for frame in &frames {
            let read = codec.read_frame(&mut b).await;
            assert!(matches!(&read, Ok(Some(f)) if f == &frame[..]), "{read:?}");
        }
        assert!(matches!(writer.await, Ok(Ok(()))));
        assert!(matches!(codec.read_frame(&mut b).await, Ok(None)));
    }

    #[tokio::test]
    async fn over_limit_header_is_refused_before_the_body() {
        // Only the header is in the stream: the read must fail without waiting
        // for (or allocating) the announced body.
        let mut stream: &[u8] = &[0, 0, 0, 11];
        let read = codec(10).read_frame(&mut stream).await;
        assert!(matches!(
            read,
            Err(TransportError::FrameTooLarge {
                len: 11,
                max: 10,
                sender: Side::Peer
            })
        ));
    }

    #[tokio::test]
    async fn over_limit_write_is_refused_before_writing() {
        let mut out = Vec::new();
        let write = codec(10).write_frame(&mut out, &[0; 11]).await;
        assert!(matches!(
            write,
            Err(TransportError::FrameTooLarge {
                len: 11,
                max: 10,
                sender: Side::Local
            })
        ));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn truncated_frames_are_protocol_errors() {
        let mut header_only: &[u8] = &[0, 0];
        let read = codec(10).read_frame(&mut header_only).await;
        assert!(
            matches!(read, Err(TransportError::Protocol { .. })),
            "{read:?}"
        );
        let mut short_body: &[u8] = &[0, 0, 0, 5, 1, 2];
        let read = codec(10).read_frame(&mut short_body).await;
        assert!(
            matches!(read, Err(TransportError::Protocol { .. })),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn large_announced_frame_that_stops_early_is_a_protocol_error() {
        // A peer announces 16 MiB and sends 3 bytes; the buffer grows with the
        // bytes received, and the read fails on the truncated body.
        let mut stream: Vec<u8> = (16u32 * 1024 * 1024).to_be_bytes().to_vec();
        stream.extend_from_slice(&[1, 2, 3]);
        let read = FrameCodec::default().read_frame(&mut &stream[..]).await;
        assert!(
            matches!(read, Err(TransportError::Protocol { .. })),
            "{read:?}"
        );
    }
}
