//! Shared test harness: the real API server started by `scripts/testenv up`, a namespace per
//! test, CRDs and RBAC from the repository, and the real `landform` binary as the controller,
//! running under its own service account so that RBAC is enforced.
#![allow(dead_code)]

pub mod cfn;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, Config};

pub mod node;
pub mod tf;

pub const MANAGER: &str = "landform-tests";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variables `scripts/testenv up` wrote, overridden by the process environment.
/// Where `scripts/testenv up` keeps its state.
pub fn testenv_dir() -> PathBuf {
    std::env::var("LANDFORM_TESTENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/testenv"))
}

pub fn testenv() -> HashMap<String, String> {
    let path = testenv_dir().join("env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}. Start the test environment first: scripts/testenv up (or run scripts/test)",
            path.display()
        )
    });
    let mut vars = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("LANDFORM_TEST") {
            vars.insert(k, v);
        }
    }
    vars
}

pub fn kubeconfig_path() -> PathBuf {
    PathBuf::from(
        testenv()
            .get("KUBECONFIG")
            .expect("KUBECONFIG in the testenv env file"),
    )
}

/// An admin client for the test API server.
pub async fn admin_client() -> Client {
    client_from(&kubeconfig_path()).await
}

pub async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Polls `f` until it returns `Some`, for at most `timeout`; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace with a recognisable name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let suffix: String = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
    .chars()
    .rev()
    .take(8)
    .collect();
    let name = format!("{prefix}-{suffix}");
    // Restricted Pod Security, enforced by the API server: a runner pod that asks for more
    // than a tenant may is refused, as on a cluster that enforces it.
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(
                [(
                    "pod-security.kubernetes.io/enforce".to_string(),
                    "restricted".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the test namespace");
    name
}

/// Server-side applies every document of a YAML stream; `namespace` fills in namespaced objects
/// that do not name one.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    use serde::Deserialize;
    let mut applied = vec![];
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("valid YAML");
        if value.is_null() {
            continue;
        }
        let mut obj: DynamicObject = serde_yaml::from_value(value).expect("a Kubernetes object");
        let tm = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&tm).expect("apiVersion");
        let (ar, caps) = discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .metadata
                    .namespace
                    .clone()
                    .or(namespace.map(str::to_string))
                    .expect("a namespace");
                obj.metadata.namespace = Some(ns.clone());
                Api::namespaced_with(client.clone(), &ns, &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().expect("a name");
        applied.push(
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await?,
        );
    }
    Ok(applied)
}

/// Installs the CRDs from `crds/` (as a user would) and waits until they are served.
pub async fn install_crds(client: &Client) {
    let yaml = std::fs::read_to_string(repo_root().join("crds/landform.dev.yaml")).unwrap();
    apply_yaml(client, &yaml, None)
        .await
        .expect("applying crds/");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "terraforms.landform.dev",
        "cloudformationstacks.landform.dev",
    ] {
        eventually(
            &format!("CRD {name} to be established"),
            Duration::from_secs(30),
            || async {
                let crd = crds.get(name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            },
        )
        .await;
    }
}

/// Applies the RBAC from `deploy/rbac/` (cluster roles only).
pub async fn install_rbac(client: &Client) {
    for file in ["deploy/rbac/controller.yaml", "deploy/rbac/runner.yaml"] {
        let yaml = std::fs::read_to_string(repo_root().join(file)).unwrap();
        apply_yaml(client, &yaml, None)
            .await
            .unwrap_or_else(|e| panic!("applying {file}: {e}"));
    }
}

/// Creates a service account bound (in `ns` only) to the given cluster roles and returns a
/// kubeconfig that authenticates as it with a real TokenRequest token.
pub async fn service_account_kubeconfig(
    client: &Client,
    ns: &str,
    sa: &str,
    cluster_roles: &[&str],
) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(sa.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.patch(
        sa,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&account),
    )
    .await
    .expect("service account");
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    for role in cluster_roles {
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{sa}-{role}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        };
        rbs.patch(
            &format!("{sa}-{role}"),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&rb),
        )
        .await
        .expect("role binding");
    }
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        }),
        ..Default::default()
    };
    let token = sas
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token
        .expect("a token");
    let path = logs_dir().join(format!("kubeconfig-{ns}-{sa}"));
    write_token_kubeconfig(&path, &token, ns, sa);
    path
}

/// A kubeconfig for the test API server that authenticates with `token`.
pub fn write_token_kubeconfig(path: &Path, token: &str, ns: &str, user: &str) {
    let admin = Kubeconfig::read_from(kubeconfig_path()).unwrap();
    let cluster = admin.clusters[0].cluster.clone().unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: {user}, namespace: {ns}}}\ncurrent-context: test\n",
        cluster.server.unwrap(),
        cluster.certificate_authority_data.unwrap(),
    );
    std::fs::write(path, yaml).unwrap();
}

pub fn logs_dir() -> PathBuf {
    let dir = repo_root().join("target/testenv/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A plain HTTP/1.1 GET; returns status code and body. `basic` is "user:password".
pub async fn http_get(addr: &str, path: &str, basic: Option<&str>) -> Option<(u16, String)> {
    use base64::Engine;
    let auth = basic.map(|b| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    });
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_request(addr, "GET", path, &headers, "").await
}

/// A plain HTTP/1.1 request; returns status code and body.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `landform controller`, restricted to one namespace (so tests run side by side),
/// authenticated as the `landform-controller` service account of that namespace.
pub struct Controller {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub identity: String,
}

impl Controller {
    pub async fn start(client: &Client, ns: &str, extra: &[&str]) -> Self {
        Self::start_as(client, ns, &format!("controller-{ns}"), extra).await
    }

    pub async fn start_as(client: &Client, ns: &str, identity: &str, extra: &[&str]) -> Self {
        install_rbac(client).await;
        let kubeconfig = service_account_kubeconfig(
            client,
            ns,
            "landform-controller",
            &[
                "landform-controller",
                "landform-leader-election",
                "landform-runner",
            ],
        )
        .await;
        let metrics_port = free_port();
        let log = logs_dir().join(format!("{identity}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_landform"))
            .args([
                "controller",
                "--namespace",
                ns,
                "--leader-election-namespace",
                ns,
                "--identity",
                identity,
            ])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            // Most tests run the engine as the controller's children; pod-mode tests say so.
            .args(
                (!extra.contains(&"--runner"))
                    .then_some(["--runner", "local"])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("LANDFORM_TOFU", testenv_dir().join("bin/tofu"))
            .env("TF_CLI_CONFIG_FILE", testenv_dir().join("tofurc"))
            .env("RUST_LOG", "info,landform=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting landform controller");
        Self {
            child: Some(child),
            metrics_port,
            log,
            identity: identity.to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("127.0.0.1:{}", self.metrics_port), path, None).await
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "controller did not stop within 20s of SIGTERM; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (STOP, CONT, …) to the controller process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running controller").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Waits up to `within` for the process to exit by itself; its exit code, or None.
    pub fn exited_within(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// SIGKILL: the controller dies at once, as in a node failure or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the real kubectl built by the test environment against the admin kubeconfig.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    let env = testenv();
    let path = env
        .get("PATH")
        .map(|p| p.replace("$PATH", &std::env::var("PATH").unwrap_or_default()));
    let mut cmd = Command::new("kubectl");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    cmd.env("KUBECONFIG", kubeconfig_path())
        .args(args)
        .output()
        .expect("running kubectl (from scripts/testenv)")
}

/// The test environment's own tools (kubectl, oras, tofu) by name.
pub fn testenv_tool(name: &str) -> Command {
    let mut cmd = Command::new(testenv_dir().join("bin").join(name));
    if let Some(rc) = testenv().get("TF_CLI_CONFIG_FILE") {
        cmd.env("TF_CLI_CONFIG_FILE", rc);
    }
    cmd
}

/// The `landform` binary under test.
pub fn landform() -> Command {
    Command::new(env!("CARGO_BIN_EXE_landform"))
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("running a command");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw tar entry: path, kind, link target, data.
pub type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// A tar.gz with raw entries, written byte by byte so that tests can build archives
/// well-behaved writers refuse to produce.
pub fn raw_targz(entries: &[RawEntry]) -> Vec<u8> {
    use std::io::Write;
    let mut out = vec![];
    for (path, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        {
            let raw = h.as_old_mut();
            raw.name[..path.len()].copy_from_slice(path.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(&out).unwrap();
    gz.finish().unwrap()
}

/// Publishes a one-file module (`main.tf`) as `oci://<registry>/<ns>/<repo>:<tag>` and returns
/// the repository URL.
pub fn publish_module(ns: &str, repo: &str, tag: &str, main_tf: &str) -> String {
    publish_files(ns, repo, tag, &[("main.tf", main_tf)])
}

/// Publishes files (name, content) as `oci://<registry>/<ns>/<repo>:<tag>` and returns the
/// repository URL.
pub fn publish_files(ns: &str, repo: &str, tag: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let url = format!("oci://{}/{ns}/{repo}", testenv()["LANDFORM_TEST_REGISTRY"]);
    let (ok, _, err) = run(landform().args([
        "push",
        dir.path().to_str().unwrap(),
        &format!("{url}:{tag}"),
        "--insecure",
    ]));
    assert!(ok, "{err}");
    url
}

/// Resources recorded in the kubernetes backend's state Secret `tfstate-default-<suffix>`
/// (0 when there is no state).
pub async fn state_resources(client: &Client, ns: &str, suffix: &str) -> usize {
    state(client, ns, suffix)
        .await
        .and_then(|s| s["resources"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// The state the kubernetes backend keeps for object `suffix` (default workspace), if any.
pub async fn state(client: &Client, ns: &str, suffix: &str) -> Option<serde_json::Value> {
    use std::io::Read;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get_opt(&format!("tfstate-default-{suffix}"))
        .await
        .unwrap()?;
    let gz = secret.data.unwrap().remove("tfstate").unwrap().0;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

/// A module with a random name and a greeting built from the `greeting` variable.
pub const GREETING_MODULE: &str = r#"
terraform {
  required_providers {
    random = { source = "hashicorp/random" }
  }
}
variable "greeting" {
  type    = string
  default = "Hello"
}
resource "random_pet" "name" {}
resource "terraform_data" "message" {
  input = "${var.greeting}, ${random_pet.name.id}"
}
output "name" { value = random_pet.name.id }
output "message" { value = terraform_data.message.output }
"#;

/// The events about the object `name` in namespace `ns`.
pub async fn events_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// The notes of the events with `reason` in namespace `ns`.
pub async fn events(client: &kube::Client, ns: &str, reason: &str) -> Vec<String> {
    timed_events(client, ns, reason)
        .await
        .into_iter()
        .map(|(_, note)| note)
        .collect()
}

/// The events with `reason` in namespace `ns`: when each happened, and its note, oldest first.
pub async fn timed_events(
    client: &kube::Client,
    ns: &str,
    reason: &str,
) -> Vec<(jiff::Timestamp, String)> {
    let list = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    let mut found: Vec<_> = list
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| Some((e.event_time?.0, e.note?)))
        .collect();
    found.sort();
    found
}

/// Asks for an immediate reconcile of `name` (Flux's `reconcile.fluxcd.io/requestedAt`, which
/// Landform honours too), as `flux reconcile` does.
pub async fn request_reconcile<K>(api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let now = jiff::Timestamp::now().to_string();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}})),
    )
    .await
    .unwrap();
}
