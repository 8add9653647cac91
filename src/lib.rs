//! Landform: reconciles OpenTofu/Terraform modules and AWS CloudFormation templates from
//! Kubernetes objects, in ephemeral runner pods, the GitOps way.

pub mod api;
pub mod cli;
pub mod contract;
pub mod controller;
pub mod engine;
pub mod source;
pub mod telemetry;
pub mod tls;
