//! Sync: the protocol, the client side of one remote as a state machine
//! ([`session`]), the tokio engine that drives it, and the server.
//!
//! Layering inside: `protocol` (with `wire`) knows the messages and the
//! handshake's rules; `session` decides (no I/O, no clock); `engine` and
//! `server` do the I/O. Nothing here knows redb: store work goes through the
//! [`crate::Replica`] handle.

pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod error;
pub mod protocol;
pub(crate) mod server;
pub(crate) mod session;
pub(crate) mod status;
mod wire;
