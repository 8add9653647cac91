//! `landform controller`: watches `Terraform` and `CloudFormationStack` objects and reconciles
//! them.

mod advance;
mod context;
pub mod decide;
mod deletion;
mod events;
mod http;
pub mod kinds;
mod leader;
mod locks;
mod metrics;
mod once;
mod pod;
mod prune;
mod queue;
mod reconcile;
mod refs;
mod runs;
mod shard;
mod source;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::api::{CloudFormationStack, Managed, SourceKind, Terraform};
use crate::telemetry::LogFormat;
pub use context::{Context, Settings};
pub use once::{Once, reconcile_once};

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "LANDFORM_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080", env = "LANDFORM_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "LANDFORM_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Take a leader-election Lease before acting, so that only one replica works at a time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "landform-system")]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease (default: `landform-controller`; a shard's own
    /// `landform-controller-SHARD`, or a hash of its selector in place of SHARD).
    #[arg(long)]
    pub leader_election_name: Option<String>,

    /// Take only the objects whose labels match this selector, and only their runner pods:
    /// one shard of several controllers. By convention `sharding.fluxcd.io/key=SHARD`, and
    /// `!sharding.fluxcd.io/key` for the shard that takes every unlabelled object.
    #[arg(long, env = "LANDFORM_WATCH_LABEL_SELECTOR")]
    pub watch_label_selector: Option<String>,

    /// Identity of this instance in the Lease and in events (default: host name and process ID).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Allow `sourceRef`s to Flux objects in other namespaces.
    #[arg(long)]
    pub allow_cross_namespace_refs: bool,

    /// How runs execute: `pod` (one ephemeral pod per run, with the object's service account)
    /// or `local` (child processes of the controller; modules then run with the controller's
    /// identity: for the demo and single-binary use only).
    #[arg(long, value_enum, default_value_t = runs::RunnerMode::Pod)]
    pub runner: runs::RunnerMode,

    /// Image of runner pods (unless runnerPodTemplate names another).
    #[arg(long, env = "LANDFORM_RUNNER_IMAGE", default_value = "landform:latest")]
    pub runner_image: String,

    /// Longest a run may take unless spec.timeout says otherwise (the pod's activeDeadlineSeconds).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub run_timeout: std::time::Duration,

    /// Longest a runner pod may stay Pending before its run counts as lost (and is retried).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub runner_pending_timeout: std::time::Duration,

    /// Keep the pods of failed runs for `kubectl logs` (they are removed with their object).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_failed_pods: bool,

    /// OpenTofu binary for local runs (default: `tofu` on PATH).
    #[arg(long, env = "LANDFORM_TOFU")]
    pub tofu: Option<std::path::PathBuf>,

    /// Verified, extracted artifacts by digest, shared by local runs.
    #[arg(long, env = "LANDFORM_CACHE_DIR")]
    pub runner_cache_dir: Option<std::path::PathBuf>,

    /// Provider plugin cache shared by local runs.
    #[arg(long, env = "LANDFORM_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<std::path::PathBuf>,

    /// Runs in flight at most, in all namespaces.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_runs: u16,

    /// Runs in flight at most, per namespace.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_runs_per_namespace: u16,

    /// How soon an object waiting for a run slot looks again if it was not woken for one
    /// (objects are woken, oldest first, as slots are freed; this is a fallback).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub run_slot_recheck: std::time::Duration,

    /// Objects reconciled in parallel, per kind.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "connecting to the Kubernetes API (in-cluster, or the kubeconfig in KUBECONFIG / ~/.kube/config): {0}"
    )]
    Connect(#[source] kube::Error),
    #[error("serving metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Leader(#[from] leader::Error),
    #[error("building the HTTP client: {0}")]
    Http(String),
    #[error("preparing local runs: {0}")]
    Runs(#[source] std::io::Error),
    #[error(transparent)]
    Shard(#[from] shard::Error),
    #[error("--watch-label-selector {selector:?} is refused by the API server: {source}")]
    ShardRefused {
        selector: String,
        #[source]
        source: kube::Error,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::api::Duration::new(s).parse()
}

fn identity(opts: &Options) -> String {
    opts.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "landform".into());
        format!("{host}-{}", std::process::id())
    })
}

/// Fires `tx` on SIGTERM or SIGINT.
fn spawn_signal_handler(tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    futures::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = term => tracing::info!("SIGTERM received; shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received; shutting down"),
        }
        let _ = tx.send(true);
    });
}

fn api_for<K: Managed>(client: &Client, namespace: Option<&str>) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Metadata only (a watch of it asks the API server for nothing else).
fn meta_api<K>(client: &Client, namespace: Option<&str>) -> Api<PartialObjectMeta<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The Flux source kinds the API server serves; only those are watched. (Installing Flux
/// later needs a controller restart for the watches; resolution works regardless.)
async fn flux_kinds_served(client: &Client) -> Vec<SourceKind> {
    let mut served = vec![];
    for kind in [
        SourceKind::GitRepository,
        SourceKind::OciRepository,
        SourceKind::Bucket,
    ] {
        let ar = crate::source::flux::api_resource(kind);
        let gvk = kube::core::GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok(_) => served.push(kind),
            Err(e) => {
                tracing::info!(kind = %ar.kind, error = %e, "Flux source kind not served; not watching it")
            }
        }
    }
    served
}

/// How long a stop waits for the reconciles in flight.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What every kind's controller watches.
#[derive(Clone)]
struct Scope {
    namespace: Option<String>,
    shard: shard::Shard,
    concurrency: u16,
    flux_kinds: Vec<SourceKind>,
}

/// Asks the API server whether it takes the shard's selector, so that a typo stops the
/// controller at start instead of failing every watch.
async fn check_shard(client: &Client, scope: &Scope) -> Result<(), Error> {
    let Some(selector) = scope.shard.selector() else {
        return Ok(());
    };
    api_for::<Terraform>(client, scope.namespace.as_deref())
        .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
        .await
        .map(|_| ())
        .map_err(|source| Error::ShardRefused {
            selector: selector.to_string(),
            source,
        })
}

/// Drops from a watched object what the controller never reads before it is cached.
fn slim<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The objects of this shard that refer to `target` (from the index; the store confirms each
/// one is still there). One that is gone is forgotten: an object deleted without a finalizer
/// (suspended before it ever ran) is never reconciled again to remove its entry, and the
/// store holds every object before its first reconcile records one.
fn referring<K: kinds::Kind>(
    ctx: &Context,
    store: &kube::runtime::reflector::Store<K>,
    target: &refs::Target,
) -> Vec<ObjectRef<K>> {
    let mut found = vec![];
    for (ns, name) in ctx.refs.referrers(K::KIND, target) {
        let r = ObjectRef::new(&name).within(&ns);
        if store.get(&r).is_some() {
            found.push(r);
        } else {
            ctx.refs.remove(&(K::KIND, ns, name));
        }
    }
    found
}

async fn run_kind<K: kinds::Kind>(
    ctx: Arc<Context>,
    scope: Scope,
    mut shutdown: watch::Receiver<bool>,
) {
    let Scope {
        namespace,
        shard,
        concurrency,
        flux_kinds,
    } = scope;
    let api = api_for::<K>(&ctx.client, namespace.as_deref());
    let mut objects = watcher::Config::default().any_semantic();
    if let Some(selector) = shard.selector() {
        objects = objects.labels(selector);
    }
    // The cache keeps only what decisions read: not the server's field bookkeeping nor
    // kubectl's copy of the last applied object (together often more than the rest).
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher::watcher(api, objects).modify(slim)).applied_objects();
    let mut controller = Controller::for_stream(stream, reader);
    // A new artifact revision of a Flux source brings the objects that use it back at once.
    for kind in flux_kinds {
        let ar = crate::source::flux::api_resource(kind);
        let sources: Api<DynamicObject> = match namespace.as_deref() {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
            None => Api::all_with(ctx.client.clone(), &ar),
        };
        let (store, index) = (controller.store(), ctx.clone());
        let kind_name = ar.kind.clone();
        controller = controller.watches_with(
            sources,
            ar,
            watcher::Config::default().any_semantic(),
            move |src| {
                let target = refs::Target {
                    kind: kind_name.clone(),
                    namespace: src.namespace().unwrap_or_default(),
                    name: src.name_any(),
                };
                referring::<K>(&index, &store, &target)
            },
        );
    }
    // A runner pod that changes (starts, ends) brings its object back.
    if ctx.runs.mode() == runs::RunnerMode::Pod {
        // Labels and owners are all this needs: metadata only.
        let config =
            watcher::Config::default().labels(&shard.and(crate::contract::names::LABEL_RUN));
        let pods = meta_api::<k8s_openapi::api::core::v1::Pod>(&ctx.client, namespace.as_deref());
        controller = controller.owns_stream(watcher::watcher(pods, config).touched_objects());
    }
    // An object waiting for a run slot is woken when one is freed for it.
    controller = controller.reconcile_on(
        ctx.runs
            .wakes(K::KIND)
            .map(|w| ObjectRef::new(&w.name).within(&w.namespace)),
    );
    // A dependency that changes brings its dependents back; it may be in another shard, so
    // this watch takes every object.
    let (store, index) = (controller.store(), ctx.clone());
    let deps = watcher::watcher(
        meta_api::<K>(&ctx.client, namespace.as_deref()),
        watcher::Config::default().any_semantic(),
    );
    controller =
        controller.watches_stream(deps.touched_objects(), move |dep: PartialObjectMeta<K>| {
            let target = refs::Target {
                kind: K::KIND.to_string(),
                namespace: dep.namespace().unwrap_or_default(),
                name: dep.name_any(),
            };
            referring::<K>(&index, &store, &target)
        });
    controller
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .run(reconcile::reconcile::<K>, reconcile::error_policy::<K>, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(kind = K::KIND, object = %obj, "reconciled"),
                Err(e) => tracing::debug!(kind = K::KIND, error = %e, "reconcile error"),
            }
        })
        .await;
}

/// The default client, with every request it sends counted in the metrics.
async fn counting_client(metrics: Arc<metrics::Metrics>) -> Result<Client, Error> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Connect(kube::Error::InferConfig(e)))?;
    let count =
        tower::util::MapRequestLayer::new(move |req: ::http::Request<kube::client::Body>| {
            metrics.count_request(req.method());
            req
        });
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(Error::Connect)?
        .with_layer(&count)
        .build())
}

pub async fn run(opts: Options) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_signal_handler(stop_tx.clone());

    let metrics = Arc::new(metrics::Metrics::default());
    let client = counting_client(metrics.clone()).await?;
    let identity = identity(&opts);
    let scope = Scope {
        namespace: opts.namespace.clone(),
        shard: shard::Shard::new(opts.watch_label_selector.as_deref())?,
        concurrency: opts.concurrency,
        flux_kinds: vec![],
    };
    check_shard(&client, &scope).await?;
    let lease = opts
        .leader_election_name
        .clone()
        .unwrap_or_else(|| scope.shard.lease_name("landform-controller"));
    let ready = Arc::new(AtomicBool::new(false));

    let listener = http::bind(opts.metrics_addr)
        .await
        .map_err(|source| Error::Serve {
            addr: opts.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(opts.metrics_addr), "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(http::serve(
        listener,
        http::Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        stop_rx.clone(),
    ));

    let leadership = Arc::new(if opts.leader_elect {
        leader::Leadership::elected()
    } else {
        leader::Leadership::always()
    });
    let elector = opts.leader_elect.then(|| {
        leader::Elector::new(
            client.clone(),
            &opts.leader_election_namespace,
            &lease,
            &identity,
            leadership.clone(),
        )
    });
    // Ready means serving and connected, leading or standing by: a standby that waited to lead
    // before it was Ready would hold every rollout of two replicas (the old leader only lets
    // go once its replacement is Ready). `landform_leader` says which one leads.
    ready.store(true, Ordering::Relaxed);
    if let Some(elector) = &elector {
        tracing::info!(%lease, namespace = %opts.leader_election_namespace, "waiting for leadership");
        let mut rx = stop_rx.clone();
        if !elector.acquire(&mut rx).await? {
            let _ = server.await;
            return Ok(());
        }
        metrics.leader.set(1);
    }

    crate::tls::init();
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let scope = Scope {
        flux_kinds: flux_kinds_served(&client).await,
        ..scope
    };
    let runs = runs::Runs::new(
        client.clone(),
        runs::Config {
            mode: opts.runner,
            settings: runs::RunnerSettings {
                tofu: opts.tofu.clone(),
                cache_dir: opts.runner_cache_dir.clone(),
                plugin_cache_dir: opts.plugin_cache_dir.clone(),
            },
            pods: pod::PodSettings {
                image: opts.runner_image.clone(),
                timeout: opts.run_timeout,
                pending_timeout: opts.runner_pending_timeout,
                shard: scope.shard.clone(),
            },
            keep_failed_pods: opts.keep_failed_pods,
            limits: runs::Limits {
                total: opts.max_runs.into(),
                per_namespace: opts.max_runs_per_namespace.into(),
            },
        },
    )
    .map_err(Error::Runs)?;
    let ctx = Arc::new(Context {
        http,
        runs,
        recorder: events::Recorder::new(client.clone(), identity.clone()),
        client,
        metrics: metrics.clone(),
        settings: Settings {
            allow_cross_namespace_refs: opts.allow_cross_namespace_refs,
            slot_recheck: opts.run_slot_recheck,
            watched_sources: scope.flux_kinds.clone(),
        },
        leadership,
        refs: Default::default(),
        registries: Default::default(),
    });
    tracing::info!(
        namespace = opts.namespace.as_deref().unwrap_or("(all)"),
        selector = scope.shard.selector().unwrap_or("(every object)"),
        "starting controllers"
    );

    let controllers = futures::future::join(
        run_kind::<Terraform>(ctx.clone(), scope.clone(), stop_rx.clone()),
        run_kind::<CloudFormationStack>(ctx.clone(), scope, stop_rx.clone()),
    );
    // Once told to stop, the controllers finish the reconciles in flight (each is short:
    // runs go on outside them), but the stop waits for them only so long.
    let mut stopped = stop_rx.clone();
    let controllers = async move {
        tokio::select! {
            _ = controllers => {}
            _ = async {
                let _ = stopped.wait_for(|stop| *stop).await;
                tokio::time::sleep(DRAIN_LIMIT).await;
            } => tracing::warn!(limit = ?DRAIN_LIMIT, "reconciles still in flight after the stop signal; stopping without them"),
        }
    };
    let lost = async {
        match &elector {
            Some(e) => Some(e.keep().await),
            None => futures::future::pending().await,
        }
    };
    let mut result = Ok(());
    // Asked to stop while starting up: do not start the controllers at all.
    let stopping = *stop_rx.borrow();
    tokio::select! {
        _ = async {}, if stopping => {}
        _ = controllers => {}
        err = lost => {
            // Another instance may act now; stop at once rather than act twice.
            if let Some(err) = err {
                result = Err(Error::Leader(err));
            }
            let _ = stop_tx.send(true);
        }
    }
    // Local runs end (gracefully: their engines write state and unlock) before anyone else
    // may take over; only then is the Lease given up.
    ctx.runs.stop_local().await;
    if let Some(elector) = &elector {
        if result.is_ok() {
            elector.release().await;
        }
        metrics.leader.set(0);
    }
    let _ = stop_tx.send(true);
    if let Ok(Err(source)) = server.await {
        tracing::warn!(error = %source, "metrics server stopped with an error");
    }
    tracing::info!("stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_rest() {
        let mut tf: Terraform = serde_json::from_value(serde_json::json!({
            "apiVersion": "landform.dev/v1alpha1", "kind": "Terraform",
            "metadata": {"name": "vpc", "namespace": "team",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a whole\": \"copy\"}",
                    "reconcile.fluxcd.io/requestedAt": "now"},
                "labels": {"sharding.fluxcd.io/key": "blue"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "infra"}}
        }))
        .unwrap();
        slim(&mut tf);
        assert_eq!(tf.metadata.managed_fields, None);
        let annotations = tf.annotations();
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(
            annotations
                .get(crate::api::REQUESTED_AT)
                .map(String::as_str),
            Some("now")
        );
        assert_eq!(tf.labels().len(), 1, "labels decide the runner pods' shard");
    }
}
