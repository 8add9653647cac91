//! Starting runs and telling whether they are still going. A run is one `landform runner`:
//! in `--runner=pod` mode an ephemeral pod, in `--runner=local` mode a child process of the
//! controller. Either way its result comes back as a Secret, and its inputs go out as a spec
//! with references only, never secret values.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::decide::collect::RunState;
use super::decide::retention;
use super::pod::{self, PodSettings};
use super::queue::{Queue, Use, Waiter};
use crate::api::RunnerPodTemplate;
use crate::contract::{RunSpec, names};

/// Failed runner pods kept per object for `kubectl logs` (with --keep-failed-pods).
const KEPT_FAILED_PODS: usize = 3;

/// How runs are executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RunnerMode {
    /// An ephemeral pod per run, with the object's service account and nothing else.
    #[default]
    Pod,
    /// Child processes of the controller, for the demo and single-binary use: modules then run
    /// with the controller's own identity (its service account and cloud credentials), so any
    /// module's code (local-exec, external data sources) can do what the controller can.
    Local,
}

/// Settings passed through to every runner.
#[derive(Clone, Debug, Default)]
pub struct RunnerSettings {
    pub tofu: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub plugin_cache_dir: Option<PathBuf>,
}

/// Limits on runs in flight.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub total: usize,
    pub per_namespace: usize,
}

/// No free run slot; says which limit is reached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "waiting for a free run slot: {in_use} of {limit} runs {scope} are in flight{kept} (controller flag {flag})"
)]
pub struct Full {
    pub in_use: usize,
    pub limit: usize,
    pub scope: String,
    pub flag: &'static str,
    /// Said when free slots are kept for objects that waited longer.
    pub kept: &'static str,
}

enum Slot {
    /// Taken when the run is decided, before status records it.
    Reserved,
    Process(Box<LocalRun>),
    Pod,
}

/// A local run. The runner leads its own process group, so that stopping it stops the engine
/// it started too (OpenTofu and its provisioners), as the end of a pod would: an engine left
/// running would still hold the state lock that a lost run's lock is released from. A task
/// owns the child process: it wakes the object the moment the run ends (or reaches its
/// deadline), and it alone signals the group, only while the child is not yet reaped, so the
/// group ID can never name another process's group.
struct LocalRun {
    /// Set once the process has ended.
    ended: tokio::sync::watch::Receiver<bool>,
    /// Signals for the task to send to the run's process group.
    signal: tokio::sync::mpsc::UnboundedSender<libc::c_int>,
    /// Killed then, like a pod at its activeDeadlineSeconds.
    deadline: std::time::Instant,
    timeout: Duration,
}

impl LocalRun {
    fn running(&self) -> bool {
        !*self.ended.borrow()
    }

    fn signal(&self, signal: libc::c_int) {
        let _ = self.signal.send(signal);
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        if self.running() {
            self.signal(libc::SIGKILL);
        }
    }
}

/// Owns a local run's child: passes signals to its group until it ends, then says so and
/// wakes its object; wakes it at the deadline too, when the run is to be stopped.
async fn watch_child(
    mut child: tokio::process::Child,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<libc::c_int>,
    ended: tokio::sync::watch::Sender<bool>,
    deadline: std::time::Instant,
    wake: impl Fn(),
) {
    let pid = child.id();
    let mut deadline = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    let mut deadline_seen = false;
    loop {
        tokio::select! {
            _ = child.wait() => break,
            Some(signal) = signals.recv() => {
                if let Some(pid) = pid {
                    // SAFETY: killpg only sends a signal, to the group this run leads; the
                    // child is not reaped yet (that happens only in `wait` above), so its
                    // ID still names that group.
                    unsafe {
                        libc::killpg(pid as libc::pid_t, signal);
                    }
                }
            }
            _ = &mut deadline, if !deadline_seen => {
                deadline_seen = true;
                wake();
            }
        }
    }
    let _ = ended.send(true);
    wake();
}

/// What a pod run needs besides the spec.
pub struct PodInputs<'a> {
    /// The object's labels; its pods carry those its shard selects on.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub service_account: Option<&'a str>,
    pub template: Option<&'a RunnerPodTemplate>,
    pub timeout: Option<Duration>,
}

impl<'a> PodInputs<'a> {
    pub fn of<K: crate::api::Managed>(obj: &'a K) -> Self {
        let common = obj.common();
        Self {
            labels: obj.labels(),
            service_account: common.service_account_name.as_deref(),
            template: common.runner_pod_template.as_deref(),
            timeout: common.timeout.as_ref().and_then(|t| t.parse().ok()),
        }
    }
}

/// Slots in use in `namespace` (keys are `namespace/run`).
fn in_namespace(slots: &HashMap<String, Slot>, namespace: &str) -> usize {
    slots
        .keys()
        .filter(|k| {
            k.strip_prefix(namespace)
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .count()
}

pub struct Runs {
    mode: RunnerMode,
    client: Client,
    exe: PathBuf,
    /// Run specs of local runs; none in pod mode, whose controller writes no file at all (its
    /// root filesystem is read-only).
    dir: Option<tempfile::TempDir>,
    settings: RunnerSettings,
    pods: PodSettings,
    keep_failed_pods: bool,
    limits: Limits,
    slots: Mutex<HashMap<String, Slot>>,
    /// Objects waiting for a slot; locked after `slots`, never before.
    queue: Mutex<Queue>,
    /// Per kind, where woken waiters are sent (that kind's controller reconciles them).
    wakers: Arc<Mutex<Wakers>>,
}

type Wakers = HashMap<&'static str, futures::channel::mpsc::UnboundedSender<Waiter>>;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("writing the run spec {path}: {source}")]
    Spec {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the runner process: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("creating the runner pod: {0}")]
    Pod(String),
}

pub struct Config {
    pub mode: RunnerMode,
    pub settings: RunnerSettings,
    pub pods: PodSettings,
    pub keep_failed_pods: bool,
    pub limits: Limits,
}

impl Runs {
    pub fn new(client: Client, config: Config) -> std::io::Result<Self> {
        Ok(Self {
            mode: config.mode,
            client,
            exe: std::env::current_exe()?,
            dir: match config.mode {
                RunnerMode::Local => Some(
                    tempfile::Builder::new()
                        .prefix("landform-runs-")
                        .tempdir()?,
                ),
                RunnerMode::Pod => None,
            },
            settings: config.settings,
            pods: config.pods,
            keep_failed_pods: config.keep_failed_pods,
            limits: config.limits,
            slots: Mutex::default(),
            queue: Mutex::default(),
            wakers: Arc::default(),
        })
    }

    pub fn mode(&self) -> RunnerMode {
        self.mode
    }

    fn key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }

    /// Takes a run slot for run `name` of `waiter` if the limits and the objects that waited
    /// longer allow; freed when the run is seen to end, or by [`Runs::cancel`] if it never
    /// starts. Refused, `waiter` waits in line and is woken when a slot is freed for it.
    pub fn reserve(&self, namespace: &str, name: &str, waiter: &Waiter) -> Result<(), Full> {
        let Ok(mut slots) = self.slots.lock() else {
            return Ok(());
        };
        // Ended processes free their slots; their results are in their result Secrets.
        slots.retain(|_, slot| match slot {
            // One past its deadline is ended (and reported) by `state`.
            Slot::Process(run) => run.running(),
            Slot::Reserved | Slot::Pod => true,
        });
        let now = std::time::Instant::now();
        let in_ns = in_namespace(&slots, namespace);
        let admitted = match self.queue.lock() {
            Ok(mut queue) => queue.admit(waiter, &self.usage(&slots), now),
            Err(_) if slots.len() < self.limits.total && in_ns < self.limits.per_namespace => {
                Ok(())
            }
            Err(_) => Err(0),
        };
        if let Err(kept) = admitted {
            self.wake(&slots);
            let (in_use, limit, scope, flag) = if in_ns >= self.limits.per_namespace {
                (
                    in_ns,
                    self.limits.per_namespace,
                    format!("in namespace {namespace}"),
                    "--max-runs-per-namespace",
                )
            } else {
                // Slots kept for objects that waited longer count as taken.
                (
                    slots.len() + kept,
                    self.limits.total,
                    "in all namespaces".into(),
                    "--max-runs",
                )
            };
            return Err(Full {
                in_use,
                limit,
                scope,
                flag,
                kept: if kept > 0 {
                    " or kept for objects that waited longer"
                } else {
                    ""
                },
            });
        }
        slots.insert(Self::key(namespace, name), Slot::Reserved);
        Ok(())
    }

    /// Where this kind's woken waiters arrive.
    pub fn wakes(&self, kind: &'static str) -> futures::channel::mpsc::UnboundedReceiver<Waiter> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        if let Ok(mut wakers) = self.wakers.lock() {
            wakers.insert(kind, tx);
        }
        rx
    }

    /// `waiter` no longer wants a slot (it is being deleted).
    pub fn leave(&self, waiter: &Waiter) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.leave(waiter);
        }
    }

    fn usage<'a>(&self, slots: &'a HashMap<String, Slot>) -> Use<'a> {
        Use {
            total: slots.len(),
            in_namespace: Box::new(move |ns| in_namespace(slots, ns)),
            limit: self.limits.total,
            limit_per_namespace: self.limits.per_namespace,
        }
    }

    /// Wakes the waiters that the free slots now go to.
    fn wake(&self, slots: &HashMap<String, Slot>) {
        let woken = match self.queue.lock() {
            Ok(mut queue) => queue.wake(&self.usage(slots), std::time::Instant::now()),
            Err(_) => return,
        };
        if woken.is_empty() {
            return;
        }
        if let Ok(wakers) = self.wakers.lock() {
            for w in woken {
                if let Some(tx) = wakers.get(w.kind) {
                    let _ = tx.unbounded_send(w);
                }
            }
        }
    }

    /// Gives back the slot of a run that will not start.
    pub fn cancel(&self, namespace: &str, name: &str) {
        if let Ok(mut slots) = self.slots.lock()
            && slots.remove(&Self::key(namespace, name)).is_some()
        {
            self.wake(&slots);
        }
    }

    fn set_slot(&self, spec: &RunSpec, slot: Slot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(Self::key(&spec.namespace, &spec.name), slot);
        }
    }

    async fn start(&self, spec: &RunSpec, inputs: &PodInputs<'_>) -> Result<(), LaunchError> {
        match self.mode {
            RunnerMode::Local => {
                self.start_process(spec, inputs.timeout.unwrap_or(self.pods.timeout))
            }
            RunnerMode::Pod => self.start_pod(spec, inputs).await,
        }
    }

    fn start_process(&self, spec: &RunSpec, timeout: Duration) -> Result<(), LaunchError> {
        let Some(dir) = &self.dir else {
            return Err(LaunchError::Spawn(std::io::Error::other(
                "a local run in pod mode (no run directory)",
            )));
        };
        let path = dir
            .path()
            .join(format!("{}.{}.json", spec.namespace, spec.name));
        let spec_err = |source| LaunchError::Spec {
            path: path.display().to_string(),
            source,
        };
        let body = serde_json::to_vec(spec).map_err(|e| spec_err(e.into()))?;
        std::fs::write(&path, body).map_err(spec_err)?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("runner").arg("--spec").arg(&path);
        if let Some(t) = &self.settings.tofu {
            cmd.arg("--tofu").arg(t);
        }
        if let Some(c) = &self.settings.cache_dir {
            cmd.arg("--cache-dir").arg(c);
        }
        if let Some(p) = &self.settings.plugin_cache_dir {
            cmd.arg("--plugin-cache-dir").arg(p);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .process_group(0);
        let controller = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid.
        unsafe {
            cmd.pre_exec(move || {
                // The run stops (gracefully: see engine::interrupt) when the controller that
                // started it dies, so that a restarted controller never finds an orphan still
                // applying next to its retry.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() as u32 != controller {
                    libc::raise(libc::SIGTERM);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(LaunchError::Spawn)?;
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let (signal, signals) = tokio::sync::mpsc::unbounded_channel();
        let deadline = std::time::Instant::now() + timeout;
        let (wakers, owner) = (self.wakers.clone(), spec.owner.clone());
        let namespace = spec.namespace.clone();
        let wake = move || {
            let wakers = wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((kind, tx)) = wakers.get_key_value(owner.kind.as_str()) {
                let _ = tx.unbounded_send(Waiter {
                    kind,
                    namespace: namespace.clone(),
                    name: owner.name.clone(),
                });
            }
        };
        tokio::spawn(watch_child(child, signals, ended_tx, deadline, wake));
        let run = LocalRun {
            ended,
            signal,
            deadline,
            timeout,
        };
        self.set_slot(spec, Slot::Process(Box::new(run)));
        Ok(())
    }

    async fn start_pod(&self, spec: &RunSpec, inputs: &PodInputs<'_>) -> Result<(), LaunchError> {
        let (config_map, pod) = pod::build(
            spec,
            inputs.labels,
            inputs.service_account,
            inputs.template,
            inputs.timeout,
            &self.pods,
        )
        .map_err(|e| LaunchError::Pod(e.to_string()))?;
        let pp = PostParams::default();
        Api::<ConfigMap>::namespaced(self.client.clone(), &spec.namespace)
            .create(&pp, &config_map)
            .await
            .map_err(|e| LaunchError::Pod(format!("ConfigMap {}-spec: {e}", spec.name)))?;
        Api::<Pod>::namespaced(self.client.clone(), &spec.namespace)
            .create(&pp, &pod)
            .await
            .map_err(|e| LaunchError::Pod(format!("Pod {}: {e}", spec.name)))?;
        self.set_slot(spec, Slot::Pod);
        Ok(())
    }

    /// Starts a run that status already records. A failure is only logged: the next look
    /// finds the run without a runner or result and reports it lost, which retries it.
    pub async fn launch(&self, spec: Option<RunSpec>, inputs: PodInputs<'_>) {
        let Some(spec) = spec else {
            return;
        };
        if let Err(e) = self.start(&spec, &inputs).await {
            self.cancel(&spec.namespace, &spec.name);
            tracing::warn!(run = %spec.name, error = %e, "starting a run failed");
        }
    }

    pub async fn state(&self, namespace: &str, name: &str) -> RunState {
        let key = Self::key(namespace, name);
        if let Ok(mut slots) = self.slots.lock() {
            match slots.get_mut(&key) {
                Some(Slot::Reserved) => return RunState::Running,
                Some(Slot::Process(run)) => {
                    let running = run.running();
                    if running && std::time::Instant::now() < run.deadline {
                        return RunState::Running;
                    }
                    let detail = running.then(|| {
                        format!(
                            "stopped at its deadline of {}s (spec.timeout, default --run-timeout)",
                            run.timeout.as_secs()
                        )
                    });
                    // Dropping the run stops its process group.
                    slots.remove(&key);
                    self.wake(&slots);
                    return RunState::Ended(detail);
                }
                Some(Slot::Pod) | None => {}
            }
        }
        if self.mode != RunnerMode::Pod {
            return RunState::Unknown;
        }
        let pod = match Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.cancel(namespace, name);
                return RunState::Unknown;
            }
            // Cannot tell; look again later rather than declare the run lost.
            Err(_) => return RunState::Running,
        };
        let status = pod.status.unwrap_or_default();
        match status.phase.as_deref() {
            Some("Succeeded") | Some("Failed") => {
                self.cancel(namespace, name);
                let detail = status
                    .reason
                    .or_else(|| {
                        status.container_statuses.and_then(|cs| {
                            cs.into_iter().find_map(|c| {
                                c.state?
                                    .terminated
                                    .map(|t| format!("exit code {}", t.exit_code))
                            })
                        })
                    })
                    .map(|d| format!("pod {name}: {d}"));
                RunState::Ended(detail)
            }
            Some("Pending") => {
                let since = pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| {
                        Duration::try_from(jiff::Timestamp::now().duration_since(t.0)).ok()
                    })
                    .unwrap_or_default();
                if since <= self.pods.pending_timeout {
                    return RunState::Running;
                }
                // It will not start: say why (unschedulable, …), and take it away so that it
                // cannot start later, next to the retry.
                let why = status
                    .conditions
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|c| c.message.filter(|m| !m.is_empty()))
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                let _ = Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .delete(name, &DeleteParams::background())
                    .await;
                self.cancel(namespace, name);
                RunState::Ended(Some(format!(
                    "pod {name} stayed Pending for more than {}s (controller flag --runner-pending-timeout){why}",
                    self.pods.pending_timeout.as_secs()
                )))
            }
            _ => RunState::Running,
        }
    }

    /// Stops every local run the way a deleted pod is stopped: SIGTERM to its process group
    /// (the runner interrupts its engine, which writes state and unlocks), then, after the
    /// grace period, SIGKILL to what is left.
    pub async fn stop_local(&self) {
        let stopping = match self.slots.lock() {
            Ok(slots) => slots
                .values()
                .filter(|s| match s {
                    Slot::Process(run) => {
                        run.signal(libc::SIGTERM);
                        true
                    }
                    _ => false,
                })
                .count(),
            Err(_) => return,
        };
        if stopping == 0 {
            return;
        }
        tracing::info!(runs = stopping, "stopping local runs");
        let deadline = std::time::Instant::now() + crate::contract::STOP_GRACE;
        while std::time::Instant::now() < deadline {
            let running = self.slots.lock().is_ok_and(|slots| {
                slots.values().any(|s| match s {
                    Slot::Process(run) => run.running(),
                    _ => false,
                })
            });
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Whatever still runs is killed with its group as the slots go.
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|_, s| !matches!(s, Slot::Process(_)));
        }
    }

    /// After its result is taken: remove what the run left (its pod and spec after success;
    /// after failure the pod stays for `kubectl logs` unless told otherwise).
    pub async fn finished(&self, namespace: &str, owner: &str, name: &str, succeeded: bool) {
        match self.mode {
            RunnerMode::Local => {
                if let Some(dir) = &self.dir {
                    let _ =
                        std::fs::remove_file(dir.path().join(format!("{namespace}.{name}.json")));
                }
            }
            RunnerMode::Pod if succeeded || !self.keep_failed_pods => {
                self.remove_pod(namespace, name).await;
            }
            // Kept for `kubectl logs`, but only the newest few of an object.
            RunnerMode::Pod => {
                let selector = format!("{}={owner}", names::LABEL_OWNER);
                let pods = Api::<Pod>::namespaced(self.client.clone(), namespace)
                    .list_metadata(&ListParams::default().labels(&selector))
                    .await;
                let Ok(pods) = pods else { return };
                let failed: Vec<_> = pods
                    .items
                    .into_iter()
                    .filter_map(|p| Some((p.metadata.name?, p.metadata.creation_timestamp?.0)))
                    .collect();
                for old in retention::surplus_failed_pods(failed, KEPT_FAILED_PODS) {
                    self.remove_pod(namespace, &old).await;
                }
            }
        }
    }

    async fn remove_pod(&self, namespace: &str, name: &str) {
        let dp = DeleteParams::background();
        let _ = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .delete(name, &dp)
            .await;
        let _ = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .delete(&names::spec_config_map(name), &dp)
            .await;
    }
}
