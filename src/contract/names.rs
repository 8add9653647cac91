//! Names and labels of the objects a run leaves in Kubernetes. The controller creates the
//! run's spec (a ConfigMap in pod mode) and reads its result; the runner writes the result,
//! saved plans and outputs. Both sides name them through these functions only.

/// Every object of a run, and every object it writes, carries its owner's name.
pub const LABEL_OWNER: &str = "landform.dev/owner";
/// Runner pods and their spec ConfigMaps carry the run's name.
pub const LABEL_RUN: &str = "landform.dev/run";
/// Result Secrets carry the name of the run whose result they hold.
pub const LABEL_RESULT: &str = "landform.dev/result-of";
/// Saved-plan Secrets carry the plan ID ...
pub const LABEL_PLAN: &str = "landform.dev/plan-id";
/// ... and which part of the plan they hold (`<i>-of-<n>`).
pub const LABEL_PART: &str = "landform.dev/part";

/// The key of the run spec in its ConfigMap (and the file name it is mounted as).
pub const SPEC_KEY: &str = "run.json";
/// The key of the result in its Secret.
pub const RESULT_KEY: &str = "result.json";
/// The key of a saved plan's part in its Secret.
pub const PLAN_KEY: &str = "plan.gz";

/// The ConfigMap that holds a pod run's spec.
pub fn spec_config_map(run: &str) -> String {
    format!("{run}-spec")
}

/// The Secret a run writes its result to.
pub fn result_secret(run: &str) -> String {
    format!("{run}-result")
}

/// The Secret that holds part `part` of plan `plan_id` of the object `owner`.
pub fn plan_secret(owner: &str, plan_id: &str, part: usize) -> String {
    format!("{owner}-plan-{plan_id}-{part}")
}

/// The label value of part `part` of a plan saved in `count` parts.
pub fn plan_part(part: usize, count: usize) -> String {
    format!("{part}-of-{count}")
}

/// `(part, count)` from a [`plan_part`] label value.
pub fn parse_plan_part(label: &str) -> Option<(usize, usize)> {
    let (i, n) = label.split_once("-of-")?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_parts_round_trip() {
        assert_eq!(parse_plan_part(&plan_part(2, 5)), Some((2, 5)));
        assert_eq!(parse_plan_part("2-5"), None);
        assert_eq!(result_secret("vpc-plan-abc"), "vpc-plan-abc-result");
        assert_eq!(spec_config_map("vpc-plan-abc"), "vpc-plan-abc-spec");
    }
}
