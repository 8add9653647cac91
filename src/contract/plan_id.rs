//! Plan IDs: a hash of everything that decides what a plan does, so an approval names exactly
//! one plan, and a changed variable (or artifact, or engine) makes a new one.
//!
//! The ID hashes the run's whole [`Work`]: every spec field a kind hands its runs shapes the
//! plan, with no list of fields kept by hand (the controller's `kinds` module has the test that
//! ties each spec field to the ID). Values read at run time stand in as
//! [`crate::engine::values::Resolved::identity`]: values from the spec and ConfigMaps, Secrets
//! by name and resourceVersion, never by value, since plan IDs are public.

use serde_json::Value;

use super::spec::Work;

/// Characters of the hex digest used as the ID.
pub const ID_LEN: usize = 16;

/// What a plan is made from.
pub struct PlanInputs<'a> {
    pub work: &'a Work,
    pub artifact_digest: &'a str,
    /// The engine and its version, e.g. `OpenTofu v1.12.6`.
    pub engine_version: &'a str,
    /// What stands for the values the runner read (variables, parameters, a backend from a
    /// Secret).
    pub resolved: &'a Value,
}

pub fn plan_id(i: &PlanInputs) -> String {
    // Struct fields serialize in declaration order and maps by key, so the encoding is stable.
    let canonical = serde_json::json!({
        "artifact": i.artifact_digest, "engine": i.engine_version,
        "work": i.work, "resolved": i.resolved,
    });
    digest(&canonical)
}

/// A plan's ID: the ID of its inputs bound to the changes it makes, so that approving an ID
/// approves exactly these changes; a plan of the same inputs with other changes (something
/// changed or vanished out of band) has another ID and waits for its own approval.
pub fn bind(inputs_id: &str, changes: &Value) -> String {
    digest(&serde_json::json!({"inputs": inputs_id, "changes": changes}))
}

/// [`bind`] for engines whose plan must be found again by a name chosen before its changes
/// are known (a change set named from `name`, see [`name_part`]). The second half of the ID is
/// that name; the first half hashes the name with the changes. The changes come first because
/// approvals are usually a prefix of the ID (`landform approve --plan 1a2b3c4d`): a prefix must
/// name the changes, never only the inputs, or it would approve any plan of the same inputs.
pub fn bind_named(name: &str, changes: &Value) -> String {
    let front = bind(name, changes);
    format!("{}{name}", &front[..ID_LEN - name.len()])
}

/// The part of an inputs ID that names a plan of [`bind_named`] before its changes are known.
pub fn name_part(inputs_id: &str) -> String {
    inputs_id.chars().take(ID_LEN / 2).collect()
}

/// The name a plan ID of [`bind_named`] carries (its second half).
pub fn named_by(id: &str) -> String {
    id.chars().skip(ID_LEN / 2).collect()
}

/// The ID-sized hash of a JSON value.
pub fn digest(value: &Value) -> String {
    let digest = crate::source::digest::sha256(value.to_string().as_bytes());
    digest.hex[..ID_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_inputs_with_other_changes_are_another_plan() {
        let inputs = "0123456789abcdef";
        let two = serde_json::json!([{"address": "a", "action": "create"}, {"address": "b", "action": "create"}]);
        let one = serde_json::json!([{"address": "a", "action": "create"}]);
        assert_ne!(bind(inputs, &two), bind(inputs, &one));
        assert_eq!(bind(inputs, &two), bind(inputs, &two));
        let name = name_part(inputs);
        assert_eq!(name, "01234567");
        let named = bind_named(&name, &two);
        assert_eq!(named.len(), ID_LEN);
        assert_eq!(named_by(&named), name);
        let other = bind_named(&name, &one);
        assert_eq!(named_by(&other), name);
        // A short approval (the first half) names the changes, not only the inputs.
        assert_ne!(named[..8], other[..8]);
    }
    use crate::contract::spec::{Backend, ModuleRun};

    fn work() -> Work {
        Work::OpenTofu(ModuleRun {
            path: "vpc".into(),
            workspace: "default".into(),
            vars: vec![],
            vars_from: vec![],
            backend: Backend::Kubernetes {
                namespace: "team".into(),
                secret_suffix: "vpc".into(),
            },
        })
    }

    #[test]
    fn artifact_engine_and_resolved_values_change_the_id() {
        let work = work();
        let resolved = serde_json::json!({"vars": {"region": "eu-west-1"}});
        let base = PlanInputs {
            work: &work,
            artifact_digest: "sha256:aa",
            engine_version: "OpenTofu v1.12.6",
            resolved: &resolved,
        };
        let id = plan_id(&base);
        assert_eq!(id.len(), ID_LEN);
        assert_eq!(id, plan_id(&base), "stable");
        let other = serde_json::json!({"vars": {"region": "us-east-1"}});
        for changed in [
            PlanInputs {
                artifact_digest: "sha256:bb",
                ..base
            },
            PlanInputs {
                engine_version: "OpenTofu v1.12.7",
                ..base
            },
            PlanInputs {
                resolved: &other,
                ..base
            },
        ] {
            assert_ne!(id, plan_id(&changed));
        }
    }
}
