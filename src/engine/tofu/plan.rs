//! From `tofu show -json` of a saved plan to what status shows: counts, resource addresses,
//! actions and changed attribute paths. Values never leave this module, so nothing sensitive
//! can reach status, events or logs through it. Pure.

use serde_json::Value;

use crate::api::{PlanSummary, ResourceChange};

/// How many resources status lists; the summary counts them all.
pub const MAX_LISTED: usize = 100;
/// How many changed attribute paths are listed per resource.
pub const MAX_PATHS: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the plan JSON is not what OpenTofu writes: {0}")]
pub struct PlanJsonError(String);

/// The plan as status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub counts: PlanSummary,
    pub resources: Vec<ResourceChange>,
    /// Total number of changed resources (may exceed `resources.len()`).
    pub total: usize,
}

impl Summary {
    pub fn has_changes(&self) -> bool {
        self.total > 0
    }
}

/// The action of a `change.actions` list, in the words status uses.
fn action(actions: &[Value]) -> Option<&'static str> {
    let a: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
    match a.as_slice() {
        ["create"] => Some("create"),
        ["update"] => Some("update"),
        ["delete"] => Some("delete"),
        ["delete", "create"] | ["create", "delete"] => Some("replace"),
        ["read"] => Some("read"),
        _ => None, // no-op
    }
}

/// Summarises `resource_changes` (or, with `drift`, `resource_drift`).
pub fn summarize(plan: &Value, drift: bool) -> Result<Summary, PlanJsonError> {
    let key = if drift {
        "resource_drift"
    } else {
        "resource_changes"
    };
    let changes = match plan.get(key) {
        None | Some(Value::Null) => return Ok(Summary::default()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(PlanJsonError(format!("{key} is not a list"))),
    };
    let mut s = Summary::default();
    for rc in changes {
        let address = rc["address"]
            .as_str()
            .ok_or_else(|| PlanJsonError("a change has no address".into()))?;
        let change = &rc["change"];
        let Some(act) = action(
            change["actions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        ) else {
            continue;
        };
        match act {
            "create" => s.counts.add += 1,
            "update" => s.counts.change += 1,
            "delete" => s.counts.destroy += 1,
            "replace" => {
                s.counts.add += 1;
                s.counts.destroy += 1;
            }
            _ => {}
        }
        s.total += 1;
        if s.resources.len() < MAX_LISTED {
            let mut paths = changed_paths(&change["before"], &change["after"], "");
            paths.sort();
            paths.truncate(MAX_PATHS);
            s.resources.push(ResourceChange {
                address: address.to_string(),
                resource_type: rc["type"].as_str().map(str::to_string),
                action: act.to_string(),
                paths,
            });
        }
    }
    Ok(s)
}

/// Attribute paths whose values differ between `before` and `after` (`tags.env`, `ports[0]`).
/// What a plan changes, for its ID: each resource's address, actions and values before and
/// after, each output's, with every value marked sensitive masked. (Values read from Secrets
/// but not marked sensitive are masked by the caller, which knows them.)
pub fn changes(plan: &Value) -> Value {
    let resources: Vec<Value> = plan["resource_changes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|rc| {
            let c = &rc["change"];
            serde_json::json!({
                "address": rc["address"], "actions": c["actions"],
                "before": masked(&c["before"], &c["before_sensitive"]),
                "after": masked(&c["after"], &c["after_sensitive"]),
                "unknown": c["after_unknown"],
            })
        })
        .collect();
    let outputs: serde_json::Map<String, Value> = plan["output_changes"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(name, c)| {
                    let change = serde_json::json!({
                        "actions": c["actions"],
                        "before": masked(&c["before"], &c["before_sensitive"]),
                        "after": masked(&c["after"], &c["after_sensitive"]),
                    });
                    (name.clone(), change)
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({"resources": resources, "outputs": outputs})
}

/// `value` with what `sensitive` marks (true, or true in its matching parts) masked.
fn masked(value: &Value, sensitive: &Value) -> Value {
    match (value, sensitive) {
        (_, Value::Bool(true)) => Value::String("(sensitive)".into()),
        (Value::Object(v), Value::Object(s)) => Value::Object(
            v.iter()
                .map(|(k, x)| (k.clone(), masked(x, s.get(k).unwrap_or(&Value::Null))))
                .collect(),
        ),
        (Value::Array(v), Value::Array(s)) => Value::Array(
            v.iter()
                .enumerate()
                .map(|(i, x)| masked(x, s.get(i).unwrap_or(&Value::Null)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// Only the paths: whether a value is sensitive, its content never matters here.
pub fn changed_paths(before: &Value, after: &Value, prefix: &str) -> Vec<String> {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    changed_paths(
                        b.get(k).unwrap_or(&Value::Null),
                        a.get(k).unwrap_or(&Value::Null),
                        &p,
                    )
                })
                .collect()
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => b
            .iter()
            .zip(a)
            .enumerate()
            .flat_map(|(i, (x, y))| changed_paths(x, y, &format!("{prefix}[{i}]")))
            .collect(),
        // Creations and deletions list no paths: the whole resource changes.
        (Value::Null, _) | (_, Value::Null) if prefix.is_empty() => vec![],
        (b, a) if b == a => vec![],
        _ => vec![if prefix.is_empty() {
            "(resource)".to_string()
        } else {
            prefix.to_string()
        }],
    }
}

/// Whether applying the plan would change anything: a resource, or an output value (a plan
/// that only changes outputs still has to be applied for the outputs to exist).
pub fn has_changes(plan: &Value) -> bool {
    let changing = |v: &Value| {
        action(
            v["change"]["actions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        )
        .is_some_and(|a| a != "read")
            || action(v["actions"].as_array().map(Vec::as_slice).unwrap_or(&[]))
                .is_some_and(|a| a != "read")
    };
    plan["resource_changes"]
        .as_array()
        .is_some_and(|a| a.iter().any(changing))
        || plan["output_changes"]
            .as_object()
            .is_some_and(|o| o.values().any(changing))
}

/// Output values from `tofu output -json`, keeping all or `only` the named ones.
pub fn outputs(json: &Value, only: Option<&[String]>) -> Vec<(String, Value, bool)> {
    let Some(map) = json.as_object() else {
        return vec![];
    };
    let mut out: Vec<_> = map
        .iter()
        .filter(|(k, _)| only.is_none_or(|o| o.iter().any(|n| n == *k)))
        .map(|(k, v)| {
            (
                k.clone(),
                v["value"].clone(),
                v["sensitive"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_what_changes_and_mask_what_is_sensitive() {
        let plan = json!({
            "resource_changes": [{"address": "x.a", "change": {
                "actions": ["create"], "before": null,
                "after": {"name": "n", "password": "hunter2", "tags": ["t", "secret-tag"]},
                "after_sensitive": {"password": true, "tags": [false, true]},
                "after_unknown": {"id": true}}}],
            "output_changes": {"pw": {"actions": ["create"], "after": "hunter2",
                "after_sensitive": true}},
        });
        let got = changes(&plan).to_string();
        assert!(
            !got.contains("hunter2") && !got.contains("secret-tag"),
            "{got}"
        );
        assert!(
            got.contains("\"name\":\"n\"") && got.contains("x.a"),
            "{got}"
        );
        let mut other = plan.clone();
        other["resource_changes"][0]["change"]["actions"] = json!(["delete"]);
        assert_ne!(changes(&other), changes(&plan));
    }
    use serde_json::json;

    #[test]
    fn counts_and_lists_changes_without_values() {
        let plan = json!({"resource_changes": [
            {"address": "random_pet.name", "type": "random_pet", "change": {"actions": ["create"], "before": null, "after": {"length": 2}}},
            {"address": "local_file.f", "type": "local_file", "change": {"actions": ["delete", "create"],
                "before": {"content": "old secret", "filename": "a"}, "after": {"content": "new secret", "filename": "a"}}},
            {"address": "terraform_data.t", "type": "terraform_data", "change": {"actions": ["update"],
                "before": {"input": {"tags": {"env": "dev", "team": "a"}}}, "after": {"input": {"tags": {"env": "prod", "team": "a"}}}}},
            {"address": "null_resource.same", "type": "null_resource", "change": {"actions": ["no-op"], "before": {}, "after": {}}},
            {"address": "random_id.gone", "type": "random_id", "change": {"actions": ["delete"], "before": {"x": 1}, "after": null}},
        ]});
        let s = summarize(&plan, false).unwrap();
        assert_eq!(
            s.counts,
            PlanSummary {
                add: 2,
                change: 1,
                destroy: 2
            }
        );
        assert_eq!(s.total, 4);
        let actions: Vec<_> = s
            .resources
            .iter()
            .map(|r| (r.address.as_str(), r.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("random_pet.name", "create"),
                ("local_file.f", "replace"),
                ("terraform_data.t", "update"),
                ("random_id.gone", "delete")
            ]
        );
        assert_eq!(s.resources[1].paths, ["content"]);
        assert_eq!(s.resources[2].paths, ["input.tags.env"]);
        let rendered = serde_json::to_string(&s.resources).unwrap();
        assert!(
            !rendered.contains("secret") && !rendered.contains("prod"),
            "values leaked: {rendered}"
        );
    }

    #[test]
    fn drift_reads_resource_drift_and_an_empty_plan_has_no_changes() {
        let plan = json!({"resource_drift": [{"address": "local_file.f", "type": "local_file",
            "change": {"actions": ["update"], "before": {"content": "a"}, "after": {"content": "b"}}}]});
        let d = summarize(&plan, true).unwrap();
        assert_eq!(
            (d.total, d.resources[0].paths.clone()),
            (1, vec!["content".to_string()])
        );
        assert!(!summarize(&plan, false).unwrap().has_changes());
        assert!(summarize(&json!({"resource_changes": 3}), false).is_err());
    }

    #[test]
    fn bounds_the_list_but_not_the_counts() {
        let many: Vec<_> = (0..150)
            .map(|i| json!({"address": format!("random_id.x[{i}]"), "type": "random_id", "change": {"actions": ["create"], "before": null, "after": {}}}))
            .collect();
        let s = summarize(&json!({"resource_changes": many}), false).unwrap();
        assert_eq!(
            (s.total, s.resources.len(), s.counts.add),
            (150, MAX_LISTED, 150)
        );
    }

    #[test]
    fn arrays_and_whole_value_changes() {
        let p = changed_paths(
            &json!({"ports": [80, 443], "name": "a"}),
            &json!({"ports": [80, 8443], "name": "a"}),
            "",
        );
        assert_eq!(p, ["ports[1]"]);
        let p = changed_paths(&json!({"ports": [80]}), &json!({"ports": [80, 443]}), "");
        assert_eq!(p, ["ports"]);
    }

    #[test]
    fn output_only_changes_count_as_changes() {
        assert!(has_changes(
            &json!({"output_changes": {"v": {"actions": ["create"]}}})
        ));
        assert!(!has_changes(
            &json!({"output_changes": {"v": {"actions": ["no-op"]}}, "resource_changes": []})
        ));
        assert!(has_changes(
            &json!({"resource_changes": [{"address": "a", "change": {"actions": ["update"]}}]})
        ));
    }

    #[test]
    fn selects_outputs() {
        let j = json!({"name": {"value": "pet", "sensitive": false}, "token": {"value": "t", "sensitive": true}});
        assert_eq!(outputs(&j, None).len(), 2);
        let only = vec!["name".to_string()];
        assert_eq!(
            outputs(&j, Some(&only)),
            vec![("name".to_string(), json!("pet"), false)]
        );
    }
}
