//! A test node agent: the test control plane has no kubelet, so this binds pending runner pods,
//! gets their service account a real token (TokenRequest, bound to the pod), materialises their
//! ConfigMap volumes and env, runs the container command as a local process, and reports pod
//! status. Everything it talks to is the real API server, so the runner's RBAC is enforced.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub struct NodeAgent {
    task: tokio::task::JoinHandle<()>,
    /// Pods it ran, by name.
    pub ran: Arc<Mutex<Vec<String>>>,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const NODE: &str = "landform-test-node";

impl NodeAgent {
    pub fn start(client: Client, ns: &str) -> Self {
        let ns = ns.to_string();
        let ran = Arc::new(Mutex::new(vec![]));
        let seen = ran.clone();
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let mut started = HashSet::new();
            loop {
                if let Ok(list) = pods
                    .list(&ListParams::default().labels("landform.dev/run"))
                    .await
                {
                    for pod in list.items {
                        let name = pod.name_any();
                        let bound = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .is_some();
                        if bound || !started.insert(name.clone()) {
                            continue;
                        }
                        seen.lock().unwrap().push(name.clone());
                        tokio::spawn(run_pod(client.clone(), ns.clone(), pod));
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        });
        Self { task, ran }
    }
}

async fn set_status(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    let _ = pods
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await;
}

async fn run_pod(client: Client, ns: String, pod: Pod) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.name_any();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
    if let Err(e) = pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        eprintln!("node agent: binding {name}: {e}");
        return;
    }
    let spec = pod.spec.clone().unwrap();
    let container = spec.containers[0].clone();
    let started = jiff::Timestamp::now().to_string();
    set_status(&pods, &name, json!({"phase": "Running", "startTime": started,
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": true, "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}}]})).await;

    let root = tempfile::tempdir().unwrap();
    // Volumes: ConfigMaps materialised as files, everything else an empty directory.
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec.volumes.clone().unwrap_or_default() {
        let dir = root.path().join(&v.name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(cm) = &v.config_map {
            let data = Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get(&cm.name)
                .await
                .unwrap()
                .data
                .unwrap_or_default();
            for (k, val) in data {
                std::fs::write(dir.join(k), val).unwrap();
            }
        }
        dirs.insert(v.name.clone(), dir);
    }
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.mount_path.clone(), dirs[&m.name].clone()))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    let local = |s: &str| {
        for (path, dir) in &mounts {
            if let Some(rest) = s.strip_prefix(path.as_str()) {
                return format!("{}{rest}", dir.display());
            }
        }
        s.to_string()
    };

    // The service account's token, bound to this pod, as the runner's only credential.
    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some(name.clone()),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let token = match Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create_token_request(&sa, &PostParams::default(), &tr)
        .await
    {
        Ok(t) => t.status.unwrap().token.unwrap(),
        Err(e) => {
            eprintln!("node agent: token for {ns}/{sa}: {e}");
            set_status(&pods, &name, json!({"phase": "Failed", "reason": "ServiceAccountTokenFailed", "message": e.to_string()})).await;
            return;
        }
    };
    // One path per service account, like the fixed token path in a real pod: a saved plan
    // records the backend configuration, kubeconfig path included, and apply must find it.
    let kubeconfig = super::logs_dir().join(format!("kubeconfig-pod-{ns}-{sa}"));
    super::write_token_kubeconfig(&kubeconfig, &token, &ns, &sa);

    let mut command = container.command.clone().unwrap_or_default();
    command.extend(container.args.clone().unwrap_or_default());
    let program = if command[0] == "landform" {
        PathBuf::from(env!("CARGO_BIN_EXE_landform"))
    } else {
        PathBuf::from(&command[0])
    };
    let env = super::testenv();
    let path = format!(
        "{}:{}",
        super::testenv_dir().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(command[1..].iter().map(|a| local(a)))
        .env_clear()
        .env("PATH", path)
        .env("KUBECONFIG", &kubeconfig)
        .env("TF_CLI_CONFIG_FILE", &env["TF_CLI_CONFIG_FILE"]);
    for e in container.env.clone().unwrap_or_default() {
        if let Some(v) = e.value {
            cmd.env(e.name, local(&v));
        }
    }
    let log =
        std::fs::File::create(super::logs_dir().join(format!("pod-{ns}-{name}.log"))).unwrap();
    let status = cmd
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .await;
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    let finished = jiff::Timestamp::now().to_string();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    set_status(&pods, &name, json!({"phase": phase,
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": code, "startedAt": started, "finishedAt": finished, "reason": if code == 0 { "Completed" } else { "Error" }}}}]})).await;
}
