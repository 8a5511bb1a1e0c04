//! Frames, their limits, and the length prefix that stream transports put in
//! front of each frame.

use crate::error::{Side, TransportError};

/// One message on a transport: opaque bytes, cheap to clone.
pub type Frame = bytes::Bytes;

/// Length of the frame header: a big-endian `u32` holding the body's length.
pub const FRAME_HEADER_LEN: usize = 4;

/// The default [`Limits::max_frame_len`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The default [`Limits::subscription_buffer`]: 64 frames.
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 64;

/// The largest length a frame header can hold.
const HEADER_MAX: usize = u32::MAX as usize;

/// Bounds a transport enforces on each side of a connection.
///
/// A sender refuses to send an over-limit frame and a receiver refuses to
/// receive one, before allocating its body; both give
/// [`TransportError::FrameTooLarge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_frame_len: usize,
    subscription_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    /// The default limits: frames up to 16 MiB, 64 frames buffered per
    /// subscription.
    pub const fn new() -> Self {
        Limits {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            subscription_buffer: DEFAULT_SUBSCRIPTION_BUFFER,
        }
    }

    /// Sets the longest frame, in bytes, that is sent or received; at most
    /// `u32::MAX`, the largest length a frame header holds.
    pub const fn with_max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = if len > HEADER_MAX { HEADER_MAX } else { len };
        self
    }

    /// Sets how many pushed frames a subscription buffers before the server's
    /// side waits for the client to read; at least 1.
    pub const fn with_subscription_buffer(mut self, frames: usize) -> Self {
        self.subscription_buffer = if frames == 0 { 1 } else { frames };
        self
    }

    /// The longest frame, in bytes, that is sent or received.
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// How many pushed frames a subscription buffers.
    pub const fn subscription_buffer(&self) -> usize {
        self.subscription_buffer
    }

    /// Checks a frame this side is about to send: a frame over the limit is
    /// [`TransportError::FrameTooLarge`] sent by [`Side::Local`].
    pub fn check_send(&self, len: usize) -> Result<(), TransportError> {
        self.check(len, Side::Local)
    }

    /// Checks a frame this side is receiving: a frame over the limit is
    /// [`TransportError::FrameTooLarge`] sent by [`Side::Peer`].
    pub fn check_receive(&self, len: usize) -> Result<(), TransportError> {
        self.check(len, Side::Peer)
    }

    fn check(&self, len: usize, sender: Side) -> Result<(), TransportError> {
        if len > self.max_frame_len {
            return Err(TransportError::FrameTooLarge {
                len,
                max: self.max_frame_len,
                sender,
            });
        }
        Ok(())
    }
}

/// The header for a frame of `len` bytes that this side is about to send, or
/// [`TransportError::FrameTooLarge`] (sent by [`Side::Local`]) if `len` is over
/// the limit.
pub fn encode_frame_header(
    len: usize,
    limits: &Limits,
) -> Result<[u8; FRAME_HEADER_LEN], TransportError> {
    limits.check_send(len)?;
    let len = u32::try_from(len).map_err(|_| TransportError::FrameTooLarge {
        len,
        max: HEADER_MAX,
        sender: Side::Local,
    })?;
    Ok(len.to_be_bytes())
}

/// The body length announced by a received frame header, or
/// [`TransportError::FrameTooLarge`] (sent by [`Side::Peer`]) if it is over the
/// limit; check it before allocating the body.
pub fn decode_frame_header(
    header: [u8; FRAME_HEADER_LEN],
    limits: &Limits,
) -> Result<usize, TransportError> {
    // A u32 always fits in usize on the 32- and 64-bit targets tokio supports;
    // saturating keeps an exotic target on the refusing side.
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    limits.check_receive(len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_at_the_limit() {
        let limits = Limits::new().with_max_frame_len(1000);
        let header = encode_frame_header(1000, &limits);
        assert!(matches!(header, Ok(h) if h == [0, 0, 3, 232]));
        assert!(matches!(
            decode_frame_header([0, 0, 3, 232], &limits),
            Ok(1000)
        ));
        assert!(matches!(decode_frame_header([0; 4], &limits), Ok(0)));
    }

    #[test]
    fn over_limit_lengths_are_refused_with_the_sender() {
        let limits = Limits::new().with_max_frame_len(1000);
        assert!(matches!(
            encode_frame_header(1001, &limits),
            Err(TransportError::FrameTooLarge {
                len: 1001,
                max: 1000,
                sender: Side::Local
            })
        ));
        assert!(matches!(
            decode_frame_header([0xff; 4], &limits),
            Err(TransportError::FrameTooLarge {
                max: 1000,
                sender: Side::Peer,
                ..
            })
        ));
    }

    #[test]
    fn limits_are_clamped() {
        let limits = Limits::new()
            .with_max_frame_len(usize::MAX)
            .with_subscription_buffer(0);
        assert_eq!(limits.max_frame_len(), HEADER_MAX);
        assert_eq!(limits.subscription_buffer(), 1);
        assert_eq!(Limits::default().max_frame_len(), 16 * 1024 * 1024);
    }
}
