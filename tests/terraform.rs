//! A `Terraform` object through the real controller (local runs), real OpenTofu, the real
//! registry and the real API server: plan, approval, apply, outputs, errors.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use landform::api::{ObjectStatus, Terraform};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(180);

const MODULE: &str = GREETING_MODULE;

fn publish(ns: &str, tag: &str, main_tf: &str) -> String {
    publish_module(ns, "module", tag, main_tf)
}

async fn create(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Api<Terraform> {
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec})).unwrap();
    let api: Api<Terraform> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &tf).await.unwrap();
    api
}

async fn wait_ready(api: &Api<Terraform>, name: &str, reason: &str) -> ObjectStatus {
    eventually(&format!("{name} Ready reason {reason}"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == reason).then_some(s)
    })
    .await
}

fn ready_message(s: &ObjectStatus) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone()
}

#[tokio::test]
async fn auto_approval_plans_applies_and_writes_outputs() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-auto").await;
    let controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(&ns, "1", MODULE);
    let api = create(
        &client,
        &ns,
        "hello",
        json!({"interval": "10m", "approvePlan": "auto",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "writeOutputsToSecret": {"name": "hello-outputs"}}),
    )
    .await;

    let s = wait_ready(&api, "hello", "Applied").await;
    let metrics = controller.get("/metrics").await.unwrap().1;
    for op in ["plan", "apply"] {
        let line = format!(
            "landform_runs_total{{kind=\"Terraform\",namespace=\"{ns}\",operation=\"{op}\",result=\"succeeded\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
    // The controller counts its own API requests: it has read (GET) and written status (PATCH).
    for method in ["GET", "PATCH"] {
        let count = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "landform_kube_requests_total{{method=\"{method}\"}} "
                ))
            })
            .and_then(|n| n.parse::<f64>().ok());
        assert!(count.is_some_and(|n| n > 0.0), "{method}: {metrics}");
    }
    let revision = s.artifact.as_ref().unwrap().revision.clone();
    assert_eq!(s.last_applied_revision.as_deref(), Some(revision.as_str()));
    // Messages show the digest's first 12 hex characters; the artifact keeps it whole.
    let (tag, digest) = revision.split_once("@sha256:").unwrap();
    assert_eq!(
        ready_message(&s),
        format!("Applied revision {tag}@sha256:{}", &digest[..12])
    );
    let plan = s.plan.unwrap();
    assert!(!plan.pending);
    assert_eq!(
        (plan.summary.add, plan.summary.change, plan.summary.destroy),
        (2, 0, 0)
    );
    assert_eq!(s.outputs, ["message", "name"]);
    let cond = |t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(cond("Planned"), Some(("True".into(), "PlanReady".into())));
    assert_eq!(
        cond("Applied"),
        Some(("True".into(), "ApplySucceeded".into()))
    );
    let outputs = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("hello-outputs")
        .await
        .unwrap()
        .data
        .unwrap();
    let name: String = serde_json::from_slice(&outputs["name"].0).unwrap();
    assert!(name.contains('-'));
    assert_eq!(s.run.unwrap().phase, landform::api::RunPhase::Succeeded);
}

#[tokio::test]
async fn manual_approval_names_the_plan_and_refuses_a_stale_one() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-manual").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(&ns, "1", MODULE);
    let api = create(
        &client,
        &ns,
        "gated",
        json!({"interval": "10m",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "writeOutputsToSecret": {"name": "gated-outputs"}}),
    )
    .await;

    let s = wait_ready(&api, "gated", "AwaitingApproval").await;
    let id = s.plan.as_ref().unwrap().id.clone();
    let msg = ready_message(&s);
    assert!(msg.contains(&id[..12]) && msg.contains("+2 ~0 -0"), "{msg}");
    assert!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt("gated-outputs")
            .await
            .unwrap()
            .is_none(),
        "nothing applied"
    );

    let approve = |v: String| json!({"spec": {"approvePlan": v}});
    api.patch(
        "gated",
        &PatchParams::default(),
        &Patch::Merge(approve("abcdef0".into())),
    )
    .await
    .unwrap();
    let s = wait_ready(&api, "gated", "ApprovalStale").await;
    assert!(
        ready_message(&s).contains("approves plan abcdef0"),
        "{}",
        ready_message(&s)
    );

    // The CLI shows the plan and approves exactly it; a stale ID is refused.
    let cli = |args: &[&str]| {
        run(landform()
            .args(args)
            .args(["-n", &ns])
            .env("KUBECONFIG", kubeconfig_path()))
    };
    let (ok, shown, err) = cli(&["plan", "tf/gated"]);
    assert!(ok, "{err}");
    assert!(
        shown.contains(&format!("plan {id}"))
            && shown.contains("+ random_pet.name (create)")
            && shown.contains("Plan: 2 to add"),
        "{shown}"
    );
    let (ok, _, err) = cli(&["approve", "tf/gated", "--plan", "ffffff"]);
    assert!(!ok && err.contains("is stale"), "{err}");
    let (ok, out, err) = cli(&["approve", "tf/gated", "--plan", &id[..8]]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("approved plan {id} (+2 ~0 -0) of tf/gated")
    );
    let s = wait_ready(&api, "gated", "Applied").await;
    assert_eq!(
        s.plan.unwrap().id,
        id,
        "exactly the approved plan was applied"
    );
}

#[tokio::test]
async fn invalid_hcl_is_quoted_and_nothing_is_applied() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-invalid").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(
        &ns,
        "bad",
        "resource \"terraform_data\" \"x\" {\n  input = \n}\n",
    );
    let api = create(
        &client,
        &ns,
        "broken",
        json!({"interval": "10m", "approvePlan": "auto", "retryInterval": "1m",
        "source": {"oci": {"url": repo, "ref": {"tag": "bad"}, "insecure": true}}}),
    )
    .await;
    let s = wait_ready(&api, "broken", "InitFailed").await;
    let msg = ready_message(&s);
    assert!(
        msg.contains("Error:") && msg.contains("main.tf line 2"),
        "{msg}"
    );
    assert_eq!(s.failures, 1);
    assert!(s.last_applied_revision.is_none());
}

async fn finalized_note(client: &kube::Client, ns: &str, name: &str) -> (String, String) {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .find(|e| matches!(e.reason.as_deref(), Some("Finalized" | "DestroySkipped")))
        .map(|e| (e.reason.unwrap(), e.note.unwrap_or_default()))
        .expect("a Finalized or DestroySkipped event")
}

#[tokio::test]
async fn destroy_on_delete_destroys_and_the_escape_hatch_releases() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-delete").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(&ns, "1", MODULE);
    let spec = |outputs: &str| {
        json!({"interval": "10m", "approvePlan": "auto", "destroyOnDelete": true,
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}, "writeOutputsToSecret": {"name": outputs}})
    };
    let api = create(&client, &ns, "doomed", spec("doomed-outputs")).await;
    create(&client, &ns, "kept", spec("kept-outputs")).await;
    wait_ready(&api, "doomed", "Applied").await;
    wait_ready(&api, "kept", "Applied").await;
    assert_eq!(state_resources(&client, &ns, "doomed").await, 2);

    api.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("doomed to be gone", WAIT, || async {
        api.get_opt("doomed").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        state_resources(&client, &ns, "doomed").await,
        0,
        "destroyed"
    );
    assert_eq!(
        finalized_note(&client, &ns, "doomed").await.1,
        "Deleted after destroying everything it had applied"
    );
    let owned = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("landform.dev/owner=doomed"))
        .await
        .unwrap();
    assert!(
        owned.items.is_empty(),
        "plans, results and outputs are cleaned up"
    );

    api.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"landform.dev/skip-destroy": "true"}}})),
    )
    .await
    .unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    eventually("kept to be released", WAIT, || async {
        api.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        state_resources(&client, &ns, "kept").await,
        2,
        "nothing destroyed, state kept"
    );
    let (reason, note) = finalized_note(&client, &ns, "kept").await;
    assert_eq!(reason, "DestroySkipped");
    assert!(note.contains("left in place"), "{note}");
}

#[tokio::test]
async fn a_missing_vars_secret_recovers_once_it_exists() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-vars").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(&ns, "1", MODULE);
    let api = create(&client, &ns, "late", json!({"interval": "10m", "retryInterval": "2s", "approvePlan": "auto",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "varsFrom": [{"kind": "Secret", "name": "late-vars"}], "writeOutputsToSecret": {"name": "late-outputs"}})).await;
    let s = wait_ready(&api, "late", "VarsSourceNotFound").await;
    assert!(
        ready_message(&s).contains(&format!("Secret {ns}/late-vars")),
        "{}",
        ready_message(&s)
    );

    let vars: Secret = serde_json::from_value(
        json!({"metadata": {"name": "late-vars"}, "stringData": {"greeting": "Hi"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &vars)
        .await
        .unwrap();
    // The backoff (from retryInterval), not the 10m interval, brings it back.
    wait_ready(&api, "late", "Applied").await;
    let outputs = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("late-outputs")
        .await
        .unwrap()
        .data
        .unwrap();
    let message: String = serde_json::from_slice(&outputs["message"].0).unwrap();
    assert!(message.starts_with("Hi, "), "{message}");
}

#[tokio::test]
async fn a_custom_backend_keeps_state_in_s3_on_moto() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-s3").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let moto = testenv()["LANDFORM_TEST_MOTO"].clone();
    let host = moto.trim_start_matches("http://").to_string();
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
    let bucket = ns.clone();
    let (code, body) = http_request(
        &host,
        "PUT",
        &format!("/{bucket}"),
        &[("Authorization", auth)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");

    // The backend configuration holds credentials, so it comes from a Secret.
    let hcl = format!(
        r#"terraform {{
  backend "s3" {{
    bucket                      = "{bucket}"
    key                         = "hello.tfstate"
    region                      = "us-east-1"
    endpoints                   = {{ s3 = "{moto}" }}
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    access_key                  = "test"
    secret_key                  = "test"
  }}
}}"#
    );
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "backend"}, "stringData": {"backend.tf": hcl}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let repo = publish(&ns, "1", MODULE);
    let api = create(
        &client,
        &ns,
        "s3",
        json!({"interval": "10m", "approvePlan": "auto",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "backend": {"configFrom": {"name": "backend", "key": "backend.tf"}}}),
    )
    .await;
    wait_ready(&api, "s3", "Applied").await;

    let (code, state) = http_request(
        &host,
        "GET",
        &format!("/{bucket}/hello.tfstate"),
        &[("Authorization", auth)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{state}");
    assert!(
        state.contains("random_pet"),
        "the state in S3 holds the applied resources"
    );
    assert!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt("tfstate-default-s3")
            .await
            .unwrap()
            .is_none(),
        "no Kubernetes state"
    );
}

#[tokio::test]
async fn deleting_during_a_run_waits_for_the_run() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-inflight").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let slow = "resource \"terraform_data\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 6\"\n  }\n}\n";
    let repo = publish(&ns, "1", slow);
    let api = create(
        &client,
        &ns,
        "slow",
        json!({"interval": "10m", "approvePlan": "auto",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}),
    )
    .await;
    wait_ready(&api, "slow", "Applying").await;
    api.delete("slow", &DeleteParams::default()).await.unwrap();

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let holder_when_gone = eventually("slow to be gone", WAIT, || async {
        if api.get_opt("slow").await.ok()?.is_some() {
            return None;
        }
        let lease = leases.get_opt("lock-tfstate-default-slow").await.ok()?;
        Some(
            lease
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .unwrap_or_default(),
        )
    })
    .await;
    assert_eq!(
        holder_when_gone, "",
        "the object went only after its apply released the state lock"
    );
    assert_eq!(
        state_resources(&client, &ns, "slow").await,
        1,
        "the apply ran to completion"
    );
}

/// Kills the runner of a run in `ns` and the engine under it (SIGKILL: no cleanup at all).
fn kill_runner(ns: &str) {
    let (_, pids, _) =
        run(std::process::Command::new("pgrep").args(["-f", &format!("runner --spec .*/{ns}\\.")]));
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert!(!pids.is_empty(), "no runner process for {ns}");
    for pid in &pids {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-P", pid])
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status();
    }
}

#[tokio::test]
async fn a_lock_left_by_a_killed_runner_is_released_and_the_retry_succeeds() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-lock").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let slow = "resource \"terraform_data\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 8\"\n  }\n}\n";
    let repo = publish(&ns, "1", slow);
    let api = create(
        &client,
        &ns,
        "locked",
        json!({"interval": "10m", "approvePlan": "auto", "retryInterval": "2s",
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}),
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let (lock_id, run) = eventually("the apply to hold the state lock", WAIT, || async {
        let s = api.get("locked").await.ok()?.status?;
        let run = s.run.filter(|r| r.name.starts_with("locked-apply-"))?.name;
        let lease = leases.get_opt("lock-tfstate-default-locked").await.ok()??;
        let id = lease.spec?.holder_identity.filter(|h| !h.is_empty())?;
        Some((id, run))
    })
    .await;
    kill_runner(&ns);

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let note = eventually("a StateUnlocked event", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("StateUnlocked"))
            .and_then(|e| e.note)
    })
    .await;
    assert!(note.contains(&lock_id) && note.contains(&run), "{note}");
    let s = wait_ready(&api, "locked", "Applied").await;
    assert!(s.lock.is_none());
    assert_eq!(state_resources(&client, &ns, "locked").await, 1);
}

#[tokio::test]
async fn a_local_run_past_its_deadline_is_stopped_with_its_engine_and_its_lock_released() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-deadline").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("provisioner.pid");
    // The provisioner's shell records its PID, then outlives any sensible deadline.
    let stuck = format!(
        "resource \"terraform_data\" \"stuck\" {{\n  provisioner \"local-exec\" {{\n    command = \"echo $$ > {} && sleep 300\"\n  }}\n}}\n",
        pid_file.display()
    );
    let repo = publish(&ns, "1", &stuck);
    let api = create(
        &client,
        &ns,
        "stuck",
        json!({"interval": "10m", "approvePlan": "auto", "timeout": "10s", "maxRetries": 1,
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}),
    )
    .await;
    let s = wait_ready(&api, "stuck", "RunnerLost").await;
    let message = ready_message(&s);
    assert!(
        message.contains("stopped at its deadline of 10s"),
        "{message}"
    );
    // The engine went with the runner: the provisioner's shell is gone, and the state lock it
    // held was released.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    eventually("the provisioner to be stopped", WAIT, || async {
        (!proc_dir.exists()).then_some(())
    })
    .await;
    let unlocked = eventually("a StateUnlocked event", WAIT, || async {
        let notes = events(&client, &ns, "StateUnlocked").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert!(unlocked[0].contains("stuck-apply-"), "{unlocked:?}");
}

#[tokio::test]
async fn runs_wait_for_a_free_slot() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-slots").await;
    // No recheck within the test: the waiting object starts only if it is woken.
    let _controller = Controller::start(
        &client,
        &ns,
        &["--max-runs", "1", "--run-slot-recheck", "1h"],
    )
    .await;
    let slow = "resource \"terraform_data\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 3\"\n  }\n}\n";
    let repo = publish(&ns, "1", slow);
    let spec = json!({"interval": "10m", "approvePlan": "auto", "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}});
    let api = create(&client, &ns, "first", spec.clone()).await;
    create(&client, &ns, "second", spec).await;

    // Sampled until both are applied: how many runner processes ran at once, and what the
    // waiting one said.
    let mut max_running = 0;
    let mut waited: Option<String> = None;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        // Runner processes of this namespace right now (status lags behind a run that ended).
        let (_, pids, _) =
            run(std::process::Command::new("pgrep")
                .args(["-f", &format!("runner --spec .*/{ns}\\.")]));
        let running = pids.split_whitespace().count();
        let mut applied = 0;
        for name in ["first", "second"] {
            let Some(s) = api.get(name).await.unwrap().status else {
                continue;
            };
            if let Some(ready) = s.conditions.iter().find(|c| c.type_ == "Ready") {
                if ready.reason == "WaitingForRunSlot" {
                    waited = Some(ready.message.clone());
                }
                applied += usize::from(ready.reason == "Applied");
            }
        }
        max_running = max_running.max(running);
        if applied == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for both to be applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(max_running, 1, "never more than --max-runs runs in flight");
    let message = waited.expect("one object waited for a slot");
    assert!(
        message.contains("1 of 1 runs in all namespaces") && message.contains("--max-runs"),
        "{message}"
    );
}

#[tokio::test]
async fn depends_on_waits_for_the_dependency_to_apply() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-deps").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish(&ns, "1", MODULE);
    let source = json!({"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}});
    let api = create(
        &client,
        &ns,
        "network",
        json!({"interval": "10m", "source": source}),
    )
    .await;
    create(&client, &ns, "app", json!({"interval": "10m", "approvePlan": "auto", "source": source, "dependsOn": [{"name": "network"}]})).await;

    let s = wait_ready(&api, "network", "AwaitingApproval").await;
    // It waits, and says for what (once network's plan waits, so does app's message).
    let app = eventually("app to wait for network's approval", WAIT, || async {
        let s = api.get("app").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "DependencyNotReady" && ready.message.contains("waits for approval"))
            .then_some(s)
    })
    .await;
    let message = ready_message(&app);
    assert!(
        message.starts_with(&format!("waiting for tf {ns}/network to be Ready: Plan ")),
        "{message}"
    );
    assert!(
        app.plan.is_none(),
        "nothing runs before the dependency is ready"
    );

    let id = s.plan.unwrap().id;
    api.patch(
        "network",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approvePlan": id}})),
    )
    .await
    .unwrap();
    wait_ready(&api, "network", "Applied").await;
    // The watch on the dependency brings app along.
    wait_ready(&api, "app", "Applied").await;
}

const LIFECYCLE_V1: &str = r#"
terraform {
  required_providers {
    random = { source = "hashicorp/random" }
    local  = { source = "hashicorp/local" }
  }
}
variable "dir" { type = string }
resource "random_pet" "name" {}
resource "local_file" "f" {
  filename = "${var.dir}/pet.txt"
  content  = random_pet.name.id
}
resource "terraform_data" "stamp" { input = "v1" }
output "pet" { value = random_pet.name.id }
"#;

#[tokio::test]
async fn full_lifecycle_with_a_module_change_and_a_restart_that_runs_nothing_not_due() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-life").await;
    let mut controller = Controller::start_as(&client, &ns, &format!("life-1-{ns}"), &[]).await;
    let out = tempfile::tempdir().unwrap();
    let repo = publish(&ns, "1", LIFECYCLE_V1);
    let api = create(
        &client,
        &ns,
        "life",
        json!({"interval": "1h", "destroyOnDelete": true,
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "vars": [{"name": "dir", "value": out.path().display().to_string()}],
        "writeOutputsToSecret": {"name": "life-outputs"}}),
    )
    .await;

    // Manual approval of the first plan.
    let s = wait_ready(&api, "life", "AwaitingApproval").await;
    let first = s.plan.unwrap().id;
    api.patch(
        "life",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approvePlan": first}})),
    )
    .await
    .unwrap();
    let s = wait_ready(&api, "life", "Applied").await;
    let pet = std::fs::read_to_string(out.path().join("pet.txt")).unwrap();
    let outputs = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("life-outputs")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<String>(&outputs["pet"].0).unwrap(),
        pet
    );
    assert_eq!(state_resources(&client, &ns, "life").await, 3);

    // A controller restart: nothing is due (the interval is an hour), so nothing runs.
    let applied_run = s.run.unwrap().name;
    assert_eq!(controller.terminate(), Some(0));
    let second = Controller::start_as(&client, &ns, &format!("life-2-{ns}"), &[]).await;
    // The new controller has looked at the object (its reconcile count) before we check
    // that it started nothing.
    let looked = format!("landform_reconciliations_total{{kind=\"Terraform\",namespace=\"{ns}\"}}");
    eventually("the restarted controller to look at life", WAIT, || async {
        let metrics = second.get("/metrics").await?.1;
        metrics
            .lines()
            .any(|l| l.starts_with(&looked))
            .then_some(())
    })
    .await;
    let s = api.get("life").await.unwrap().status.unwrap();
    assert_eq!(
        s.run.unwrap().name,
        applied_run,
        "no run started after the restart"
    );
    assert_eq!(
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .reason,
        "Applied"
    );

    // A module change: a new revision, a new plan (only the changed resource), approved, applied.
    let v2 = LIFECYCLE_V1.replace("input = \"v1\"", "input = \"v2\"");
    publish(&ns, "2", &v2);
    api.patch(
        "life",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"source": {"oci": {"ref": {"tag": "2"}}}}})),
    )
    .await
    .unwrap();
    let s = eventually("a new plan for revision 2", WAIT, || async {
        let s = api.get("life").await.ok()?.status?;
        let plan = s.plan.as_ref()?;
        (plan.pending && plan.revision.as_deref()?.starts_with("2@")).then_some(s)
    })
    .await;
    let plan = s.plan.unwrap();
    assert_ne!(plan.id, first);
    let changed: Vec<_> = plan
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(changed, [("terraform_data.stamp", "update")]);
    api.patch(
        "life",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approvePlan": plan.id}})),
    )
    .await
    .unwrap();
    let s = wait_ready(&api, "life", "Applied").await;
    assert!(s.last_applied_revision.unwrap().starts_with("2@"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("pet.txt")).unwrap(),
        pet,
        "unchanged resources stay"
    );

    // Destroy on delete: the file goes, state empties, the lock is free.
    api.delete("life", &DeleteParams::default()).await.unwrap();
    eventually("life to be gone", WAIT, || async {
        api.get_opt("life").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!out.path().join("pet.txt").exists());
    assert_eq!(state_resources(&client, &ns, "life").await, 0);
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), &ns)
        .get_opt("lock-tfstate-default-life")
        .await
        .unwrap();
    assert_eq!(
        lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default(),
        ""
    );
}

#[tokio::test]
async fn sensitive_values_appear_nowhere() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "tf-secret").await;
    let controller = Controller::start(&client, &ns, &[]).await;
    let module = r#"
variable "password" {
  type      = string
  sensitive = true
}
resource "terraform_data" "db" {
  input = { user = "app", password = var.password }
}
output "connection" {
  value     = "app:${var.password}@db"
  sensitive = true
}
"#;
    let repo = publish(&ns, "1", module);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "db"}, "stringData": {"password": "S3cr3t-Sentinel-Value"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api = create(&client, &ns, "db", json!({"interval": "10m", "approvePlan": "auto", "drift": {"interval": "2s"},
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "varsFrom": [{"kind": "Secret", "name": "db"}], "writeOutputsToSecret": {"name": "db-outputs"}})).await;
    let s = wait_ready(&api, "db", "Applied").await;
    eventually("a drift check", WAIT, || async {
        api.get("db").await.ok()?.status?.drift.map(|_| ())
    })
    .await;

    let sentinel = "S3cr3t-Sentinel-Value";
    let status = serde_json::to_string(&api.get("db").await.unwrap().status).unwrap();
    assert!(!status.contains(sentinel), "status leaks: {status}");
    assert!(
        s.plan
            .unwrap()
            .resources
            .iter()
            .any(|r| r.address == "terraform_data.db")
    );
    let events = serde_json::to_string(
        &Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!events.contains(sentinel), "events leak");
    assert!(
        !controller.logs().contains(sentinel),
        "controller logs leak"
    );
    let metrics = controller.get("/metrics").await.unwrap().1;
    assert!(!metrics.contains(sentinel));
    // Run results hold no values either; only the outputs Secret, which the user asked for, does.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("landform.dev/owner=db"))
        .await
        .unwrap();
    for s in secrets.items {
        let name = s.metadata.name.clone().unwrap();
        if name.ends_with("-result") {
            let data = serde_json::to_string(&s.data).unwrap();
            let decoded = String::from_utf8(s.data.unwrap()["result.json"].0.clone()).unwrap();
            assert!(
                !decoded.contains(sentinel) && !data.contains(sentinel),
                "{name} leaks"
            );
        }
    }
    let outputs = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("db-outputs")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<String>(&outputs["connection"].0).unwrap(),
        format!("app:{sentinel}@db")
    );
}
