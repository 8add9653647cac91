//! A drift report taken into status: the report, the Drifted condition, an event when drift
//! appears, changes or clears (never per check), and with `drift.remediate` in Reconcile mode
//! a fresh plan under the approval policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::outcome::{EventSpec, mark};
use crate::api::{
    CommonSpec, ConditionStatus, ConditionType, DriftState, DriftStatus, Mode, ObjectStatus,
};
use crate::contract::DriftReport;

/// Where drift comes from and what it is measured against, in messages.
pub struct Wording {
    /// "changed outside …"
    pub changed_outside: &'static str,
    /// "the infrastructure matches …"
    pub desired: &'static str,
}

/// Takes `report` into `status`; returns the event to record, if any.
pub fn record(
    status: &mut ObjectStatus,
    report: DriftReport,
    spec: &CommonSpec,
    wording: &Wording,
    now: Time,
) -> Option<EventSpec> {
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
            report.total, wording.changed_outside
        )
    } else {
        format!("No drift: the infrastructure matches {}", wording.desired)
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
    mark(
        status,
        ConditionType::Drifted,
        st,
        reason,
        &message,
        now.clone(),
    );
    let event = if drifted && previous != report.resources {
        Some(EventSpec::warning("DriftDetected", message))
    } else if !drifted && !previous.is_empty() {
        Some(EventSpec::normal("DriftResolved", message))
    } else {
        None
    };
    status.drift = Some(DriftStatus {
        state: if drifted {
            DriftState::Drifted
        } else {
            DriftState::InSync
        },
        last_checked_at: Some(now),
        total: report.total,
        resources: report.resources,
    });
    if drifted && spec.mode == Mode::Reconcile && spec.drift.as_ref().is_some_and(|d| d.remediate) {
        // A fresh plan corrects the drift; it is applied under the approval policy.
        status.plan = None;
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResourceChange;

    const WORDING: Wording = Wording {
        changed_outside: "OpenTofu",
        desired: "the state",
    };

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn spec(remediate: bool) -> CommonSpec {
        serde_json::from_value(serde_json::json!({
            "interval": "10m", "sourceRef": {"kind": "GitRepository", "name": "infra"},
            "drift": {"remediate": remediate},
        }))
        .unwrap()
    }

    fn report(addresses: &[&str]) -> DriftReport {
        DriftReport {
            total: addresses.len() as u32,
            resources: addresses
                .iter()
                .map(|a| ResourceChange {
                    address: a.to_string(),
                    action: "update".into(),
                    paths: vec!["content".into()],
                    ..Default::default()
                })
                .collect(),
            limits: None,
        }
    }

    #[test]
    fn one_event_per_change_of_drift_never_per_check() {
        let mut status = ObjectStatus::default();
        let none = record(&mut status, report(&[]), &spec(false), &WORDING, at(1));
        assert_eq!(none, None, "in sync from the start is no news");
        let first = record(&mut status, report(&["a"]), &spec(false), &WORDING, at(2)).unwrap();
        assert_eq!(first.reason, "DriftDetected");
        assert!(first.note.contains("a (update: content)"), "{}", first.note);
        assert_eq!(
            record(&mut status, report(&["a"]), &spec(false), &WORDING, at(3)),
            None
        );
        let more = record(
            &mut status,
            report(&["a", "b"]),
            &spec(false),
            &WORDING,
            at(4),
        );
        assert_eq!(more.unwrap().reason, "DriftDetected");
        let resolved = record(&mut status, report(&[]), &spec(false), &WORDING, at(5)).unwrap();
        assert_eq!(resolved.reason, "DriftResolved");
        assert!(!resolved.warning);
        let drift = status.drift.unwrap();
        assert_eq!(drift.state, DriftState::InSync);
        assert_eq!(drift.last_checked_at, Some(at(5)));
    }

    #[test]
    fn remediation_drops_the_plan_so_a_fresh_one_is_made() {
        let mut status = ObjectStatus {
            plan: Some(Default::default()),
            ..Default::default()
        };
        record(&mut status, report(&["a"]), &spec(false), &WORDING, at(1));
        assert!(status.plan.is_some());
        record(&mut status, report(&["a"]), &spec(true), &WORDING, at(2));
        assert!(status.plan.is_none());
    }
}
