//! What each kind hands its runs: the engine and what it works on, the spec fields that shape
//! a plan, and the state lock a run may hold. Everything else about runs is shared.

use kube::ResourceExt;

use super::locks;
use crate::api::{BackendSpec, CloudFormationStack, Engine, KeyRef, Managed, Terraform};
use crate::runner::spec::{Backend, ModuleRun, StackRun, Work};

/// A kind whose objects are planned, applied, destroyed and checked for drift by runs.
pub trait Runnable: Managed {
    /// Where drift comes from ("changed outside OpenTofu") and what it is measured against,
    /// in drift messages.
    const CHANGED_OUTSIDE: &'static str;
    const DESIRED: &'static str;
    /// The engine and its input, for a run in namespace `ns`.
    fn work(&self, ns: &str) -> Work;
    /// The spec fields that shape a plan; a change to them makes a new plan.
    fn plan_inputs(&self) -> serde_json::Value;
    /// The Lease a run holds while it has the state locked, if Landform can see it.
    fn state_lease(&self) -> Option<String> {
        None
    }
    /// Whether a destroy needs the artifact that was applied (a module does, a stack does
    /// not: deleting it needs only its name).
    const DESTROY_NEEDS_ARTIFACT: bool;
}

/// Hash of [`Runnable::plan_inputs`], kept in `status.plan.inputs`.
pub fn inputs_hash<K: Runnable>(obj: &K) -> String {
    let shaping = obj.plan_inputs().to_string();
    crate::source::digest::sha256(shaping.as_bytes()).hex[..16].to_string()
}

impl Runnable for Terraform {
    const CHANGED_OUTSIDE: &'static str = "OpenTofu";
    const DESIRED: &'static str = "the state";
    const DESTROY_NEEDS_ARTIFACT: bool = true;

    fn work(&self, ns: &str) -> Work {
        let spec = &self.spec;
        let backend = match &spec.backend {
            Some(BackendSpec {
                config: Some(hcl), ..
            }) => Backend::Raw { hcl: hcl.clone() },
            Some(BackendSpec {
                config_from: Some(KeyRef { name, key }),
                ..
            }) => Backend::FromSecret {
                name: name.clone(),
                key: key.clone(),
            },
            _ => Backend::Kubernetes {
                namespace: ns.to_string(),
                secret_suffix: self.name_any(),
            },
        };
        let module = ModuleRun {
            path: spec.path.clone().unwrap_or_default(),
            workspace: spec.workspace.clone().unwrap_or_else(|| "default".into()),
            vars: spec.vars.clone(),
            vars_from: spec.vars_from.clone(),
            backend,
        };
        match spec.engine {
            Engine::OpenTofu => Work::OpenTofu(module),
            Engine::Terraform => Work::Terraform(module),
        }
    }

    fn plan_inputs(&self) -> serde_json::Value {
        let spec = &self.spec;
        serde_json::json!({
            "path": spec.path, "workspace": spec.workspace, "engine": spec.engine,
            "vars": spec.vars, "varsFrom": spec.vars_from, "backend": spec.backend,
        })
    }

    fn state_lease(&self) -> Option<String> {
        locks::lease_name(self)
    }
}

impl Runnable for CloudFormationStack {
    // Template comparison also catches updates made through CloudFormation by someone else.
    const CHANGED_OUTSIDE: &'static str = "Landform";
    const DESIRED: &'static str = "the desired template and parameters";
    const DESTROY_NEEDS_ARTIFACT: bool = false;

    fn work(&self, ns: &str) -> Work {
        let spec = &self.spec;
        Work::CloudFormation(StackRun {
            stack_name: stack_name(self, ns),
            template_path: spec
                .template_path
                .clone()
                .unwrap_or_else(|| "template.yaml".into()),
            parameters: spec.parameters.clone(),
            parameters_from: spec.parameters_from.clone(),
            tags: spec.tags.clone(),
            capabilities: spec.capabilities.clone(),
            role_arn: spec.role_arn.clone(),
            region: spec.region.clone(),
            endpoint_url: spec.endpoint_url.clone(),
            template_bucket: spec.template_bucket.clone(),
            credentials_secret: spec.credentials_secret_ref.as_ref().map(|r| r.name.clone()),
            adopt_existing: spec.adopt_existing,
            read_only: spec.common.mode == crate::api::Mode::DriftOnly,
        })
    }

    fn plan_inputs(&self) -> serde_json::Value {
        let spec = &self.spec;
        serde_json::json!({
            "stackName": spec.stack_name, "templatePath": spec.template_path,
            "parameters": spec.parameters, "parametersFrom": spec.parameters_from,
            "tags": spec.tags, "capabilities": spec.capabilities, "roleARN": spec.role_arn,
            "region": spec.region, "endpointURL": spec.endpoint_url,
            "templateBucket": spec.template_bucket, "adoptExisting": spec.adopt_existing,
            // A DriftOnly plan is a comparison, not a change set that could be executed.
            "readOnly": spec.common.mode == crate::api::Mode::DriftOnly,
        })
    }
}

/// `spec.stackName`, or `<namespace>-<name>` made a valid stack name (letters, digits and
/// dashes, starting with a letter, at most 128 characters).
pub fn stack_name(stack: &CloudFormationStack, ns: &str) -> String {
    if let Some(name) = &stack.spec.stack_name {
        return name.clone();
    }
    let raw = format!("{ns}-{}", stack.name_any());
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "s-");
    }
    name.chars().take(128).collect()
}
