//! Tools for testing syncline and the merge rules built on it (feature
//! `testing`): fuzz targets that also run as ordinary tests, and a deterministic
//! network simulation.

pub mod fuzz;
pub mod laws;
pub mod sim;
