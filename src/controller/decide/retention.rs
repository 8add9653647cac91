//! What of a run's leftovers is kept: the result of the run just taken and the Secrets of the
//! plan status points at. Everything older goes, so that an object checked for drift every
//! minute does not leave 1,440 Secrets a day behind.

use std::collections::BTreeMap;

use crate::contract::names::{LABEL_PLAN, LABEL_RESULT};

/// One of the object's own Secrets, as listed: its name and labels.
pub struct Listed<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// The Secrets to delete: results of other runs than `run`, parts of other plans than
/// `plan`. Anything else (the outputs Secret, whatever a user labelled) stays.
pub fn stale<'a>(listed: &[Listed<'a>], run: &str, plan: Option<&str>) -> Vec<&'a str> {
    listed
        .iter()
        .filter(|s| {
            let old_result = s.labels.get(LABEL_RESULT).is_some_and(|r| r != run);
            let old_plan = s
                .labels
                .get(LABEL_PLAN)
                .is_some_and(|p| Some(p.as_str()) != plan);
            old_result || old_plan
        })
        .map(|s| s.name)
        .collect()
}

/// The failed runner pods to delete, given all of the object's failed pods as (name,
/// creation time): all but the newest `keep`.
pub fn surplus_failed_pods(mut failed: Vec<(String, jiff::Timestamp)>, keep: usize) -> Vec<String> {
    failed.sort_by_key(|p| std::cmp::Reverse(p.1));
    failed
        .into_iter()
        .skip(keep)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keeps_the_last_result_and_the_current_plan_only() {
        let (r1, r2) = (
            labels(&[(LABEL_RESULT, "run-1")]),
            labels(&[(LABEL_RESULT, "run-2")]),
        );
        let (p1, p2) = (labels(&[(LABEL_PLAN, "aa")]), labels(&[(LABEL_PLAN, "bb")]));
        let outputs = labels(&[("landform.dev/owner", "vpc")]);
        let listed = [
            Listed {
                name: "run-1-result",
                labels: &r1,
            },
            Listed {
                name: "run-2-result",
                labels: &r2,
            },
            Listed {
                name: "vpc-plan-aa-0",
                labels: &p1,
            },
            Listed {
                name: "vpc-plan-bb-0",
                labels: &p2,
            },
            Listed {
                name: "vpc-outputs",
                labels: &outputs,
            },
        ];
        assert_eq!(
            stale(&listed, "run-2", Some("bb")),
            ["run-1-result", "vpc-plan-aa-0"]
        );
        assert_eq!(
            stale(&listed, "run-2", None),
            ["run-1-result", "vpc-plan-aa-0", "vpc-plan-bb-0"]
        );
    }

    #[test]
    fn keeps_the_newest_failed_pods() {
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        let pods = vec![
            ("a".to_string(), at(1)),
            ("c".to_string(), at(3)),
            ("b".to_string(), at(2)),
        ];
        assert_eq!(surplus_failed_pods(pods.clone(), 2), ["a"]);
        assert!(surplus_failed_pods(pods, 5).is_empty());
    }
}
