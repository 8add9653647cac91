//! Drift checks against real OpenTofu: changes made behind the controller's back are reported
//! resource by resource, cleared when undone, and DriftOnly objects never apply.

mod support;

use std::time::Duration;

use kube::api::{Api, PostParams};
use landform::api::{DriftState, ObjectStatus, Terraform};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(180);

const FILE_MODULE: &str = r#"
terraform {
  required_providers {
    local = { source = "hashicorp/local" }
  }
}
variable "dir" { type = string }
resource "local_file" "f" {
  filename = "${var.dir}/managed.txt"
  content  = "as planned\n"
}
"#;

async fn create(api: &Api<Terraform>, name: &str, spec: serde_json::Value) {
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &tf).await.unwrap();
}

async fn wait_drift(api: &Api<Terraform>, name: &str, state: DriftState) -> ObjectStatus {
    eventually(&format!("{name} drift {state:?}"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        (s.drift.as_ref()?.state == state).then_some(s)
    })
    .await
}

#[tokio::test]
async fn changes_behind_the_controllers_back_are_reported_and_cleared() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "drift").await;
    let controller = Controller::start(&client, &ns, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = publish_module(&ns, "file", "1", FILE_MODULE);
    let api: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    create(
        &api,
        "files",
        json!({"interval": "1h", "approvePlan": "auto", "drift": {"interval": "2s"},
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "vars": [{"name": "dir", "value": dir.path().display().to_string()}]}),
    )
    .await;
    let s = wait_drift(&api, "files", DriftState::InSync).await;
    assert!(s.last_applied_revision.is_some());
    let file = dir.path().join("managed.txt");

    // Checks that find nothing change nothing users read and record no events: counted once
    // three more checks are seen to have finished.
    // The first check's own events are recorded right after its status (Ready turns True).
    let before = eventually("the Applied event", WAIT, || async {
        let events = events_about(&client, &ns, "files").await;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Applied"))
            .then_some(events.len())
    })
    .await;
    let mut seen = s.drift.and_then(|d| d.last_checked_at).unwrap().0;
    for _ in 0..3 {
        seen = eventually("another drift check", WAIT, || async {
            let s = api.get("files").await.ok()?.status?;
            let at = s.drift?.last_checked_at?.0;
            (at > seen).then_some(at)
        })
        .await;
    }
    let s = api.get("files").await.unwrap().status.unwrap();
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Applied")
    );
    let after = events_about(&client, &ns, "files").await;
    assert_eq!(
        after.len(),
        before,
        "no events for checks that changed nothing: {:?}",
        after.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()
    );

    // Edited behind the controller's back.
    std::fs::write(&file, "edited by hand\n").unwrap();
    let s = wait_drift(&api, "files", DriftState::Drifted).await;
    let drift = s.drift.unwrap();
    assert_eq!(drift.total, 1);
    assert_eq!(drift.resources[0].address, "local_file.f");
    let drifted = s.conditions.iter().find(|c| c.type_ == "Drifted").unwrap();
    assert_eq!(
        (drifted.status.as_str(), drifted.reason.as_str()),
        ("True", "DriftDetected")
    );
    assert!(
        drifted.message.contains("local_file.f"),
        "{}",
        drifted.message
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "edited by hand\n",
        "reported, not remediated"
    );

    // Restored: in sync again, with one event each way (not one per check).
    std::fs::write(&file, "as planned\n").unwrap();
    let in_sync = wait_drift(&api, "files", DriftState::InSync).await;
    // Two more checks, still in sync, before counting: no event per check.
    let since = in_sync.drift.unwrap().last_checked_at.unwrap().0;
    eventually("two more drift checks", WAIT, || async {
        let d = api.get("files").await.ok()?.status?.drift?;
        let checked = d.last_checked_at?.0;
        (d.state == DriftState::InSync && checked.duration_since(since).as_secs() >= 4)
            .then_some(())
    })
    .await;
    assert_eq!(events(&client, &ns, "DriftDetected").await.len(), 1);
    assert_eq!(events(&client, &ns, "DriftResolved").await.len(), 1);

    // Deleted: drift again.
    std::fs::remove_file(&file).unwrap();
    let s = wait_drift(&api, "files", DriftState::Drifted).await;
    assert_eq!(s.drift.unwrap().resources[0].address, "local_file.f");

    let (ok, report, err) = run(landform()
        .args(["drift", "tf/files", "-n", &ns])
        .env("KUBECONFIG", kubeconfig_path()));
    assert!(ok, "{err}");
    assert!(
        report.starts_with("tf/files: Drifted") && report.contains("local_file.f"),
        "{report}"
    );

    let metrics = controller.get("/metrics").await.unwrap().1;
    let gauge = format!(
        "landform_drifted_resources{{kind=\"Terraform\",namespace=\"{ns}\",name=\"files\"}} 1"
    );
    assert!(metrics.contains(&gauge), "{gauge} missing");
    assert!(metrics.contains(&format!(
        "landform_drift_checks_total{{kind=\"Terraform\",namespace=\"{ns}\",result=\"drifted\"}}"
    )));

    // Its series go with the object.
    api.delete("files", &Default::default()).await.unwrap();
    eventually("files to be gone", WAIT, || async {
        api.get_opt("files").await.ok()?.is_none().then_some(())
    })
    .await;
    let metrics = controller.get("/metrics").await.unwrap().1;
    let series = format!("namespace=\"{ns}\",name=\"files\"");
    assert!(!metrics.contains(&series), "{series} outlived its object");
}

#[tokio::test]
async fn drift_only_objects_never_apply_even_when_the_module_changes() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "driftonly").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = publish_module(&ns, "file", "1", FILE_MODULE);
    let api: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    create(&api, "watch", json!({"interval": "1h", "mode": "DriftOnly", "approvePlan": "auto", "drift": {"interval": "2s"},
        "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}},
        "vars": [{"name": "dir", "value": dir.path().display().to_string()}]})).await;
    let s = wait_drift(&api, "watch", DriftState::InSync).await;
    let plan = s.plan.unwrap();
    assert!(
        plan.pending && plan.summary.add == 1,
        "the unapplied configuration shows as a plan"
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.starts_with("Drift-only: plan"),
        "{}",
        ready.message
    );
    // Monitored, never applied: its plan would change something, and nothing is recorded as
    // applied by it.
    assert_eq!(ready.reason, "OutOfSync");
    assert_eq!(s.last_applied_revision, None);

    publish_module(
        &ns,
        "file",
        "2",
        &FILE_MODULE.replace("as planned", "version two"),
    );
    api.patch(
        "watch",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"spec": {"source": {"oci": {"ref": {"tag": "2"}}}}})),
    )
    .await
    .unwrap();
    // Planned, and then checked for drift: a whole round after the plan, in which an apply
    // would have come first.
    eventually(
        "a plan for revision 2, then a drift check",
        WAIT,
        || async {
            let s = api.get("watch").await.ok()?.status?;
            let p = s.plan?;
            let planned = p.created_at?.0;
            let checked = s.drift?.last_checked_at?.0;
            (p.revision?.starts_with("2@") && checked > planned).then_some(())
        },
    )
    .await;
    assert!(
        !dir.path().join("managed.txt").exists(),
        "nothing was ever applied"
    );
    assert_eq!(state_resources(&client, &ns, "watch").await, 0);
}
