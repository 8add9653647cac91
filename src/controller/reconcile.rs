//! One reconcile loop for both kinds: the finalizer helper with separate apply and cleanup, and
//! the steps fetch → validate → resolve → settle status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};

use super::context::Context;
use super::metrics::{FailureLabels, KindLabels, ObjectLabels};
use super::outcome::{self, Outcome, RetryPolicy, Settled};
use super::source::{self, Resolution};
use super::work::Runnable;
use super::{backoff, steps};
use super::{deletion, flow};
use crate::api::{FINALIZER, Managed};

/// The field manager of everything the controller writes.
pub const MANAGER: &str = "landform-controller";
/// Flux's annotation for "reconcile now"; honoured so that `flux reconcile`-style tooling works.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

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
    #[error(transparent)]
    Finalizer(#[from] Box<finalizer::Error<Error>>),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::StatusPatch { .. } => "StatusPatchFailed",
            Self::Finalizer(_) => "FinalizerFailed",
        }
    }
}

pub async fn reconcile<K: Runnable>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    ctx.metrics
        .reconciliations
        .get_or_create(&ObjectLabels {
            kind: K::KIND,
            namespace: namespace.clone(),
        })
        .inc();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleting =
        obj.meta().deletion_timestamp.is_some() && obj.finalizers().iter().any(|f| f == FINALIZER);
    let mut destroyed = false;
    if deleting {
        match deletion::before_release(&*obj, &ctx, &namespace).await? {
            deletion::Release::Later(action) => return Ok(action),
            deletion::Release::Now { destroyed: d } => destroyed = d,
        }
    }
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            finalizer::Event::Apply(o) => apply(o, &ctx, &namespace).await,
            finalizer::Event::Cleanup(o) => deletion::cleanup(&*o, &ctx, destroyed).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .get_or_create(&KindLabels { kind: K::KIND })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Requeue after a failure to talk to the API server (the object's own backoff lives in its
/// status; this one covers not being able to write that status).
pub fn error_policy<K: Managed>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(kind = K::KIND, namespace = ?obj.namespace(), name = %obj.name_any(), error = %err, "reconcile failed");
    ctx.metrics
        .failures
        .get_or_create(&FailureLabels {
            kind: K::KIND,
            namespace: obj.namespace().unwrap_or_default(),
            reason: err.reason(),
        })
        .inc();
    Action::requeue(Duration::from_secs(10))
}

pub(super) fn retry_policy<K: Managed>(obj: &K, timing: Option<&steps::Timing>) -> RetryPolicy {
    let (base, cap, max_retries) = match timing {
        Some(t) => (
            t.retry_interval,
            t.interval.max(t.retry_interval),
            t.max_retries,
        ),
        None => (
            steps::DEFAULT_RETRY_INTERVAL,
            Duration::from_secs(600),
            steps::DEFAULT_MAX_RETRIES,
        ),
    };
    RetryPolicy {
        base,
        cap,
        max_retries,
        seed: backoff::seed(obj.uid().as_deref().unwrap_or_default()),
    }
}

async fn apply<K: Runnable>(obj: Arc<K>, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let name = obj.name_any();
    let generation = obj.meta().generation;
    let status = obj.object_status();
    let timing = steps::validate(
        obj.common(),
        namespace,
        &name,
        ctx.settings.allow_cross_namespace_refs,
    );
    let policy = retry_policy(&*obj, timing.as_ref().ok());
    let requested = obj.annotations().get(REQUESTED_AT).cloned();
    let fresh_request = requested.is_some()
        && requested.as_ref() != status.and_then(|s| s.last_handled_reconcile_at.as_ref());

    // Scheduling is driven by status timestamps, so a restart does not redo work that is not due.
    if !fresh_request {
        if outcome::stalled(status, generation) {
            return Ok(Action::await_change());
        }
        if let Some(wait) =
            outcome::backing_off(status, generation, &policy, jiff::Timestamp::now())
        {
            return Ok(Action::requeue(wait));
        }
    }

    // A working copy of the status that the steps below advance.
    let mut work = status.cloned().unwrap_or_default();
    let mut launch = None;
    let result = match timing {
        Err(e) => Outcome::Failed {
            reason: e.reason(),
            message: e.to_string(),
            retryable: e.retryable(),
        },
        Ok(_) if obj.common().suspend => Outcome::Suspended,
        Ok(timing) => match resolve_unless_running(&work, obj.common(), namespace, ctx).await {
            Ok(Resolution::Waiting { reason, message }) => Outcome::Progressing {
                reason,
                message,
                // Watches on the source usually bring the object back sooner.
                requeue: timing.retry_interval,
            },
            Ok(Resolution::Resolved(found)) => {
                if work.artifact.as_ref().map(|a| &a.digest) != Some(&found.digest) {
                    let was = work
                        .artifact
                        .as_ref()
                        .map(|a| format!(" (was {})", a.revision))
                        .unwrap_or_default();
                    let note = format!("New revision {}{was}", found.revision);
                    let event = outcome::EventSpec {
                        warning: false,
                        reason: "NewRevision".into(),
                        note,
                    };
                    publish(ctx, &*obj, &event).await;
                }
                work.artifact = Some(found.clone());
                let (outcome, run) = flow::advance(&*obj, &mut work, &found, &timing, ctx).await;
                launch = run;
                outcome
            }
            Err(e) => Outcome::Failed {
                reason: e.reason(),
                message: e.to_string(),
                retryable: e.retryable(),
            },
        },
    };
    if let Outcome::Failed { reason, .. } = &result {
        ctx.metrics
            .failures
            .get_or_create(&FailureLabels {
                kind: K::KIND,
                namespace: namespace.to_string(),
                reason,
            })
            .inc();
    }

    let mut settled = outcome::settle(
        Some(&work),
        generation,
        result,
        &policy,
        Time(jiff::Timestamp::now()),
    );
    // A request that arrives while a run is in flight is handled once the run is collected
    // (a fresh plan then), not swallowed by the reconciles that only watch the run.
    let previous = status.and_then(|s| s.last_handled_reconcile_at.clone());
    let in_flight = status
        .and_then(|s| s.run.as_ref())
        .is_some_and(|r| matches!(r.phase.as_str(), "Pending" | "Running"));
    settled.status.last_handled_reconcile_at = if fresh_request && in_flight {
        previous
    } else {
        requested.or(previous)
    };
    if let Err(e) = write_status(&*obj, ctx, namespace, &settled).await {
        // The run was never recorded, so it must not start; give its slot back.
        if let Some(spec) = &launch {
            ctx.runs.cancel(&spec.namespace, &spec.name);
        }
        return Err(e);
    }
    // Only once the run is recorded in status is it started (see flow::advance).
    ctx.runs
        .launch(launch, super::runs::PodInputs::of(obj.common()))
        .await;
    Ok(match settled.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// While a run is in flight the object is looked at every few seconds; the source it runs is
/// already pinned, so it is not resolved again until the run is collected.
async fn resolve_unless_running(
    work: &crate::api::ObjectStatus,
    spec: &crate::api::CommonSpec,
    namespace: &str,
    ctx: &Context,
) -> Result<Resolution, source::SourceError> {
    let running = work.run.as_ref().is_some_and(|r| r.phase == "Running");
    match (&work.artifact, running) {
        (Some(artifact), true) => Ok(Resolution::Resolved(artifact.clone())),
        _ => source::resolve(spec, namespace, ctx).await,
    }
}

pub(super) async fn write_status<K: Managed>(
    obj: &K,
    ctx: &Context,
    namespace: &str,
    settled: &Settled,
) -> Result<(), Error> {
    if obj.object_status() != Some(&settled.status) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": settled.status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::StatusPatch {
            kind: K::KIND,
            namespace: namespace.to_string(),
            name: obj.name_any(),
            source,
        })?;
    }
    if let Some(event) = &settled.event {
        publish(ctx, obj, event).await;
    }
    Ok(())
}

/// Records an event; failing to record one is logged, never fatal.
pub(super) async fn publish<K: Managed>(ctx: &Context, obj: &K, event: &outcome::EventSpec) {
    let result = ctx
        .recorder
        .publish(
            obj.object_ref(&()),
            event.warning,
            &event.reason,
            &event.note,
        )
        .await;
    if let Err(e) = result {
        tracing::warn!(kind = K::KIND, name = %obj.name_any(), error = %e, "recording an event failed");
    }
}
