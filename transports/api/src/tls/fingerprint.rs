//! The SHA-256 fingerprint of a certificate, as clients pin servers and
//! services recognise clients.

use std::fmt;
use std::str::FromStr;

use crate::server::PeerInfo;

/// The SHA-256 digest of a certificate's DER.
///
/// Shown as 64 lowercase hex digits (what `sha256sum` prints for the DER
/// file). Parsing takes either case, with or without colons between bytes, so
/// `openssl x509 -noout -fingerprint -sha256` output (`AB:CD:…`) parses too.
///
/// ```
/// use syncline_transport::tls::Fingerprint;
///
/// let fingerprint = Fingerprint::of_certificate(b"");
/// let shown = fingerprint.to_string();
/// assert!(shown.starts_with("e3b0c442"));
/// assert_eq!(shown.parse::<Fingerprint>().ok(), Some(fingerprint));
/// assert_eq!("E3:B0:C4:42".parse::<Fingerprint>().ok(), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        // A SHA-256 digest is always 32 bytes, so the lengths match.
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// The fingerprint of the certificate a client presented under mutual
    /// TLS ([`PeerInfo::tls_identity`]), if it presented one.
    pub fn of_peer(peer: &PeerInfo) -> Option<Self> {
        peer.tls_identity
            .as_deref()
            .map(Fingerprint::of_certificate)
    }

    /// A fingerprint from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The fingerprint's 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(text: &str) -> Result<Self, ParseFingerprintError> {
        let text = text.trim();
        let mut bytes = [0u8; 32];
        let mut digits = 0usize;
        for found in text.chars().filter(|c| *c != ':') {
            let value = found
                .to_digit(16)
                .ok_or(ParseFingerprintError::NotHex { found })?;
            if let Some(byte) = bytes.get_mut(digits / 2) {
                // `to_digit(16)` is below 16, so it fits a nibble.
                *byte = *byte << 4 | value as u8;
            }
            digits += 1;
        }
        if digits != 64 {
            return Err(ParseFingerprintError::Length { digits });
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why text is not a [`Fingerprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseFingerprintError {
    /// A character that is neither a hex digit nor a colon.
    #[error("malformed fingerprint: {found:?} is not a hex digit")]
    NotHex {
        /// The character.
        found: char,
    },
    /// Not 64 hex digits (32 bytes).
    #[error("malformed fingerprint: expected 64 hex digits, found {digits}")]
    Length {
        /// How many hex digits the text holds.
        digits: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_display_as_lowercase_hex_and_parse_back() {
        // The SHA-256 of the empty input, a known vector.
        let empty = Fingerprint::of_certificate(b"");
        let shown = empty.to_string();
        assert_eq!(
            shown,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(shown.parse::<Fingerprint>(), Ok(empty));
        assert_eq!(format!("{empty:?}"), format!("Fingerprint({shown})"));

        // openssl's form: uppercase, colon-separated.
        let openssl: Vec<String> = empty
            .as_bytes()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        assert_eq!(openssl.join(":").parse::<Fingerprint>(), Ok(empty));
        assert_eq!(format!(" {shown}\n").parse::<Fingerprint>(), Ok(empty));
        assert_eq!(Fingerprint::from_bytes(*empty.as_bytes()), empty);
    }

    #[test]
    fn malformed_fingerprints_say_what_is_wrong() {
        assert_eq!(
            "abcd".parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length { digits: 4 })
        );
        assert_eq!(
            "ab".repeat(33).parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length { digits: 66 })
        );
        assert_eq!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(ParseFingerprintError::NotHex { found: 'z' })
        );
        assert_eq!(
            "".parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length { digits: 0 })
        );
    }

    #[test]
    fn a_peer_without_a_certificate_has_no_fingerprint() {
        let peer = PeerInfo::new("127.0.0.1:1");
        assert_eq!(Fingerprint::of_peer(&peer), None);
        let peer = peer.with_tls_identity(b"der".to_vec());
        assert_eq!(
            Fingerprint::of_peer(&peer),
            Some(Fingerprint::of_certificate(b"der"))
        );
    }
}
