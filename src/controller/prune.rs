//! Removing what runs leave behind once status holds it (see
//! [`super::decide::retention`]). Failing to remove something is logged, never fatal: the
//! owner references still let garbage collection take it with the object.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};

use super::context::Context;
use super::decide::retention::{Listed, stale};
use super::kinds::Kind;
use crate::contract::names::LABEL_OWNER;

/// Deletes the object's results of runs before `run`, and its plans other than `plan`.
pub async fn prune<K: Kind>(obj: &K, ctx: &Context, ns: &str, run: &str, plan: Option<&str>) {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{LABEL_OWNER}={}", obj.name_any());
    let list = match api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "listing an object's Secrets to prune them failed");
            return;
        }
    };
    let uid = obj.uid().unwrap_or_default();
    let none = Default::default();
    let owned: Vec<Listed> = list
        .items
        .iter()
        .filter(|s| {
            s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid)
        })
        .filter_map(|s| {
            Some(Listed {
                name: s.metadata.name.as_deref()?,
                labels: s.metadata.labels.as_ref().unwrap_or(&none),
            })
        })
        .collect();
    for name in stale(&owned, run, plan) {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await {
            tracing::warn!(secret = %name, error = %e, "deleting a stale Secret failed");
        }
    }
}
