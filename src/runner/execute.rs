//! One run, end to end: resolve variables, fetch the verified artifact, run the engine, and
//! leave the results in Kubernetes objects owned by the object the run belongs to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};
use serde_json::{Map, Value};

use super::identity::{self, PlanInputs};
use super::opentofu::{EngineError, PlanMode, Tofu};
use super::spec::{Backend, DriftReport, Operation, RunResult, RunSpec};
use super::{chunks, plan, workspace};
use crate::api::{Engine, ValuesFromKind};
use crate::source::archive::Limits;
use crate::source::cache::Cache;
use crate::source::credentials;
use crate::source::fetch::FetchError;

pub const MANAGER: &str = "landform-runner";
pub const LABEL_OWNER: &str = "landform.dev/owner";
pub const LABEL_PLAN: &str = "landform.dev/plan-id";
pub const LABEL_PART: &str = "landform.dev/part";

/// Every reason a run result may carry (from fetching, extraction, the engine and the runner).
pub const REASONS: &[&str] = &[
    "InvalidSource",
    "SourceUnavailable",
    "SourceUnauthorized",
    "ArtifactNotFound",
    "NoMatchingVersion",
    "InvalidArtifact",
    "DigestMismatch",
    "ArtifactTooLarge",
    "UnsafeArtifact",
    "ExtractionFailed",
    "FetchFailed",
    "EngineUnavailable",
    "StateLocked",
    "EngineFailed",
    "InitFailed",
    "PlanFailed",
    "ApplyFailed",
    "DestroyFailed",
    "VarsSourceNotFound",
    "InvalidInput",
    "PlanNotFound",
    "RunnerFailed",
];

/// Runner settings from its command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub tofu: PathBuf,
    pub terraform: PathBuf,
    pub cache_dir: PathBuf,
    pub limits: Limits,
    /// Passed to the engine as TF_PLUGIN_CACHE_DIR, so providers are downloaded once.
    pub plugin_cache_dir: Option<PathBuf>,
    /// In a pod: the kubernetes backend uses the pod's service account.
    pub in_cluster: bool,
    /// Outside a pod: the kubeconfig the kubernetes backend uses.
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "{kind:?} {namespace}/{name} named in {field} does not exist (mark it optional: true if that is expected)"
    )]
    ValuesSourceNotFound {
        field: &'static str,
        kind: ValuesFromKind,
        namespace: String,
        name: String,
    },
    #[error("{0}")]
    Input(String),
    #[error("the plan {plan_id} to apply is gone (its Secrets were deleted); plan again")]
    PlanNotFound { plan_id: String },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason(),
            Self::Engine(e) => e.reason(),
            Self::ValuesSourceNotFound { .. } => "VarsSourceNotFound",
            Self::Input(_) => "InvalidInput",
            Self::PlanNotFound { .. } => "PlanNotFound",
            Self::Kube { .. } | Self::Io { .. } => "RunnerFailed",
        }
    }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Kube { what, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// Runs `spec` and writes its result object; returns the result.
pub async fn run(client: &Client, spec: &RunSpec, opts: &Options) -> Result<RunResult, RunError> {
    let result = match execute(client, spec, opts).await {
        Ok(r) => r,
        Err(e) => RunResult {
            succeeded: false,
            reason: Some(e.reason().into()),
            message: Some(e.to_string()),
            ..Default::default()
        },
    };
    write_result(client, spec, &result).await?;
    Ok(result)
}

async fn execute(client: &Client, spec: &RunSpec, opts: &Options) -> Result<RunResult, RunError> {
    let vars = resolve_vars(client, spec).await?;
    let creds = match &spec.artifact.secret_ref {
        Some(name) => {
            let data = secret_key(client, &spec.namespace, name, ".dockerconfigjson").await?;
            let registry = crate::source::oci::Repository::parse(&spec.artifact.url)?.registry;
            credentials::lookup(&data, &registry)
                .map_err(|e| RunError::Input(format!("Secret {name}: {e}")))?
        }
        None => None,
    };
    let raw_backend = match &spec.backend {
        Backend::FromSecret { name, key } => {
            let bytes = secret_key(client, &spec.namespace, name, key).await?;
            Some(String::from_utf8(bytes).map_err(|_| {
                RunError::Input(format!("Secret {name} key {key} is not UTF-8 text"))
            })?)
        }
        _ => None,
    };
    let backend = workspace::backend_hcl(
        &spec.backend,
        raw_backend.as_deref(),
        opts.in_cluster,
        opts.kubeconfig.as_deref(),
    );

    let cache = Cache::new(&opts.cache_dir);
    let ws = workspace::prepare(&spec.artifact, creds, &spec.path, &cache, &opts.limits).await?;
    workspace::write_inputs(&ws, &backend, &vars)
        .map_err(io_err("writing the workspace inputs"))?;

    let mut env = vec![];
    if let Some(dir) = &opts.plugin_cache_dir {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        env.push(("TF_PLUGIN_CACHE_DIR".to_string(), dir.display().to_string()));
    }
    let tofu = Tofu {
        bin: match spec.engine {
            Engine::OpenTofu => opts.tofu.clone(),
            Engine::Terraform => opts.terraform.clone(),
        },
        env,
    };
    let version = tofu.version(&ws.module).await?;
    tofu.init(&ws.module).await?;
    tofu.select_workspace(&ws.module, &spec.workspace).await?;
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
                path: &spec.path,
                workspace: &spec.workspace,
                engine_version: &version,
                vars: &vars,
                backend: &backend,
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

async fn secret_key(client: &Client, ns: &str, name: &str, key: &str) -> Result<Vec<u8>, RunError> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {ns}/{name}")))?
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} does not exist")))?;
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} has no key {key:?}")))
}

/// `vars`, then each `varsFrom` source in order; later values win.
async fn resolve_vars(client: &Client, spec: &RunSpec) -> Result<Map<String, Value>, RunError> {
    let mut vars: Map<String, Value> = spec
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();
    for src in &spec.vars_from {
        let ns = &spec.namespace;
        let data: Option<BTreeMap<String, Vec<u8>>> = match src.kind {
            ValuesFromKind::Secret => Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&src.name)
                .await
                .map_err(kube_err(format!("reading Secret {ns}/{}", src.name)))?
                .map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                }),
            ValuesFromKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&src.name)
                .await
                .map_err(kube_err(format!("reading ConfigMap {ns}/{}", src.name)))?
                .map(|c| {
                    c.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect()
                }),
        };
        let Some(data) = data else {
            if src.optional {
                continue;
            }
            return Err(RunError::ValuesSourceNotFound {
                field: "spec.varsFrom",
                kind: src.kind,
                namespace: ns.clone(),
                name: src.name.clone(),
            });
        };
        for (key, value) in data {
            if src.keys.as_ref().is_some_and(|keys| !keys.contains(&key)) {
                continue;
            }
            let text = String::from_utf8(value).map_err(|_| {
                RunError::Input(format!(
                    "{:?} {}: key {key} is not UTF-8 text",
                    src.kind, src.name
                ))
            })?;
            vars.insert(key, Value::String(text));
        }
    }
    Ok(vars)
}

fn owned_secret(
    spec: &RunSpec,
    name: String,
    labels: BTreeMap<String, String>,
    data: BTreeMap<String, ByteString>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![spec.owner.reference()]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

async fn apply_secret(client: &Client, spec: &RunSpec, secret: &Secret) -> Result<(), RunError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut secret = secret.clone();
    secret.metadata.managed_fields = None;
    let patch = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": secret.metadata, "type": secret.type_, "data": secret.data});
    Api::<Secret>::namespaced(client.clone(), &spec.namespace)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(kube_err(format!(
            "writing Secret {}/{name}",
            spec.namespace
        )))
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
    module: &std::path::Path,
) -> Result<Vec<String>, RunError> {
    let Some(target) = &spec.outputs_secret else {
        return Ok(vec![]);
    };
    let json = tofu.outputs(module).await?;
    let selected = plan::outputs(&json, target.outputs.as_deref());
    let names: Vec<String> = selected.iter().map(|o| o.0.clone()).collect();
    let data = selected
        .into_iter()
        .map(|(name, value, _)| (name, ByteString(value.to_string().into_bytes())))
        .collect();
    let labels = BTreeMap::from([(LABEL_OWNER.to_string(), spec.owner.name.clone())]);
    apply_secret(
        client,
        spec,
        &owned_secret(spec, target.name.clone(), labels, data),
    )
    .await?;
    Ok(names)
}

/// The result, in Secret `<run>-result` under key `result.json` (a Secret because engine
/// diagnostics may quote configuration).
async fn write_result(client: &Client, spec: &RunSpec, result: &RunResult) -> Result<(), RunError> {
    let json = serde_json::to_vec(result).map_err(|e| RunError::Input(e.to_string()))?;
    let labels = BTreeMap::from([(LABEL_OWNER.to_string(), spec.owner.name.clone())]);
    let data = BTreeMap::from([("result.json".to_string(), ByteString(json))]);
    apply_secret(
        client,
        spec,
        &owned_secret(spec, format!("{}-result", spec.name), labels, data),
    )
    .await
}
