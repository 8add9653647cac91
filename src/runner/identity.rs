//! Plan IDs: a hash of everything that decides what a plan does, so an approval names exactly
//! one plan, and a changed variable (or artifact, or engine) makes a new one.

use serde_json::Value;

/// Inputs of a plan. Variables stand in as [`crate::runner::values::Resolved::identity`]:
/// values from the spec and ConfigMaps, Secrets by name and resourceVersion.
pub struct PlanInputs<'a> {
    pub artifact_digest: &'a str,
    pub path: &'a str,
    pub workspace: &'a str,
    pub engine_version: &'a str,
    /// Resolved variables (name → value), as passed to the engine.
    pub vars: &'a serde_json::Map<String, Value>,
    /// The backend configuration, as passed to the engine.
    pub backend: &'a str,
    pub destroy: bool,
}

/// Characters of the hex digest used as the ID.
pub const ID_LEN: usize = 16;

pub fn plan_id(i: &PlanInputs) -> String {
    // serde_json::Map is ordered by key, so the encoding is canonical.
    let canonical = serde_json::json!({
        "artifact": i.artifact_digest, "path": i.path, "workspace": i.workspace,
        "engine": i.engine_version, "vars": i.vars, "backend": i.backend, "destroy": i.destroy,
    });
    let digest = crate::source::digest::sha256(canonical.to_string().as_bytes());
    digest.hex[..ID_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(vars: &'a serde_json::Map<String, Value>) -> PlanInputs<'a> {
        PlanInputs {
            artifact_digest: "sha256:aa",
            path: "vpc",
            workspace: "default",
            engine_version: "OpenTofu v1.12.6",
            vars,
            backend: "k8s",
            destroy: false,
        }
    }

    #[test]
    fn any_input_changes_the_id() {
        let mut vars = serde_json::Map::new();
        vars.insert("region".into(), "eu-west-1".into());
        let base = plan_id(&inputs(&vars));
        assert_eq!(base.len(), ID_LEN);
        assert_eq!(base, plan_id(&inputs(&vars)), "stable");
        let mut other = vars.clone();
        other.insert("region".into(), "us-east-1".into());
        assert_ne!(base, plan_id(&inputs(&other)));
        assert_ne!(
            base,
            plan_id(&PlanInputs {
                artifact_digest: "sha256:bb",
                ..inputs(&vars)
            })
        );
        assert_ne!(
            base,
            plan_id(&PlanInputs {
                engine_version: "OpenTofu v1.12.7",
                ..inputs(&vars)
            })
        );
        assert_ne!(
            base,
            plan_id(&PlanInputs {
                destroy: true,
                ..inputs(&vars)
            })
        );
    }
}
