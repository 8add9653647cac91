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

pub struct Runs {
    exe: PathBuf,
    dir: tempfile::TempDir,
    settings: RunnerSettings,
    children: Mutex<HashMap<String, tokio::process::Child>>,
}

impl Runs {
    pub fn new(settings: RunnerSettings) -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
            dir: tempfile::Builder::new()
                .prefix("landform-runs-")
                .tempdir()?,
            settings,
            children: Mutex::default(),
        })
    }

    fn key(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
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
        let child = cmd.spawn().map_err(LaunchError::Spawn)?;
        if let Ok(mut children) = self.children.lock() {
            children.insert(Self::key(&spec.namespace, &spec.name), child);
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
        match children.get_mut(&key).map(|c| c.try_wait()) {
            None => RunState::Unknown,
            Some(Ok(None)) => RunState::Running,
            Some(_) => {
                children.remove(&key);
                RunState::Ended
            }
        }
    }
}
