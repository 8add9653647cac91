//! One run of an OpenTofu / Terraform module, from the run spec to its result.

use std::path::Path;

use kube::Client;

use super::cli::{PlanMode, Tofu};
use super::{plan, saved};
use crate::contract::plan_id::{PlanInputs, bind, plan_id};
use crate::contract::{Backend, DriftReport, ModuleRun, Operation, RunResult, RunSpec};
use crate::engine::error::{RunError, io_err};
use crate::engine::objects::{self, versioned_secret_key};
use crate::engine::options::Options;
use crate::engine::redact::Secrets;
use crate::engine::values::{self, Resolved};
use crate::engine::{artifact, workspace};

/// Runs `spec` on the module `m` with the OpenTofu or Terraform binary `bin`.
pub async fn run(
    client: &Client,
    spec: &RunSpec,
    m: &ModuleRun,
    bin: &Path,
    opts: &Options,
    secrets: &Secrets,
) -> Result<RunResult, RunError> {
    let base = m
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    let Resolved {
        values: vars,
        identity: vars_identity,
    } = values::resolve(client, spec, base, &m.vars_from, "spec.varsFrom", secrets).await?;
    // What stands for a backend read from a Secret in the plan ID (it may hold credentials).
    let mut backend_identity = None;
    let raw_backend = match &m.backend {
        Backend::FromSecret { name, key } => {
            let (bytes, version) =
                versioned_secret_key(client, &spec.namespace, name, key, secrets).await?;
            backend_identity = Some(format!("Secret {name} key {key} version {version}"));
            Some(String::from_utf8(bytes).map_err(|_| {
                RunError::Input(format!("Secret {name} key {key} is not UTF-8 text"))
            })?)
        }
        _ => None,
    };
    let backend = workspace::backend_hcl(
        &m.backend,
        raw_backend.as_deref(),
        opts.in_cluster,
        opts.kubeconfig.as_deref(),
    );

    let ws = artifact::workspace(client, spec, &m.path, opts, secrets).await?;
    workspace::require_config(&ws, &m.path, &spec.artifact.revision)?;
    workspace::write_inputs(&ws, &backend, &vars)
        .map_err(io_err("writing the workspace inputs"))?;

    let mut env = vec![];
    if let Some(dir) = &opts.plugin_cache_dir {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        env.push(("TF_PLUGIN_CACHE_DIR".to_string(), dir.display().to_string()));
    }
    let tofu = Tofu {
        bin: bin.to_path_buf(),
        env,
    };
    let version = tofu.version(&ws.module).await?;
    tofu.init(&ws.module).await?;
    tofu.select_workspace(&ws.module, &m.workspace).await?;
    let plan_file = ws.scratch.join("tfplan");
    let mut result = RunResult {
        succeeded: true,
        engine_version: Some(version.clone()),
        ..Default::default()
    };

    match spec.operation {
        Operation::Plan => {
            let inputs = plan_id(&PlanInputs {
                work: &spec.work,
                artifact_digest: &spec.artifact.digest,
                engine_version: &version,
                resolved: &serde_json::json!({"vars": vars_identity, "backend": backend_identity}),
            });
            tofu.plan(&ws.module, &plan_file, PlanMode::Normal).await?;
            let shown = tofu.show(&ws.module, &plan_file).await?;
            // Plan IDs are public: values from Secrets stand in the changes masked.
            let changes = secrets.redact(&plan::changes(&shown).to_string());
            let id = bind(&inputs, &serde_json::Value::String(changes));
            let summary =
                plan::summarize(&shown, false).map_err(|e| RunError::Input(e.to_string()))?;
            result.has_changes = plan::has_changes(&shown);
            let bytes = std::fs::read(&plan_file).map_err(io_err("reading the saved plan"))?;
            saved::store(client, spec, &id, &bytes).await?;
            result.plan_id = Some(id);
            result.summary = Some(summary.counts);
            result.resources = summary.resources;
        }
        Operation::Apply => {
            let id = spec.plan_id.clone().ok_or_else(|| {
                RunError::Input("an apply run needs the ID of the plan to apply".into())
            })?;
            let bytes = saved::load(client, spec, &id).await?;
            std::fs::write(&plan_file, bytes).map_err(io_err("writing the saved plan"))?;
            tofu.apply(&ws.module, &plan_file, "apply").await?;
            result.plan_id = Some(id);
            result.outputs = write_outputs(client, spec, &tofu, &ws.module).await?;
        }
        Operation::Drift => {
            tofu.plan(&ws.module, &plan_file, PlanMode::RefreshOnly)
                .await?;
            let shown = tofu.show(&ws.module, &plan_file).await?;
            let drift =
                plan::summarize(&shown, true).map_err(|e| RunError::Input(e.to_string()))?;
            result.drift = Some(DriftReport {
                total: u32::try_from(drift.total).unwrap_or(u32::MAX),
                resources: drift.resources,
                limits: None,
            });
        }
        Operation::Destroy => {
            tofu.plan(&ws.module, &plan_file, PlanMode::Destroy).await?;
            let shown = tofu.show(&ws.module, &plan_file).await?;
            let summary =
                plan::summarize(&shown, false).map_err(|e| RunError::Input(e.to_string()))?;
            tofu.apply(&ws.module, &plan_file, "destroy").await?;
            result.summary = Some(summary.counts);
            result.resources = summary.resources;
        }
    }
    Ok(result)
}

async fn write_outputs(
    client: &Client,
    spec: &RunSpec,
    tofu: &Tofu,
    module: &Path,
) -> Result<Vec<String>, RunError> {
    let Some(target) = &spec.outputs_secret else {
        return Ok(vec![]);
    };
    let json = tofu.outputs(module).await?;
    let selected = plan::outputs(&json, target.outputs.as_deref())
        .into_iter()
        .map(|(name, value, _)| (name, value.to_string()))
        .collect();
    objects::write_outputs(client, spec, target, selected).await
}
