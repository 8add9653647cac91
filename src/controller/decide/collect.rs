//! What the run in flight means for the object, once the controller has looked at it: still
//! running, finished (its result taken into status: plan, apply, drift report, destroy),
//! failed, or lost (it ended without a result, and the state lock it held is released).
//! Pure: what was found comes in; status changes, events and what to count go out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::drift::{self, Wording};
use super::due::{POLL, short, shown};
use super::outcome::{EventSpec, Outcome, mark};
use crate::api::{
    CommonSpec, ConditionStatus, ConditionType, LockStatus, Mode, ObjectStatus, Operation,
    PlanStatus, RunPhase, find_condition,
};
use crate::contract::RunResult;
use crate::contract::reasons;
use crate::contract::result::failed_resources;

/// At most this many failed resources of one stack operation become Events.
const MAX_FAILURE_EVENTS: usize = 5;

/// Whether a run's runner is still going, as the controller can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// It ended; its result, if it wrote one, is in the result Secret. The detail says how
    /// (e.g. a pod's DeadlineExceeded), when known.
    Ended(Option<String>),
    /// This controller does not know the run (it restarted since, or the pod was deleted).
    Unknown,
}

/// What the controller found out about the run in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub state: RunState,
    /// The run's result: `Ok(None)` while it has written none; `Err` when it cannot be read.
    pub result: Result<Option<RunResult>, String>,
    /// The state lock the run holds, as far as the controller knows (read when a run ended
    /// without a result).
    pub lock: Option<LockStatus>,
    /// For a lost run whose lock the controller tried to release (see [`lock_to_release`]):
    /// `Ok(true)` released, `Ok(false)` no longer held with that ID, `Err` the release failed.
    pub released: Option<Result<bool, String>>,
}

/// What collecting decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collected {
    /// How the object stands while the run goes or after it failed; `None` once its result
    /// is taken into status, so that the next step can be decided.
    pub outcome: Option<Outcome>,
    pub events: Vec<EventSpec>,
    /// The run ended: its operation and how (`succeeded`, `failed`, `lost`), for the metrics.
    pub ended: Option<(Operation, &'static str)>,
    /// Its result was taken: whether it succeeded (what it left behind can go).
    pub taken: Option<bool>,
    /// A drift check's totals for the metrics: resources drifted, and whether any did.
    pub drift: Option<(u32, bool)>,
}

/// The run in flight, if status records one.
fn in_flight(status: &ObjectStatus) -> Option<&crate::api::RunStatus> {
    status.run.as_ref().filter(|r| r.phase == RunPhase::Running)
}

/// The ID of the state lock held by a run that ended without a result: it would otherwise
/// stay locked forever, so it is released, with exactly that ID, before collecting.
pub fn lock_to_release<'a>(
    status: &'a ObjectStatus,
    state: &RunState,
    has_result: bool,
) -> Option<&'a str> {
    in_flight(status)?;
    if has_result || *state == RunState::Running {
        return None;
    }
    status.lock.as_ref().map(|l| l.id.as_str())
}

/// Whether the state lock described by OpenTofu's lock info (the JSON it keeps on the Lease)
/// was taken by run `run`, started at `started`: in a pod its holder is `<user>@<pod name>`,
/// and the pod is named after the run; a local run shares the controller's host name, so
/// there the lock must at least have been taken after the run started. A lock someone else
/// took is never recorded as the run's, so it is never released as the run's.
pub fn lock_is_the_runs(info: Option<&str>, run: &str, started: Option<&Time>) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Info {
        #[serde(default)]
        who: String,
        created: Option<jiff::Timestamp>,
    }
    let Some(info) = info.and_then(|i| serde_json::from_str::<Info>(i).ok()) else {
        return false;
    };
    if info
        .who
        .rsplit_once('@')
        .is_some_and(|(_, host)| host == run)
    {
        return true;
    }
    // A little slack for clocks: the lock's time is the runner's, the start the controller's.
    match (info.created, started) {
        (Some(created), Some(started)) => created >= started.0 - jiff::SignedDuration::from_secs(5),
        _ => false,
    }
}

/// Takes what was `found` about the run in flight into `status`. `inputs` is the hash of the
/// plan-shaping fields now.
pub fn collect(
    status: &mut ObjectStatus,
    spec: &CommonSpec,
    wording: &Wording,
    inputs: &str,
    found: Found,
    now: Time,
) -> Collected {
    let Some(run) = in_flight(status).cloned() else {
        return Collected::default();
    };
    let Found {
        state,
        result,
        lock,
        released,
    } = found;
    let result = match result {
        Ok(r) => r,
        // The run is over and its result unusable (garbled, or written by something else):
        // it failed, and the retry is a fresh run.
        Err(message) => {
            set_phase(status, RunPhase::Failed);
            return Collected {
                outcome: Some(Outcome::Failed {
                    reason: "RunResultUnreadable",
                    message,
                    retryable: true,
                }),
                ended: Some((run.operation, "failed")),
                taken: Some(false),
                ..Default::default()
            };
        }
    };
    let Some(result) = result else {
        if state == RunState::Running {
            status.lock = lock;
            let reason = match run.operation {
                Operation::Apply => "Applying",
                Operation::Destroy => "Destroying",
                Operation::Drift => "CheckingDrift",
                Operation::Plan => "Planning",
            };
            // The words the run started with, so that looking at it writes nothing.
            let message = find_condition(&status.conditions, ConditionType::Reconciling)
                .filter(|c| c.reason == reason)
                .map(|c| c.message.clone())
                .unwrap_or_else(|| format!("Running {} (run {})", run.operation, run.name));
            let outcome = match run.operation {
                Operation::Plan | Operation::Drift => Outcome::Checking {
                    reason,
                    message,
                    requeue: POLL,
                },
                Operation::Apply | Operation::Destroy => Outcome::Progressing {
                    reason,
                    message,
                    requeue: POLL,
                },
            };
            return Collected {
                outcome: Some(outcome),
                ..Default::default()
            };
        }
        return lost(status, &run, &state, released);
    };

    status.lock = None;
    set_phase(status, run_phase(result.succeeded));
    let mut collected = Collected {
        ended: Some((
            run.operation,
            if result.succeeded {
                "succeeded"
            } else {
                "failed"
            },
        )),
        taken: Some(result.succeeded),
        events: stack_events(status, &result),
        ..Default::default()
    };
    if !result.succeeded {
        let reason = result
            .reason
            .as_deref()
            .and_then(reasons::known)
            .unwrap_or(reasons::UNKNOWN);
        let message = result
            .message
            .clone()
            .unwrap_or_else(|| format!("run {} failed", run.name));
        match run.operation {
            Operation::Plan => mark(
                status,
                ConditionType::Planned,
                ConditionStatus::False,
                reason,
                &message,
                now,
            ),
            Operation::Apply => {
                mark(
                    status,
                    ConditionType::Applied,
                    ConditionStatus::False,
                    reason,
                    &message,
                    now,
                );
                // A failed apply may have changed state; its saved plan is stale now.
                status.plan = None;
            }
            Operation::Drift | Operation::Destroy => {}
        }
        collected.outcome = Some(Outcome::Failed {
            reason,
            message,
            retryable: true,
        });
        return collected;
    }
    match run.operation {
        Operation::Plan => {
            let made_from = run.inputs.clone().unwrap_or_else(|| inputs.to_string());
            let applies = spec.mode == Mode::Reconcile;
            took_plan(status, result, made_from != inputs, made_from, applies, now);
        }
        Operation::Apply => took_apply(status, result.outputs, now),
        Operation::Drift => {
            let report = result.drift.unwrap_or_default();
            collected.drift = Some((report.total, report.total > 0));
            collected
                .events
                .extend(drift::record(status, report, spec, wording, now));
        }
        Operation::Destroy => {
            status.last_applied_revision = None;
            status.last_applied_digest = None;
            status.last_applied_url = None;
            status.plan = None;
            status.outputs = vec![];
        }
    }
    collected
}

/// A run that ended without writing a result: failed, and its state lock released.
fn lost(
    status: &mut ObjectStatus,
    run: &crate::api::RunStatus,
    state: &RunState,
    released: Option<Result<bool, String>>,
) -> Collected {
    set_phase(status, RunPhase::Failed);
    let how = match state {
        RunState::Ended(Some(detail)) => detail.clone(),
        _ => "its runner is gone".to_string(),
    };
    let mut message = format!("run {} ended without a result ({how})", run.name);
    let mut events = vec![];
    match (status.lock.take(), released) {
        (Some(lock), Some(Ok(true))) => {
            message.push_str(&format!("; released the state lock {} it held", lock.id));
            events.push(EventSpec::warning(
                "StateUnlocked",
                format!(
                    "Released state lock {} held by run {}, whose runner is gone",
                    lock.id, run.name
                ),
            ));
        }
        // Someone else holds it now, or nobody does: nothing of ours to release.
        (Some(_), Some(Ok(false))) | (None, _) => {}
        (Some(lock), Some(Err(e))) => {
            message.push_str(&format!(
                "; releasing its state lock {} failed: {e}",
                lock.id
            ));
            status.lock = Some(lock);
        }
        // Not released (a lock the controller cannot see to release): it stays recorded.
        (Some(lock), None) => status.lock = Some(lock),
    }
    Collected {
        outcome: Some(Outcome::Failed {
            reason: "RunnerLost",
            message,
            retryable: true,
        }),
        events,
        ended: Some((run.operation, "lost")),
        ..Default::default()
    }
}

fn run_phase(succeeded: bool) -> RunPhase {
    if succeeded {
        RunPhase::Succeeded
    } else {
        RunPhase::Failed
    }
}

fn set_phase(status: &mut ObjectStatus, phase: RunPhase) {
    if let Some(run) = status.run.as_mut() {
        run.phase = phase;
    }
}

/// A stack operation's events go to status; its failed resources, and what the runner did to a
/// stack on its own (recreating one left by a failed create), become Events.
fn stack_events(status: &mut ObjectStatus, result: &RunResult) -> Vec<EventSpec> {
    let mut events: Vec<EventSpec> = result
        .notes
        .iter()
        .map(|note| EventSpec::warning("StackRecovered", note.clone()))
        .collect();
    if !result.events.is_empty() {
        let failed = failed_resources(&result.events);
        events.extend(
            failed
                .into_iter()
                .take(MAX_FAILURE_EVENTS)
                .map(|note| EventSpec::warning("ResourceFailed", note)),
        );
        status.stack_events = result.events.clone();
    }
    events
}

/// A plan's result into status. A plan made from inputs that changed while it ran keeps the
/// inputs it was made from, so that it is made again rather than applied.
fn took_plan(
    status: &mut ObjectStatus,
    result: RunResult,
    superseded: bool,
    made_from: String,
    applies: bool,
    now: Time,
) {
    let summary = result.summary.unwrap_or_default();
    let changes = result.has_changes;
    let artifact = status.artifact.clone();
    let revision = artifact.as_ref().map(|a| a.revision.clone());
    let digest = artifact.as_ref().map(|a| a.digest.clone());
    // No changes means the infrastructure matches what this artifact describes, whichever
    // inputs the plan was made from; it counts as applied only for an object that applies
    // (a DriftOnly object has nothing of its own applied, and destroys nothing).
    if !changes && applies {
        status.last_applied_revision = revision.clone();
        status.last_applied_digest = digest.clone();
        status.last_applied_url = artifact.as_ref().map(|a| a.url.clone());
    }
    // Engines that read outputs without applying (a stack adopted as it is) report them.
    if !changes && !result.outputs.is_empty() {
        status.outputs = result.outputs;
    }
    let id = result.plan_id.unwrap_or_default();
    let mut message = format!(
        "Plan {} for revision {}: +{} ~{} -{}",
        short(&id),
        revision.as_deref().map_or("?".into(), shown),
        summary.add,
        summary.change,
        summary.destroy
    );
    if superseded {
        message.push_str("; superseded: the spec changed while it was made, so it is made again");
    }
    let reason = if changes { "PlanReady" } else { "NoChanges" };
    mark(
        status,
        ConditionType::Planned,
        ConditionStatus::True,
        reason,
        &message,
        now.clone(),
    );
    status.plan = Some(PlanStatus {
        id,
        pending: changes,
        revision,
        digest,
        inputs: Some(made_from),
        created_at: Some(now),
        summary,
        resources: result.resources,
    });
}

/// An apply's result into status: what is applied now is the plan's revision.
fn took_apply(status: &mut ObjectStatus, outputs: Vec<String>, now: Time) {
    let artifact = status.artifact.clone();
    let message = format!(
        "Applied revision {}",
        artifact.as_ref().map_or("?".into(), |a| shown(&a.revision))
    );
    mark(
        status,
        ConditionType::Applied,
        ConditionStatus::True,
        "ApplySucceeded",
        &message,
        now,
    );
    if let Some(plan) = status.plan.as_mut() {
        plan.pending = false;
        status.last_applied_revision = plan.revision.clone();
        status.last_applied_digest = plan.digest.clone();
        status.last_applied_url = artifact.as_ref().map(|a| a.url.clone());
    }
    status.outputs = outputs;
}

#[cfg(test)]
#[path = "collect_tests.rs"]
mod tests;
