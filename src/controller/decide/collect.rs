//! What the run in flight means for the object, once the controller has looked at it: still
//! running, finished (its result taken into status: plan, apply, drift report, destroy),
//! failed, or lost (it ended without a result, and the state lock it held is released).
//! Pure: what was found comes in; status changes, events and what to count go out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::drift::{self, Wording};
use super::due::{POLL, short};
use super::outcome::{EventSpec, Outcome, mark};
use crate::api::{
    CommonSpec, ConditionStatus, ConditionType, LockStatus, ObjectStatus, Operation, PlanStatus,
    RunPhase,
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
    /// Who holds the state lock now, as status should show it while the run goes.
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
        Err(message) => {
            return Collected {
                outcome: Some(Outcome::Failed {
                    reason: "RunResultUnreadable",
                    message,
                    retryable: true,
                }),
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
            return Collected {
                outcome: Some(Outcome::Progressing {
                    reason,
                    message: format!("Running {} (run {})", run.operation, run.name),
                    requeue: POLL,
                }),
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
            took_plan(status, result, made_from != inputs, made_from, now);
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
    now: Time,
) {
    let summary = result.summary.unwrap_or_default();
    let changes = result.has_changes;
    let artifact = status.artifact.clone();
    let revision = artifact.as_ref().map(|a| a.revision.clone());
    let digest = artifact.as_ref().map(|a| a.digest.clone());
    // No changes means the infrastructure matches what this artifact describes, whichever
    // inputs the plan was made from.
    if !changes {
        status.last_applied_revision = revision.clone();
        status.last_applied_digest = digest.clone();
        status.last_applied_url = artifact.as_ref().map(|a| a.url.clone());
        // Engines that read outputs without applying (a stack adopted as it is) report them.
        if !result.outputs.is_empty() {
            status.outputs = result.outputs;
        }
    }
    let id = result.plan_id.unwrap_or_default();
    let mut message = format!(
        "Plan {} for revision {}: +{} ~{} -{}",
        short(&id),
        revision.as_deref().unwrap_or("?"),
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
        artifact
            .as_ref()
            .map(|a| a.revision.as_str())
            .unwrap_or("?")
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
mod tests {
    use super::*;
    use crate::api::{ArtifactStatus, PlanSummary, RunStatus, StackEvent, find_condition};
    use crate::contract::DriftReport;

    const WORDING: Wording = Wording {
        changed_outside: "OpenTofu",
        desired: "the state",
    };

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn spec() -> CommonSpec {
        serde_json::from_value(serde_json::json!({
            "interval": "10m", "sourceRef": {"kind": "GitRepository", "name": "infra"},
        }))
        .unwrap()
    }

    fn lock(id: &str) -> LockStatus {
        LockStatus {
            id: id.into(),
            holder_run: "vpc-apply-1".into(),
            since: None,
        }
    }

    /// An object whose `operation` run is in flight, started with inputs "in".
    fn running(operation: Operation) -> ObjectStatus {
        ObjectStatus {
            artifact: Some(ArtifactStatus {
                url: "oci://r/x".into(),
                revision: "2@sha256:bb".into(),
                digest: "sha256:bb".into(),
            }),
            plan: Some(PlanStatus {
                id: "3f9a2c1d0e4b5a6c".into(),
                pending: true,
                revision: Some("2@sha256:bb".into()),
                digest: Some("sha256:bb".into()),
                inputs: Some("in".into()),
                ..Default::default()
            }),
            run: Some(RunStatus {
                name: format!("vpc-{operation}-1"),
                operation,
                phase: RunPhase::Running,
                started_at: Some(at(1)),
                inputs: Some("in".into()),
            }),
            ..Default::default()
        }
    }

    fn found(state: RunState, result: Option<RunResult>) -> Found {
        Found {
            state,
            result: Ok(result),
            lock: None,
            released: None,
        }
    }

    fn ok(f: impl FnOnce(&mut RunResult)) -> Option<RunResult> {
        let mut r = RunResult {
            succeeded: true,
            ..Default::default()
        };
        f(&mut r);
        Some(r)
    }

    fn failed(reason: &str) -> Option<RunResult> {
        Some(RunResult {
            succeeded: false,
            reason: Some(reason.into()),
            message: Some("boom".into()),
            ..Default::default()
        })
    }

    fn phase(s: &ObjectStatus) -> RunPhase {
        s.run.as_ref().unwrap().phase
    }

    fn condition(s: &ObjectStatus, t: ConditionType) -> (String, String, String) {
        let c = find_condition(&s.conditions, t).expect("condition");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn outcome_reason(c: &Collected) -> Option<&'static str> {
        match &c.outcome {
            Some(Outcome::Failed { reason, .. } | Outcome::Progressing { reason, .. }) => {
                Some(*reason)
            }
            Some(other) => panic!("{other:?}"),
            None => None,
        }
    }

    #[test]
    fn each_way_a_run_ends() {
        struct Case {
            name: &'static str,
            operation: Operation,
            found: Found,
            outcome: Option<&'static str>,
            phase: RunPhase,
            ended: Option<&'static str>,
            check: fn(&ObjectStatus, &Collected),
        }
        let cases = [
            Case {
                name: "still running",
                operation: Operation::Plan,
                found: found(RunState::Running, None),
                outcome: Some("Planning"),
                phase: RunPhase::Running,
                ended: None,
                check: |_, c| assert_eq!(c.taken, None),
            },
            Case {
                name: "plan succeeded with changes",
                operation: Operation::Plan,
                found: found(
                    RunState::Ended(None),
                    ok(|r| {
                        r.plan_id = Some("aaaabbbbccccdddd".into());
                        r.has_changes = true;
                        r.summary = Some(PlanSummary {
                            add: 2,
                            change: 0,
                            destroy: 1,
                        });
                    }),
                ),
                outcome: None,
                phase: RunPhase::Succeeded,
                ended: Some("succeeded"),
                check: |s, c| {
                    let plan = s.plan.as_ref().unwrap();
                    assert_eq!(plan.id, "aaaabbbbccccdddd");
                    assert!(plan.pending);
                    assert_eq!(plan.inputs.as_deref(), Some("in"));
                    let (st, reason, message) = condition(s, ConditionType::Planned);
                    assert_eq!((st.as_str(), reason.as_str()), ("True", "PlanReady"));
                    assert_eq!(
                        message,
                        "Plan aaaabbbbcccc for revision 2@sha256:bb: +2 ~0 -1"
                    );
                    assert_eq!(s.last_applied_digest, None);
                    assert_eq!(c.taken, Some(true));
                },
            },
            Case {
                name: "plan without changes counts as applied",
                operation: Operation::Plan,
                found: found(RunState::Unknown, ok(|r| r.plan_id = Some("ab".into()))),
                outcome: None,
                phase: RunPhase::Succeeded,
                ended: Some("succeeded"),
                check: |s, _| {
                    assert!(!s.plan.as_ref().unwrap().pending);
                    assert_eq!(s.last_applied_digest.as_deref(), Some("sha256:bb"));
                    assert_eq!(condition(s, ConditionType::Planned).1, "NoChanges");
                },
            },
            Case {
                name: "apply succeeded",
                operation: Operation::Apply,
                found: found(
                    RunState::Ended(None),
                    ok(|r| r.outputs = vec!["vpc_id".into()]),
                ),
                outcome: None,
                phase: RunPhase::Succeeded,
                ended: Some("succeeded"),
                check: |s, _| {
                    assert!(!s.plan.as_ref().unwrap().pending);
                    assert_eq!(s.last_applied_revision.as_deref(), Some("2@sha256:bb"));
                    assert_eq!(s.outputs, ["vpc_id"]);
                    assert_eq!(condition(s, ConditionType::Applied).1, "ApplySucceeded");
                },
            },
            Case {
                name: "plan failed",
                operation: Operation::Plan,
                found: found(RunState::Ended(None), failed("PlanFailed")),
                outcome: Some("PlanFailed"),
                phase: RunPhase::Failed,
                ended: Some("failed"),
                check: |s, c| {
                    let (st, reason, message) = condition(s, ConditionType::Planned);
                    assert_eq!((st.as_str(), reason.as_str()), ("False", "PlanFailed"));
                    assert_eq!(message, "boom");
                    assert_eq!(c.taken, Some(false));
                },
            },
            Case {
                name: "apply failed: its plan is stale",
                operation: Operation::Apply,
                found: found(RunState::Ended(None), failed("ApplyFailed")),
                outcome: Some("ApplyFailed"),
                phase: RunPhase::Failed,
                ended: Some("failed"),
                check: |s, _| {
                    assert!(s.plan.is_none());
                    assert_eq!(condition(s, ConditionType::Applied).1, "ApplyFailed");
                },
            },
            Case {
                name: "a reason no runner gives",
                operation: Operation::Drift,
                found: found(RunState::Ended(None), failed("<script>")),
                outcome: Some("RunFailed"),
                phase: RunPhase::Failed,
                ended: Some("failed"),
                check: |_, _| {},
            },
            Case {
                name: "lost without a lock",
                operation: Operation::Plan,
                found: found(
                    RunState::Ended(Some("pod x: DeadlineExceeded".into())),
                    None,
                ),
                outcome: Some("RunnerLost"),
                phase: RunPhase::Failed,
                ended: Some("lost"),
                check: |_, c| match &c.outcome {
                    Some(Outcome::Failed { message, .. }) => assert_eq!(
                        message,
                        "run vpc-plan-1 ended without a result (pod x: DeadlineExceeded)"
                    ),
                    other => panic!("{other:?}"),
                },
            },
            Case {
                name: "unreadable result",
                operation: Operation::Apply,
                found: Found {
                    result: Err("Secret holds no valid result".into()),
                    ..found(RunState::Ended(None), None)
                },
                outcome: Some("RunResultUnreadable"),
                phase: RunPhase::Running,
                ended: None,
                check: |_, _| {},
            },
        ];
        for case in cases {
            let mut status = running(case.operation);
            let c = collect(&mut status, &spec(), &WORDING, "in", case.found, at(10));
            assert_eq!(outcome_reason(&c), case.outcome, "{}", case.name);
            assert_eq!(phase(&status), case.phase, "{}", case.name);
            assert_eq!(c.ended.map(|e| e.1), case.ended, "{}", case.name);
            (case.check)(&status, &c);
        }
    }

    #[test]
    fn a_run_holding_the_lock_shows_it_and_a_lost_one_releases_it() {
        // While it runs, status shows who holds the lock.
        let mut status = running(Operation::Apply);
        let c = collect(
            &mut status,
            &spec(),
            &WORDING,
            "in",
            Found {
                lock: Some(lock("tofu-lock-1")),
                ..found(RunState::Running, None)
            },
            at(5),
        );
        assert_eq!(outcome_reason(&c), Some("Applying"));
        assert_eq!(status.lock, Some(lock("tofu-lock-1")));

        // Its runner is gone: release exactly that lock, and say so.
        assert_eq!(
            lock_to_release(&status, &RunState::Unknown, false),
            Some("tofu-lock-1")
        );
        assert_eq!(lock_to_release(&status, &RunState::Running, false), None);
        assert_eq!(lock_to_release(&status, &RunState::Unknown, true), None);
        let mut released = status.clone();
        let c = collect(
            &mut released,
            &spec(),
            &WORDING,
            "in",
            Found {
                released: Some(Ok(true)),
                ..found(RunState::Unknown, None)
            },
            at(6),
        );
        assert_eq!(released.lock, None);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].reason, "StateUnlocked");
        assert!(c.events[0].note.contains("tofu-lock-1"));

        // The release failed: the lock stays recorded, and the message says why.
        let mut kept = status.clone();
        let c = collect(
            &mut kept,
            &spec(),
            &WORDING,
            "in",
            Found {
                released: Some(Err("forbidden".into())),
                ..found(RunState::Unknown, None)
            },
            at(6),
        );
        assert_eq!(kept.lock, Some(lock("tofu-lock-1")));
        assert!(c.events.is_empty());
        match c.outcome {
            Some(Outcome::Failed { message, .. }) => {
                assert!(message.ends_with("releasing its state lock tofu-lock-1 failed: forbidden"))
            }
            other => panic!("{other:?}"),
        }

        // Someone else holds it now: nothing of ours to release, no event.
        let mut gone = status;
        let c = collect(
            &mut gone,
            &spec(),
            &WORDING,
            "in",
            Found {
                released: Some(Ok(false)),
                ..found(RunState::Unknown, None)
            },
            at(6),
        );
        assert_eq!(gone.lock, None);
        assert!(c.events.is_empty());
    }

    #[test]
    fn a_plan_made_from_a_spec_that_changed_meanwhile_is_superseded() {
        let mut status = running(Operation::Plan);
        let result = ok(|r| {
            r.plan_id = Some("aaaabbbbccccdddd".into());
            r.has_changes = true;
        });
        let c = collect(
            &mut status,
            &spec(),
            &WORDING,
            "changed",
            found(RunState::Ended(None), result),
            at(10),
        );
        assert_eq!(c.outcome, None);
        // Recorded with the inputs it was made from, so what is due next is a new plan.
        assert_eq!(status.plan.as_ref().unwrap().inputs.as_deref(), Some("in"));
        assert!(
            condition(&status, ConditionType::Planned)
                .2
                .contains("superseded")
        );
    }

    #[test]
    fn nothing_in_flight_is_nothing_to_collect() {
        let mut status = running(Operation::Plan);
        status.run.as_mut().unwrap().phase = RunPhase::Succeeded;
        let before = status.clone();
        let c = collect(
            &mut status,
            &spec(),
            &WORDING,
            "in",
            found(RunState::Unknown, None),
            at(10),
        );
        assert_eq!(c, Collected::default());
        assert_eq!(status, before);
    }

    #[test]
    fn drift_and_stack_events_become_events_and_metrics() {
        let mut status = running(Operation::Drift);
        let result = ok(|r| {
            r.drift = Some(DriftReport {
                total: 1,
                resources: vec![crate::api::ResourceChange {
                    address: "local_file.a".into(),
                    action: "delete".into(),
                    ..Default::default()
                }],
                limits: None,
            });
            r.notes = vec!["recreated stack".into()];
            r.events = vec![StackEvent {
                resource: "Queue".into(),
                resource_type: Some("AWS::SQS::Queue".into()),
                status: "CREATE_FAILED".into(),
                reason: Some("denied".into()),
                ..Default::default()
            }];
        });
        let c = collect(
            &mut status,
            &spec(),
            &WORDING,
            "in",
            found(RunState::Ended(None), result),
            at(10),
        );
        assert_eq!(c.drift, Some((1, true)));
        let reasons: Vec<_> = c.events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["StackRecovered", "ResourceFailed", "DriftDetected"]
        );
        assert_eq!(status.stack_events.len(), 1);
        assert_eq!(
            condition(&status, ConditionType::Drifted).1,
            "DriftDetected"
        );
    }
}
