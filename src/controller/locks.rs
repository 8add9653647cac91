//! State locks of the default `kubernetes` backend: a Lease (named by
//! [`super::kinds::Kind::state_lease`]) whose holder is OpenTofu's lock ID. Landform records which run holds it, and when that run's
//! runner is gone, releases the lock with exactly that ID instead of leaving it forever.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};

use super::context::Context;
use super::decide::collect::lock_is_the_runs;
use crate::api::LockStatus;

/// OpenTofu's description of a lock, on the Lease.
const LOCK_INFO: &str = "app.terraform.io/lock-info";

/// The lock `run` (started at `started`) holds now, as status shows it: `None` when nobody
/// holds it, or someone else does (see [`lock_is_the_runs`]).
pub async fn observe(
    ctx: &Context,
    ns: &str,
    lease: &str,
    run: &str,
    started: Option<&Time>,
) -> Option<LockStatus> {
    let lease = Api::<Lease>::namespaced(ctx.client.clone(), ns)
        .get_opt(lease)
        .await
        .ok()??;
    let info = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOCK_INFO));
    if !lock_is_the_runs(info.map(String::as_str), run, started) {
        return None;
    }
    let spec = lease.spec?;
    let id = spec.holder_identity.filter(|h| !h.is_empty())?;
    Some(LockStatus {
        id,
        holder_run: run.to_string(),
        since: spec.acquire_time.map(|t| Time(t.0)),
    })
}

/// Releases the lock if it is still held with `id` (never someone else's). Returns whether it
/// released it.
pub async fn release(ctx: &Context, ns: &str, lease: &str, id: &str) -> Result<bool, kube::Error> {
    let api = Api::<Lease>::namespaced(ctx.client.clone(), ns);
    let Some(current) = api.get_opt(lease).await? else {
        return Ok(false);
    };
    let holder = current
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(id) {
        return Ok(false);
    }
    // The resourceVersion makes this a compare-and-swap: a lock taken meanwhile stays.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "spec": {"holderIdentity": null, "acquireTime": null, "renewTime": null},
    });
    api.patch(lease, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}
