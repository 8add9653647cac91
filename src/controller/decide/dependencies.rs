//! `dependsOn`: an object runs only once every dependency (an object of its own kind) is Ready
//! and has applied the revision its own source offers now.

use crate::api::{ConditionType, ObjectStatus, find_condition};

/// Why a dependency is not ready, or `None` when it is. Pure.
pub fn unmet(name: &str, status: Option<&ObjectStatus>) -> Option<String> {
    let Some(status) = status else {
        return Some(format!(
            "waiting for {name}, which has not been reconciled yet"
        ));
    };
    let ready = find_condition(&status.conditions, ConditionType::Ready);
    if ready.is_none_or(|c| c.status != "True") {
        let why = ready
            .map(|c| format!(": {}", c.message))
            .unwrap_or_default();
        return Some(format!("waiting for {name} to be Ready{why}"));
    }
    let wanted = status.artifact.as_ref().map(|a| &a.digest);
    if wanted.is_some() && wanted != status.last_applied_digest.as_ref() {
        let revision = status
            .artifact
            .as_ref()
            .map_or("?".into(), |a| super::due::shown(&a.revision));
        return Some(format!("waiting for {name} to apply revision {revision}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArtifactStatus, ConditionStatus, set_condition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(ready: bool, applied: &str) -> ObjectStatus {
        let mut s = ObjectStatus {
            artifact: Some(ArtifactStatus {
                url: "oci://r/x".into(),
                revision: "2@sha256:bb".into(),
                digest: "sha256:bb".into(),
            }),
            last_applied_digest: Some(applied.into()),
            ..Default::default()
        };
        let st = if ready {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let now = Time(jiff::Timestamp::from_second(1).unwrap());
        set_condition(
            &mut s.conditions,
            ConditionType::Ready,
            st,
            "X",
            "plan waits for approval",
            None,
            now,
        );
        s
    }

    #[test]
    fn ready_and_applied_at_the_current_revision() {
        assert_eq!(unmet("tf a/net", Some(&status(true, "sha256:bb"))), None);
        assert_eq!(
            unmet("tf a/net", Some(&status(false, "sha256:bb"))).unwrap(),
            "waiting for tf a/net to be Ready: plan waits for approval"
        );
        assert_eq!(
            unmet("tf a/net", Some(&status(true, "sha256:aa"))).unwrap(),
            "waiting for tf a/net to apply revision 2@sha256:bb"
        );
        assert!(
            unmet("tf a/net", None)
                .unwrap()
                .contains("not been reconciled")
        );
    }
}
