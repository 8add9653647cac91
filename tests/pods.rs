//! Runs as ephemeral pods (`--runner=pod`), executed by the test node agent with each pod's own
//! service-account token, so the runner RBAC in deploy/ is enforced by the real API server.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use landform::api::{ObjectStatus, Terraform};
use serde_json::json;
use support::node::NodeAgent;
use support::*;

const WAIT: Duration = Duration::from_secs(180);
/// The runner image `scripts/testenv image` builds.
const IMAGE: &str = "localhost/landform:test";

fn publish(ns: &str, main_tf: &str) -> String {
    publish_module(ns, "module", "1", main_tf)
}

async fn tenant_rbac(client: &kube::Client, ns: &str) {
    let yaml = std::fs::read_to_string(repo_root().join("deploy/tenant/runner.yaml"))
        .unwrap()
        .replace("TENANT", ns);
    apply_yaml(client, &yaml, Some(ns)).await.unwrap();
}

/// A tenant namespace (with its runner service account and role if `rbac`), a pod-mode
/// controller with `extra` flags, and the test node that runs its pods.
struct Tenant {
    client: kube::Client,
    ns: String,
    tfs: Api<Terraform>,
    agent: NodeAgent,
    _controller: Controller,
}

async fn tenant(prefix: &str, rbac: bool, extra: &[&str]) -> Tenant {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    if rbac {
        tenant_rbac(&client, &ns).await;
    }
    let args: Vec<&str> = ["--runner", "pod", "--runner-image", IMAGE]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let controller = Controller::start(&client, &ns, &args).await;
    Tenant {
        agent: NodeAgent::start(client.clone(), &ns),
        tfs: Api::namespaced(client.clone(), &ns),
        _controller: controller,
        client,
        ns,
    }
}

async fn create(api: &Api<Terraform>, name: &str, spec: serde_json::Value) {
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &tf).await.unwrap();
}

fn ready_message(s: &ObjectStatus) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn wait_reason(api: &Api<Terraform>, name: &str, reason: &str) -> ObjectStatus {
    eventually(&format!("{name} to report {reason}"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        (s.conditions.iter().find(|c| c.type_ == "Ready")?.reason == reason).then_some(s)
    })
    .await
}

const MODULE: &str = "terraform {\n  required_providers {\n    random = { source = \"hashicorp/random\" }\n  }\n}\nresource \"random_pet\" \"p\" {}\noutput \"pet\" { value = random_pet.p.id }\n";

#[tokio::test]
async fn runs_in_restricted_pods_with_the_runner_service_account() {
    let t = tenant("pods", true, &[]).await;
    let (client, ns, tfs, agent) = (t.client.clone(), t.ns.clone(), t.tfs.clone(), &t.agent);
    let repo = publish(&ns, MODULE);
    create(
        &tfs,
        "pet",
        json!({"interval": "10m", "approvePlan": "auto", "timeout": "5m",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "writeOutputsToSecret": {"name": "pet-outputs"},
        "runnerPodTemplate": {"labels": {"team": "a"}}}),
    )
    .await;
    let s = wait_reason(&tfs, "pet", "Applied").await;
    assert_eq!(s.outputs, ["pet"]);
    let ran = agent.ran.lock().unwrap().clone();
    assert!(
        ran.iter().any(|p| p.starts_with("pet-plan-"))
            && ran.iter().any(|p| p.starts_with("pet-apply-")),
        "{ran:?}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("successful run pods to be removed", WAIT, || async {
        let l = pods
            .list(&ListParams::default().labels("landform.dev/run"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;

    // A failing run keeps its pod, which shows how runs are confined.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("main.tf"),
        "resource \"terraform_data\" \"x\" {\n  input = \n}\n",
    )
    .unwrap();
    let bad_repo = format!("oci://{}/{ns}/broken", testenv()["LANDFORM_TEST_REGISTRY"]);
    assert!(
        run(landform().args([
            "push",
            broken.path().to_str().unwrap(),
            &format!("{bad_repo}:1"),
            "--insecure"
        ]))
        .0
    );
    create(
        &tfs,
        "bad",
        json!({"interval": "10m", "approvePlan": "auto", "timeout": "5m",
        "source": {"oci": {"url": bad_repo, "ref": {"tag": "1"}, "insecure": true}},
        "runnerPodTemplate": {"labels": {"team": "a"}}}),
    )
    .await;
    let s = wait_reason(&tfs, "bad", "InitFailed").await;
    let run_name = s.run.unwrap().name;
    let pod = pods
        .get(&run_name)
        .await
        .expect("the failed run's pod is kept");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["team"], "a");
    assert_eq!(
        pod.metadata.owner_references.as_ref().unwrap()[0].name,
        "bad"
    );
    let spec = pod.spec.unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("landform-runner")
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(300));
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    let sc = c.security_context.clone().unwrap();
    assert_eq!(
        (
            sc.run_as_non_root,
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation
        ),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Failed"));

    // The namespace enforces restricted Pod Security: the runner pods above were admitted
    // under it, and a pod that asks for more is refused by the API server itself.
    let privileged: Pod = serde_json::from_value(json!({"metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": IMAGE,
            "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}}]}}))
    .unwrap();
    let refused = pods
        .create(&PostParams::default(), &privileged)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("violates PodSecurity \"restricted:latest\""),
        "{refused}"
    );
}

#[tokio::test]
async fn a_runner_without_rights_fails_visibly() {
    let t = tenant("pods-norbac", false, &[]).await;
    let (client, ns, tfs) = (t.client.clone(), t.ns.clone(), t.tfs.clone());
    // The service account exists but is bound to nothing: the API server refuses the runner.
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "landform-runner"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let repo = publish(&ns, MODULE);
    create(
        &tfs,
        "denied",
        json!({"interval": "10m", "approvePlan": "auto", "retryInterval": "10m",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}),
    )
    .await;
    let s = wait_reason(&tfs, "denied", "RunnerLost").await;
    let message = ready_message(&s);
    assert!(
        message.contains("ended without a result (pod denied-plan-")
            && message.contains("exit code 2"),
        "{message}"
    );
}

#[tokio::test]
async fn a_destroy_that_cannot_fetch_its_artifact_says_so_and_the_annotation_releases() {
    let t = tenant("pods-gone", true, &[]).await;
    let (ns, tfs) = (t.ns.clone(), t.tfs.clone());
    let repo = publish(&ns, MODULE);
    create(&tfs, "orphan", json!({"interval": "10m", "approvePlan": "auto", "destroyOnDelete": true, "retryInterval": "1h",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}})).await;
    let s = wait_reason(&tfs, "orphan", "Applied").await;
    let digest = s.last_applied_digest.unwrap();

    // The applied artifact disappears from the registry (pods have no cache to fall back on).
    let reference = format!("{}@{digest}", repo.trim_start_matches("oci://"));
    let (ok, _, err) = run(testenv_tool("oras").args([
        "manifest",
        "delete",
        "--plain-http",
        "--force",
        &reference,
    ]));
    assert!(ok, "{err}");
    tfs.delete("orphan", &Default::default()).await.unwrap();
    let s = wait_reason(&tfs, "orphan", "ArtifactNotFound").await;
    let message = ready_message(&s);
    assert!(
        message.starts_with("destroy on delete failed:")
            && message.contains("landform.dev/skip-destroy=true"),
        "{message}"
    );
    assert!(
        tfs.get_opt("orphan").await.unwrap().is_some(),
        "the object stays"
    );

    let patch = json!({"metadata": {"annotations": {"landform.dev/skip-destroy": "true"}}});
    tfs.patch(
        "orphan",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    eventually("orphan to be released", WAIT, || async {
        tfs.get_opt("orphan").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn suspending_mid_run_lets_the_run_end_and_frees_its_slot() {
    let t = tenant("pods-suspend", true, &["--max-runs", "1"]).await;
    let (client, ns) = (t.client.clone(), t.ns.clone());
    let slow = publish(
        &ns,
        "resource \"terraform_data\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 8\"\n  }\n}\n",
    );
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    let source = |repo: &str| json!({"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}});
    create(
        &tfs,
        "first",
        json!({"interval": "10m", "approvePlan": "auto", "source": source(&slow)}),
    )
    .await;
    eventually("first's apply to run", WAIT, || async {
        let run = tfs.get("first").await.ok()?.status?.run?;
        (run.operation == landform::api::Operation::Apply).then_some(())
    })
    .await;
    tfs.patch(
        "first",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    // The only run slot is first's; second waits for it.
    let quick = publish_module(&ns, "quick", "1", MODULE);
    create(
        &tfs,
        "second",
        json!({"interval": "10m", "approvePlan": "auto", "source": source(&quick)}),
    )
    .await;
    // The suspended object's run ends and is collected; the slot goes to second.
    eventually("first's apply to be collected", WAIT, || async {
        let run = tfs.get("first").await.ok()?.status?.run?;
        (run.phase == landform::api::RunPhase::Succeeded).then_some(())
    })
    .await;
    wait_reason(&tfs, "second", "Applied").await;
}

/// A pet, then a resource whose provisioner sleeps for `$PACE` seconds (from the runner's
/// environment, so the test can change it without changing the plan's inputs).
const SLOW_PET: &str = r#"
terraform {
  required_providers {
    random = { source = "hashicorp/random" }
  }
}
resource "random_pet" "p" {}
resource "terraform_data" "slow" {
  input = random_pet.p.id
  provisioner "local-exec" {
    command = "sleep $PACE"
  }
}
output "pet" { value = random_pet.p.id }
"#;

/// The pets in the state of `name`.
async fn pets(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let Some(state) = state(client, ns, name).await else {
        return vec![];
    };
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "random_pet")
        .flat_map(|r| r["instances"].as_array().unwrap().clone())
        .map(|i| i["attributes"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_runner_pod_deleted_mid_apply_writes_its_state_and_the_retry_converges() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    let t = tenant("pods-stop", true, &[]).await;
    let (client, ns) = (t.client.clone(), t.ns.clone());
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pace = |secs: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "pace"}, "data": {"seconds": secs}}))
            .unwrap()
    };
    maps.create(&PostParams::default(), &pace("300"))
        .await
        .unwrap();
    let repo = publish(&ns, SLOW_PET);
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    create(
        &tfs,
        "stop",
        json!({"interval": "10m", "approvePlan": "auto", "retryInterval": "5s",
            "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
            "runnerPodTemplate": {"spec": {"env": [{"name": "PACE",
                "valueFrom": {"configMapKeyRef": {"name": "pace", "key": "seconds"}}}]}}}),
    )
    .await;

    // The apply is under way once it holds the state lock; the pet is created at once, then
    // the provisioner sleeps.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let locked = || async {
        let lease = leases.get_opt("lock-tfstate-default-stop").await.ok()??;
        let info = lease
            .metadata
            .annotations?
            .get("app.terraform.io/lock-info")?
            .clone();
        Some(info)
    };
    let apply = eventually("the apply to hold the state lock", WAIT, || async {
        let run = tfs.get("stop").await.ok()?.status?.run?;
        (run.operation == landform::api::Operation::Apply).then_some(())?;
        locked().await?;
        Some(run.name)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The pod is deleted with its own grace period, as a drain or an eviction would; the
    // retry will not sleep.
    maps.replace("pace", &PostParams::default(), &pace("0"))
        .await
        .unwrap();
    let deleted_at = std::time::Instant::now();
    pods.delete(&apply, &Default::default()).await.unwrap();
    eventually("the pod to be gone", WAIT, || async {
        pods.get_opt(&apply).await.ok()?.is_none().then_some(())
    })
    .await;
    let took = deleted_at.elapsed();
    let log = std::fs::read_to_string(logs_dir().join(format!("pod-{ns}-{apply}.log"))).unwrap();
    assert!(
        log.contains("stop requested; interrupting the engine"),
        "{log}"
    );
    assert!(!log.contains("did not stop within"), "{log}");
    assert!(
        took < Duration::from_secs(35),
        "stopped within the grace period: {took:?}"
    );

    // The run reports that it was interrupted, with a result, so OpenTofu itself wrote the
    // state (the pet is in it) and released the lock: the controller did not have to.
    let s = eventually("the interrupted run to be collected", WAIT, || async {
        let s = tfs.get("stop").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "Interrupted").then_some(s)
    })
    .await;
    assert!(
        ready_message(&s).contains("interrupted"),
        "{}",
        ready_message(&s)
    );
    let before = pets(&client, &ns, "stop").await;
    assert_eq!(
        before.len(),
        1,
        "the pet created before the interrupt is in the state"
    );
    assert!(locked().await.is_none(), "the state lock was released");
    assert!(events(&client, &ns, "StateUnlocked").await.is_empty());

    // The retry plans from that state and converges: the same pet, made once.
    let s = eventually("the retry to apply", WAIT, || async {
        let s = tfs.get("stop").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "Applied").then_some(s)
    })
    .await;
    let plan = s.plan.unwrap();
    assert!(
        plan.resources.iter().all(|r| r.address != "random_pet.p"),
        "the retry does not make the pet again: {:?}",
        plan.resources
    );
    assert_eq!(pets(&client, &ns, "stop").await, before);
}
