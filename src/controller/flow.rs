//! Runs of an object, for both kinds: read the result of the run in flight, then decide and
//! start the next one (plan, apply under the approval policy, drift check), one at a time.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;

use super::context::Context;
use super::depends;
use super::lifecycle::{self, Facts, Next};
use super::locks;
use super::outcome::Outcome;
use super::reports::{record_drift, surface_stack_events};
use super::runs::RunState;
use super::steps::Timing;
use super::work::{self, Runnable};
use crate::api::{
    ArtifactStatus, ConditionStatus, ConditionType, ObjectStatus, PlanStatus, RunStatus,
    set_condition,
};
use crate::runner::spec::{ArtifactRef, Operation, Owner, RunResult, RunSpec};

/// How often a run in flight is looked at.
const POLL: Duration = Duration::from_secs(2);

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Plan => "plan",
        Operation::Apply => "apply",
        Operation::Destroy => "destroy",
        Operation::Drift => "drift",
    }
}

/// Advances `status` (a working copy) by one step and says how the object stands. A run to
/// start is returned rather than started: the caller records it in status first, so that a
/// status write that fails can never lead to the same run being started twice.
pub async fn advance<K: Runnable>(
    obj: &K,
    status: &mut ObjectStatus,
    artifact: &ArtifactStatus,
    timing: &Timing,
    ctx: &Context,
) -> (Outcome, Option<RunSpec>) {
    let ns = obj.namespace().unwrap_or_default();
    let inputs = work::inputs_hash(obj);
    if let Some(outcome) = collect(obj, status, &inputs, ctx).await {
        return (outcome, None);
    }
    let common = obj.common();
    let drift_every = match (&common.drift, common.mode) {
        (Some(d), _) => Some(
            d.interval
                .as_ref()
                .map_or(timing.interval, |i| i.or(timing.interval)),
        ),
        (None, crate::api::Mode::DriftOnly) => Some(timing.interval),
        (None, _) => None,
    };
    let facts = Facts {
        approve: &common.approve_plan,
        mode: common.mode,
        interval: timing.interval,
        inputs: &inputs,
        drift_every,
        replan_requested: obj
            .annotations()
            .get(super::reconcile::REQUESTED_AT)
            .is_some_and(|r| status.last_handled_reconcile_at.as_ref() != Some(r)),
    };
    let next = lifecycle::decide(status, artifact, &facts, jiff::Timestamp::now());
    // Dependencies gate new runs only; a run in flight is always collected above.
    if matches!(next, Next::Run { .. })
        && let Some(why) = depends::first_unmet(&ns, &common.depends_on, ctx).await
    {
        let outcome = Outcome::Progressing {
            reason: "DependencyNotReady",
            message: why,
            requeue: timing.retry_interval,
        };
        return (outcome, None);
    }
    match next {
        Next::Run { operation, plan_id } => {
            // Apply uses exactly the artifact the plan was made from.
            let run_artifact = match (&operation, &status.plan) {
                (Operation::Apply, Some(p)) => ArtifactStatus {
                    url: artifact.url.clone(),
                    revision: p
                        .revision
                        .clone()
                        .unwrap_or_else(|| artifact.revision.clone()),
                    digest: p.digest.clone().unwrap_or_else(|| artifact.digest.clone()),
                },
                _ => artifact.clone(),
            };
            let spec = run_spec(obj, &ns, operation, plan_id, &run_artifact);
            if let Err(full) = ctx.runs.reserve(&ns, &spec.name) {
                let outcome = Outcome::Progressing {
                    reason: "WaitingForRunSlot",
                    message: full.to_string(),
                    requeue: Duration::from_secs(5),
                };
                return (outcome, None);
            }
            status.run = Some(RunStatus {
                name: spec.name.clone(),
                operation: op_name(operation).into(),
                phase: "Running".into(),
                started_at: Some(Time(jiff::Timestamp::now())),
            });
            let (reason, what) = match operation {
                Operation::Plan => (
                    "Planning",
                    format!("Planning revision {}", run_artifact.revision),
                ),
                Operation::Apply => (
                    "Applying",
                    format!(
                        "Applying plan {} of revision {}",
                        spec.plan_id.as_deref().unwrap_or("?"),
                        run_artifact.revision
                    ),
                ),
                Operation::Destroy => ("Destroying", "Destroying".to_string()),
                Operation::Drift => (
                    "CheckingDrift",
                    format!("Checking revision {} for drift", run_artifact.revision),
                ),
            };
            let outcome = Outcome::Progressing {
                reason,
                message: format!("{what} (run {})", spec.name),
                requeue: POLL,
            };
            (outcome, Some(spec))
        }
        Next::AwaitApproval { message } => (
            Outcome::Blocked {
                reason: "AwaitingApproval",
                message,
                warning: false,
            },
            None,
        ),
        Next::StaleApproval { message } => (
            Outcome::Blocked {
                reason: "ApprovalStale",
                message,
                warning: true,
            },
            None,
        ),
        Next::InSync { message, requeue } => (
            Outcome::Ready {
                reason: if status.last_applied_revision.is_some() {
                    "Applied"
                } else {
                    "UpToDate"
                },
                message,
                requeue,
            },
            None,
        ),
    }
}

/// On deletion with destroyOnDelete: destroy what was last applied, with exactly the artifact
/// that applied it. `(None, None)` once there is nothing (left) to destroy.
pub async fn teardown<K: Runnable>(
    obj: &K,
    status: &mut ObjectStatus,
    ctx: &Context,
) -> (Option<Outcome>, Option<RunSpec>) {
    if let Some(outcome) = collect(obj, status, "", ctx).await {
        return (Some(outcome), None);
    }
    let applied = match (&status.last_applied_url, &status.last_applied_digest) {
        (Some(url), Some(digest)) => Some(ArtifactStatus {
            url: url.clone(),
            revision: status
                .last_applied_revision
                .clone()
                .unwrap_or_else(|| digest.clone()),
            digest: digest.clone(),
        }),
        _ => None,
    };
    let artifact = match applied {
        Some(a) => a,
        // Deleting a stack needs only its name, and a plan alone can have created one (a
        // CREATE change set makes a stack that waits for review).
        None if !K::DESTROY_NEEDS_ARTIFACT && status.plan.is_some() => {
            status.artifact.clone().unwrap_or_default()
        }
        None => return (None, None),
    };
    let ns = obj.namespace().unwrap_or_default();
    let spec = run_spec(obj, &ns, Operation::Destroy, None, &artifact);
    if let Err(full) = ctx.runs.reserve(&ns, &spec.name) {
        let outcome = Outcome::Progressing {
            reason: "WaitingForRunSlot",
            message: full.to_string(),
            requeue: Duration::from_secs(5),
        };
        return (Some(outcome), None);
    }
    status.run = Some(RunStatus {
        name: spec.name.clone(),
        operation: op_name(Operation::Destroy).into(),
        phase: "Running".into(),
        started_at: Some(Time(jiff::Timestamp::now())),
    });
    let outcome = Outcome::Progressing {
        reason: "Destroying",
        message: format!(
            "Destroying what revision {} created (run {})",
            artifact.revision, spec.name
        ),
        requeue: POLL,
    };
    (Some(outcome), Some(spec))
}

/// If a run is in flight: its outcome while it runs or when it failed, or `None` once its
/// result has been taken into `status` (and the next step may be decided).
async fn collect<K: Runnable>(
    obj: &K,
    status: &mut ObjectStatus,
    inputs: &str,
    ctx: &Context,
) -> Option<Outcome> {
    let run = status.run.clone().filter(|r| r.phase == "Running")?;
    let ns = obj.namespace().unwrap_or_default();
    let state = ctx.runs.state(&ns, &run.name).await;
    let result = match read_result(ctx, &ns, &run.name).await {
        Ok(r) => r,
        Err(e) => {
            return Some(Outcome::Failed {
                reason: "RunResultUnreadable",
                message: e,
                retryable: true,
            });
        }
    };
    let lease = obj.state_lease();
    let Some(result) = result else {
        if state == RunState::Running {
            if let Some(lease) = &lease {
                status.lock = locks::observe(ctx, &ns, lease, &run.name).await;
            }
            return Some(Outcome::Progressing {
                reason: match run.operation.as_str() {
                    "apply" => "Applying",
                    "destroy" => "Destroying",
                    "drift" => "CheckingDrift",
                    _ => "Planning",
                },
                message: format!("Running {} (run {})", run.operation, run.name),
                requeue: POLL,
            });
        }
        set_phase(status, "Failed");
        count_run(ctx, K::KIND, &ns, &run.operation, "lost");
        let how = match &state {
            RunState::Ended(Some(detail)) => detail.clone(),
            _ => "its runner is gone".to_string(),
        };
        let mut message = format!("run {} ended without a result ({how})", run.name);
        // Its state lock would otherwise stay forever: release exactly the lock it held.
        if let (Some(lease), Some(lock)) = (&lease, status.lock.take()) {
            match locks::release(ctx, &ns, lease, &lock.id).await {
                Ok(true) => {
                    message.push_str(&format!("; released the state lock {} it held", lock.id));
                    let note = format!(
                        "Released state lock {} held by run {}, whose runner is gone",
                        lock.id, run.name
                    );
                    let event = super::outcome::EventSpec {
                        warning: true,
                        reason: "StateUnlocked".into(),
                        note,
                    };
                    super::reconcile::publish(ctx, obj, &event).await;
                }
                Ok(false) => {}
                Err(e) => {
                    message.push_str(&format!(
                        "; releasing its state lock {} failed: {e}",
                        lock.id
                    ));
                    status.lock = Some(lock);
                }
            }
        }
        return Some(Outcome::Failed {
            reason: "RunnerLost",
            message,
            retryable: true,
        });
    };
    status.lock = None;
    set_phase(
        status,
        if result.succeeded {
            "Succeeded"
        } else {
            "Failed"
        },
    );
    ctx.runs.finished(&ns, &run.name, result.succeeded).await;
    count_run(
        ctx,
        K::KIND,
        &ns,
        &run.operation,
        if result.succeeded {
            "succeeded"
        } else {
            "failed"
        },
    );
    surface_stack_events(obj, status, &result, ctx).await;
    if !result.succeeded {
        let message = result.message.clone().unwrap_or_default();
        let reason = known_reason(result.reason.as_deref());
        match run.operation.as_str() {
            "plan" => mark(
                status,
                ConditionType::Planned,
                ConditionStatus::False,
                reason,
                &message,
            ),
            "apply" => {
                mark(
                    status,
                    ConditionType::Applied,
                    ConditionStatus::False,
                    reason,
                    &message,
                );
                // A failed apply may have changed state; its saved plan is stale now.
                status.plan = None;
            }
            _ => {}
        }
        return Some(Outcome::Failed {
            reason: known_reason(result.reason.as_deref()),
            message: result
                .message
                .unwrap_or_else(|| format!("run {} failed", run.name)),
            retryable: true,
        });
    }
    let artifact = status.artifact.clone();
    match run.operation.as_str() {
        "plan" => {
            let summary = result.summary.unwrap_or_default();
            let changes = result.has_changes;
            let revision = artifact.as_ref().map(|a| a.revision.clone());
            let digest = artifact.as_ref().map(|a| a.digest.clone());
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
            let message = format!(
                "Plan {} for revision {}: +{} ~{} -{}",
                &id[..id.len().min(12)],
                revision.as_deref().unwrap_or("?"),
                summary.add,
                summary.change,
                summary.destroy
            );
            let reason = if changes { "PlanReady" } else { "NoChanges" };
            mark(
                status,
                ConditionType::Planned,
                ConditionStatus::True,
                reason,
                &message,
            );
            status.plan = Some(PlanStatus {
                id,
                pending: changes,
                revision,
                digest,
                inputs: Some(inputs.to_string()),
                created_at: Some(Time(jiff::Timestamp::now())),
                summary,
                resources: result.resources,
            });
        }
        "apply" => {
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
            );
            if let Some(plan) = status.plan.as_mut() {
                plan.pending = false;
                status.last_applied_revision = plan.revision.clone();
                status.last_applied_digest = plan.digest.clone();
                status.last_applied_url = artifact.as_ref().map(|a| a.url.clone());
            }
            status.outputs = result.outputs;
        }
        "drift" => {
            let report = result.drift.unwrap_or_default();
            record_drift(obj, status, report, ctx).await;
        }
        "destroy" => {
            status.last_applied_revision = None;
            status.last_applied_digest = None;
            status.last_applied_url = None;
            status.plan = None;
            status.outputs = vec![];
        }
        _ => {}
    }
    None
}

/// Counts a finished run.
fn count_run(ctx: &Context, kind: &'static str, ns: &str, operation: &str, result: &'static str) {
    let operation = match operation {
        "apply" => "apply",
        "destroy" => "destroy",
        "drift" => "drift",
        _ => "plan",
    };
    let labels = super::metrics::RunLabels {
        kind,
        namespace: ns.to_string(),
        operation,
        result,
    };
    ctx.metrics.runs.get_or_create(&labels).inc();
}

/// The Planned and Applied conditions record the last plan and apply, next to Ready.
pub(super) fn mark(
    status: &mut ObjectStatus,
    type_: ConditionType,
    st: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let now = Time(jiff::Timestamp::now());
    let generation = status.observed_generation;
    set_condition(
        &mut status.conditions,
        type_,
        st,
        reason,
        message,
        generation,
        now,
    );
}

fn set_phase(status: &mut ObjectStatus, phase: &str) {
    if let Some(run) = status.run.as_mut() {
        run.phase = phase.into();
    }
}

/// The runner's reasons, as static strings for conditions and bounded metric labels; anything
/// else (a newer runner) is reported as RunFailed.
fn known_reason(reason: Option<&str>) -> &'static str {
    reason
        .and_then(crate::runner::execute::known_reason)
        .unwrap_or("RunFailed")
}

async fn read_result(ctx: &Context, ns: &str, run: &str) -> Result<Option<RunResult>, String> {
    let name = format!("{run}-result");
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name}: {e}"))?;
    let Some(data) = secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove("result.json"))
    else {
        return Ok(None);
    };
    serde_json::from_slice(&data.0)
        .map(Some)
        .map_err(|e| format!("Secret {ns}/{name} holds no valid result: {e}"))
}

fn run_spec<K: Runnable>(
    obj: &K,
    ns: &str,
    operation: Operation,
    plan_id: Option<String>,
    artifact: &ArtifactStatus,
) -> RunSpec {
    let name = obj.name_any();
    let suffix = &crate::source::digest::sha256(
        format!("{:?}{}", obj.uid(), jiff::Timestamp::now()).as_bytes(),
    )
    .hex[..6];
    let stem: String = name.chars().take(40).collect();
    let oci = obj.common().source.as_ref().map(|s| &s.oci);
    RunSpec {
        name: format!("{stem}-{}-{suffix}", op_name(operation)),
        namespace: ns.to_string(),
        owner: Owner {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            name,
            uid: obj.uid().unwrap_or_default(),
        },
        operation,
        artifact: ArtifactRef {
            url: artifact.url.clone(),
            digest: artifact.digest.clone(),
            revision: artifact.revision.clone(),
            insecure: oci.is_some_and(|o| o.insecure),
            layer_media_type: oci.and_then(|o| o.layer_media_type.clone()),
            secret_ref: oci.and_then(|o| o.secret_ref.as_ref().map(|r| r.name.clone())),
        },
        work: obj.work(ns),
        plan_id,
        outputs_secret: obj.common().write_outputs_to_secret.clone(),
    }
}
