//! The `CloudFormationStack` kind: an AWS CloudFormation template taken from an artifact.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CommonSpec, LocalRef, ObjectStatus, ValuesFrom};

/// Desired state of a CloudFormation stack.
// Several printcolumn(...) entries repeat `type_ = "string"`, which clippy reads as a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "landform.dev",
    version = "v1alpha1",
    kind = "CloudFormationStack",
    plural = "cloudformationstacks",
    namespaced,
    status = "ObjectStatus",
    shortname = "cfnstack",
    category = "landform",
    doc = "An AWS CloudFormation stack, planned as change sets and applied by Landform in runner pods.",
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
#[serde(rename_all = "camelCase")]
pub struct CloudFormationStackSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// Name of the stack. Default: `<namespace>-<name>` of this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z][-A-Za-z0-9]{0,127}$"))]
    pub stack_name: Option<String>,

    /// Path of the template inside the artifact. Default: `template.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.matches('^([.]/)*/') && !self.matches('(^|/)[.][.](/|$)')").message("must be a relative path inside the artifact, without '..'"))]
    #[schemars(length(min = 1, max = 1024))]
    pub template_path: Option<String>,

    /// Template parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub parameters: Vec<StackParameter>,

    /// Template parameters read from Secrets and ConfigMaps (each key a parameter). Later
    /// entries win over earlier ones, and all of them over `parameters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub parameters_from: Vec<ValuesFrom>,

    /// Stack tags, in addition to Landform's own ownership tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,

    /// Capabilities the template needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,

    /// A CloudFormation service role the stack operations run as.
    #[serde(default, rename = "roleARN", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:[^:\s]+:iam::[0-9]{12}:role/\S+$"))]
    pub role_arn: Option<String>,

    /// AWS region. Default: the runner's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// Override of the CloudFormation (and S3) endpoint.
    #[serde(
        default,
        rename = "endpointURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(regex(pattern = r"^https?://\S+$"))]
    pub endpoint_url: Option<String>,

    /// S3 bucket for templates over the 51,200-byte inline limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63))]
    pub template_bucket: Option<String>,

    /// A Secret with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and optionally
    /// `AWS_SESSION_TOKEN`). Default: the runner pod's service-account credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalRef>,

    /// Take over an existing stack that Landform did not create. Off by default: Landform refuses
    /// to touch a stack without its ownership tags.
    #[serde(default)]
    pub adopt_existing: bool,
}

/// One template parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StackParameter {
    #[schemars(length(min = 1, max = 255))]
    pub key: String,
    pub value: String,
}

/// CloudFormation capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::enum_variant_names)]
pub enum Capability {
    #[serde(rename = "CAPABILITY_IAM")]
    Iam,
    #[serde(rename = "CAPABILITY_NAMED_IAM")]
    NamedIam,
    #[serde(rename = "CAPABILITY_AUTO_EXPAND")]
    AutoExpand,
}
