//! The custom resources Landform serves (group `landform.dev`, version `v1alpha1`).
//!
//! The Rust types are the source of truth: `landform crds` prints the CustomResourceDefinitions
//! generated from them, and `crds/` in the repository holds that output.

mod cloudformation;
mod common;
mod conditions;
mod duration;
mod status;
mod terraform;

pub use cloudformation::{
    Capability, CloudFormationStack, CloudFormationStackSpec, StackParameter,
};
pub use common::{
    ApprovePlan, CommonSpec, DependsOn, DriftSpec, KeyRef, LocalRef, Mode, OciRef, OciSource,
    OutputsSecret, RunnerPodSpec, RunnerPodTemplate, SourceKind, SourceRef, SourceSpec, ValuesFrom,
    ValuesFromKind,
};
pub use conditions::{
    ConditionStatus, ConditionType, find_condition, remove_condition, set_condition,
};
pub use duration::{Duration, Interval};
pub use status::{
    ArtifactStatus, DriftState, DriftStatus, LockStatus, ObjectStatus, Operation, PlanStatus,
    PlanSummary, ResourceChange, RunPhase, RunStatus, StackEvent,
};
pub use terraform::{BackendSpec, Engine, Terraform, TerraformSpec, Variable};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, Resource, ResourceExt, core::NamespaceResourceScope};

/// API group of every Landform resource.
pub const GROUP: &str = "landform.dev";
/// The finalizer Landform holds on the objects it manages.
pub const FINALIZER: &str = "landform.dev/finalizer";
/// Flux's annotation for "reconcile now"; honoured so that `flux reconcile`-style tooling works.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// Every CustomResourceDefinition Landform serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Terraform::crd(), CloudFormationStack::crd()]
}

/// What the reconcilers need from either kind, so that one reconcile loop serves both.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + ResourceExt
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind, as used in metric labels and events.
    const KIND: &'static str;
    fn common(&self) -> &CommonSpec;
    fn object_status(&self) -> Option<&ObjectStatus>;
}

impl Managed for Terraform {
    const KIND: &'static str = "Terraform";
    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }
    fn object_status(&self) -> Option<&ObjectStatus> {
        self.status.as_ref()
    }
}

impl Managed for CloudFormationStack {
    const KIND: &'static str = "CloudFormationStack";
    fn common(&self) -> &CommonSpec {
        &self.spec.common
    }
    fn object_status(&self) -> Option<&ObjectStatus> {
        self.status.as_ref()
    }
}
