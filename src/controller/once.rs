//! One reconciliation of an object exactly as given, outside the watch loop: by a pod-mode
//! controller that leads alone. It lets a test hand the controller a view of an object that
//! is behind the API server, which the watch loop only does by chance.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use super::context::{Context, Settings};
use super::kinds::Kind;
use super::{events, leader, metrics, pod, reconcile, runs};

/// How one reconciliation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Once {
    Done,
    /// The object changed since the view was read; nothing was recorded or started.
    Stale,
    Failed(String),
}

#[doc(hidden)]
pub async fn reconcile_once<K: Kind>(client: Client, obj: K) -> std::io::Result<Once> {
    let runs = runs::Runs::new(
        client.clone(),
        runs::Config {
            mode: runs::RunnerMode::Pod,
            settings: runs::RunnerSettings {
                tofu: None,
                cache_dir: None,
                plugin_cache_dir: None,
            },
            pods: pod::PodSettings {
                image: "landform:latest".into(),
                timeout: Duration::from_secs(600),
                pending_timeout: Duration::from_secs(600),
                shard: super::shard::Shard::all(),
            },
            keep_failed_pods: false,
            limits: runs::Limits {
                total: 8,
                per_namespace: 4,
            },
        },
    )?;
    let ctx = Arc::new(Context {
        http: reqwest::Client::new(),
        runs,
        recorder: events::Recorder::new(client.clone(), "once".into()),
        client,
        metrics: Arc::new(metrics::Metrics::default()),
        settings: Settings::default(),
        leadership: Arc::new(leader::Leadership::always()),
        refs: Default::default(),
        registries: Default::default(),
    });
    Ok(match reconcile::reconcile(Arc::new(obj), ctx).await {
        Ok(_) => Once::Done,
        Err(e) if e.is_stale() => Once::Stale,
        Err(e) => Once::Failed(e.to_string()),
    })
}
