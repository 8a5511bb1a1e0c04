//! In-process loopback transport for syncline (work in progress).
