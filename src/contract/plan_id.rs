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

/// The ID-sized hash of a JSON value.
pub fn digest(value: &Value) -> String {
    let digest = crate::source::digest::sha256(value.to_string().as_bytes());
    digest.hex[..ID_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
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
