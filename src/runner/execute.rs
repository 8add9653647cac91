//! One run, end to end: resolve variables, fetch the verified artifact, run the engine, and
//! leave the results in Kubernetes objects owned by the object the run belongs to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::cloudformation::CloudError;
use super::opentofu::EngineError;
use super::spec::{RunResult, RunSpec, Work};
use super::workspace;
use crate::api::{OutputsSecret, ValuesFromKind};
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

/// [`REASONS`] and the CloudFormation engine's own.
pub fn known_reason(reason: &str) -> Option<&'static str> {
    REASONS
        .iter()
        .chain(super::cloudformation::REASONS)
        .find(|r| **r == reason)
        .copied()
}

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
    #[error(transparent)]
    Cloud(#[from] CloudError),
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
            Self::Cloud(e) => e.reason(),
            Self::ValuesSourceNotFound { .. } => "VarsSourceNotFound",
            Self::Input(_) => "InvalidInput",
            Self::PlanNotFound { .. } => "PlanNotFound",
            Self::Kube { .. } | Self::Io { .. } => "RunnerFailed",
        }
    }
}

pub(super) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Kube { what, source }
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
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
    match &spec.work {
        Work::OpenTofu(module) => super::module::run(client, spec, module, &opts.tofu, opts).await,
        Work::Terraform(module) => {
            super::module::run(client, spec, module, &opts.terraform, opts).await
        }
        Work::CloudFormation(stack) => super::cloudformation::run(client, spec, stack, opts).await,
    }
}

/// Fetches the verified artifact (through the cache) into a fresh workspace, with `path` as
/// its working directory.
pub(super) async fn workspace(
    client: &Client,
    spec: &RunSpec,
    path: &str,
    opts: &Options,
) -> Result<workspace::Workspace, RunError> {
    let creds = match &spec.artifact.secret_ref {
        Some(name) => {
            let data = secret_key(client, &spec.namespace, name, ".dockerconfigjson").await?;
            let registry = crate::source::oci::Repository::parse(&spec.artifact.url)?.registry;
            credentials::lookup(&data, &registry)
                .map_err(|e| RunError::Input(format!("Secret {name}: {e}")))?
        }
        None => None,
    };
    let cache = Cache::new(&opts.cache_dir);
    Ok(workspace::prepare(&spec.artifact, creds, path, &cache, &opts.limits).await?)
}

pub(super) async fn secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, RunError> {
    Ok(versioned_secret_key(client, ns, name, key).await?.0)
}

/// A key of a Secret, and the Secret's resourceVersion (which stands for the value in plan IDs).
pub(super) async fn versioned_secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<(Vec<u8>, String), RunError> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {ns}/{name}")))?
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} does not exist")))?;
    let version = secret.metadata.resource_version.unwrap_or_default();
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| (b.0, version))
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} has no key {key:?}")))
}

pub(super) fn owned_secret(
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

pub(super) async fn apply_secret(
    client: &Client,
    spec: &RunSpec,
    secret: &Secret,
) -> Result<(), RunError> {
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

/// Writes the outputs Secret (owned by the object) and returns the names written.
pub(super) async fn write_outputs(
    client: &Client,
    spec: &RunSpec,
    target: &OutputsSecret,
    outputs: Vec<(String, String)>,
) -> Result<Vec<String>, RunError> {
    let names = outputs.iter().map(|o| o.0.clone()).collect();
    let data = outputs
        .into_iter()
        .map(|(name, value)| (name, ByteString(value.into_bytes())))
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
