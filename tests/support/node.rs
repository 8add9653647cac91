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
//!   which the pod object is removed (the kubelet's final delete).
//!
//! - readiness probes (HTTP GET), reported as the pod's `Ready` condition, so Deployments roll
//!   out as they would on a cluster.
//!
//! Networking: by default containers share the host's network (the test components listen on
//! loopback, so tests name them 127.0.0.1). [`Node::pod_network`] gives each pod a network of
//! its own instead (slirp4netns), from which the host's loopback is 10.0.2.2: two replicas may
//! then listen on the same port, as the controller's Deployment needs.
//!
//! What differs from a kubelet: no pod IPs or Services; resource limits and liveness probes are
//! not enforced; only ConfigMap and emptyDir volumes; and the node mounts the test
//! environment's OpenTofu provider mirror (read-only, with `TF_CLI_CONFIG_FILE`), standing in
//! for the provider registry this machine cannot reach.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount};
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
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

type Refused = (&'static str, String);

/// The `podman run` arguments for the pod's (first) container, with its volumes, token and
/// env materialised under `root`.
async fn container_args(
    client: &Client,
    node: &Node,
    ns: &str,
    pod: &Pod,
    root: &Path,
) -> Result<Vec<String>, Refused> {
    let spec = pod.spec.clone().unwrap();
    let c: Container = spec.containers[0].clone();
    let image = c.image.clone().unwrap_or_default();
    let image_user = image_user(&image).await?;
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let uid = sc
        .run_as_user
        .or(psc.run_as_user)
        .or_else(|| image_user.0.parse().ok());
    let gid = sc
        .run_as_group
        .or(psc.run_as_group)
        .or_else(|| image_user.1.as_ref().and_then(|g| g.parse().ok()));
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    if non_root && uid.is_none_or(|u| u == 0) {
        return Err((
            "CreateContainerConfigError",
            "container has runAsNonRoot and image will run as root (or a non-numeric user)".into(),
        ));
    }
    let network = if node.pod_network {
        "slirp4netns:allow_host_loopback=true"
    } else {
        "host"
    };
    let mut args: Vec<String> = vec![
        "--name".into(),
        container_name(ns, &pod.name_any()),
        "--network".into(),
        network.into(),
        "--pull".into(),
        "never".into(),
        "--hostname".into(),
        pod.name_any(),
    ];
    if let Some(uid) = uid {
        args.push("--user".into());
        args.push(match gid {
            Some(g) => format!("{uid}:{g}"),
            None => uid.to_string(),
        });
    }
    for g in psc
        .fs_group
        .iter()
        .chain(psc.supplemental_groups.iter().flatten())
    {
        args.push("--group-add".into());
        args.push(g.to_string());
    }
    if sc.read_only_root_filesystem == Some(true) {
        args.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if let Some(caps) = &sc.capabilities {
        for d in caps.drop.iter().flatten() {
            args.extend(["--cap-drop".into(), d.clone()]);
        }
        for a in caps.add.iter().flatten() {
            args.extend(["--cap-add".into(), a.clone()]);
        }
    }
    if sc.allow_privilege_escalation == Some(false) {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    let seccomp = sc.seccomp_profile.or(psc.seccomp_profile).map(|p| p.type_);
    if seccomp.as_deref() == Some("Unconfined") {
        args.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
    if sc.privileged == Some(true) {
        args.push("--privileged".into());
    }
    if node.pod_network {
        for p in c.ports.iter().flatten() {
            args.extend(["-p".into(), format!("127.0.0.1::{}", p.container_port)]);
        }
    }

    // Volumes: ConfigMaps as files, emptyDirs as empty directories anyone may write (as the
    // kubelet makes them); others are not supported here.
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec.volumes.clone().unwrap_or_default() {
        let dir = root.join("volumes").join(&v.name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(cm) = &v.config_map {
            let data = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get(&cm.name)
                .await
                .map_err(|e| {
                    (
                        "CreateContainerConfigError",
                        format!("configmap {}: {e}", cm.name),
                    )
                })?
                .data
                .unwrap_or_default();
            for (k, val) in data {
                std::fs::write(dir.join(k), val).unwrap();
            }
            chmod(&dir, 0o755);
        } else if v.empty_dir.is_some() {
            chmod(&dir, 0o1777);
        } else {
            return Err((
                "CreateContainerConfigError",
                format!(
                    "volume {}: only configMap and emptyDir volumes run on the test node",
                    v.name
                ),
            ));
        }
        dirs.insert(v.name.clone(), dir);
    }
    for m in c.volume_mounts.clone().unwrap_or_default() {
        let dir = dirs.get(&m.name).ok_or((
            "CreateContainerConfigError",
            format!("volume mount {}: no such volume", m.name),
        ))?;
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        args.extend([
            "-v".into(),
            format!("{}:{}{ro}", dir.display(), m.mount_path),
        ]);
    }

    // The service account's token, bound to this pod, as the runner's only credential.
    if spec.automount_service_account_token != Some(false) {
        let dir = root.join("token");
        std::fs::create_dir_all(&dir).unwrap();
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let token = token(client, ns, &sa, pod).await?;
        std::fs::write(dir.join("token"), token).unwrap();
        std::fs::copy(&node.ca, dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join("namespace"), ns).unwrap();
        chmod(&dir, 0o755);
        for f in ["token", "ca.crt", "namespace"] {
            chmod(&dir.join(f), 0o644);
        }
        args.extend(["-v".into(), format!("{}:{TOKEN_DIR}:ro", dir.display())]);
    }
    let env = super::testenv();
    let api = url_host_port(&node.apiserver);
    let api_host = if node.pod_network {
        HOST_FROM_POD.to_string()
    } else {
        api.0
    };
    args.extend([
        "-e".into(),
        format!("KUBERNETES_SERVICE_HOST={api_host}"),
        "-e".into(),
        format!("KUBERNETES_SERVICE_PORT={}", api.1),
    ]);
    // The provider mirror, in place of the provider registry (see the module's comment).
    const MIRROR: &str = "/opt/landform-test/providers";
    let tofurc = root.join("tofurc");
    std::fs::write(
        &tofurc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{MIRROR}\"\n  }}\n}}\n"
        ),
    )
    .unwrap();
    chmod(&tofurc, 0o644);
    chmod(root, 0o755);
    args.extend([
        "-v".into(),
        format!("{}:/opt/landform-test/tofurc:ro", tofurc.display()),
        "-v".into(),
        format!("{}:{MIRROR}:ro", env["LANDFORM_TEST_PROVIDERS"]),
        "-e".into(),
        "TF_CLI_CONFIG_FILE=/opt/landform-test/tofurc".into(),
    ]);
    for (k, v) in pod_env(client, ns, pod, &c).await? {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }

    let mut command = c.command.clone().unwrap_or_default();
    if let Some(first) = command.first() {
        args.extend(["--entrypoint".into(), first.clone()]);
        command.remove(0);
    }
    args.push(image);
    args.extend(command);
    args.extend(c.args.clone().unwrap_or_default());
    Ok(args)
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn url_host_port(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

/// The image's `USER` as (user, group), or `NotFound`-like refusal if the image is missing.
async fn image_user(image: &str) -> Result<(String, Option<String>), Refused> {
    let out = podman()
        .args(["image", "inspect", "--format", "{{.Config.User}}", image])
        .output()
        .await
        .map_err(|e| ("ErrImageNeverPull", e.to_string()))?;
    if !out.status.success() {
        return Err((
            "ErrImageNeverPull",
            format!("image {image} is not present on the node (images are never pulled here)"),
        ));
    }
    let user = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(match user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (user, None),
    })
}

async fn token(client: &Client, ns: &str, sa: &str, pod: &Pod) -> Result<String, Refused> {
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                kind: Some("Pod".into()),
                api_version: Some("v1".into()),
                name: Some(pod.name_any()),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .map(|t| t.status.and_then(|s| s.token).unwrap_or_default())
        .map_err(|e| {
            (
                "ServiceAccountTokenFailed",
                format!("token for {ns}/{sa}: {e}"),
            )
        })
}

/// The container's environment: `envFrom` first, then `env` (values, Secret and ConfigMap
/// keys, the pod's name and namespace).
async fn pod_env(
    client: &Client,
    ns: &str,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<(String, String)>, Refused> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let missing = |what: String| ("CreateContainerConfigError", what);
    let secret_data = |s: Secret| -> BTreeMap<String, String> {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect()
    };
    let mut out = vec![];
    for from in c.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.unwrap_or_default();
        let data = if let Some(s) = from.secret_ref {
            secret_data(
                secrets
                    .get(&s.name)
                    .await
                    .map_err(|e| missing(format!("secret {}: {e}", s.name)))?,
            )
        } else if let Some(m) = from.config_map_ref {
            maps.get(&m.name)
                .await
                .map_err(|e| missing(format!("configmap {}: {e}", m.name)))?
                .data
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        out.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = if let Some(v) = e.value {
            v
        } else if let Some(from) = e.value_from {
            if let Some(r) = from.secret_key_ref {
                let s = secrets
                    .get(&r.name)
                    .await
                    .map_err(|e| missing(format!("secret {}: {e}", r.name)))?;
                secret_data(s)
                    .remove(&r.key)
                    .ok_or_else(|| missing(format!("secret {} has no key {}", r.name, r.key)))?
            } else if let Some(r) = from.field_ref {
                match r.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => ns.to_string(),
                    "spec.serviceAccountName" => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    other => {
                        return Err(missing(format!("fieldRef {other} is not supported here")));
                    }
                }
            } else if let Some(r) = from.config_map_key_ref {
                let m = maps
                    .get(&r.name)
                    .await
                    .map_err(|e| missing(format!("configmap {}: {e}", r.name)))?;
                m.data
                    .unwrap_or_default()
                    .remove(&r.key)
                    .ok_or_else(|| missing(format!("configmap {} has no key {}", r.name, r.key)))?
            } else {
                continue;
            }
        } else {
            String::new()
        };
        out.push((e.name, value));
    }
    Ok(out)
}
