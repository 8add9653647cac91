//! The effects every step shares: writing an object's status and recording its events. What
//! to write is decided in [`super::decide`]; this is where it reaches the API server.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::finalizer;

use super::context::Context;
use super::decide::outcome::{EventSpec, Settled};
use crate::api::Managed;

/// The field manager of everything the controller writes.
pub const MANAGER: &str = "landform-controller";

/// Errors talking to the API server. Everything that is the object's own problem is written to
/// its status instead and is not an error here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object has no namespace")]
    NoNamespace,
    #[error("writing the status of {kind} {namespace}/{name}: {source}")]
    StatusPatch {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the object changed since it was read; looking again")]
    Stale,
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<Error>>),
}

impl Error {
    /// Whether the object changed since it was read (directly, or under the finalizer).
    pub fn is_stale(&self) -> bool {
        match self {
            Self::Stale => true,
            Self::Finalizer(e) => matches!(
                **e,
                finalizer::Error::ApplyFailed(Error::Stale)
                    | finalizer::Error::CleanupFailed(Error::Stale)
            ),
            _ => false,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::StatusPatch { .. } => "StatusPatchFailed",
            Self::Stale => "StaleRead",
            Self::Finalizer(_) => "FinalizerFailed",
        }
    }
}

/// Writes `settled.status` if it changed, then records its event.
pub async fn write<K: Managed>(
    obj: &K,
    ctx: &Context,
    namespace: &str,
    settled: &Settled,
) -> Result<(), Error> {
    if obj.object_status() != Some(&settled.status) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
        // The resourceVersion makes the write conditional: a status computed from a stale
        // view of the object (a cache behind a write of ours) is refused instead of undoing
        // what is recorded, such as a run already started.
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": obj.resource_version()},
            "status": settled.status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| match source {
            kube::Error::Api(ref e) if e.code == 409 => Error::Stale,
            source => Error::StatusPatch {
                kind: K::KIND,
                namespace: namespace.to_string(),
                name: obj.name_any(),
                source,
            },
        })?;
    }
    if let Some(event) = &settled.event {
        publish(ctx, obj, event).await;
    }
    Ok(())
}

/// Records an event; failing to record one is logged, never fatal.
pub async fn publish<K: Managed>(ctx: &Context, obj: &K, event: &EventSpec) {
    let result = ctx
        .recorder
        .publish(
            obj.object_ref(&()),
            event.warning,
            &event.reason,
            &event.note,
            event.repeat,
        )
        .await;
    if let Err(e) = result {
        tracing::warn!(kind = K::KIND, name = %obj.name_any(), error = %e, "recording an event failed");
    }
}
