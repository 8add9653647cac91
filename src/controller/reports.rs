//! What finished runs report beyond their plan or apply: drift (status, condition, events,
//! metrics) and the events of a stack operation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::context::Context;
use super::work::Runnable;
use crate::api::{ConditionStatus, ConditionType, ObjectStatus};
use crate::runner::spec::RunResult;

/// Takes a drift report into status: the report, the Drifted condition, an event when drift
/// appears, changes or clears (not per check), the metrics, and with `drift.remediate` in
/// Reconcile mode a fresh plan under the approval policy.
pub(super) async fn record_drift<K: Runnable>(
    obj: &K,
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
            "{} resource(s) changed outside {}: {listing}",
            report.total,
            K::CHANGED_OUTSIDE
        )
    } else {
        format!("No drift: the infrastructure matches {}", K::DESIRED)
    };
    let message = match &report.limits {
        Some(limits) => format!("{message} ({limits})"),
        None => message,
    };
    let (st, reason) = if drifted {
        (ConditionStatus::True, "DriftDetected")
    } else {
        (ConditionStatus::False, "NoDrift")
    };
    super::flow::mark(status, ConditionType::Drifted, st, reason, &message);
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
        super::reconcile::publish(ctx, obj, &event).await;
    }
    let ns = obj.namespace().unwrap_or_default();
    ctx.metrics
        .record_drift(K::KIND, &ns, &obj.name_any(), report.total, drifted);
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
    let common = obj.common();
    if drifted
        && common.mode == crate::api::Mode::Reconcile
        && common.drift.as_ref().is_some_and(|d| d.remediate)
    {
        // A fresh plan corrects the drift; it is applied under the approval policy.
        status.plan = None;
    }
}

/// A stack operation's events go to status; its failed resources, and what the runner did to
/// a stack on its own (recreating one left by a failed create), become Events.
pub(super) async fn surface_stack_events<K: Runnable>(
    obj: &K,
    status: &mut ObjectStatus,
    result: &RunResult,
    ctx: &Context,
) {
    use super::outcome::EventSpec;
    let mut events: Vec<EventSpec> = result
        .notes
        .iter()
        .map(|note| EventSpec {
            warning: true,
            reason: "StackRecovered".into(),
            note: note.clone(),
        })
        .collect();
    if !result.events.is_empty() {
        let failed = crate::runner::cloudformation::changes::failures(&result.events);
        events.extend(failed.into_iter().take(5).map(|note| EventSpec {
            warning: true,
            reason: "ResourceFailed".into(),
            note,
        }));
        status.stack_events = result.events.clone();
    }
    for event in &events {
        super::reconcile::publish(ctx, obj, event).await;
    }
}
