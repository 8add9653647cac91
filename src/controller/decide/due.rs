//! What is due for an object, in the order the controller asks: may it act at all now
//! ([`gate`]), must its source be resolved again ([`pinned_artifact`]), and, once the source is
//! resolved, what comes next ([`decide`]: plan, apply, drift check, wait for approval, or
//! nothing), with the artifact a run uses ([`run_artifact`], [`destroy_artifact`]) and how a
//! started run reads ([`starting`]). Pure: the status, the spec facts and the clock in, a
//! decision out.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::outcome::{self, Outcome, RetryPolicy};
use super::validate::Timing;
use crate::api::{
    ApprovePlan, ArtifactStatus, CommonSpec, DriftState, Mode, ObjectStatus, Operation, RunPhase,
};

/// How often a run in flight is looked at if nothing wakes its object first. Its end does:
/// a runner pod's change comes through the pod watch, a local run's end from the task that
/// waits for its process; this only bounds what a missed wake-up can cost.
pub const POLL: Duration = Duration::from_secs(30);

/// Whether the object may act now.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Gave up (Stalled) for this generation: wait for the spec to change.
    Stalled,
    /// Still backing off from earlier failures: look again after this long.
    BackingOff(Duration),
    Open,
}

/// Scheduling is driven by status timestamps, so that a restarted controller does nothing
/// that is not due. A fresh `reconcile.fluxcd.io/requestedAt` opens every gate.
pub fn gate(
    status: Option<&ObjectStatus>,
    generation: Option<i64>,
    policy: &RetryPolicy,
    fresh_request: bool,
    now: jiff::Timestamp,
) -> Gate {
    if fresh_request {
        return Gate::Open;
    }
    if outcome::stalled(status, generation) {
        return Gate::Stalled;
    }
    match outcome::backing_off(status, generation, policy, now) {
        Some(wait) => Gate::BackingOff(wait),
        None => Gate::Open,
    }
}

/// The source it runs is pinned while a run is in flight: resolving it again on every look at
/// the run would cost a registry or Flux request each time. `None`: resolve it now.
pub fn pinned_artifact(status: &ObjectStatus) -> Option<&ArtifactStatus> {
    let running = status
        .run
        .as_ref()
        .is_some_and(|r| r.phase == RunPhase::Running);
    status.artifact.as_ref().filter(|_| running)
}

/// How often to check for drift: `spec.drift.interval` (default: the interval), or always in
/// DriftOnly mode.
pub fn drift_every(spec: &CommonSpec, timing: &Timing) -> Option<Duration> {
    match (&spec.drift, spec.mode) {
        (Some(d), _) => Some(
            d.interval
                .as_ref()
                .map_or(timing.interval, |i| i.or(timing.interval)),
        ),
        (None, Mode::DriftOnly) => Some(timing.interval),
        (None, _) => None,
    }
}

/// The artifact a run of `operation` uses: an apply uses exactly the artifact its plan was
/// made from, everything else the current one.
pub fn run_artifact(
    operation: Operation,
    status: &ObjectStatus,
    current: &ArtifactStatus,
) -> ArtifactStatus {
    match (operation, &status.plan) {
        (Operation::Apply, Some(p)) => ArtifactStatus {
            url: current.url.clone(),
            revision: p
                .revision
                .clone()
                .unwrap_or_else(|| current.revision.clone()),
            digest: p.digest.clone().unwrap_or_else(|| current.digest.clone()),
        },
        _ => current.clone(),
    }
}

/// What a destroy on delete runs with: exactly the artifact that applied what is there, or,
/// for a kind whose destroy needs no artifact, whatever is known once a plan may have made
/// something. `None`: nothing to destroy.
pub fn destroy_artifact(status: &ObjectStatus, needs_artifact: bool) -> Option<ArtifactStatus> {
    match (&status.last_applied_url, &status.last_applied_digest) {
        (Some(url), Some(digest)) => Some(ArtifactStatus {
            url: url.clone(),
            revision: status
                .last_applied_revision
                .clone()
                .unwrap_or_else(|| digest.clone()),
            digest: digest.clone(),
        }),
        // Deleting a stack needs only its name, and a plan alone can have created one (a
        // CREATE change set makes a stack that waits for review).
        _ if !needs_artifact && status.plan.is_some() => {
            Some(status.artifact.clone().unwrap_or_default())
        }
        _ => None,
    }
}

/// How an object reads while what is due is not a run (waiting for approval, in sync).
pub fn waiting(next: Next, status: &ObjectStatus, mode: Mode) -> Outcome {
    match next {
        Next::Run { operation, .. } => Outcome::Progressing {
            reason: "RunDue",
            message: format!("A {operation} run is due"),
            requeue: POLL,
        },
        Next::AwaitApproval { message } => Outcome::Blocked {
            reason: "AwaitingApproval",
            message,
            warning: false,
        },
        Next::StaleApproval { message } => Outcome::Blocked {
            reason: "ApprovalStale",
            message,
            warning: true,
        },
        Next::InSync { message, requeue } => Outcome::Ready {
            reason: settled_reason(status, mode),
            message,
            requeue,
        },
    }
}

/// The reason of a settled `Ready`. A DriftOnly object is monitored, never applied:
/// `Monitoring` until its first drift check, then `InSync`, `OutOfSync` (its plan would
/// change something) or `Drifted` (something changed outside it).
fn settled_reason(status: &ObjectStatus, mode: Mode) -> &'static str {
    let pending = status.plan.as_ref().is_some_and(|p| p.pending);
    match (mode, status.drift.as_ref().map(|d| d.state)) {
        (Mode::DriftOnly, Some(DriftState::Drifted)) => "Drifted",
        (Mode::DriftOnly, _) if pending => "OutOfSync",
        (Mode::DriftOnly, Some(DriftState::InSync)) => "InSync",
        (Mode::DriftOnly, _) => "Monitoring",
        (Mode::Reconcile, _) if status.last_applied_revision.is_some() => "Applied",
        (Mode::Reconcile, _) => "UpToDate",
    }
}

/// How an object reads once `operation` started as run `run`, recorded in its status.
pub fn starting(
    status: &mut ObjectStatus,
    operation: Operation,
    run: &str,
    plan_id: Option<&str>,
    artifact: &ArtifactStatus,
    inputs: &str,
    now: Time,
) -> Outcome {
    let routine = routine(operation, status, artifact);
    status.run = Some(crate::api::RunStatus {
        name: run.to_string(),
        operation,
        phase: RunPhase::Running,
        started_at: Some(now),
        inputs: Some(inputs.to_string()).filter(|i| !i.is_empty()),
    });
    let revision = shown(&artifact.revision);
    let (reason, what) = match operation {
        Operation::Plan => ("Planning", format!("Planning revision {revision}")),
        Operation::Apply => (
            "Applying",
            format!(
                "Applying plan {} of revision {revision}",
                plan_id.unwrap_or("?")
            ),
        ),
        Operation::Destroy => (
            "Destroying",
            format!("Destroying what revision {revision} created"),
        ),
        Operation::Drift => (
            "CheckingDrift",
            format!("Checking revision {revision} for drift"),
        ),
    };
    let message = format!("{what} (run {run})");
    if routine {
        Outcome::Checking {
            reason,
            message,
            requeue: POLL,
        }
    } else {
        Outcome::Progressing {
            reason,
            message,
            requeue: POLL,
        }
    }
}

/// Whether a run of `operation` only looks again at what is settled: a plan or drift check of
/// the revision last planned, or the retry of a failure. Such runs leave `Ready` as it is
/// (see [`Outcome::Checking`]); a new revision's first plan, applies and destroys do not.
pub fn routine(operation: Operation, status: &ObjectStatus, artifact: &ArtifactStatus) -> bool {
    matches!(operation, Operation::Plan | Operation::Drift)
        && status
            .plan
            .as_ref()
            .and_then(|p| p.digest.as_deref())
            .map_or(status.failures > 0, |d| d == artifact.digest)
}

/// The facts of the spec that decide the next step.
pub struct Facts<'a> {
    pub approve: &'a ApprovePlan,
    pub mode: Mode,
    pub interval: Duration,
    /// Hash of the plan-shaping spec fields (see [`crate::controller::kinds::inputs_hash`]).
    pub inputs: &'a str,
    /// How often to check for drift (`spec.drift`, or always in DriftOnly mode).
    pub drift_every: Option<Duration>,
    /// A `reconcile.fluxcd.io/requestedAt` not yet handled: plan again now, as users of
    /// `flux reconcile` expect, unless a plan waits for approval (re-planning would void it).
    pub replan_requested: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Start a run.
    Run {
        operation: Operation,
        plan_id: Option<String>,
    },
    /// A pending plan waits for a person.
    AwaitApproval { message: String },
    /// `approvePlan` names another plan than the pending one.
    StaleApproval { message: String },
    /// Applied (or nothing to apply); look again after `requeue`.
    InSync { message: String, requeue: Duration },
}

/// A revision as messages (and so `kubectl get`) show it: its digest cut to 12 hex
/// characters (`v1@sha256:3f9a2c1d0e4b`); `status.artifact` keeps the whole.
pub fn shown(revision: &str) -> String {
    match revision.rsplit_once(':') {
        Some((head, hex)) if hex.len() > 12 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            format!("{head}:{}", &hex[..12])
        }
        _ => revision.to_string(),
    }
}

/// The first 12 characters of a plan ID, as messages show it.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

pub fn decide(
    status: &ObjectStatus,
    artifact: &ArtifactStatus,
    facts: &Facts,
    now: jiff::Timestamp,
) -> Next {
    let fresh = |p: &&crate::api::PlanStatus| {
        p.digest.as_deref() == Some(artifact.digest.as_str())
            && p.inputs.as_deref() == Some(facts.inputs)
            && (p.pending
                || (!facts.replan_requested && age(p.created_at.as_ref(), now) < facts.interval))
    };
    let Some(plan) = status.plan.as_ref().filter(fresh) else {
        return Next::Run {
            operation: Operation::Plan,
            plan_id: None,
        };
    };
    let counts = &plan.summary;
    let changes = format!("+{} ~{} -{}", counts.add, counts.change, counts.destroy);
    let since_check = age(
        status
            .drift
            .as_ref()
            .and_then(|d| d.last_checked_at.as_ref()),
        now,
    );
    let drift_due = facts.drift_every.is_some_and(|every| since_check >= every);
    let drift_wait = facts
        .drift_every
        .map(|every| every.saturating_sub(since_check));
    if drift_due && (!plan.pending || facts.mode == Mode::DriftOnly) {
        return Next::Run {
            operation: Operation::Drift,
            plan_id: None,
        };
    }
    if !plan.pending {
        let since = age(plan.created_at.as_ref(), now);
        let message = match (&status.last_applied_revision, facts.mode) {
            (_, Mode::DriftOnly) => match status.drift.as_ref() {
                Some(d) if d.state == DriftState::Drifted => format!(
                    "Monitoring revision {}: {} resource(s) drifted",
                    shown(&artifact.revision),
                    d.total
                ),
                Some(d) if d.state == DriftState::InSync => {
                    format!(
                        "Monitoring revision {}: no drift",
                        shown(&artifact.revision)
                    )
                }
                _ => format!("Monitoring revision {}", shown(&artifact.revision)),
            },
            (Some(r), Mode::Reconcile)
                if status.last_applied_digest.as_deref() == Some(artifact.digest.as_str()) =>
            {
                format!("Applied revision {}", shown(r))
            }
            _ => format!(
                "No changes to apply for revision {}",
                shown(&artifact.revision)
            ),
        };
        let replan = facts.interval.saturating_sub(since);
        return Next::InSync {
            message,
            requeue: drift_wait
                .map_or(replan, |d| d.min(replan))
                .max(Duration::from_secs(1)),
        };
    }
    if facts.mode == Mode::DriftOnly {
        return Next::InSync {
            message: format!(
                "Drift-only: plan {} ({changes}) is reported, never applied",
                short(&plan.id)
            ),
            requeue: drift_wait
                .map_or(facts.interval, |d| d.min(facts.interval))
                .max(Duration::from_secs(1)),
        };
    }
    if facts.approve.is_auto() {
        return Next::Run {
            operation: Operation::Apply,
            plan_id: Some(plan.id.clone()),
        };
    }
    match facts.approve.plan_prefix() {
        Some(prefix) if plan.id.starts_with(prefix) => Next::Run {
            operation: Operation::Apply,
            plan_id: Some(plan.id.clone()),
        },
        Some(prefix) => Next::StaleApproval {
            message: format!(
                "spec.approvePlan approves plan {prefix}, but the current plan is {} ({changes}); approve {} to apply it",
                short(&plan.id),
                short(&plan.id)
            ),
        },
        None => Next::AwaitApproval {
            message: format!(
                "Plan {} ({changes}) for revision {} waits for approval: set spec.approvePlan to {} or run `landform approve`",
                short(&plan.id),
                plan.revision.as_deref().unwrap_or("?"),
                short(&plan.id)
            ),
        },
    }
}

fn age(
    t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    now: jiff::Timestamp,
) -> Duration {
    // Never set: as old as can be. Set in the future (a clock ahead, a hand-edited status):
    // no age yet, not "infinitely old", which would make everything due at once.
    t.map_or(Duration::MAX, |t| {
        Duration::try_from(now.duration_since(t.0)).unwrap_or(Duration::ZERO)
    })
}

#[cfg(test)]
#[path = "due_tests.rs"]
mod tests;
