//! The `Terraform` kind: an OpenTofu/Terraform root module taken from an artifact.

use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{CommonSpec, KeyRef, ObjectStatus, ValuesFrom};

/// Desired state of an OpenTofu/Terraform root module.
// Several printcolumn(...) entries repeat `type_ = "string"`, which clippy reads as a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "landform.dev",
    version = "v1alpha1",
    kind = "Terraform",
    plural = "terraforms",
    namespaced,
    status = "ObjectStatus",
    shortname = "tf",
    category = "landform",
    doc = "An OpenTofu/Terraform root module, planned and applied by Landform in runner pods.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.lastAppliedRevision",
        priority = "1"
    ),
    printcolumn(name = "Plan", type_ = "string", json_path = ".status.plan.id"),
    printcolumn(name = "Drift", type_ = "string", json_path = ".status.drift.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.sourceRef) != has(self.source)").message("exactly one of spec.sourceRef (a Flux source) or spec.source (an OCI artifact) must be set"))]
#[x_kube(validation = Rule::new("!(has(self.backend) && has(self.backend.config) && has(self.backend.configFrom))").message("set at most one of spec.backend.config and spec.backend.configFrom"))]
#[serde(rename_all = "camelCase")]
pub struct TerraformSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// Directory of the root module inside the artifact, relative to its root. Default: the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.matches('^([.]/)*/') && !self.matches('(^|/)[.][.](/|$)')").message("must be a relative path inside the artifact, without '..'"))]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,

    /// OpenTofu/Terraform workspace. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,90}$"))]
    pub workspace: Option<String>,

    /// Which CLI runs the module. Default: OpenTofu.
    #[serde(default)]
    pub engine: Engine,

    /// Input variables. Values may be any JSON (strings, numbers, lists, objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    pub vars: Vec<Variable>,

    /// Input variables read from Secrets and ConfigMaps (each key a variable). Later entries win
    /// over earlier ones, and all of them over `vars`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub vars_from: Vec<ValuesFrom>,

    /// State backend. Default: the `kubernetes` backend, with state in a Secret in this
    /// namespace and a Lease as lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,
}

/// The CLI that runs a module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Engine {
    #[default]
    OpenTofu,
    Terraform,
}

/// One input variable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Variable {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$"))]
    pub name: String,
    #[schemars(schema_with = "any_json")]
    pub value: serde_json::Value,
}

fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// State backend configuration. Neither field: the built-in `kubernetes` backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    /// A complete `terraform { backend "…" { … } }` block in HCL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub config: Option<String>,
    /// The same, read from a Secret key (for backends whose configuration holds credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<KeyRef>,
}
