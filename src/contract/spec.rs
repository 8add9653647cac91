//! What one run is told to do. The controller writes a [`RunSpec`] (a file for a local run, a
//! ConfigMap for a pod); it travels as a Kubernetes object, never over a network protocol of
//! our own, and holds no secret value: variables from Secrets are referenced, and resolved by
//! the runner. [`Work`] is everything the run works on besides the artifact: each kind builds
//! it from its spec, and the plan ID hashes it whole (see [`super::plan_id`]).

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::api::{Capability, Operation, OutputsSecret, StackParameter, ValuesFrom, Variable};

/// The artifact to run, pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// `oci://host/repository` or an `http(s)://` Flux artifact URL.
    pub url: String,
    pub digest: String,
    pub revision: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_media_type: Option<String>,
    /// dockerconfigjson Secret for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

/// Where state lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
pub enum Backend {
    /// OpenTofu's `kubernetes` backend: state in Secret `tfstate-<workspace>-<suffix>`, lock in
    /// Lease `lock-tfstate-<workspace>-<suffix>`, both in `namespace`.
    Kubernetes {
        namespace: String,
        secret_suffix: String,
    },
    /// A complete `terraform { backend … }` block.
    Raw { hcl: String },
    /// The same, read from a Secret key.
    FromSecret { name: String, key: String },
}

/// The object a run belongs to (owner of its result objects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    /// The owner reference every object of the run carries, so it goes with its owner.
    /// blockOwnerDeletion stays unset: setting it needs rights on the owner's finalizers, which
    /// runners do not have (and must not need) where OwnerReferencesPermissionEnforcement runs.
    pub fn reference(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    /// Name of the run; result objects are named after it.
    pub name: String,
    pub namespace: String,
    pub owner: Owner,
    pub operation: Operation,
    pub artifact: ArtifactRef,
    /// What the run works on, and with which engine.
    #[serde(flatten)]
    pub work: Work,
    /// For `apply`: the plan to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_secret: Option<OutputsSecret>,
}

/// The engine of a run and what it works on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "engine")]
pub enum Work {
    OpenTofu(ModuleRun),
    Terraform(ModuleRun),
    CloudFormation(StackRun),
}

/// An OpenTofu / Terraform module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRun {
    /// Module directory inside the artifact.
    #[serde(default)]
    pub path: String,
    #[serde(default = "default_workspace")]
    pub workspace: String,
    #[serde(default)]
    pub vars: Vec<Variable>,
    #[serde(default)]
    pub vars_from: Vec<ValuesFrom>,
    pub backend: Backend,
}

/// A CloudFormation stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRun {
    pub stack_name: String,
    pub template_path: String,
    #[serde(default)]
    pub parameters: Vec<StackParameter>,
    #[serde(default)]
    pub parameters_from: Vec<ValuesFrom>,
    /// The user's tags; the runner adds Landform's ownership tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default, rename = "roleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(
        default,
        rename = "endpointURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_bucket: Option<String>,
    /// Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    #[serde(default)]
    pub adopt_existing: bool,
    /// DriftOnly: plans read and compare, and change nothing (no change set, no stack).
    #[serde(default)]
    pub read_only: bool,
}

fn default_workspace() -> String {
    "default".into()
}
