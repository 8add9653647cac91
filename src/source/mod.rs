//! Where modules and templates come from: OCI artifacts (built in) and Flux sources, fetched
//! with their digest verified while streaming, and extracted safely.

pub mod archive;
pub mod cache;
pub mod credentials;
pub mod digest;
pub mod fetch;
pub mod flux;
mod guard;
pub mod oci;
pub mod pack;
mod reason;

pub use reason::SourceReason;
