//! A test node agent standing in for the kubelet: the test control plane has no node, so this
//! binds the namespace's pending pods to one and runs each pod's container in a real container
//! runtime (podman with runc, from `scripts/testenv`), as a kubelet would:
//!
//! - the pod's image (never pulled: images are built locally), command, args and env (values,
//!   Secret and ConfigMap references, `envFrom`);
//! - its security context: user, group, fsGroup, read-only root filesystem (without the
//!   writable tmpfs podman adds by default), capabilities, no-new-privileges, seccomp;
//! - emptyDir and ConfigMap volumes, and the service account's token (a real TokenRequest bound
//!   to the pod) with the cluster CA and namespace at the standard path, with
//!   `KUBERNETES_SERVICE_HOST`/`PORT`, so in-cluster configuration runs for real;
//! - `activeDeadlineSeconds`, and deletion as SIGTERM, the grace period, then SIGKILL, after
//!   which the pod object is removed (the kubelet's final delete);
//! - readiness probes (HTTP GET), reported as the pod's `Ready` condition, so Deployments roll
//!   out as they would on a cluster;
//! - memory and CPU limits, as cgroup limits of the container.
//!
//! Networking: by default containers share the host's network (the test components listen on
//! loopback, so tests name them 127.0.0.1). [`Node::pod_network`] gives each pod a network of
//! its own instead (slirp4netns), from which the host's loopback is 10.0.2.2: two replicas may
//! then listen on the same port, as the controller's Deployment needs.
//!
//! What differs from a kubelet: no pod IPs or Services; requests and liveness probes are not
//! acted on; only ConfigMap and emptyDir volumes; and the node mounts the test
//! environment's OpenTofu provider mirror (read-only, with `TF_CLI_CONFIG_FILE`), standing in
//! for the provider registry this machine cannot reach.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

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

/// The podman command of the test environment (its own storage and runc).
pub fn podman() -> tokio::process::Command {
    let env = super::testenv();
    let mut cmd = tokio::process::Command::new("podman");
    for k in ["CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"] {
        if let Some(v) = env.get(k) {
            cmd.env(k, v);
        }
    }
    cmd.kill_on_drop(false);
    cmd
}

/// The container's name for a pod.
fn container_name(ns: &str, pod: &str) -> String {
    format!("k8s_{ns}_{pod}")
}

/// Where a node's pods run and what they reach.
#[derive(Clone)]
pub struct Node {
    /// Namespaces whose pods this node runs.
    pub namespaces: Vec<String>,
    /// A network of each pod's own, instead of the host's.
    pub pod_network: bool,
    /// The API server's URL as the host reaches it, and its CA.
    pub apiserver: String,
    pub ca: PathBuf,
}

/// The host's loopback as a container on its own network reaches it.
pub const HOST_FROM_POD: &str = "10.0.2.2";

impl Node {
    /// Pods of `ns` on the host's network, against the test environment's API server.
    pub fn host(ns: &str) -> Self {
        Self {
            namespaces: vec![ns.to_string()],
            pod_network: false,
            apiserver: super::testenv()["LANDFORM_TEST_APISERVER"].clone(),
            ca: super::testenv_dir().join("pki/ca.crt"),
        }
    }

    /// Pods of `namespaces`, each on its own network, against the API server at `apiserver`
    /// (whose CA is `ca`).
    pub fn pod_network(namespaces: &[&str], apiserver: &str, ca: PathBuf) -> Self {
        Self {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            pod_network: true,
            apiserver: apiserver.to_string(),
            ca,
        }
    }
}

type Stops = Arc<Mutex<HashMap<String, watch::Sender<Option<i64>>>>>;

impl NodeAgent {
    pub fn start(client: Client, ns: &str) -> Self {
        Self::run(client, Node::host(ns))
    }

    pub fn run(client: Client, node: Node) -> Self {
        let ran = Arc::new(Mutex::new(vec![]));
        let seen = ran.clone();
        let task = tokio::spawn(async move {
            let mut started = HashSet::new();
            // Per pod it runs: how to ask it to stop (the grace period, in seconds).
            let stops: Stops = Arc::default();
            loop {
                for ns in &node.namespaces {
                    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
                    let Ok(list) = pods.list(&ListParams::default()).await else {
                        continue;
                    };
                    for pod in list.items {
                        let key = format!("{ns}/{}", pod.name_any());
                        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
                        if pod.metadata.deletion_timestamp.is_some() {
                            if bound == Some(NODE) {
                                stop_or_remove(&pods, &pod, &key, &stops).await;
                            }
                            continue;
                        }
                        if bound.is_some() || !started.insert(key.clone()) {
                            continue;
                        }
                        seen.lock().unwrap().push(pod.name_any());
                        let (tx, rx) = watch::channel(None);
                        stops.lock().unwrap().insert(key.clone(), tx);
                        let stops = stops.clone();
                        let (client, node, ns) = (client.clone(), node.clone(), ns.clone());
                        tokio::spawn(async move {
                            run_pod(client, &node, ns, pod, rx).await;
                            stops.lock().unwrap().remove(&key);
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { task, ran }
    }
}

/// A deleted pod: a running one is asked to stop (its task removes the pod after); one that
/// has ended is removed at once (the kubelet's final delete).
async fn stop_or_remove(pods: &Api<Pod>, pod: &Pod, key: &str, stops: &Stops) {
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
    let running = stops.lock().unwrap().get(key).map(|stop| {
        stop.send_if_modified(|g| {
            let first = g.is_none();
            *g = g.or(Some(grace));
            first
        });
    });
    if running.is_none() {
        let _ = pods
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await;
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

/// Marks the pod as not starting, as a kubelet does with a container it cannot create.
async fn cannot_start(pods: &Api<Pod>, pod: &Pod, reason: &str, message: String) {
    eprintln!("node agent: {}: {reason}: {message}", pod.name_any());
    let c = &pod.spec.as_ref().unwrap().containers[0];
    set_status(pods, &pod.name_any(), json!({"phase": "Pending",
        "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}]}))
    .await;
}

mod container;
use container::container_args;

async fn run_pod(
    client: Client,
    node: &Node,
    ns: String,
    pod: Pod,
    mut stop: watch::Receiver<Option<i64>>,
) {
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
    let root = tempfile::tempdir().unwrap();
    let args = match container_args(&client, node, &ns, &pod, root.path()).await {
        Ok(args) => args,
        Err((reason, message)) => return cannot_start(&pods, &pod, reason, message).await,
    };
    let spec = pod.spec.clone().unwrap();
    let container = spec.containers[0].clone();
    let cname = container_name(&ns, &name);
    let log =
        std::fs::File::create(super::logs_dir().join(format!("pod-{ns}-{name}.log"))).unwrap();
    let _ = podman().args(["rm", "-f", &cname]).output().await;
    let mut child = podman()
        .arg("run")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting podman");
    let started = jiff::Timestamp::now().to_string();
    let probe = container.readiness_probe.clone();
    set_status(&pods, &name, running(&container, &started, probe.is_none())).await;
    let prober = probe.map(|probe| {
        let (pods, name, container, started) = (
            pods.clone(),
            name.clone(),
            container.clone(),
            started.clone(),
        );
        let (cname, pod_network) = (cname.clone(), node.pod_network);
        tokio::spawn(async move {
            let mut was = false;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let ready = probe_ready(&probe, &container, &cname, pod_network).await;
                if ready != was {
                    set_status(&pods, &name, running(&container, &started, ready)).await;
                    was = ready;
                }
            }
        })
    });

    let deadline = spec
        .active_deadline_seconds
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(Duration::MAX / 4);
    let pod_grace = spec.termination_grace_period_seconds.unwrap_or(30);
    let mut deleted = false;
    let mut deadline_exceeded = false;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = tokio::time::sleep(deadline) => {
            deadline_exceeded = true;
            stop_container(&cname, pod_grace).await;
            child.wait().await
        }
        grace = async { stop.wait_for(Option::is_some).await.map(|g| g.unwrap_or(30)) } => {
            deleted = true;
            stop_container(&cname, grace.unwrap_or(30)).await;
            child.wait().await
        }
    };
    if let Some(prober) = prober {
        prober.abort();
    }
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    let _ = podman().args(["rm", "-f", &cname]).output().await;
    let finished = jiff::Timestamp::now().to_string();
    let phase = if code == 0 && !deadline_exceeded {
        "Succeeded"
    } else {
        "Failed"
    };
    let mut status = json!({"phase": phase, "conditions": conditions(false),
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": code, "startedAt": started, "finishedAt": finished, "reason": if code == 0 { "Completed" } else { "Error" }}}}]});
    if deadline_exceeded {
        status["reason"] = json!("DeadlineExceeded");
        status["message"] = json!("Pod was active on the node longer than the specified deadline");
    }
    set_status(&pods, &name, status).await;
    if deleted {
        let _ = pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
    }
}

fn conditions(ready: bool) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let ready = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
        {"type": "Ready", "status": ready, "lastTransitionTime": now},
    ])
}

fn running(c: &Container, started: &str, ready: bool) -> serde_json::Value {
    json!({"phase": "Running", "startTime": started, "conditions": conditions(ready),
        "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": ready,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}}]})
}

/// One HTTP GET readiness probe: the port as the host reaches it (published, on a pod network).
async fn probe_ready(
    probe: &k8s_openapi::api::core::v1::Probe,
    c: &Container,
    cname: &str,
    pod_network: bool,
) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let Some(get) = &probe.http_get else {
        return true;
    };
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(named) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(named))
            .map_or(0, |p| p.container_port),
    };
    let host_port = if pod_network {
        let out = podman()
            .args(["port", cname, &format!("{port}/tcp")])
            .output()
            .await;
        let Ok(out) = out else { return false };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        match text.trim().rsplit(':').next().and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None => return false,
        }
    } else {
        port
    };
    let path = get.path.clone().unwrap_or_else(|| "/".into());
    super::http_get(&format!("127.0.0.1:{host_port}"), &path, None)
        .await
        .is_some_and(|(code, _)| (200..400).contains(&code))
}

/// SIGTERM, `grace` seconds, then SIGKILL.
async fn stop_container(name: &str, grace: i64) {
    let _ = podman()
        .args(["stop", "--time", &grace.max(0).to_string(), name])
        .output()
        .await;
}
