//! The runner's Kubernetes I/O: Secrets it reads (values, credentials) and the objects it
//! writes, each owned by the object the run belongs to, so they go with it: the result, the
//! outputs Secret and saved plans.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::error::{RunError, kube_err};
use super::redact::Secrets;
use crate::api::OutputsSecret;
use crate::contract::names::{self, LABEL_OWNER};
use crate::contract::{RunResult, RunSpec};

/// The field manager of everything the runner writes.
pub const MANAGER: &str = "landform-runner";

/// A key of a Secret; its value is remembered in `secrets`, to be kept out of results.
pub async fn secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    secrets: &Secrets,
) -> Result<Vec<u8>, RunError> {
    Ok(versioned_secret_key(client, ns, name, key, secrets)
        .await?
        .0)
}

/// A key of a Secret, and the Secret's resourceVersion (which stands for the value in plan
/// IDs); the value is remembered in `secrets`, to be kept out of results.
pub async fn versioned_secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    secrets: &Secrets,
) -> Result<(Vec<u8>, String), RunError> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {ns}/{name}")))?
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} does not exist")))?;
    let version = secret.metadata.resource_version.unwrap_or_default();
    let value = secret
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| RunError::Input(format!("Secret {ns}/{name} has no key {key:?}")))?;
    secrets.add(&String::from_utf8_lossy(&value.0));
    Ok((value.0, version))
}

/// The labels of every object a run writes, and `extra`.
pub fn owner_labels(spec: &RunSpec, extra: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(LABEL_OWNER.to_string(), spec.owner.name.clone())]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    labels
}

pub fn owned_secret(
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

pub async fn apply_secret(
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

/// Refuses an outputs Secret that exists and is not the object's: outputs must never
/// overwrite a Secret someone else wrote (a tenant could otherwise aim them at any Secret the
/// runner may write).
pub async fn check_outputs_target(
    client: &Client,
    spec: &RunSpec,
    target: &OutputsSecret,
) -> Result<(), RunError> {
    let existing = Api::<Secret>::namespaced(client.clone(), &spec.namespace)
        .get_opt(&target.name)
        .await
        .map_err(kube_err(format!(
            "reading Secret {}/{}",
            spec.namespace, target.name
        )))?;
    let owned = |s: &Secret| {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == spec.owner.uid)
    };
    match existing {
        Some(s) if !owned(&s) => Err(RunError::OutputsSecretNotOwned {
            name: target.name.clone(),
        }),
        _ => Ok(()),
    }
}

/// Writes the outputs Secret (owned by the object) and returns the names written.
pub async fn write_outputs(
    client: &Client,
    spec: &RunSpec,
    target: &OutputsSecret,
    outputs: Vec<(String, String)>,
) -> Result<Vec<String>, RunError> {
    check_outputs_target(client, spec, target).await?;
    let names = outputs.iter().map(|o| o.0.clone()).collect();
    let data = outputs
        .into_iter()
        .map(|(name, value)| (name, ByteString(value.into_bytes())))
        .collect();
    let secret = owned_secret(spec, target.name.clone(), owner_labels(spec, &[]), data);
    apply_secret(client, spec, &secret).await?;
    Ok(names)
}

/// The result, in the run's result Secret (a Secret because engine diagnostics may quote
/// configuration).
pub async fn write_result(
    client: &Client,
    spec: &RunSpec,
    result: &RunResult,
) -> Result<(), RunError> {
    let json = serde_json::to_vec(result).map_err(|e| RunError::Input(e.to_string()))?;
    let data = BTreeMap::from([(names::RESULT_KEY.to_string(), ByteString(json))]);
    let name = names::result_secret(&spec.name);
    let labels = owner_labels(spec, &[(names::LABEL_RESULT, spec.name.clone())]);
    let secret = owned_secret(spec, name, labels, data);
    apply_secret(client, spec, &secret).await
}
