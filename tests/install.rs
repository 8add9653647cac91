//! The controller installed as it ships, each install in a control plane of its own (started by
//! `scripts/test`, with kube-controller-manager for Deployments), since an installed controller
//! watches every namespace: from `deploy/` with `kubectl apply -k`, and from the Helm chart.
//!
//! Its pods run in containers of the runner image, with exactly the Deployment's arguments and
//! security context (read-only root, non-root). Each install applies and destroys a `Terraform`
//! object through runner pods admitted under restricted Pod Security, and rolls out a new
//! version of the controller with two replicas.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use landform::api::Terraform;
use serde_json::json;
use support::node::{HOST_FROM_POD, Node, NodeAgent, podman};
use support::*;

const WAIT: Duration = Duration::from_secs(240);
const CONTROLLER_NS: &str = "landform-system";
const TENANT: &str = "team-a";

/// A control plane of its own: `target/testenv-<name>`.
struct Cluster {
    dir: PathBuf,
    env: HashMap<String, String>,
    client: kube::Client,
}

async fn cluster(name: &str) -> Cluster {
    let dir = repo_root().join(format!("target/testenv-{name}"));
    let text = std::fs::read_to_string(dir.join("env")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; scripts/test starts this control plane",
            dir.display()
        )
    });
    let env: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.trim_start_matches("export ").split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let client = client_from(&dir.join("kubeconfig")).await;
    Cluster { dir, env, client }
}

impl Cluster {
    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut cmd = testenv_tool(program);
        cmd.args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"));
        let (ok, out, err) = run(&mut cmd);
        assert!(ok, "{program} {args:?}: {out}{err}");
        out
    }
}

/// The runner image under the name a Deployment asks for (images are never pulled here).
async fn tag_image(name: &str) {
    let out = podman()
        .args([
            "tag",
            "localhost/landform:test",
            &format!("localhost/{name}"),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the controller's Deployment has rolled out `image` on two ready replicas.
async fn rolled_out(c: &Cluster, image: &str) {
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), CONTROLLER_NS);
    eventually(&format!("{image} on two ready replicas"), WAIT, || async {
        let d = deployments.get("landform-controller").await.ok()?;
        let spec_image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone()?;
        let s = d.status?;
        (spec_image == image
            && s.observed_generation? >= d.metadata.generation?
            && s.replicas? == 2
            && s.updated_replicas? == 2
            && s.ready_replicas? == 2
            && s.unavailable_replicas.unwrap_or(0) == 0)
            .then_some(())
    })
    .await;
}

/// Installs, applies and destroys an object through runner pods, and rolls out a new version.
async fn exercise(c: &Cluster, image: &str, rollout_image: &str) {
    let client = &c.client;
    tag_image(image).await;
    tag_image(rollout_image).await;

    // A tenant namespace under restricted Pod Security, with its runner service account.
    let tenant: Namespace = serde_json::from_value(json!({"metadata": {"name": TENANT,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .unwrap();
    let runner = std::fs::read_to_string(repo_root().join("deploy/tenant/runner.yaml"))
        .unwrap()
        .replace("TENANT", TENANT);
    apply_yaml(client, &runner, Some(TENANT)).await.unwrap();

    let node = Node::pod_network(
        &[CONTROLLER_NS, TENANT],
        &c.env["LANDFORM_TEST_APISERVER"],
        c.dir.join("pki/ca.crt"),
    );
    let agent = NodeAgent::run(client.clone(), node);
    rolled_out(c, image).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), CONTROLLER_NS);
    let controller_pods = pods.list(&ListParams::default()).await.unwrap();
    let sc = controller_pods.items[0].spec.as_ref().unwrap().containers[0]
        .security_context
        .clone()
        .unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    // An object, applied through runner pods that reach the registry from their own network.
    let repo = publish_module(TENANT, "greeting", "1", GREETING_MODULE)
        .replace("127.0.0.1", HOST_FROM_POD);
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), TENANT);
    let obj: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1",
        "kind": "Terraform", "metadata": {"name": "hello"},
        "spec": {"interval": "10m", "approvePlan": "auto", "destroyOnDelete": true,
            "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}}))
    .unwrap();
    tfs.create(&PostParams::default(), &obj).await.unwrap();
    let ready = |reason: &'static str| {
        let tfs = tfs.clone();
        async move {
            eventually(&format!("hello to be {reason}"), WAIT, || async {
                let s = tfs.get("hello").await.ok()?.status?;
                let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                (ready.reason == reason).then_some(s)
            })
            .await
        }
    };
    ready("Applied").await;
    assert_eq!(state_resources(client, TENANT, "hello").await, 2);
    let ran = agent.ran.lock().unwrap().clone();
    assert!(
        ran.iter().any(|p| p.starts_with("hello-plan-"))
            && ran.iter().any(|p| p.starts_with("hello-apply-")),
        "runner pods were admitted in {TENANT}, which enforces restricted: {ran:?}"
    );

    // A new version rolls out on two replicas; one of the new pods takes the Lease over.
    c.run(
        "kubectl",
        &[
            "-n",
            CONTROLLER_NS,
            "set",
            "image",
            "deployment/landform-controller",
            &format!("controller={rollout_image}"),
        ],
    );
    rolled_out(c, rollout_image).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), CONTROLLER_NS);
    eventually("a new pod to lead", WAIT, || async {
        let holder = leases
            .get("landform-controller")
            .await
            .ok()?
            .spec?
            .holder_identity?;
        let pod = pods.get(&holder).await.ok()?;
        let image = pod.spec?.containers[0].image.clone()?;
        (image == rollout_image).then_some(())
    })
    .await;

    // Deleting the object destroys what it applied, through the new version's runner pods.
    tfs.delete("hello", &Default::default()).await.unwrap();
    eventually("hello to be destroyed and gone", WAIT, || async {
        tfs.get_opt("hello").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(state_resources(client, TENANT, "hello").await, 0);
}

#[tokio::test]
async fn deploy_installs_runs_pods_and_rolls_out() {
    let c = cluster("deploy").await;
    c.run(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "-k",
            repo_root().join("deploy").to_str().unwrap(),
        ],
    );
    exercise(&c, "landform:latest", "landform:rollout-deploy").await;
}

#[tokio::test]
async fn the_chart_installs_runs_pods_and_rolls_out() {
    let c = cluster("chart").await;
    let chart = repo_root().join("charts/landform");
    c.run("helm", &["lint", chart.to_str().unwrap()]);
    c.run(
        "helm",
        &[
            "install",
            "landform",
            chart.to_str().unwrap(),
            "--namespace",
            CONTROLLER_NS,
            "--create-namespace",
        ],
    );
    exercise(&c, "landform:0.1.0", "landform:rollout-chart").await;
}

#[test]
fn the_chart_renders_one_deployment_per_shard() {
    let chart = repo_root().join("charts/landform");
    let (ok, out, err) = run(testenv_tool("helm").args([
        "template",
        "landform",
        chart.to_str().unwrap(),
        "--namespace",
        CONTROLLER_NS,
        "--set",
        "sharding.shards={blue,green}",
    ]));
    assert!(ok, "{err}");
    let deployments: Vec<Deployment> = out
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v["kind"] == "Deployment")
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let shape: Vec<(String, String, Vec<String>)> = deployments
        .into_iter()
        .map(|d| {
            let spec = d.spec.unwrap();
            let component =
                spec.selector.match_labels.unwrap()["app.kubernetes.io/component"].clone();
            let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
            assert_eq!(pod_labels["app.kubernetes.io/component"], component);
            let args = spec.template.spec.unwrap().containers[0]
                .args
                .clone()
                .unwrap();
            let selector = args
                .into_iter()
                .filter(|a| a.starts_with("--watch-label-selector="))
                .collect();
            (d.metadata.name.unwrap(), component, selector)
        })
        .collect();
    let expect = |name: &str, component: &str, selector: &str| {
        (
            name.to_string(),
            component.to_string(),
            vec![format!("--watch-label-selector={selector}")],
        )
    };
    assert_eq!(
        shape,
        [
            expect(
                "landform-controller",
                "controller",
                "!sharding.fluxcd.io/key"
            ),
            expect(
                "landform-controller-blue",
                "controller-blue",
                "sharding.fluxcd.io/key=blue"
            ),
            expect(
                "landform-controller-green",
                "controller-green",
                "sharding.fluxcd.io/key=green"
            ),
        ]
    );
}
