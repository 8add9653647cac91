//! The entry point of one reconciliation, for both kinds: the finalizer helper with separate
//! apply and cleanup (see [`super::deletion`]), and the steps fetch → validate → gate →
//! resolve → advance → settle status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};

use super::advance;
use super::context::Context;
use super::decide::due::{self, Gate};
use super::decide::outcome::{self, EventSpec, Outcome, RetryPolicy};
use super::decide::validate;
use super::deletion;
use super::kinds::Kind;
use super::metrics::{FailureLabels, KindLabels, ObjectLabels};
use super::refs;
use super::runs::PodInputs;
use super::source::{self, Resolution};
use super::status::{self, Error, publish};
use crate::api::{FINALIZER, Managed, REQUESTED_AT, RunPhase};

pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // An instance that cannot be sure it still leads (it could not renew, or was frozen past
    // its lease) does nothing at all: another may be acting.
    if !ctx.leadership.held() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    ctx.metrics
        .reconciliations
        .get_or_create(&ObjectLabels {
            kind: K::KIND,
            namespace: namespace.clone(),
        })
        .inc();
    // What it refers to, for the watches that wake it when a source or dependency changes.
    let referrer = (K::KIND, namespace.clone(), obj.name_any());
    if obj.meta().deletion_timestamp.is_some() {
        ctx.refs.remove(&referrer);
    } else {
        ctx.refs
            .set(referrer, refs::targets(K::KIND, &namespace, obj.common()));
    }
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
    // An object suspended before it ever ran has nothing to clean up: it gets no finalizer
    // until it is resumed, only its Suspended condition (one request, as with Flux).
    if !deleting && obj.common().suspend && !obj.finalizers().iter().any(|f| f == FINALIZER) {
        let settled = outcome::settle(
            obj.object_status(),
            obj.meta().generation,
            Outcome::Suspended,
            &RetryPolicy::new(None, ""),
            Time(jiff::Timestamp::now()),
        );
        status::write(&*obj, &ctx, &namespace, &settled).await?;
        return Ok(Action::await_change());
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
    // Not a failure: the cache was behind; the watch brings the fresh object right away.
    if err.is_stale() {
        tracing::debug!(kind = K::KIND, name = %obj.name_any(), "stale read; looking again");
        return Action::requeue(Duration::from_secs(1));
    }
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

async fn apply<K: Kind>(obj: Arc<K>, ctx: &Context, namespace: &str) -> Result<Action, Error> {
    let name = obj.name_any();
    let generation = obj.meta().generation;
    let status = obj.object_status();
    let timing = validate::validate(
        obj.common(),
        namespace,
        &name,
        ctx.settings.allow_cross_namespace_refs,
    );
    let policy = RetryPolicy::new(timing.as_ref().ok(), &obj.uid().unwrap_or_default());
    let requested = obj.annotations().get(REQUESTED_AT).cloned();
    let fresh_request = requested.is_some()
        && requested.as_ref() != status.and_then(|s| s.last_handled_reconcile_at.as_ref());

    match due::gate(
        status,
        generation,
        &policy,
        fresh_request,
        jiff::Timestamp::now(),
    ) {
        Gate::Stalled => return Ok(Action::await_change()),
        Gate::BackingOff(wait) => return Ok(Action::requeue(wait)),
        Gate::Open => {}
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
        // A run in flight still ends and is collected (its slot is freed); nothing new starts.
        Ok(_) if obj.common().suspend => match advance::collect_only(&*obj, &mut work, ctx).await {
            Some(
                Outcome::Progressing {
                    message, requeue, ..
                }
                | Outcome::Checking {
                    message, requeue, ..
                },
            ) => Outcome::Progressing {
                reason: "Suspending",
                message: format!("Suspended; the run in flight goes on to its end: {message}"),
                requeue,
            },
            _ => Outcome::Suspended,
        },
        Ok(timing) => {
            let resolved = match due::pinned_artifact(&work) {
                Some(pinned) => Ok(Resolution::Resolved(pinned.clone())),
                None => source::resolve(obj.common(), namespace, ctx).await,
            };
            match resolved {
                Ok(Resolution::Waiting { reason, message }) => Outcome::Progressing {
                    reason,
                    message,
                    // A watched source kind wakes the object when the source changes; only
                    // the others, and an artifact gone from the source's storage (no change
                    // to the source tells when it is back), are looked at again soon.
                    requeue: if reason != "ArtifactNotFound"
                        && obj
                            .common()
                            .source_ref
                            .as_ref()
                            .is_some_and(|r| ctx.settings.watched_sources.contains(&r.kind))
                    {
                        timing.interval
                    } else {
                        timing.retry_interval
                    },
                },
                Ok(Resolution::Resolved(found)) => {
                    if work.artifact.as_ref().map(|a| &a.digest) != Some(&found.digest) {
                        let was = work
                            .artifact
                            .as_ref()
                            .map(|a| format!(" (was {})", a.revision))
                            .unwrap_or_default();
                        let note = format!("New revision {}{was}", found.revision);
                        publish(ctx, &*obj, &EventSpec::normal("NewRevision", note)).await;
                        // Failures of the previous artifact say nothing about this one.
                        work.failures = 0;
                        work.last_failure_time = None;
                    }
                    work.artifact = Some(found.clone());
                    let (outcome, run) =
                        advance::advance(&*obj, &mut work, &found, &timing, ctx).await;
                    launch = run;
                    outcome
                }
                Err(e) => Outcome::Failed {
                    reason: e.reason(),
                    message: e.to_string(),
                    retryable: e.retryable(),
                },
            }
        }
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
        .is_some_and(|r| matches!(r.phase, RunPhase::Pending | RunPhase::Running));
    settled.status.last_handled_reconcile_at = if fresh_request && in_flight {
        previous
    } else {
        requested.or(previous)
    };
    if let Err(e) = status::write(&*obj, ctx, namespace, &settled).await {
        // The run was never recorded, so it must not start; give its slot back.
        if let Some(spec) = &launch {
            ctx.runs.cancel(&spec.namespace, &spec.name);
        }
        return Err(e);
    }
    // Only once the run is recorded in status is it started (see advance).
    ctx.runs.launch(launch, PodInputs::of(&*obj)).await;
    Ok(match settled.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}
