//! Observed state, shared by both kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What Landform observed and did. Secrets never appear here: outputs are listed by name only,
/// and plan values are redacted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The generation of the spec the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// kstatus-compatible conditions: Ready, Reconciling, Stalled, Planned, Applied, Drifted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The source revision last applied, e.g. `1.2.0@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The source revision of the last run, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// Digest of the artifact last applied; destroy uses exactly this artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_digest: Option<String>,
    /// Where that artifact is fetched from.
    #[serde(
        default,
        rename = "lastAppliedURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_applied_url: Option<String>,

    /// The artifact the next run uses, as last resolved from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,

    /// The current plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    /// The last drift check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftStatus>,
    /// The run in flight, or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunStatus>,
    /// Who holds the state lock, when a run holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockStatus>,

    /// The stack events of the last CloudFormation operation (bounded, oldest first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack_events: Vec<StackEvent>,

    /// Names of the outputs written to `writeOutputsToSecret` (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,

    /// Consecutive failed attempts; drives the exponential backoff, and survives restarts.
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub failures: u32,
    /// When the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,

    /// The value of the `reconcile.fluxcd.io/requestedAt` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// A resolved, immutable artifact reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// `oci://host/repository` for OCI sources; the Flux artifact URL otherwise.
    pub url: String,
    /// Human-readable revision, e.g. `1.2.0@sha256:…` or `main@sha1:…`.
    pub revision: String,
    /// The digest runs verify: the manifest digest for OCI, the artifact digest for Flux.
    pub digest: String,
}

/// A plan waiting for approval or applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// Hash of artifact digest, resolved inputs and engine version; approve with this ID.
    pub id: String,
    /// True while the plan waits for approval or apply.
    #[serde(default)]
    pub pending: bool,
    /// The revision the plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The artifact digest the plan was made from; apply uses exactly this artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Hash of the spec fields that shape a plan (path, variables, backend, …); a change
    /// makes a new plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    /// When the plan was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    pub summary: PlanSummary,
    /// The planned changes (bounded; `summary` has the totals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceChange>,
}

/// Counts of planned changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanSummary {
    #[schemars(extend("format" = "int32"))]
    pub add: u32,
    #[schemars(extend("format" = "int32"))]
    pub change: u32,
    #[schemars(extend("format" = "int32"))]
    pub destroy: u32,
}

/// One CloudFormation stack event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Logical ID of the resource (the stack name for the stack itself).
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub resource_type: Option<String>,
    /// e.g. CREATE_COMPLETE, UPDATE_FAILED.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One changed resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChange {
    /// Resource address (OpenTofu) or logical ID (CloudFormation).
    pub address: String,
    /// Resource type.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub resource_type: Option<String>,
    /// create, update, delete, replace, read, or for drift: update, delete.
    pub action: String,
    /// Changed attribute paths (values are never shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// Drift report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    pub state: DriftState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<Time>,
    /// Total drifted resources (the list below is bounded).
    #[serde(default)]
    #[schemars(extend("format" = "int32"))]
    pub total: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceChange>,
}

/// Result of a drift check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DriftState {
    InSync,
    Drifted,
    #[default]
    Unknown,
}

/// The operation of a run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Plan and keep the saved plan.
    #[default]
    Plan,
    /// Apply a saved plan (`plan_id`).
    Apply,
    /// Plan a destroy and apply it.
    Destroy,
    /// Compare the infrastructure with what was applied (OpenTofu: a refresh-only plan;
    /// CloudFormation: drift detection and the deployed template). Never changes anything.
    Drift,
}

/// Where a run stands.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr,
)]
pub enum RunPhase {
    /// Recorded, not started yet.
    Pending,
    /// Started; its result is not taken yet.
    #[default]
    Running,
    Succeeded,
    Failed,
}

impl Operation {
    /// As status and run names spell it: `plan`, `apply`, `destroy`, `drift`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run: one engine operation in one runner pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub name: String,
    /// plan, apply, destroy or drift.
    #[schemars(with = "String")]
    pub operation: Operation,
    /// Pending, Running, Succeeded or Failed.
    #[schemars(with = "String")]
    pub phase: RunPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Hash of the plan-shaping spec fields the run started with: a plan made from a spec
    /// that changed meanwhile is superseded, and made again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// The state lock as Landform knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    pub id: String,
    pub holder_run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}
