//! Starting runs and telling whether they are still going. In `--runner=local` mode a run is
//! the same `landform runner` as in a pod, started as a child process of the controller; its
//! result comes back the same way, as a Secret.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::runner::spec::RunSpec;

/// How runs are executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RunnerMode {
    /// Child processes of the controller (development, demo, tests; or a controller image that
    /// carries the engine).
    #[default]
    Local,
}

/// Settings passed through to every runner.
#[derive(Clone, Debug, Default)]
pub struct RunnerSettings {
    pub tofu: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub plugin_cache_dir: Option<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// The process ended (its result, if it wrote one, is in the result Secret).
    Ended,
    /// This controller does not know the run (it restarted since starting it).
    Unknown,
}

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
    "waiting for a free run slot: {in_use} of {limit} runs {scope} are in flight (controller flag {flag})"
)]
pub struct Full {
    pub in_use: usize,
    pub limit: usize,
    pub scope: String,
    pub flag: &'static str,
}

enum Slot {
    /// Taken when the run is decided, before status records it.
    Reserved,
    Process(tokio::process::Child),
}

pub struct Runs {
    exe: PathBuf,
    dir: tempfile::TempDir,
    settings: RunnerSettings,
    limits: Limits,
    children: Mutex<HashMap<String, Slot>>,
}

impl Runs {
    pub fn new(settings: RunnerSettings, limits: Limits) -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            dir: tempfile::Builder::new()
                .prefix("landform-runs-")
                .tempdir()?,
            settings,
            limits,
            children: Mutex::default(),
        })
    }

    fn key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }

    /// Takes a run slot for `name` if the limits allow. One slot per run; released when the run
    /// ends (or by [`Runs::cancel`] if it never starts).
    pub fn reserve(&self, namespace: &str, name: &str) -> Result<(), Full> {
        let Ok(mut children) = self.children.lock() else {
            return Ok(());
        };
        // Ended processes free their slots; their results are in their result Secrets.
        children.retain(|_, slot| match slot {
            Slot::Reserved => true,
            Slot::Process(c) => matches!(c.try_wait(), Ok(None)),
        });
        let in_ns = children
            .keys()
            .filter(|k| k.starts_with(&format!("{namespace}/")))
            .count();
        if children.len() >= self.limits.total {
            return Err(Full {
                in_use: children.len(),
                limit: self.limits.total,
                scope: "in all namespaces".into(),
                flag: "--max-runs",
            });
        }
        if in_ns >= self.limits.per_namespace {
            return Err(Full {
                in_use: in_ns,
                limit: self.limits.per_namespace,
                scope: format!("in namespace {namespace}"),
                flag: "--max-runs-per-namespace",
            });
        }
        children.insert(Self::key(namespace, name), Slot::Reserved);
        Ok(())
    }

    /// Gives back the slot of a run that will not start.
    pub fn cancel(&self, namespace: &str, name: &str) {
        if let Ok(mut children) = self.children.lock() {
            children.remove(&Self::key(namespace, name));
        }
    }

    pub fn start(&self, spec: &RunSpec) -> Result<(), LaunchError> {
        let path = self
            .dir
            .path()
            .join(format!("{}.{}.json", spec.namespace, spec.name));
        let body = serde_json::to_vec(spec).map_err(|e| LaunchError::Spec {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        std::fs::write(&path, body).map_err(|source| LaunchError::Spec {
            path: path.display().to_string(),
            source,
        })?;
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
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.cancel(&spec.namespace, &spec.name);
                return Err(LaunchError::Spawn(e));
            }
        };
        if let Ok(mut children) = self.children.lock() {
            children.insert(Self::key(&spec.namespace, &spec.name), Slot::Process(child));
        }
        Ok(())
    }

    /// Starts a run that status already records. A failure is only logged: the next look
    /// finds the run without a process or result and reports it lost, which retries it.
    pub fn launch(&self, spec: Option<RunSpec>) {
        if let Some(spec) = spec
            && let Err(e) = self.start(&spec)
        {
            tracing::warn!(run = %spec.name, error = %e, "starting a run failed");
        }
    }

    pub fn state(&self, namespace: &str, name: &str) -> RunState {
        let Ok(mut children) = self.children.lock() else {
            return RunState::Unknown;
        };
        let key = Self::key(namespace, name);
        match children.get_mut(&key) {
            None => RunState::Unknown,
            Some(Slot::Reserved) => RunState::Running,
            Some(Slot::Process(c)) => match c.try_wait() {
                Ok(None) => RunState::Running,
                _ => {
                    children.remove(&key);
                    RunState::Ended
                }
            },
        }
    }
}
