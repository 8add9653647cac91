//! Table tests of [`super`].

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
        Some(
            Outcome::Failed { reason, .. }
            | Outcome::Progressing { reason, .. }
            | Outcome::Checking { reason, .. },
        ) => Some(*reason),
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
            phase: RunPhase::Failed,
            ended: Some("failed"),
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

#[test]
fn a_lock_is_the_runs_only_by_its_host_or_its_time() {
    let started = Time(jiff::Timestamp::from_second(1_000).unwrap());
    let info = |who: &str, created: &str| {
        serde_json::json!({"ID": "x", "Who": who, "Created": created}).to_string()
    };
    // In a pod: the host is the run.
    let pod = info("runner@vpc-apply-1", "1970-01-01T00:00:01Z");
    assert!(lock_is_the_runs(Some(&pod), "vpc-apply-1", Some(&started)));
    // A local run: taken after the run started.
    let after = info("root@host", "1970-01-01T00:16:50Z");
    assert!(lock_is_the_runs(
        Some(&after),
        "vpc-apply-1",
        Some(&started)
    ));
    // Someone else's, taken before the run started, or unreadable: not the run's.
    let before = info("root@host", "1970-01-01T00:10:00Z");
    assert!(!lock_is_the_runs(
        Some(&before),
        "vpc-apply-1",
        Some(&started)
    ));
    assert!(!lock_is_the_runs(
        Some("garbage"),
        "vpc-apply-1",
        Some(&started)
    ));
    assert!(!lock_is_the_runs(None, "vpc-apply-1", Some(&started)));
}

#[test]
fn a_drift_only_plan_without_changes_applies_nothing() {
    let mut drift_only = spec();
    drift_only.mode = crate::api::Mode::DriftOnly;
    let mut status = running(Operation::Plan);
    let c = collect(
        &mut status,
        &drift_only,
        &WORDING,
        "in",
        found(RunState::Unknown, ok(|r| r.plan_id = Some("ab".into()))),
        at(10),
    );
    assert_eq!(c.taken, Some(true));
    assert!(!status.plan.as_ref().unwrap().pending);
    assert_eq!(status.last_applied_revision, None);
    assert_eq!(status.last_applied_digest, None);
    assert_eq!(condition(&status, ConditionType::Planned).1, "NoChanges");
}

#[test]
fn looking_at_a_run_in_flight_keeps_the_words_it_started_with() {
    let mut status = running(Operation::Drift);
    crate::controller::decide::outcome::mark(
        &mut status,
        ConditionType::Reconciling,
        ConditionStatus::True,
        "CheckingDrift",
        "Checking revision 2 for drift (run vpc-drift-1)",
        at(1),
    );
    let c = collect(
        &mut status,
        &spec(),
        &WORDING,
        "in",
        found(RunState::Running, None),
        at(10),
    );
    match c.outcome {
        Some(Outcome::Checking { message, .. }) => {
            assert_eq!(message, "Checking revision 2 for drift (run vpc-drift-1)")
        }
        other => panic!("{other:?}"),
    }
}
