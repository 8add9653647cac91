//! Comparing templates and parameters: the deployed ones with the desired ones, resource by
//! resource, for drift reports and for plans that no change set describes. Pure; values are
//! never copied into the result.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::api::ResourceChange;

/// The value DescribeStacks shows for NoEcho parameters: they cannot be compared.
const MASKED: &str = "****";

/// How the deployed template differs from the desired one, resource by resource. Both are
/// read as YAML (JSON is YAML), so formatting and key order do not count as drift.
pub fn templates(deployed: &str, desired: &str) -> Vec<ResourceChange> {
    let (Ok(old), Ok(new)) = (
        serde_yaml::from_str::<Value>(deployed).map(long_form),
        serde_yaml::from_str::<Value>(desired).map(long_form),
    ) else {
        return if deployed.trim() == desired.trim() {
            vec![]
        } else {
            vec![template_change(vec!["(unparsable)".into()])]
        };
    };
    let mut out = vec![];
    let old_resources = section(&old, "Resources");
    let new_resources = section(&new, "Resources");
    let ids: BTreeSet<&String> = old_resources.keys().chain(new_resources.keys()).collect();
    for id in ids {
        let resource_type = new_resources
            .get(id)
            .or_else(|| old_resources.get(id))
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let (action, paths) = match (old_resources.get(id), new_resources.get(id)) {
            // In the stack, not in the desired template: added behind Landform's back.
            (Some(_), None) => ("create", vec![]),
            // Desired, and missing from the stack: removed behind Landform's back.
            (None, Some(_)) => ("delete", vec![]),
            (Some(a), Some(b)) if a != b => ("update", differing_paths(a, b)),
            _ => continue,
        };
        out.push(ResourceChange {
            address: id.clone(),
            resource_type,
            action: action.into(),
            paths,
        });
    }
    let mut sections: BTreeSet<String> = BTreeSet::new();
    for map in [&old, &new] {
        if let Value::Mapping(m) = map {
            sections.extend(m.keys().filter_map(Value::as_str).map(str::to_string));
        }
    }
    let changed: Vec<String> = sections
        .into_iter()
        .filter(|s| s != "Resources" && old.get(s.as_str()) != new.get(s.as_str()))
        .collect();
    if !changed.is_empty() {
        out.push(template_change(changed));
    }
    out
}

/// YAML short forms (`!Ref X`, `!GetAtt A.B`, `!Sub …`) as the JSON forms they stand for, so a
/// template means the same in either notation.
fn long_form(v: Value) -> Value {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            let inner = match (name, long_form(t.value)) {
                ("GetAtt", Value::String(s)) => match s.split_once('.') {
                    Some((a, b)) => Value::Sequence(vec![a.into(), b.into()]),
                    None => Value::String(s),
                },
                (_, other) => other,
            };
            let mut m = serde_yaml::Mapping::new();
            m.insert(Value::String(key), inner);
            Value::Mapping(m)
        }
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, v)| (long_form(k), long_form(v)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(long_form).collect()),
        other => other,
    }
}

fn template_change(paths: Vec<String>) -> ResourceChange {
    ResourceChange {
        address: "(template)".into(),
        resource_type: None,
        action: "update".into(),
        paths,
    }
}

fn section(template: &Value, name: &str) -> BTreeMap<String, Value> {
    match template.get(name) {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Keys of a resource that differ, one level into `Properties`: `Properties.Value`, `Type`.
fn differing_paths(a: &Value, b: &Value) -> Vec<String> {
    let keys = |v: &Value| -> BTreeSet<String> {
        match v {
            Value::Mapping(m) => m
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut paths = vec![];
    for key in keys(a).union(&keys(b)) {
        let (x, y) = (a.get(key.as_str()), b.get(key.as_str()));
        if x == y {
            continue;
        }
        if key == "Properties" {
            let empty = Value::Mapping(Default::default());
            let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
            for prop in keys(x).union(&keys(y)) {
                if x.get(prop.as_str()) != y.get(prop.as_str()) {
                    paths.push(format!("Properties.{prop}"));
                }
            }
        } else {
            paths.push(key.clone());
        }
    }
    paths
}

/// The desired parameter values: the spec's, and for the others the template's `Default`, which
/// is what CloudFormation uses when a parameter is left out.
pub fn with_defaults(
    template: &str,
    params: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let parsed = serde_yaml::from_str::<Value>(template).unwrap_or(Value::Null);
    let mut all: BTreeMap<String, String> = section(&parsed, "Parameters")
        .into_iter()
        .filter_map(|(name, p)| {
            let value = match p.get("Default")? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                // A list parameter's default as CloudFormation shows it: comma-separated.
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| match i {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            Some((name, value))
        })
        .collect();
    all.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Parameters whose deployed value differs from the desired one (names only). NoEcho values
/// are masked by CloudFormation and cannot be compared.
pub fn parameters(
    deployed: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Option<ResourceChange> {
    let keys: BTreeSet<&String> = deployed.keys().chain(desired.keys()).collect();
    let paths: Vec<String> = keys
        .into_iter()
        .filter(|k| match (deployed.get(*k), desired.get(*k)) {
            (Some(old), _) if old == MASKED => false,
            // Parameters left out of the spec take their template default: not comparable.
            (Some(_), None) => false,
            (old, new) => old != new,
        })
        .map(|k| format!("Parameters.{k}"))
        .collect();
    (!paths.is_empty()).then(|| ResourceChange {
        address: "(parameters)".into(),
        resource_type: None,
        action: "update".into(),
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const DEPLOYED: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Greeting: {Type: String}
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Ref Greeting
  Extra:
    Type: AWS::SNS::Topic
Outputs:
  Name: {Value: !Ref Param}
"#;

    #[test]
    fn the_same_template_in_other_clothes_is_no_drift() {
        let json = r#"{"AWSTemplateFormatVersion": "2010-09-09",
          "Parameters": {"Greeting": {"Type": "String"}},
          "Resources": {"Extra": {"Type": "AWS::SNS::Topic"},
            "Param": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Ref": "Greeting"}, "Type": "String"}}},
          "Outputs": {"Name": {"Value": {"Ref": "Param"}}}}"#;
        assert_eq!(templates(DEPLOYED, json), vec![]);
    }

    #[test]
    fn changed_added_and_removed_resources_are_named() {
        let desired = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Greeting: {Type: String}
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Type: StringList
      Value: !Ref Greeting
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  Name: {Value: !GetAtt Param.Value}
"#;
        let found = templates(DEPLOYED, desired);
        let got: Vec<_> = found
            .iter()
            .map(|r| (r.address.as_str(), r.action.as_str(), r.paths.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("Extra", "create", vec![]),
                ("Param", "update", vec!["Properties.Type".to_string()]),
                ("Queue", "delete", vec![]),
                ("(template)", "update", vec!["Outputs".to_string()]),
            ]
        );
        assert_eq!(
            found[1].resource_type.as_deref(),
            Some("AWS::SSM::Parameter")
        );
    }

    #[test]
    fn parameters_are_compared_by_name_only() {
        let deployed = BTreeMap::from([
            ("Greeting".to_string(), "hello".to_string()),
            ("Password".to_string(), MASKED.to_string()),
            ("Defaulted".to_string(), "x".to_string()),
        ]);
        let mut desired = BTreeMap::from([
            ("Greeting".to_string(), "hello".to_string()),
            ("Password".to_string(), "hunter2".to_string()),
        ]);
        assert_eq!(parameters(&deployed, &desired), None);
        desired.insert("Greeting".into(), "bye".into());
        let change = parameters(&deployed, &desired).unwrap();
        assert_eq!(change.paths, ["Parameters.Greeting"]);
        let json = serde_json::to_string(&change).unwrap();
        assert!(!json.contains("bye") && !json.contains("hello"), "{json}");
    }

    #[test]
    fn parameters_left_out_are_compared_with_their_defaults() {
        let template = "Parameters:\n  Greeting: {Type: String, Default: hello}\n  Size: {Type: Number, Default: 3}\n  Names: {Type: CommaDelimitedList, Default: [a, b]}\n  Required: {Type: String}\n";
        let desired = with_defaults(
            template,
            &BTreeMap::from([("Greeting".to_string(), "hi".to_string())]),
        );
        assert_eq!(
            desired,
            BTreeMap::from([
                ("Greeting".to_string(), "hi".to_string()),
                ("Names".to_string(), "a,b".to_string()),
                ("Size".to_string(), "3".to_string()),
            ])
        );
        let deployed = BTreeMap::from([
            ("Greeting".to_string(), "hi".to_string()),
            ("Names".to_string(), "a,b".to_string()),
            ("Size".to_string(), "4".to_string()),
            ("Required".to_string(), "x".to_string()),
        ]);
        assert_eq!(
            parameters(&deployed, &desired).unwrap().paths,
            ["Parameters.Size"]
        );
    }
}
