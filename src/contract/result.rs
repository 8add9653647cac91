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

/// Bounds of what a result may hold. The runner stays far below them; a result above them
/// was written by something else (the runner's service account can write its Secret while
/// the run goes) and is cut down or refused, never trusted.
pub mod limits {
    /// The whole result, as stored.
    pub const BYTES: usize = 2 * 1024 * 1024;
    /// A message or note, in characters.
    pub const TEXT: usize = 4000;
    /// A name, address, path, action, reason or version, in characters.
    pub const NAME: usize = 512;
    /// Entries of any list.
    pub const LIST: usize = 200;
    /// Characters of a plan ID (hex).
    pub const PLAN_ID: usize = 64;
}

/// Why a stored result cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResultError {
    #[error("it is {0} bytes, more than a runner writes")]
    TooLarge(usize),
    #[error("it is not a run result: {0}")]
    Malformed(String),
    #[error(
        "its plan ID is not a hexadecimal ID of at most {} characters",
        limits::PLAN_ID
    )]
    PlanId,
}

/// Reads a stored result: parsed, checked, and every text and list cut to its bound, so
/// that nothing in it can make the controller misbehave.
pub fn parse(bytes: &[u8]) -> Result<RunResult, ResultError> {
    if bytes.len() > limits::BYTES {
        return Err(ResultError::TooLarge(bytes.len()));
    }
    let mut r: RunResult =
        serde_json::from_slice(bytes).map_err(|e| ResultError::Malformed(e.to_string()))?;
    if let Some(id) = &r.plan_id
        && (id.is_empty()
            || id.len() > limits::PLAN_ID
            || !id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ResultError::PlanId);
    }
    bound_opt(&mut r.reason, limits::NAME);
    bound_opt(&mut r.message, limits::TEXT);
    bound_opt(&mut r.engine_version, limits::NAME);
    bound_changes(&mut r.resources);
    if let Some(d) = r.drift.as_mut() {
        bound_changes(&mut d.resources);
        bound_opt(&mut d.limits, limits::TEXT);
    }
    bound_list(&mut r.outputs, limits::NAME);
    bound_list(&mut r.notes, limits::TEXT);
    r.events.truncate(limits::LIST);
    for e in &mut r.events {
        bound(&mut e.resource, limits::NAME);
        bound(&mut e.status, limits::NAME);
        bound_opt(&mut e.resource_type, limits::NAME);
        bound_opt(&mut e.reason, limits::TEXT);
    }
    Ok(r)
}

/// At most `max` characters, cut on a character boundary.
pub fn bound(s: &mut String, max: usize) {
    if let Some((end, _)) = s.char_indices().nth(max) {
        s.truncate(end);
        s.push('…');
    }
}

fn bound_opt(s: &mut Option<String>, max: usize) {
    if let Some(s) = s.as_mut() {
        bound(s, max);
    }
}

fn bound_list(list: &mut Vec<String>, max: usize) {
    list.truncate(limits::LIST);
    for s in list {
        bound(s, max);
    }
}

fn bound_changes(list: &mut Vec<crate::api::ResourceChange>) {
    list.truncate(limits::LIST);
    for c in list {
        bound(&mut c.address, limits::NAME);
        bound(&mut c.action, limits::NAME);
        bound_opt(&mut c.resource_type, limits::NAME);
        bound_list(&mut c.paths, limits::NAME);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_results_are_bounded_or_refused() {
        let long = "é".repeat(limits::TEXT + 10);
        let json = serde_json::json!({
            "succeeded": false, "reason": "PlanFailed", "message": long,
            "planId": "0123456789abcdef",
            "outputs": vec!["x"; limits::LIST + 5],
            "resources": [{"address": "a".repeat(10_000), "action": "create"}],
        });
        let r = parse(json.to_string().as_bytes()).unwrap();
        assert_eq!(r.message.unwrap().chars().count(), limits::TEXT + 1);
        assert_eq!(r.outputs.len(), limits::LIST);
        assert_eq!(r.resources[0].address.chars().count(), limits::NAME + 1);

        for id in ["", "éééééééé", "0123456789abcdeg", &"a".repeat(65)] {
            let json = serde_json::json!({"succeeded": true, "planId": id});
            assert_eq!(
                parse(json.to_string().as_bytes()),
                Err(ResultError::PlanId),
                "{id}"
            );
        }
        assert!(matches!(
            parse(b"{\"succeeded\": 1}"),
            Err(ResultError::Malformed(_))
        ));
        assert!(matches!(
            parse(&vec![b' '; limits::BYTES + 1]),
            Err(ResultError::TooLarge(_))
        ));
    }
}
