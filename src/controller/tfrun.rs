//! Runs of a `Terraform` object: read the result of the run in flight, then decide and start
//! the next one (plan, apply under the approval policy), one at a time.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::depends;
use super::lifecycle::{self, Facts, Next};
use super::locks;
use super::outcome::Outcome;
use super::runs::RunState;
use super::steps::Timing;
use crate::api::{
    ArtifactStatus, ConditionStatus, ConditionType, ObjectStatus, PlanStatus, RunStatus, Terraform,
    set_condition,
};
use crate::runner::spec::{ArtifactRef, Backend, Operation, Owner, RunResult, RunSpec};

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
pub async fn advance(
    tf: &Terraform,
    status: &mut ObjectStatus,
    artifact: &ArtifactStatus,
    timing: &Timing,
    ctx: &Context,
) -> (Outcome, Option<RunSpec>) {
    let ns = tf.namespace().unwrap_or_default();
    let inputs = lifecycle::inputs_hash(&tf.spec);
    if let Some(outcome) = collect(tf, status, &inputs, ctx).await {
        return (outcome, None);
    }
    let common = &tf.spec.common;
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
    };
    let next = lifecycle::decide(status, artifact, &facts, jiff::Timestamp::now());
    // Dependencies gate new runs only; a run in flight is always collected above.
    if matches!(next, Next::Run { .. })
        && let Some(why) = depends::first_unmet(&ns, &tf.spec.common.depends_on, ctx).await
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
            let spec = run_spec(tf, &ns, operation, plan_id, &run_artifact);
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
pub async fn teardown(
    tf: &Terraform,
    status: &mut ObjectStatus,
    ctx: &Context,
) -> (Option<Outcome>, Option<RunSpec>) {
    if let Some(outcome) = collect(tf, status, "", ctx).await {
        return (Some(outcome), None);
    }
    let (Some(url), Some(digest)) = (
        status.last_applied_url.clone(),
        status.last_applied_digest.clone(),
    ) else {
        return (None, None);
    };
    let revision = status
        .last_applied_revision
        .clone()
        .unwrap_or_else(|| digest.clone());
    let artifact = ArtifactStatus {
        url,
        revision,
        digest,
    };
    let ns = tf.namespace().unwrap_or_default();
    let spec = run_spec(tf, &ns, Operation::Destroy, None, &artifact);
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
async fn collect(
    tf: &Terraform,
    status: &mut ObjectStatus,
    inputs: &str,
    ctx: &Context,
) -> Option<Outcome> {
    let run = status.run.clone().filter(|r| r.phase == "Running")?;
    let ns = tf.namespace().unwrap_or_default();
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
    let lease = locks::lease_name(tf);
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
        count_run(ctx, &ns, &run.operation, "lost");
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
                    super::reconcile::publish(ctx, tf, &event).await;
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
        &ns,
        &run.operation,
        if result.succeeded {
            "succeeded"
        } else {
            "failed"
        },
    );
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
            record_drift(tf, status, report, ctx).await;
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

/// Takes a drift report into status: the report, the Drifted condition, an event when drift
/// appears, changes or clears (not per check), the metrics, and with `drift.remediate` in
/// Reconcile mode a fresh plan under the approval policy.
async fn record_drift(
    tf: &Terraform,
    status: &mut ObjectStatus,
    report: crate::runner::spec::DriftReport,
    ctx: &Context,
) {
    use crate::api::{DriftState, DriftStatus};
    let previous = status
        .drift
        .as_ref()
        .map(|d| d.resources.clone())
        .unwrap_or_default();
    let drifted = report.total > 0;
    let listing = report
        .resources
        .iter()
        .map(|r| {
            if r.paths.is_empty() {
                format!("{} ({})", r.address, r.action)
            } else {
                format!("{} ({}: {})", r.address, r.action, r.paths.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let message = if drifted {
        format!(
            "{} resource(s) changed outside OpenTofu: {listing}",
            report.total
        )
    } else {
        "No drift: the infrastructure matches the state".to_string()
    };
    let (st, reason) = if drifted {
        (ConditionStatus::True, "DriftDetected")
    } else {
        (ConditionStatus::False, "NoDrift")
    };
    mark(status, ConditionType::Drifted, st, reason, &message);
    let event = if drifted && previous != report.resources {
        Some(super::outcome::EventSpec {
            warning: true,
            reason: "DriftDetected".into(),
            note: message.clone(),
        })
    } else if !drifted && !previous.is_empty() {
        Some(super::outcome::EventSpec {
            warning: false,
            reason: "DriftResolved".into(),
            note: message.clone(),
        })
    } else {
        None
    };
    if let Some(event) = event {
        super::reconcile::publish(ctx, tf, &event).await;
    }
    let ns = tf.namespace().unwrap_or_default();
    ctx.metrics
        .record_drift("Terraform", &ns, &tf.name_any(), report.total, drifted);
    status.drift = Some(DriftStatus {
        state: if drifted {
            DriftState::Drifted
        } else {
            DriftState::InSync
        },
        last_checked_at: Some(Time(jiff::Timestamp::now())),
        total: report.total,
        resources: report.resources,
    });
    let common = &tf.spec.common;
    if drifted
        && common.mode == crate::api::Mode::Reconcile
        && common.drift.as_ref().is_some_and(|d| d.remediate)
    {
        // A fresh plan corrects the drift; it is applied under the approval policy.
        status.plan = None;
    }
}

/// Counts a finished run.
fn count_run(ctx: &Context, ns: &str, operation: &str, result: &'static str) {
    let operation = match operation {
        "apply" => "apply",
        "destroy" => "destroy",
        "drift" => "drift",
        _ => "plan",
    };
    let labels = super::metrics::RunLabels {
        kind: "Terraform",
        namespace: ns.to_string(),
        operation,
        result,
    };
    ctx.metrics.runs.get_or_create(&labels).inc();
}

/// The Planned and Applied conditions record the last plan and apply, next to Ready.
fn mark(
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
    crate::runner::execute::REASONS
        .iter()
        .find(|r| Some(**r) == reason)
        .copied()
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

fn run_spec(
    tf: &Terraform,
    ns: &str,
    operation: Operation,
    plan_id: Option<String>,
    artifact: &ArtifactStatus,
) -> RunSpec {
    let name = tf.name_any();
    let suffix = &crate::source::digest::sha256(
        format!("{:?}{}", tf.uid(), jiff::Timestamp::now()).as_bytes(),
    )
    .hex[..6];
    let stem: String = name.chars().take(40).collect();
    let oci = tf.spec.common.source.as_ref().map(|s| &s.oci);
    let backend = match &tf.spec.backend {
        Some(b) if b.config.is_some() => Backend::Raw {
            hcl: b.config.clone().unwrap_or_default(),
        },
        Some(b) if b.config_from.is_some() => {
            let r = b.config_from.clone().unwrap_or_else(|| crate::api::KeyRef {
                name: String::new(),
                key: String::new(),
            });
            Backend::FromSecret {
                name: r.name,
                key: r.key,
            }
        }
        _ => Backend::Kubernetes {
            namespace: ns.to_string(),
            secret_suffix: name.clone(),
        },
    };
    RunSpec {
        name: format!("{stem}-{}-{suffix}", op_name(operation)),
        namespace: ns.to_string(),
        owner: Owner {
            api_version: Terraform::api_version(&()).to_string(),
            kind: Terraform::kind(&()).to_string(),
            name,
            uid: tf.uid().unwrap_or_default(),
        },
        operation,
        engine: tf.spec.engine,
        artifact: ArtifactRef {
            url: artifact.url.clone(),
            digest: artifact.digest.clone(),
            revision: artifact.revision.clone(),
            insecure: oci.is_some_and(|o| o.insecure),
            layer_media_type: oci.and_then(|o| o.layer_media_type.clone()),
            secret_ref: oci.and_then(|o| o.secret_ref.as_ref().map(|r| r.name.clone())),
        },
        path: tf.spec.path.clone().unwrap_or_default(),
        workspace: tf
            .spec
            .workspace
            .clone()
            .unwrap_or_else(|| "default".into()),
        vars: tf.spec.vars.clone(),
        vars_from: tf.spec.vars_from.clone(),
        backend,
        plan_id,
        outputs_secret: tf.spec.common.write_outputs_to_secret.clone(),
    }
}
