//! kstatus-style conditions.
//!
//! `Ready` is always present; `Reconciling` and `Stalled` are "abnormal-true" conditions, present
//! only while true, as kstatus expects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    Reconciling,
    Stalled,
    Planned,
    Applied,
    Drifted,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
            Self::Planned => "Planned",
            Self::Applied => "Applied",
            Self::Drifted => "Drifted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change. Returns
/// whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let new = Condition {
        type_: type_.as_str().to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now,
    };
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let transition = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            let updated = Condition {
                last_transition_time: transition,
                ..new
            };
            let changed = *old != updated;
            *old = updated;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Removes a condition; returns whether it was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: ConditionType) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_.as_str());
    before != conditions.len()
}

/// The condition of a type, if present.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut c = vec![];
        let ready = ConditionType::Ready;
        assert!(set_condition(
            &mut c,
            ready,
            ConditionStatus::Unknown,
            "A",
            "a",
            Some(1),
            at(10)
        ));
        assert!(set_condition(
            &mut c,
            ready,
            ConditionStatus::Unknown,
            "B",
            "b",
            Some(2),
            at(20)
        ));
        assert_eq!(c[0].last_transition_time, at(10));
        assert_eq!(c[0].reason, "B");
        assert!(!set_condition(
            &mut c,
            ready,
            ConditionStatus::Unknown,
            "B",
            "b",
            Some(2),
            at(30)
        ));
        assert!(set_condition(
            &mut c,
            ready,
            ConditionStatus::True,
            "B",
            "b",
            Some(2),
            at(40)
        ));
        assert_eq!(c[0].last_transition_time, at(40));
    }

    #[test]
    fn removes_abnormal_true_conditions() {
        let mut c = vec![];
        set_condition(
            &mut c,
            ConditionType::Stalled,
            ConditionStatus::True,
            "X",
            "x",
            None,
            at(1),
        );
        assert!(find_condition(&c, ConditionType::Stalled).is_some());
        assert!(remove_condition(&mut c, ConditionType::Stalled));
        assert!(!remove_condition(&mut c, ConditionType::Stalled));
        assert!(find_condition(&c, ConditionType::Stalled).is_none());
    }
}
