//! One run against a stack, from the run spec to its result: the template from the verified
//! artifact, the parameters resolved, then the operation.

use std::collections::BTreeMap;

use kube::Client;

use super::error::CloudError;
use super::{Ctx, Desired, aws, drift, operations};
use crate::contract::plan_id::{PlanInputs, plan_id};
use crate::contract::{Operation, RunResult, RunSpec, StackRun};
use crate::engine::error::{RunError, io_err};
use crate::engine::objects::{self, secret_key};
use crate::engine::options::Options;
use crate::engine::redact::Secrets;
use crate::engine::{artifact, values};

/// The engine version plan IDs of stacks are made with.
const ENGINE: &str = "CloudFormation";

/// Runs `spec` against the stack `stack`.
pub async fn run(
    client: &Client,
    spec: &RunSpec,
    stack: &StackRun,
    opts: &Options,
    secrets: &Secrets,
) -> Result<RunResult, RunError> {
    let keys = match &stack.credentials_secret {
        Some(name) => Some(access_keys(client, &spec.namespace, name, secrets).await?),
        None => None,
    };
    let aws = aws::connect(stack, keys).await;
    let owner = format!("{}/{}", spec.namespace, spec.owner.name);
    let ctx = Ctx {
        aws: &aws,
        stack,
        owner: &owner,
        uid: &spec.owner.uid,
    };
    if stack.read_only && matches!(spec.operation, Operation::Apply | Operation::Destroy) {
        // The controller never asks for these in DriftOnly mode; a run that raced a mode
        // change must not act either.
        return Err(RunError::Input(format!(
            "stack {} is in DriftOnly mode: a {:?} run changes nothing",
            stack.stack_name, spec.operation
        )));
    }
    let mut result = match spec.operation {
        // Neither deleting a stack nor executing a change set needs the template: these work
        // even when the artifact is gone.
        Operation::Destroy => operations::destroy(&ctx).await?,
        Operation::Apply => {
            let id = spec.plan_id.clone().ok_or_else(|| {
                RunError::Input("an apply run needs the ID of the plan to apply".into())
            })?;
            operations::apply(&ctx, &id).await?
        }
        Operation::Plan | Operation::Drift => {
            let (template, params, params_identity) =
                desired(client, spec, stack, opts, secrets).await?;
            let desired = Desired {
                template: &template,
                params: &params,
                inputs_id: plan_id(&PlanInputs {
                    work: &spec.work,
                    artifact_digest: &spec.artifact.digest,
                    engine_version: ENGINE,
                    resolved: &serde_json::json!({ "parameters": params_identity }),
                }),
            };
            if spec.operation == Operation::Plan && stack.read_only {
                drift::preview(&ctx, &desired).await?
            } else if spec.operation == Operation::Plan {
                operations::plan(&ctx, &desired).await?
            } else {
                drift::check(&ctx, &desired).await?
            }
        }
    };
    // Outputs are written after an apply, and after a plan without changes, so that a Secret
    // asked for later is written without a stack update.
    let outputs_due = match spec.operation {
        Operation::Apply => true,
        Operation::Plan => !result.has_changes,
        _ => false,
    };
    if let Some(target) = spec
        .outputs_secret
        .as_ref()
        .filter(|_| outputs_due && result.succeeded)
    {
        let outputs = operations::outputs(&ctx, target.outputs.as_deref()).await?;
        result.outputs = objects::write_outputs(client, spec, target, outputs).await?;
    }
    Ok(result)
}

/// The template from the artifact, the resolved parameters, and what stands for them in the
/// plan ID (see [`values`]).
async fn desired(
    client: &Client,
    spec: &RunSpec,
    stack: &StackRun,
    opts: &Options,
    secrets: &Secrets,
) -> Result<
    (
        String,
        BTreeMap<String, String>,
        serde_json::Map<String, serde_json::Value>,
    ),
    RunError,
> {
    let ws = artifact::workspace(client, spec, "", opts, secrets).await?;
    let template_file = crate::engine::workspace::inside(&ws.module, &stack.template_path)?;
    let body = match std::fs::read(&template_file) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
            CloudError::InvalidTemplate(format!("{} is not UTF-8 text", stack.template_path))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CloudError::TemplateNotFound {
                path: stack.template_path.clone(),
            }
            .into());
        }
        Err(e) => {
            return Err(io_err(format!("reading {}", stack.template_path))(e));
        }
    };
    let base = stack
        .parameters
        .iter()
        .map(|p| (p.key.clone(), serde_json::Value::String(p.value.clone())))
        .collect();
    let resolved = values::resolve(
        client,
        spec,
        base,
        &stack.parameters_from,
        "spec.parametersFrom",
        secrets,
    )
    .await?;
    let params = resolved
        .values
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    Ok((body, params, resolved.identity))
}

async fn access_keys(
    client: &Client,
    ns: &str,
    name: &str,
    secrets: &Secrets,
) -> Result<aws::AccessKeys, RunError> {
    let text = |bytes: Vec<u8>, key: &str| {
        String::from_utf8(bytes)
            .map(|s| s.trim().to_string())
            .map_err(|_| RunError::Input(format!("Secret {ns}/{name} key {key} is not UTF-8")))
    };
    let id = text(
        secret_key(client, ns, name, "AWS_ACCESS_KEY_ID", secrets).await?,
        "AWS_ACCESS_KEY_ID",
    )?;
    let secret = text(
        secret_key(client, ns, name, "AWS_SECRET_ACCESS_KEY", secrets).await?,
        "AWS_SECRET_ACCESS_KEY",
    )?;
    let session_token = match secret_key(client, ns, name, "AWS_SESSION_TOKEN", secrets).await {
        Ok(bytes) => Some(text(bytes, "AWS_SESSION_TOKEN")?),
        Err(RunError::Input(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(aws::AccessKeys {
        id,
        secret,
        session_token,
    })
}
