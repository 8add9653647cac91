//! From CloudFormation's answers to Landform's report types: change set changes to the plan
//! summary and resource list, stack events to status events. Pure; values are never copied
//! (change sets may carry before/after values of NoEcho parameters).

use aws_sdk_cloudformation::types::{Change, ChangeAction, Replacement, StackEvent as CfnEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{PlanSummary, ResourceChange, StackEvent};

/// At most this many resources are listed in a plan (the summary keeps the totals).
pub const MAX_LISTED: usize = 50;
/// At most this many stack events are kept from an operation.
pub const MAX_EVENTS: usize = 20;

/// The plan summary and the (bounded) list of changed resources.
pub fn summarize(changes: &[Change]) -> (PlanSummary, Vec<ResourceChange>) {
    let mut summary = PlanSummary::default();
    let mut listed = vec![];
    for rc in changes.iter().filter_map(Change::resource_change) {
        let replace = matches!(
            rc.replacement(),
            Some(Replacement::True) | Some(Replacement::Conditional)
        );
        let action = match rc.action() {
            Some(ChangeAction::Add) => "create",
            Some(ChangeAction::Remove) => "delete",
            Some(ChangeAction::Import) => "import",
            Some(ChangeAction::Modify) if replace => "replace",
            Some(ChangeAction::Modify) | Some(ChangeAction::Dynamic) => "update",
            _ => "update",
        };
        match action {
            "create" | "import" => summary.add += 1,
            "delete" => summary.destroy += 1,
            "replace" => {
                summary.add += 1;
                summary.destroy += 1;
            }
            _ => summary.change += 1,
        }
        let mut paths: Vec<String> = rc
            .details()
            .iter()
            .filter_map(|d| d.target())
            .filter_map(|t| {
                let attribute = t.attribute().map(|a| a.as_str().to_string());
                match (attribute, t.name()) {
                    (Some(a), Some(n)) => Some(format!("{a}.{n}")),
                    (Some(a), None) => Some(a),
                    (None, Some(n)) => Some(n.to_string()),
                    (None, None) => None,
                }
            })
            .collect();
        paths.sort();
        paths.dedup();
        if listed.len() < MAX_LISTED {
            listed.push(ResourceChange {
                address: rc.logical_resource_id().unwrap_or("?").to_string(),
                resource_type: rc.resource_type().map(str::to_string),
                action: action.to_string(),
                paths,
            });
        }
    }
    (summary, listed)
}

/// The events of one operation, oldest first, bounded to the last [`MAX_EVENTS`]. `events` is
/// in CloudFormation's order, newest first.
pub fn operation_events(events: &[CfnEvent]) -> Vec<StackEvent> {
    let mut out: Vec<StackEvent> = events
        .iter()
        .map(|e| {
            let time = e
                .timestamp()
                .and_then(|t| jiff::Timestamp::from_millisecond(t.to_millis().ok()?).ok());
            StackEvent {
                time: time.map(Time),
                resource: e.logical_resource_id().unwrap_or("?").to_string(),
                resource_type: e.resource_type().map(str::to_string),
                status: e
                    .resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: e
                    .resource_status_reason()
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
            }
        })
        .take(MAX_EVENTS)
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types::{
        ChangeType, ResourceAttribute, ResourceChange as CfnChange, ResourceChangeDetail,
        ResourceStatus, ResourceTargetDefinition,
    };

    fn change(id: &str, action: ChangeAction, replacement: Option<Replacement>) -> Change {
        let detail = ResourceChangeDetail::builder()
            .target(
                ResourceTargetDefinition::builder()
                    .attribute(ResourceAttribute::Properties)
                    .name("Value")
                    .before_value("secret-before")
                    .after_value("secret-after")
                    .build(),
            )
            .build();
        Change::builder()
            .r#type(ChangeType::Resource)
            .resource_change(
                CfnChange::builder()
                    .action(action)
                    .logical_resource_id(id)
                    .resource_type("AWS::SSM::Parameter")
                    .set_replacement(replacement)
                    .details(detail)
                    .build(),
            )
            .build()
    }

    #[test]
    fn counts_and_lists_changes_without_values() {
        let changes = [
            change("A", ChangeAction::Add, None),
            change("B", ChangeAction::Modify, Some(Replacement::False)),
            change("C", ChangeAction::Modify, Some(Replacement::True)),
            change("D", ChangeAction::Remove, None),
        ];
        let (summary, listed) = summarize(&changes);
        assert_eq!((summary.add, summary.change, summary.destroy), (2, 1, 2));
        let actions: Vec<_> = listed.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["create", "update", "replace", "delete"]);
        assert_eq!(listed[1].paths, ["Properties.Value"]);
        assert_eq!(
            listed[1].resource_type.as_deref(),
            Some("AWS::SSM::Parameter")
        );
        let json = serde_json::to_string(&listed).unwrap();
        assert!(!json.contains("secret-"), "{json}");
    }

    #[test]
    fn keeps_the_totals_of_long_lists() {
        let changes: Vec<_> = (0..MAX_LISTED + 7)
            .map(|i| change(&format!("R{i}"), ChangeAction::Add, None))
            .collect();
        let (summary, listed) = summarize(&changes);
        assert_eq!(summary.add as usize, MAX_LISTED + 7);
        assert_eq!(listed.len(), MAX_LISTED);
    }

    #[test]
    fn events_of_one_operation_oldest_first() {
        let at = |s: i64| aws_sdk_cloudformation::primitives::DateTime::from_secs(s);
        let event = |id: &str, status: ResourceStatus, t: i64, reason: &str| {
            CfnEvent::builder()
                .logical_resource_id(id)
                .resource_type("AWS::S3::Bucket")
                .resource_status(status)
                .resource_status_reason(reason)
                .timestamp(at(t))
                .build()
        };
        // Newest first, as DescribeStackEvents returns them.
        let events = [
            event("stack", ResourceStatus::UpdateRollbackComplete, 130, ""),
            event("Bucket", ResourceStatus::UpdateFailed, 120, "Access Denied"),
            event(
                "stack",
                ResourceStatus::UpdateInProgress,
                110,
                "User Initiated",
            ),
        ];
        let got = operation_events(&events);
        let statuses: Vec<_> = got.iter().map(|e| e.status.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "UPDATE_IN_PROGRESS",
                "UPDATE_FAILED",
                "UPDATE_ROLLBACK_COMPLETE"
            ]
        );
        assert_eq!(got[2].reason, None);
        assert_eq!(
            crate::contract::result::failed_resources(&got),
            ["Bucket (AWS::S3::Bucket) UPDATE_FAILED: Access Denied"]
        );
    }
}
