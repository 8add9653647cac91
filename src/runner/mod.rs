//! `landform runner`: executes exactly one run (engine × operation) and exits. In a pod in
//! production; as a local process in `--runner=local` mode and in tests.

pub mod chunks;
pub mod cloudformation;
pub mod execute;
pub mod identity;
pub mod module;
pub mod opentofu;
pub mod plan;
pub mod spec;
pub mod values;
pub mod workspace;
