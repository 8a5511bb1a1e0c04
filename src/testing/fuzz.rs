//! Fuzz targets, callable from cargo-fuzz and from ordinary tests.
