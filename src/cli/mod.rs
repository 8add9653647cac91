//! Command-line entry points other than the controller.

pub mod crds;
pub mod objects;
pub mod oci;
pub mod runner;
