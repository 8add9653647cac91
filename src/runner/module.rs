//! Runs of an OpenTofu / Terraform module: init with the backend, then plan (kept in Secrets),
//! apply of exactly the saved plan, destroy, or a refresh-only drift check.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams};

use super::execute::{
    self, LABEL_OWNER, LABEL_PART, LABEL_PLAN, Options, RunError, apply_secret, io_err, kube_err,
    owned_secret, versioned_secret_key,
};
use super::identity::{self, PlanInputs};
use super::opentofu::{PlanMode, Tofu};
use super::spec::{Backend, DriftReport, ModuleRun, Operation, RunResult, RunSpec};
use super::values::{self, Resolved};
use super::{chunks, plan, workspace};

/// Runs `spec` on the module `m` with the OpenTofu or Terraform binary `bin`.
pub async fn run(
    client: &Client,
    spec: &RunSpec,
    m: &ModuleRun,
    bin: &Path,
    opts: &Options,
) -> Result<RunResult, RunError> {
    let base = m
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    let Resolved {
        values: vars,
        identity: vars_identity,
    } = values::resolve(client, spec, base, &m.vars_from, "spec.varsFrom").await?;
    // What stands for a backend read from a Secret in the plan ID (it may hold credentials).
    let mut backend_identity = None;
    let raw_backend = match &m.backend {
        Backend::FromSecret { name, key } => {
            let (bytes, version) = versioned_secret_key(client, &spec.namespace, name, key).await?;
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

    let ws = execute::workspace(client, spec, &m.path, opts).await?;
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
            let id = identity::plan_id(&PlanInputs {
                artifact_digest: &spec.artifact.digest,
                path: &m.path,
                workspace: &m.workspace,
                engine_version: &version,
                vars: &vars_identity,
                backend: backend_identity.as_deref().unwrap_or(&backend),
                destroy: false,
            });
            tofu.plan(&ws.module, &plan_file, PlanMode::Normal).await?;
            let shown = tofu.show(&ws.module, &plan_file).await?;
            let summary =
                plan::summarize(&shown, false).map_err(|e| RunError::Input(e.to_string()))?;
            result.has_changes = plan::has_changes(&shown);
            let bytes = std::fs::read(&plan_file).map_err(io_err("reading the saved plan"))?;
            store_plan(client, spec, &id, &bytes).await?;
            result.plan_id = Some(id);
            result.summary = Some(summary.counts);
            result.resources = summary.resources;
        }
        Operation::Apply => {
            let id = spec.plan_id.clone().ok_or_else(|| {
                RunError::Input("an apply run needs the ID of the plan to apply".into())
            })?;
            let bytes = load_plan(client, spec, &id).await?;
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

fn plan_labels(spec: &RunSpec, id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_OWNER.to_string(), spec.owner.name.clone()),
        (LABEL_PLAN.to_string(), id.to_string()),
    ])
}

/// The saved plan, gzip-compressed, in Secrets of at most ~900 KiB each.
async fn store_plan(
    client: &Client,
    spec: &RunSpec,
    id: &str,
    bytes: &[u8],
) -> Result<(), RunError> {
    let pieces = chunks::pack(bytes, chunks::CHUNK).map_err(io_err("compressing the plan"))?;
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut labels = plan_labels(spec, id);
        labels.insert(LABEL_PART.into(), format!("{i}-of-{count}"));
        let data = BTreeMap::from([("plan.gz".to_string(), ByteString(piece))]);
        let secret = owned_secret(
            spec,
            format!("{}-plan-{id}-{i}", spec.owner.name),
            labels,
            data,
        );
        apply_secret(client, spec, &secret).await?;
    }
    Ok(())
}

async fn load_plan(client: &Client, spec: &RunSpec, id: &str) -> Result<Vec<u8>, RunError> {
    let selector = format!("{LABEL_OWNER}={},{LABEL_PLAN}={id}", spec.owner.name);
    let list = Api::<Secret>::namespaced(client.clone(), &spec.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err("listing the plan Secrets"))?;
    let mut parts: Vec<(usize, usize, Vec<u8>)> = list
        .items
        .into_iter()
        .filter_map(|s| {
            let part = s.metadata.labels.as_ref()?.get(LABEL_PART)?.clone();
            let (i, n) = part.split_once("-of-")?;
            let data = s.data?.remove("plan.gz")?.0;
            Some((i.parse().ok()?, n.parse().ok()?, data))
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let complete = !parts.is_empty()
        && parts
            .iter()
            .enumerate()
            .all(|(i, p)| p.0 == i && p.1 == parts.len());
    if !complete {
        return Err(RunError::PlanNotFound { plan_id: id.into() });
    }
    let pieces: Vec<Vec<u8>> = parts.into_iter().map(|p| p.2).collect();
    chunks::unpack(&pieces).map_err(io_err("decompressing the plan"))
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
    execute::write_outputs(client, spec, target, selected).await
}
