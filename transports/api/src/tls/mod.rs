//! TLS for the transports that need it (QUIC, HTTPS): one vocabulary, on
//! rustls with the ring crypto provider (feature `tls`).
//!
//! - An [`Identity`] is a certificate chain and its private key, from PEM
//!   (bytes or files) or DER: what a server proves itself with, and what a
//!   client presents under mutual TLS. [`SelfSigned`] makes a development one
//!   and writes it out as PEM; [`Identity::load_or_generate`] keeps one next
//!   to a hub's database so its [`Fingerprint`] survives restarts.
//! - A [`Fingerprint`] is the SHA-256 of a certificate's DER.
//! - A client trusts its server by a [`ServerTrust`]: CA roots, or a pinned
//!   fingerprint.
//! - A server asks for client certificates by a [`ClientAuth`]: none, ones
//!   issued by given CAs, or any (the service then judges the certificate,
//!   which reaches it as [`PeerInfo::tls_identity`](crate::PeerInfo::tls_identity)).
//! - [`client_config`] and [`server_config`] turn these into rustls
//!   configurations with a transport's ALPN and protocol versions; every
//!   failure is a [`TlsError`].
//!
//! The ring provider is passed explicitly everywhere ([`provider`]), so a
//! build that also compiles aws-lc-rs never has to pick a process default.
//!
//! ```
//! use syncline_transport::tls::{
//!     self, ClientAuth, Fingerprint, SelfSigned, ServerTrust, TlsError,
//! };
//!
//! # fn main() -> Result<(), TlsError> {
//! // A development server: a self-signed certificate, pinned by clients.
//! let cert = SelfSigned::generate(vec!["localhost".to_owned()])?;
//! let pin: Fingerprint = cert.fingerprint().to_string().parse()?;
//! let tls13 = &[&rustls::version::TLS13];
//! let server = tls::server_config(&cert.identity(), &ClientAuth::none(), &[b"demo/1"], tls13)?;
//! let client = tls::client_config(&ServerTrust::pinned(pin), None, &[b"demo/1"], tls13)?;
//! assert_eq!(server.alpn_protocols, client.alpn_protocols);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod fingerprint;
mod identity;
mod pem;
mod trust;
mod verify;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use config::{client_config, peer_identity, server_config};
pub use error::{Material, TlsError};
pub use fingerprint::{Fingerprint, ParseFingerprintError};
pub use identity::{Identity, SelfSigned};
pub use trust::{ClientAuth, ServerTrust};

/// The ring crypto provider, the only one syncline's TLS uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
