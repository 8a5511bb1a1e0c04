//! Transport traits for syncline (work in progress).
