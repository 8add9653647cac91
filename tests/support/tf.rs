//! `Terraform` objects in tests: create one, wait for what its status says.

use std::time::Duration;

use kube::api::{Api, PostParams};
use landform::api::{ObjectStatus, Terraform};
use serde_json::json;

use super::eventually;

pub const WAIT: Duration = Duration::from_secs(180);

/// Creates the `Terraform` object `name` with `spec`.
pub async fn create_tf(api: &Api<Terraform>, name: &str, spec: serde_json::Value) {
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1",
        "kind": "Terraform", "metadata": {"name": name}, "spec": spec}))
    .unwrap();
    api.create(&PostParams::default(), &tf).await.unwrap();
}

/// Waits for condition `type_` of `name` to have `reason`.
pub async fn wait_condition(
    api: &Api<Terraform>,
    name: &str,
    type_: &str,
    reason: &str,
) -> ObjectStatus {
    eventually(&format!("{name} {type_} reason {reason}"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        let c = s.conditions.iter().find(|c| c.type_ == type_)?;
        (c.reason == reason).then_some(s)
    })
    .await
}

/// The message of condition `type_`.
pub fn condition_message(s: &ObjectStatus, type_: &str) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A namespace of its own (prefixed `prefix`) with the CRDs installed: the admin client, the
/// namespace, and its `Terraform` API.
pub async fn tenant(prefix: &str) -> (kube::Client, String, Api<Terraform>) {
    let client = super::admin_client().await;
    super::install_crds(&client).await;
    let ns = super::namespace(&client, prefix).await;
    let api = Api::namespaced(client.clone(), &ns);
    (client, ns, api)
}

/// `spec.source` for tag `1` of `repo` on the test registry.
pub fn oci(repo: &str) -> serde_json::Value {
    json!({"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}})
}
