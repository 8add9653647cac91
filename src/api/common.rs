//! Spec pieces shared by `Terraform` and `CloudFormationStack`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    Volume, VolumeMount,
};
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{Duration, Interval};

/// The fields both kinds share. Flattened into each kind's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// How often to look at the source and reconcile, for example `10m` (at least `1s`).
    pub interval: Interval,

    /// Base of the exponential backoff after a failed run (doubles per consecutive failure, up to
    /// `interval`). Default: 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<Duration>,

    /// Consecutive failures after which the object is marked Stalled and retried only when its
    /// spec or source changes. 0 retries forever. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    #[schemars(extend("format" = "int32"))]
    pub max_retries: Option<u32>,

    /// How long one run may take before its pod is stopped. Default: 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    /// A Flux source object (`source.toolkit.fluxcd.io/v1`) whose artifact holds the module or
    /// template. Exactly one of `sourceRef` and `source` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,

    /// A source Landform fetches itself, without Flux. Exactly one of `sourceRef` and `source`
    /// must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,

    /// Plan approval: `auto` applies every plan; empty waits for a person to approve; a plan ID
    /// (or a unique prefix of at least 6 characters, as shown in `status.plan.id`) approves
    /// exactly that plan.
    #[serde(default)]
    pub approve_plan: ApprovePlan,

    /// `Reconcile` plans and applies; `DriftOnly` only reports drift and never applies or
    /// destroys anything.
    #[serde(default)]
    pub mode: Mode,

    /// Periodic drift checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSpec>,

    /// Destroy what this object created when the object is deleted. Default: false, so deleting
    /// the object leaves the infrastructure and its state in place.
    #[serde(default)]
    pub destroy_on_delete: bool,

    /// Stop reconciling (runs in flight finish). Deletion still proceeds.
    #[serde(default)]
    pub suspend: bool,

    /// Objects of the same kind that must be Ready, at the same source revision, before this one
    /// runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub depends_on: Vec<DependsOn>,

    /// Write the outputs to this Secret (in the object's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_outputs_to_secret: Option<OutputsSecret>,

    /// The service account runner pods use. Default: `landform-runner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Overrides for the runner pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed: rarely set, and inline it would be a fifth of every cached object's size.
    pub runner_pod_template: Option<Box<RunnerPodTemplate>>,
}

/// A reference to a Flux source object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// The kind of the Flux source.
    pub kind: SourceKind,
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; default: the namespace of this object. Other namespaces are refused
    /// unless the controller runs with `--allow-cross-namespace-refs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Kinds of Flux source (`source.toolkit.fluxcd.io/v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceKind {
    GitRepository,
    #[serde(rename = "OCIRepository")]
    OciRepository,
    Bucket,
}

/// A source Landform fetches itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// An OCI artifact, such as one published by `landform push` or `flux push artifact`.
    pub oci: OciSource,
}

/// An OCI artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciSource {
    /// Repository URL, `oci://host[:port]/path`.
    #[schemars(regex(pattern = r"^oci://[^/\s]+/[^\s]+$"), length(max = 1024))]
    pub url: String,
    /// Which artifact in the repository. Default: the `latest` tag.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<OciRef>,
    /// A `kubernetes.io/dockerconfigjson` Secret with credentials for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// Talk plain HTTP to the registry.
    #[serde(default)]
    pub insecure: bool,
    /// The media type of the layer that holds the module or template. Default: Flux's
    /// `application/vnd.cncf.flux.content.v1.tar+gzip`, else the first layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub layer_media_type: Option<String>,
}

/// An OCI reference: a digest wins over a semver range, which wins over a tag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciRef {
    /// A tag, such as `1.2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub tag: Option<String>,
    /// A semver range, such as `>=1.2.0 <2.0.0`; the highest matching tag is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub semver: Option<String>,
    /// A regular expression tags must match to be considered for `semver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub semver_filter: Option<String>,
    /// A manifest digest, such as `sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha(256|384|512):[0-9a-f]{64,128}$"))]
    pub digest: Option<String>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Plan approval policy; see `CommonSpec::approve_plan`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApprovePlan(pub String);

impl ApprovePlan {
    pub fn is_auto(&self) -> bool {
        self.0 == "auto"
    }
    /// The approved plan ID prefix, if the value names one.
    pub fn plan_prefix(&self) -> Option<&str> {
        (!self.0.is_empty() && !self.is_auto()).then_some(self.0.as_str())
    }
}

impl JsonSchema for ApprovePlan {
    fn schema_name() -> Cow<'static, str> {
        "ApprovePlan".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "description": "`auto` applies every plan; empty waits for a person to approve; a plan ID (or a unique prefix of at least 6 characters, as shown in status.plan.id) approves exactly that plan.",
            "x-kubernetes-validations": [{
                "rule": "self == '' || self == 'auto' || self.matches('^[0-9a-f]{6,64}$')",
                "message": "must be 'auto' (apply every plan), empty (wait for manual approval) or a plan ID to approve (at least 6 lowercase hex characters of status.plan.id)",
            }],
        })
    }
}

/// What the controller does with the infrastructure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Plan, apply (under the approval policy) and, with destroyOnDelete, destroy.
    #[default]
    Reconcile,
    /// Only compare desired and real infrastructure and report drift; never apply or destroy.
    DriftOnly,
}

/// Periodic drift detection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    /// How often to check for drift (at least `1s`). Default: `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// In Reconcile mode, correct drift through a normal plan and apply (under the approval
    /// policy) instead of only reporting it.
    #[serde(default)]
    pub remediate: bool,
}

/// Another object of the same kind this one waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DependsOn {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default: this object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Values read from Secrets or ConfigMaps; later entries win over earlier ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesFrom {
    pub kind: ValuesFromKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only these keys (default: every key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// Do not fail when the object is missing.
    #[serde(default)]
    pub optional: bool,
}

/// Kinds `varsFrom` / `parametersFrom` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValuesFromKind {
    Secret,
    ConfigMap,
}

/// Where outputs are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputsSecret {
    /// Name of the Secret, in the object's namespace. Landform owns it.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only these outputs (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
}

/// Overrides for runner pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPodTemplate {
    /// Labels added to runner pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to runner pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub spec: RunnerPodSpec,
}

/// The parts of a runner pod a user may set. Nothing here can loosen the pod's security
/// context, service account or host namespaces; volumes are limited to the kinds restricted
/// Pod Security allows, so a template cannot reach the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerPodSpec {
    /// Runner image. Default: the controller's `--runner-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(v, has(v.configMap) || has(v.secret) || has(v.emptyDir) || has(v.projected) || has(v.downwardAPI) || has(v.persistentVolumeClaim) || has(v.ephemeral) || has(v.csi))").message("runner pod volumes may only be configMap, secret, emptyDir, projected, downwardAPI, persistentVolumeClaim, ephemeral or csi (what restricted Pod Security allows; hostPath and the like reach the node)"))]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}
