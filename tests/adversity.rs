//! The controller under adversity: failures that repeat, secrets in error messages, hostile
//! results. Against the real API server, registry and OpenTofu, with local runs.

mod support;

use std::time::Duration;

use kube::api::Api;
use landform::api::Terraform;
use serde_json::json;
use support::tf::*;
use support::*;

/// A module whose plan always fails: it reads a variable it never declares.
const UNDECLARED: &str = r#"
output "x" { value = var.missing }
"#;

#[tokio::test]
async fn failures_back_off_doubling_and_stall_after_max_retries() {
    let (client, ns, api) = tenant("adv-backoff").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish_module(&ns, "broken", "1", UNDECLARED);
    create_tf(
        &api,
        "broken",
        json!({"interval": "10m", "retryInterval": "3s", "maxRetries": 4, "approvePlan": "auto",
            "source": oci(&repo)}),
    )
    .await;

    // When each attempt failed, as status records it, until the object gives up.
    let mut failed_at: Vec<jiff::Timestamp> = vec![];
    let give_up = std::time::Instant::now() + Duration::from_secs(300);
    let s = loop {
        assert!(
            std::time::Instant::now() < give_up,
            "never stalled: {failed_at:?}"
        );
        let s = api.get("broken").await.unwrap().status.unwrap_or_default();
        if let Some(t) = &s.last_failure_time
            && failed_at.last() != Some(&t.0)
        {
            failed_at.push(t.0);
        }
        if s.conditions.iter().any(|c| c.type_ == "Stalled") {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s.failures, 4);
    let stalled = condition_message(&s, "Stalled");
    assert!(stalled.contains("gave up after 4 attempts"), "{stalled}");
    assert!(stalled.contains("undeclared"), "{stalled}");

    // Each retry twice as far off as the one before (3 s, then about 6 and 12, with jitter).
    assert_eq!(failed_at.len(), 4, "{failed_at:?}");
    let gaps: Vec<i64> = failed_at
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .map(|ms| i64::try_from(ms).unwrap())
        .collect();
    assert!(
        gaps[0] >= 2_500,
        "the first retry waits retryInterval: {gaps:?}"
    );
    assert!(
        gaps[1] >= gaps[0] * 3 / 2 && gaps[2] >= gaps[1] * 3 / 2,
        "the retry interval doubles per failure: {gaps:?}"
    );

    // One Warning for the failure, whose series counts the retries that failed the same way,
    // and one when the object gives up: not one per attempt.
    // Recorded right after the status that says it gave up.
    let failures = eventually("the event saying it gave up", WAIT, || async {
        let failures: Vec<_> = events_about(&client, &ns, "broken")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("PlanFailed"))
            .collect();
        failures
            .iter()
            .any(|e| e.note.as_deref().is_some_and(|n| n.contains("gave up")))
            .then_some(failures)
    })
    .await;
    let notes: Vec<_> = failures
        .iter()
        .map(|e| e.note.clone().unwrap_or_default())
        .collect();
    assert_eq!(failures.len(), 2, "{notes:#?}");
    let first = failures
        .iter()
        .find(|e| e.note.as_deref().is_some_and(|n| n.contains("(attempt 1,")))
        .expect("the first failure's event");
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(
        first.series.as_ref().map(|s| s.count),
        Some(3),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("gave up after 4 attempts")),
        "{notes:#?}"
    );
}

/// A variable from a Secret that a validation rule quotes when it fails.
const VALIDATED: &str = r#"
variable "token" {
  type = string
  validation {
    condition     = length(var.token) < 5
    error_message = "The token is too long."
  }
}
output "length" { value = length(var.token) }
"#;

/// A variable from a Secret in a command that fails, which OpenTofu quotes.
const COMMAND: &str = r#"
variable "token" { type = string }
resource "terraform_data" "run" {
  provisioner "local-exec" {
    command = "echo ${var.token}; exit 3"
  }
}
"#;

#[tokio::test]
async fn secret_values_never_reach_conditions_events_or_results() {
    let (client, ns, api) = tenant("adv-redact").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let quoted = r#"hunter2-"quoted"-value"#;
    let plain = "s3cr3t-Wert-42";
    for (name, module, value) in [
        ("validated", VALIDATED, quoted),
        ("command", COMMAND, plain),
    ] {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {"token": value}}))
        .unwrap();
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .create(&Default::default(), &secret)
            .await
            .unwrap();
        let repo = publish_module(&ns, name, "1", module);
        create_tf(
            &api,
            name,
            json!({"interval": "10m", "maxRetries": 1, "approvePlan": "auto",
                "source": oci(&repo),
                "varsFrom": [{"kind": "Secret", "name": name}]}),
        )
        .await;
    }
    let validated = wait_condition(&api, "validated", "Stalled", "PlanFailed").await;
    let command = wait_condition(&api, "command", "Stalled", "ApplyFailed").await;

    // The failures are reported, with the values masked where the engine quoted them.
    let planned = condition_message(&validated, "Planned");
    assert!(
        planned.contains("token is too long") && planned.contains("(redacted)"),
        "{planned}"
    );
    let applied = condition_message(&command, "Applied");
    assert!(
        applied.contains("exit status 3") && applied.contains("(redacted)"),
        "{applied}"
    );

    let mut seen = vec![];
    for s in [&validated, &command] {
        seen.extend(s.conditions.iter().map(|c| c.message.clone()));
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    seen.extend(events.items.into_iter().filter_map(|e| e.note));
    let all = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let results: Vec<_> = all
        .items
        .into_iter()
        .filter(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with("-result"))
        })
        .collect();
    // The last result of each object: validated's failed plan, command's failed apply (the
    // results before it are pruned).
    assert_eq!(results.len(), 2);
    for r in results {
        for v in r.data.unwrap().values() {
            seen.push(String::from_utf8_lossy(&v.0).into_owned());
        }
    }
    for text in &seen {
        for leaked in ["hunter2", "s3cr3t-Wert"] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
    }
}

/// A controller in pod mode with no node: its runner pods stay Pending, so a test decides how
/// each run ends.
async fn nodeless(client: &kube::Client, ns: &str, extra: &[&str]) -> Controller {
    let args: Vec<&str> = ["--runner", "pod"].iter().chain(extra).copied().collect();
    Controller::start(client, ns, &args).await
}

/// Creates `name`, which plans and applies the greeting module at once, with `extra` fields.
async fn create_greeting(api: &Api<Terraform>, ns: &str, name: &str, extra: serde_json::Value) {
    let repo = publish_module(ns, name, "1", GREETING_MODULE);
    let mut spec = json!({"interval": "10m", "approvePlan": "auto", "source": oci(&repo)});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    create_tf(api, name, spec).await;
}

/// The name of the run `name` has in flight, once it has one.
async fn run_in_flight(api: &Api<Terraform>, name: &str) -> String {
    eventually(&format!("a run of {name} in flight"), WAIT, || async {
        let run = api.get(name).await.ok()?.status?.run?;
        (run.phase == landform::api::RunPhase::Running).then_some(run.name)
    })
    .await
}

#[tokio::test]
async fn a_hostile_result_is_refused_and_the_controller_keeps_serving() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    let (client, ns, api) = tenant("adv-result").await;
    // Pod mode with no node: the run's pod never starts, so the test decides what its result
    // Secret holds when the run ends.
    let controller = nodeless(&client, &ns, &[]).await;
    create_greeting(&api, &ns, "victim", json!({})).await;
    let run = run_in_flight(&api, "victim").await;

    // Whoever holds the runner's rights writes a result with a multi-byte plan ID and an
    // endless message, then the run ends.
    let hostile: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{run}-result")},
        "stringData": {"result.json": json!({
            "succeeded": true, "hasChanges": true, "planId": format!("a{}", "ü".repeat(20)),
            "message": "x".repeat(100_000),
        }).to_string()}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &hostile)
        .await
        .unwrap();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&run, &Default::default())
        .await
        .unwrap();

    let s = wait_condition(&api, "victim", "Ready", "RunResultUnreadable").await;
    let message = condition_message(&s, "Ready");
    assert!(
        message.contains("plan ID is not a hexadecimal ID"),
        "{message}"
    );
    assert!(s.plan.is_none(), "nothing of the hostile result is taken");
    // The controller is still up and serving, and the next attempt is a fresh run.
    assert_eq!(controller.get("/healthz").await.map(|r| r.0), Some(200));
    eventually("a fresh run", WAIT, || async {
        let s = api.get("victim").await.ok()?.status?;
        (s.run?.name != run).then_some(())
    })
    .await;
}

/// A name and a file that holds it.
const PET_FILE: &str = r#"
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
"#;

#[tokio::test]
async fn an_approval_names_exactly_the_changes_that_were_reviewed() {
    let (client, ns, api) = tenant("adv-approve").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let out = tempfile::tempdir().unwrap();
    let repo = publish_module(&ns, "pet", "1", PET_FILE);
    create_tf(
        &api,
        "pet",
        json!({"interval": "10m", "approvePlan": "",
            "source": oci(&repo),
            "vars": [{"name": "dir", "value": out.path().to_str().unwrap()}]}),
    )
    .await;
    let s = wait_condition(&api, "pet", "Ready", "AwaitingApproval").await;
    let approved = s.plan.unwrap();
    assert_eq!(approved.summary.add, 2);
    api.patch(
        "pet",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"approvePlan": approved.id}})),
    )
    .await
    .unwrap();
    wait_condition(&api, "pet", "Ready", "Applied").await;
    let file = out.path().join("pet.txt");
    assert!(file.exists());

    // Out of band, the file goes. A new plan of the same inputs recreates it (+1): that is
    // not what was approved, so it waits.
    std::fs::remove_file(&file).unwrap();
    api.patch(
        "pet",
        &Default::default(),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "again"}}}),
        ),
    )
    .await
    .unwrap();
    let s = wait_condition(&api, "pet", "Ready", "ApprovalStale").await;
    let replanned = s.plan.unwrap();
    assert_eq!(replanned.summary.add, 1);
    assert_ne!(replanned.id, approved.id);
    assert!(replanned.pending);
    assert!(!file.exists(), "nothing nobody approved was applied");
}

#[tokio::test]
async fn outputs_never_overwrite_and_cleanup_never_deletes_a_secret_of_someone_else() {
    use k8s_openapi::api::core::v1::Secret;
    let (client, ns, api) = tenant("adv-owned").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    // Someone's Secret, even labelled as if it were the object's.
    let theirs: Secret = serde_json::from_value(json!({
        "metadata": {"name": "theirs", "labels": {"landform.dev/owner": "grab"}},
        "stringData": {"keep": "me"}}))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.create(&Default::default(), &theirs).await.unwrap();
    let repo = publish_module(&ns, "module", "1", GREETING_MODULE);
    create_tf(
        &api,
        "grab",
        json!({"interval": "10m", "approvePlan": "auto", "maxRetries": 1,
            "source": oci(&repo),
            "writeOutputsToSecret": {"name": "theirs"}}),
    )
    .await;
    let s = wait_condition(&api, "grab", "Ready", "OutputsSecretNotOwned").await;
    let message = condition_message(&s, "Ready");
    assert!(message.contains("Secret theirs"), "{message}");
    assert!(s.plan.is_none(), "refused before planning");
    assert_eq!(
        state_resources(&client, &ns, "grab").await,
        0,
        "nothing applied"
    );

    api.delete("grab", &Default::default()).await.unwrap();
    eventually("grab to be gone", WAIT, || async {
        api.get_opt("grab").await.ok()?.is_none().then_some(())
    })
    .await;
    let kept = secrets
        .get("theirs")
        .await
        .expect("their Secret is still there");
    assert_eq!(kept.data.unwrap()["keep"].0, b"me");
}

#[tokio::test]
async fn pending_runner_pods_time_out() {
    let (client, ns, api) = tenant("adv-pending").await;
    let _controller = nodeless(&client, &ns, &["--runner-pending-timeout", "5s"]).await;
    create_greeting(&api, &ns, "stuck", json!({})).await;
    let s = wait_condition(&api, "stuck", "Ready", "RunnerLost").await;
    let message = condition_message(&s, "Ready");
    assert!(
        message.contains("stayed Pending for more than 5s"),
        "{message}"
    );
}

#[tokio::test]
async fn skip_destroy_releases_an_object_whose_run_never_ends() {
    let (client, ns, api) = tenant("adv-skip").await;
    // The default Pending timeout of 10 minutes: the run stays.
    let _controller = nodeless(&client, &ns, &[]).await;
    create_greeting(&api, &ns, "stuck", json!({"destroyOnDelete": true})).await;
    run_in_flight(&api, "stuck").await;
    // Deleting waits for the run in flight and says so; the annotation releases it at once.
    api.delete("stuck", &Default::default()).await.unwrap();
    let s = wait_condition(&api, "stuck", "Ready", "DeletionWaitsForRun").await;
    assert!(
        condition_message(&s, "Ready").contains("landform.dev/skip-destroy=true"),
        "{s:?}"
    );
    api.patch(
        "stuck",
        &Default::default(),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"landform.dev/skip-destroy": "true"}}}),
        ),
    )
    .await
    .unwrap();
    eventually("stuck to be released", WAIT, || async {
        api.get_opt("stuck").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_controller_killed_mid_apply_leaves_no_orphan_and_the_plan_is_applied_once() {
    let (client, ns, api) = tenant("adv-restart").await;
    let mut first = Controller::start_as(&client, &ns, &format!("first-{ns}"), &[]).await;
    let out = tempfile::tempdir().unwrap();
    let (started, done) = (out.path().join("started"), out.path().join("done"));
    let module = format!(
        "resource \"terraform_data\" \"slow\" {{\n  provisioner \"local-exec\" {{\n    command = \"echo x >> {} && sleep 40 && echo x >> {}\"\n  }}\n}}\n",
        started.display(),
        done.display()
    );
    let repo = publish_module(&ns, "slow", "1", &module);
    create_tf(
        &api,
        "slow",
        json!({"interval": "1h", "retryInterval": "2s", "approvePlan": "auto",
            "source": oci(&repo)}),
    )
    .await;
    eventually("the apply to be under way", WAIT, || async {
        started.exists().then_some(())
    })
    .await;
    let runner = format!("{ns}.slow-apply-");
    let alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &runner])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(alive(), "the runner is running");
    first.kill();
    // Its runner (and the engine it started) stop with it, within seconds, not when the
    // provisioner would have finished.
    let gone = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while alive() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the runner outlived its controller");
    let _second = Controller::start_as(&client, &ns, &format!("second-{ns}"), &[]).await;

    wait_condition(&api, "slow", "Ready", "Applied").await;
    // The first apply was interrupted when its controller died; only the retry completed.
    let lines = std::fs::read_to_string(&done).unwrap_or_default();
    assert_eq!(
        lines.lines().count(),
        1,
        "the side effect happened {lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&started).unwrap().lines().count(),
        2,
        "the apply ran twice, one after the other"
    );
}

#[tokio::test]
async fn runs_leave_only_what_status_points_at() {
    use k8s_openapi::api::core::v1::Secret;
    let (client, ns, api) = tenant("adv-prune").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = publish_module(&ns, "module", "1", GREETING_MODULE);
    create_tf(
        &api,
        "busy",
        json!({"interval": "1h", "approvePlan": "auto", "drift": {"interval": "2s"},
            "source": oci(&repo),
            "writeOutputsToSecret": {"name": "busy-outputs"}}),
    )
    .await;
    let s = wait_condition(&api, "busy", "Ready", "Applied").await;
    let plan = s.plan.unwrap().id;
    // A plan, an apply, then drift checks every 2 seconds: each run wrote a result.
    let first = eventually("a first drift check", WAIT, || async {
        api.get("busy").await.ok()?.status?.drift?.last_checked_at
    })
    .await;
    eventually("three more drift checks", WAIT, || async {
        let checked = api.get("busy").await.ok()?.status?.drift?.last_checked_at?;
        (checked.0.duration_since(first.0).as_secs() >= 6).then_some(())
    })
    .await;

    let secrets = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let labelled = |key: &str| -> Vec<(String, String)> {
        secrets
            .items
            .iter()
            .filter_map(|s| {
                let value = s.metadata.labels.as_ref()?.get(key)?.clone();
                Some((s.metadata.name.clone().unwrap(), value))
            })
            .collect()
    };
    let results = labelled("landform.dev/result-of");
    assert!(results.len() <= 1, "results kept: {results:?}");
    let plans = labelled("landform.dev/plan-id");
    assert!(
        !plans.is_empty() && plans.iter().all(|(_, id)| *id == plan),
        "{plans:?}"
    );
    assert!(
        secrets
            .items
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some("busy-outputs")),
        "the outputs stay"
    );
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_does_nothing_when_it_wakes() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (client, ns, api) = tenant("adv-frozen").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    let (one, two) = (format!("frozen-1-{ns}"), format!("frozen-2-{ns}"));
    let mut first = Controller::start_as(&client, &ns, &one, &[]).await;
    // Busy: a drift check every 2 seconds, each a run with its events.
    let repo = publish_module(&ns, "module", "1", GREETING_MODULE);
    create_tf(
        &api,
        "busy",
        json!({"interval": "1h", "approvePlan": "auto", "drift": {"interval": "2s"},
            "source": oci(&repo)}),
    )
    .await;
    wait_condition(&api, "busy", "Drifted", "NoDrift").await;

    // Frozen mid-work, past its lease: the standby takes over, by its own clock.
    first.signal("STOP");
    let _second = Controller::start_as(&client, &ns, &two, &[]).await;
    eventually("the standby to take over", WAIT, || async {
        (holder(leases.get("landform-controller").await.ok()?) == two).then_some(())
    })
    .await;
    let woke = jiff::Timestamp::now();
    first.signal("CONT");

    // It notices it lost the lease and stops; in between it started and collected nothing.
    assert!(
        first
            .exited_within(std::time::Duration::from_secs(30))
            .is_some(),
        "the old leader kept running"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let acted: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reporting_instance.as_deref() == Some(one.as_str()))
        .filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 > woke))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        acted.is_empty(),
        "the old leader acted after waking: {acted:?}"
    );
    let logs = first.logs();
    assert!(logs.contains("lost the leader Lease"), "{logs}");
}

#[tokio::test]
async fn a_standby_judges_expiry_by_its_own_clock_not_the_leaders_timestamps() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let (client, ns, _) = tenant("adv-skew").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // A live leader whose clock is an hour behind: it renews every 2 seconds, and every
    // renewTime it writes looks an hour old.
    let renew = |leases: Api<Lease>| async move {
        let skewed = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let spec = LeaseSpec {
            holder_identity: Some("skewed-leader".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(skewed)),
            acquire_time: Some(MicroTime(skewed)),
            ..Default::default()
        };
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": "landform-controller"}, "spec": spec}))
        .unwrap();
        let params = kube::api::PatchParams::apply("skewed-leader").force();
        leases
            .patch(
                "landform-controller",
                &params,
                &kube::api::Patch::Apply(&lease),
            )
            .await
            .unwrap();
    };
    renew(leases.clone()).await;
    let standby = Controller::start_as(&client, &ns, &format!("standby-{ns}"), &[]).await;
    let holder = || async {
        leases
            .get("landform-controller")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default()
    };
    // Over twice the lease duration of renewals, the standby keeps waiting: the record
    // changes, so the leader is alive, whatever its timestamps say.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(35) {
        renew(leases.clone()).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            holder().await,
            "skewed-leader",
            "the standby took a live lease"
        );
    }
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert!(metrics.contains("landform_leader 0"), "{metrics}");
    // The leader stops renewing: after a lease duration of silence, the standby takes over.
    eventually("the standby to take over", WAIT, || async {
        (holder().await == format!("standby-{ns}")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lock_someone_else_holds_is_never_taken_for_the_runs_nor_released() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Pod;
    let (client, ns, api) = tenant("adv-lock").await;
    let controller = nodeless(&client, &ns, &[]).await;
    // Someone else's lock on the state, taken an hour ago from another host.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let info = json!({"ID": "foreign-lock-id", "Operation": "OperationTypeApply",
        "Who": "someone@elsewhere", "Created": "2026-01-01T00:00:00Z"});
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "lock-tfstate-default-locked",
            "annotations": {"app.terraform.io/lock-info": info.to_string()}},
        "spec": {"holderIdentity": "foreign-lock-id"}}))
    .unwrap();
    leases.create(&Default::default(), &lease).await.unwrap();
    create_greeting(&api, &ns, "locked", json!({})).await;
    let run = run_in_flight(&api, "locked").await;
    // The controller looks at the run (and the lock) a few times while it is in flight.
    let looks = || async {
        let metrics = controller.get("/metrics").await?.1;
        metrics
            .lines()
            .find(|l| l.starts_with("landform_reconciliations_total{kind=\"Terraform\""))?
            .rsplit(' ')
            .next()?
            .parse::<f64>()
            .ok()
    };
    let before = eventually("a reconcile count", WAIT, || async { looks().await }).await;
    eventually("three more looks at the run", WAIT, || async {
        (looks().await? >= before + 3.0).then_some(())
    })
    .await;
    let s = api.get("locked").await.unwrap().status.unwrap();
    assert_eq!(s.lock, None, "someone else's lock is not the run's");

    // The run is lost: nothing of its own to release, so the foreign lock stays.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&run, &Default::default())
        .await
        .unwrap();
    let s = wait_condition(&api, "locked", "Ready", "RunnerLost").await;
    assert!(
        !condition_message(&s, "Ready").contains("released"),
        "{s:?}"
    );
    let holder = leases
        .get("lock-tfstate-default-locked")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("foreign-lock-id"));
}

#[tokio::test]
async fn a_view_of_the_object_that_is_behind_starts_no_second_run() {
    use k8s_openapi::api::core::v1::Pod;
    use landform::controller::{Once, reconcile_once};
    let (client, ns, api) = tenant("adv-stale").await;
    create_greeting(&api, &ns, "once", json!({})).await;

    // Reconcile by hand until a run is recorded (the first adds the finalizer), keeping the
    // view each reconcile was given.
    let mut before = api.get("once").await.unwrap();
    let mut recorded = None;
    for _ in 0..5 {
        let outcome = reconcile_once(client.clone(), before.clone())
            .await
            .unwrap();
        assert_eq!(outcome, Once::Done);
        let now = api.get("once").await.unwrap();
        if let Some(run) = now.status.as_ref().and_then(|s| s.run.clone()) {
            recorded = Some(run);
            break;
        }
        before = now;
    }
    let recorded = recorded.expect("a run is recorded within five reconciles");

    // The same reconcile again with the view from before the run was recorded, as a cache
    // that is behind would give it: the write is refused and nothing starts.
    let outcome = reconcile_once(client.clone(), before).await.unwrap();
    let now = api.get("once").await.unwrap().status.unwrap().run.unwrap();
    assert_eq!(now.name, recorded.name, "the recorded run stays");
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let names: Vec<String> = pods
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "one runner pod, not {names:?}");
    assert_eq!(outcome, Once::Stale);
}
