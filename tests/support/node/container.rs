//! What a pod's container is run with: its `podman run` arguments, with its volumes, token and
//! environment materialised on the node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::{HOST_FROM_POD, Node, container_name, podman};

const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub(super) type Refused = (&'static str, String);

/// The `podman run` arguments for the pod's (first) container, with its volumes, token and
/// env materialised under `root`.
pub(super) async fn container_args(
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
    // Limits, as the kubelet's cgroups would hold them.
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    if let Some(bytes) = limits.get("memory").and_then(|q| quantity(&q.0)) {
        args.extend(["--memory".into(), format!("{}", bytes as u64)]);
    }
    if let Some(cpus) = limits.get("cpu").and_then(|q| quantity(&q.0)) {
        args.extend(["--cpus".into(), format!("{cpus}")]);
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
    let env = crate::support::testenv();
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

/// A resource quantity (`256Mi`, `1G`, `500m`, `2`) as a number of its base unit.
fn quantity(q: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 11] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
        ("u", 1e-6),
        ("n", 1e-9),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    q.parse().ok()
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
