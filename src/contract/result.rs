//! What one run reports back: the runner writes a [`RunResult`] into the Secret named by
//! [`super::names::result_secret`], and the controller takes it into the object's status.
//! It holds no secret value: summaries, addresses and attribute paths, never values.

use serde::{Deserialize, Serialize};

use crate::api::{PlanSummary, ResourceChange, StackEvent};

/// What a drift run found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub total: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceChange>,
    /// What the check could not look at, for the condition message (said on every check, so
    /// not an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    pub succeeded: bool,
    /// Static reason when it failed (condition reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong, in words a user can act on (OpenTofu's diagnostics quoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<PlanSummary>,
    /// Whether the plan changes anything (resources or outputs); a plan without changes needs
    /// no apply.
    #[serde(default)]
    pub has_changes: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceChange>,
    /// For drift runs: the resources changed outside OpenTofu (paths only, never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftReport>,
    /// Names of the outputs written (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// What the stack operation went through (CloudFormation), oldest first, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StackEvent>,
    /// Things the runner did on its own that deserve an event, e.g. recreating a stack that
    /// was left in ROLLBACK_COMPLETE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The engine and its version, e.g. `OpenTofu v1.12.6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
}

/// The stack events that say why an operation failed: failed resources with their reasons.
pub fn failed_resources(events: &[StackEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.status.ends_with("_FAILED"))
        .map(|e| {
            let kind = e
                .resource_type
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            let why = e
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("{}{kind} {}{why}", e.resource, e.status)
        })
        .collect()
}
