//! QUIC transport for syncline: quinn over rustls (ring). (work in progress)
