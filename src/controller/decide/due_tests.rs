//! Table tests of [`super`].

use super::*;
use crate::api::{PlanStatus, PlanSummary};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn at(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(s).unwrap()
}

fn artifact() -> ArtifactStatus {
    ArtifactStatus {
        url: "oci://r/x".into(),
        revision: "1.0.0@sha256:aa".into(),
        digest: "sha256:aa".into(),
    }
}

fn pending(id: &str) -> ObjectStatus {
    ObjectStatus {
        plan: Some(PlanStatus {
            id: id.into(),
            pending: true,
            revision: Some("1.0.0@sha256:aa".into()),
            digest: Some("sha256:aa".into()),
            inputs: Some("in".into()),
            created_at: Some(Time(at(100))),
            summary: PlanSummary {
                add: 2,
                change: 0,
                destroy: 0,
            },
            resources: vec![],
        }),
        ..Default::default()
    }
}

fn facts(approve: &ApprovePlan) -> Facts<'_> {
    Facts {
        approve,
        mode: Mode::Reconcile,
        interval: Duration::from_secs(600),
        inputs: "in",
        drift_every: None,
        replan_requested: false,
    }
}

#[test]
fn plans_first_and_again_when_artifact_or_inputs_change() {
    let manual = ApprovePlan::default();
    let plan = Next::Run {
        operation: Operation::Plan,
        plan_id: None,
    };
    assert_eq!(
        decide(
            &ObjectStatus::default(),
            &artifact(),
            &facts(&manual),
            at(100)
        ),
        plan
    );
    let mut other = artifact();
    other.digest = "sha256:bb".into();
    assert_eq!(
        decide(
            &pending("3f9a2c1d0e4b5a6c"),
            &other,
            &facts(&manual),
            at(100)
        ),
        plan
    );
    let changed = Facts {
        inputs: "changed",
        ..facts(&manual)
    };
    assert_eq!(
        decide(&pending("3f9a2c1d0e4b5a6c"), &artifact(), &changed, at(100)),
        plan
    );
}

#[test]
fn a_reconcile_request_replans_unless_a_plan_awaits_approval() {
    let manual = ApprovePlan::default();
    let requested = Facts {
        replan_requested: true,
        ..facts(&manual)
    };
    let mut applied = pending("3f9a2c1d0e4b5a6c");
    applied.plan.as_mut().unwrap().pending = false;
    assert!(matches!(
        decide(&applied, &artifact(), &facts(&manual), at(110)),
        Next::InSync { .. }
    ));
    assert_eq!(
        decide(&applied, &artifact(), &requested, at(110)),
        Next::Run {
            operation: Operation::Plan,
            plan_id: None,
        }
    );
    assert!(matches!(
        decide(
            &pending("3f9a2c1d0e4b5a6c"),
            &artifact(),
            &requested,
            at(110)
        ),
        Next::AwaitApproval { .. }
    ));
}

#[test]
fn approval_policies() {
    let s = pending("3f9a2c1d0e4b5a6c");
    let apply = Next::Run {
        operation: Operation::Apply,
        plan_id: Some("3f9a2c1d0e4b5a6c".into()),
    };
    assert_eq!(
        decide(
            &s,
            &artifact(),
            &facts(&ApprovePlan("auto".into())),
            at(200)
        ),
        apply
    );
    assert_eq!(
        decide(
            &s,
            &artifact(),
            &facts(&ApprovePlan("3f9a2c".into())),
            at(200)
        ),
        apply
    );
    match decide(&s, &artifact(), &facts(&ApprovePlan::default()), at(200)) {
        Next::AwaitApproval { message } => assert!(
            message.contains("3f9a2c1d0e4b") && message.contains("+2 ~0 -0"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    match decide(
        &s,
        &artifact(),
        &facts(&ApprovePlan("abcdef".into())),
        at(200),
    ) {
        Next::StaleApproval { message } => assert!(
            message.contains("approves plan abcdef") && message.contains("approve 3f9a2c1d0e4b"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_applied_plan_is_in_sync_until_the_interval_passes() {
    let mut s = pending("3f9a2c1d0e4b5a6c");
    s.plan.as_mut().unwrap().pending = false;
    s.last_applied_revision = Some("1.0.0@sha256:aa".into());
    s.last_applied_digest = Some("sha256:aa".into());
    match decide(&s, &artifact(), &facts(&ApprovePlan::default()), at(200)) {
        Next::InSync { message, requeue } => {
            assert_eq!(message, "Applied revision 1.0.0@sha256:aa");
            assert_eq!(requeue, Duration::from_secs(500));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide(&s, &artifact(), &facts(&ApprovePlan::default()), at(700)),
        Next::Run {
            operation: Operation::Plan,
            plan_id: None
        }
    );
}

#[test]
fn drift_checks_when_due_and_only_when_nothing_waits_to_be_applied() {
    let mut s = pending("3f9a2c1d0e4b5a6c");
    let auto = ApprovePlan("auto".into());
    let f = Facts {
        drift_every: Some(Duration::from_secs(60)),
        ..facts(&auto)
    };
    // A pending plan in Reconcile mode is applied first.
    assert_eq!(
        decide(&s, &artifact(), &f, at(200)),
        Next::Run {
            operation: Operation::Apply,
            plan_id: Some("3f9a2c1d0e4b5a6c".into())
        }
    );
    s.plan.as_mut().unwrap().pending = false;
    let drift = Next::Run {
        operation: Operation::Drift,
        plan_id: None,
    };
    assert_eq!(decide(&s, &artifact(), &f, at(200)), drift);
    s.drift = Some(crate::api::DriftStatus {
        last_checked_at: Some(Time(at(190))),
        ..Default::default()
    });
    match decide(&s, &artifact(), &f, at(200)) {
        Next::InSync { requeue, .. } => assert_eq!(requeue, Duration::from_secs(50)),
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&s, &artifact(), &f, at(250)), drift);
}

#[test]
fn drift_only_never_applies() {
    let s = pending("3f9a2c1d0e4b5a6c");
    let auto = ApprovePlan("auto".into());
    let f = Facts {
        mode: Mode::DriftOnly,
        ..facts(&auto)
    };
    assert!(matches!(
        decide(&s, &artifact(), &f, at(200)),
        Next::InSync { .. }
    ));
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(30),
        cap: Duration::from_secs(600),
        max_retries: 3,
        seed: 10, // no jitter
    }
}

fn failed_once_at(s: i64) -> ObjectStatus {
    super::outcome::settle(
        None,
        Some(1),
        Outcome::Failed {
            reason: "PlanFailed",
            message: "boom".into(),
            retryable: true,
        },
        &policy(),
        Time(at(s)),
    )
    .status
}

fn stalled_status() -> ObjectStatus {
    super::outcome::settle(
        None,
        Some(1),
        Outcome::Failed {
            reason: "InvalidSpec",
            message: "bad".into(),
            retryable: false,
        },
        &policy(),
        Time(at(0)),
    )
    .status
}

#[test]
fn the_gates() {
    let failed = failed_once_at(100);
    let stalled = stalled_status();
    let cases: [(&str, Option<&ObjectStatus>, i64, bool, Gate); 7] = [
        ("new object", None, 1, false, Gate::Open),
        (
            "backing off",
            Some(&failed),
            1,
            false,
            Gate::BackingOff(Duration::from_secs(20)),
        ),
        ("backoff over", Some(&failed), 1, false, Gate::Open),
        ("new generation", Some(&failed), 2, false, Gate::Open),
        ("requested", Some(&failed), 1, true, Gate::Open),
        ("stalled", Some(&stalled), 1, false, Gate::Stalled),
        (
            "stalled, new generation",
            Some(&stalled),
            2,
            false,
            Gate::Open,
        ),
    ];
    for (i, (name, status, generation, requested, want)) in cases.into_iter().enumerate() {
        // The third case looks after the backoff ran out.
        let now = if i == 2 { at(131) } else { at(110) };
        assert_eq!(
            gate(status, Some(generation), &policy(), requested, now),
            want,
            "{name}"
        );
    }
}

#[test]
fn the_source_is_pinned_only_while_a_run_is_in_flight() {
    let mut s = pending("3f9a2c1d0e4b5a6c");
    s.artifact = Some(artifact());
    assert_eq!(pinned_artifact(&s), None, "no run: resolve");
    s.run = Some(crate::api::RunStatus {
        phase: RunPhase::Running,
        ..Default::default()
    });
    assert_eq!(pinned_artifact(&s), Some(&artifact()));
    s.run.as_mut().unwrap().phase = RunPhase::Succeeded;
    assert_eq!(pinned_artifact(&s), None, "collected: resolve again");
}

#[test]
fn how_often_drift_is_checked() {
    let timing = Timing {
        interval: Duration::from_secs(600),
        retry_interval: Duration::from_secs(30),
        max_retries: 3,
    };
    let spec = |extra: serde_json::Value| -> CommonSpec {
        let mut v = serde_json::json!({"interval": "10m", "sourceRef": {"kind": "GitRepository", "name": "x"}});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    };
    let cases = [
        (serde_json::json!({}), None),
        (serde_json::json!({"mode": "DriftOnly"}), Some(600)),
        (serde_json::json!({"drift": {}}), Some(600)),
        (serde_json::json!({"drift": {"interval": "1m"}}), Some(60)),
    ];
    for (extra, want) in cases {
        assert_eq!(
            drift_every(&spec(extra.clone()), &timing),
            want.map(Duration::from_secs),
            "{extra}"
        );
    }
}

#[test]
fn which_artifact_a_run_uses() {
    let mut s = pending("3f9a2c1d0e4b5a6c");
    let mut newer = artifact();
    newer.digest = "sha256:cc".into();
    newer.revision = "3@sha256:cc".into();
    // An apply uses exactly what its plan was made from; anything else the current one.
    assert_eq!(
        run_artifact(Operation::Apply, &s, &newer).digest,
        "sha256:aa"
    );
    assert_eq!(run_artifact(Operation::Plan, &s, &newer), newer);
    assert_eq!(run_artifact(Operation::Drift, &s, &newer), newer);

    // A destroy uses what applied, or nothing when nothing was applied ...
    assert_eq!(destroy_artifact(&s, true), None);
    s.last_applied_url = Some("oci://r/x".into());
    s.last_applied_digest = Some("sha256:aa".into());
    assert_eq!(destroy_artifact(&s, true).unwrap().digest, "sha256:aa");
    // ... but a stack that a plan may have created is destroyed all the same.
    let planned_only = pending("3f9a2c1d0e4b5a6c");
    assert!(destroy_artifact(&planned_only, false).is_some());
    assert_eq!(destroy_artifact(&ObjectStatus::default(), false), None);
}

#[test]
fn a_started_run_is_recorded_and_reads_as_progressing() {
    let mut s = ObjectStatus::default();
    let out = starting(
        &mut s,
        Operation::Apply,
        "vpc-apply-1",
        Some("3f9a2c1d0e4b"),
        &artifact(),
        "in",
        Time(at(5)),
    );
    let run = s.run.unwrap();
    assert_eq!(
        (run.operation, run.phase),
        (Operation::Apply, RunPhase::Running)
    );
    assert_eq!(run.inputs.as_deref(), Some("in"));
    assert_eq!(
        out,
        Outcome::Progressing {
            reason: "Applying",
            message: "Applying plan 3f9a2c1d0e4b of revision 1.0.0@sha256:aa (run vpc-apply-1)"
                .into(),
            requeue: POLL,
        }
    );
}

#[test]
fn waiting_outcomes() {
    let cases = [
        (
            Next::AwaitApproval {
                message: "m".into(),
            },
            "AwaitingApproval",
        ),
        (
            Next::StaleApproval {
                message: "m".into(),
            },
            "ApprovalStale",
        ),
        (
            Next::InSync {
                message: "m".into(),
                requeue: POLL,
            },
            "UpToDate",
        ),
    ];
    for (next, want) in cases {
        let reason = match waiting(next, &ObjectStatus::default(), Mode::Reconcile) {
            Outcome::Blocked { reason, .. } | Outcome::Ready { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason, want);
    }
}

#[test]
fn short_ids_never_split_a_character() {
    assert_eq!(short("3f9a2c1d0e4b5a6c"), "3f9a2c1d0e4b");
    assert_eq!(short("é".repeat(20).as_str()), "é".repeat(12));
}

#[test]
fn a_timestamp_in_the_future_is_no_age_not_infinitely_old() {
    let mut s = pending("3f9a2c1d0e4b5a6c");
    s.plan.as_mut().unwrap().pending = false;
    s.plan.as_mut().unwrap().created_at = Some(Time(at(10_000)));
    // Planned "in the future": not due for a new plan; looks again within the interval.
    match decide(&s, &artifact(), &facts(&ApprovePlan::default()), at(100)) {
        Next::InSync { requeue, .. } => assert_eq!(requeue, Duration::from_secs(600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn revisions_show_twelve_hex_characters_of_their_digest() {
    let hex = "0123456789abcdef".repeat(4);
    assert_eq!(shown(&format!("v1@sha256:{hex}")), "v1@sha256:0123456789ab");
    assert_eq!(shown(&format!("sha256:{hex}")), "sha256:0123456789ab");
    assert_eq!(
        shown("main@sha1:0123456789abcdef0123"),
        "main@sha1:0123456789ab"
    );
    for kept in ["1.0.0@sha256:aa", "1.2.0", "v:notahexdigest-xyz", "ré:é"] {
        assert_eq!(shown(kept), kept);
    }
}

#[test]
fn drift_only_objects_read_as_monitored_never_as_applied() {
    let in_sync = || Next::InSync {
        message: "m".into(),
        requeue: POLL,
    };
    let reason = |status: &ObjectStatus| match waiting(in_sync(), status, Mode::DriftOnly) {
        Outcome::Ready { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    let mut status = ObjectStatus::default();
    assert_eq!(reason(&status), "Monitoring");
    status.drift = Some(crate::api::DriftStatus {
        state: crate::api::DriftState::InSync,
        ..Default::default()
    });
    assert_eq!(reason(&status), "InSync");
    status.plan = Some(crate::api::PlanStatus {
        pending: true,
        ..Default::default()
    });
    assert_eq!(reason(&status), "OutOfSync");
    status.drift.as_mut().unwrap().state = crate::api::DriftState::Drifted;
    assert_eq!(reason(&status), "Drifted");
    // Even with a lastAppliedRevision from elsewhere, DriftOnly never reads as applied.
    status.last_applied_revision = Some("1".into());
    status.drift = None;
    status.plan = None;
    assert_eq!(reason(&status), "Monitoring");
}
