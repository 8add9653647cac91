//! The real `landform controller` binary against the real API server, under its own service
//! account and the RBAC in deploy/.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use landform::api::{CloudFormationStack, FINALIZER, ObjectStatus, Terraform};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn condition<'a>(
    status: &'a ObjectStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

async fn create_tf(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Terraform {
    let obj: Terraform = serde_json::from_value(json!({
        "apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<Terraform>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

#[tokio::test]
async fn finalizer_conditions_and_events_through_the_object_lifecycle() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "lifecycle").await;
    let mut controller = Controller::start(&client, &ns, &[]).await;
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);

    create_tf(
        &client,
        &ns,
        "vpc",
        json!({"interval": "10m", "sourceRef": {"kind": "GitRepository", "name": "infra"}}),
    )
    .await;
    let tf = eventually("finalizer and Ready=Unknown on tf/vpc", WAIT, || async {
        let tf = tfs.get("vpc").await.ok()?;
        let has_finalizer = tf
            .metadata
            .finalizers
            .as_ref()?
            .iter()
            .any(|f| f == FINALIZER);
        let ready = condition(tf.status.as_ref()?, "Ready")?;
        (has_finalizer && ready.status == "Unknown").then_some(tf)
    })
    .await;
    let status = tf.status.unwrap();
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready.reason, "SourceNotFound");
    assert_eq!(
        ready.message,
        format!("GitRepository {ns}/infra does not exist (yet)")
    );
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(condition(&status, "Reconciling").unwrap().status, "True");
    assert!(condition(&status, "Stalled").is_none());
    assert_eq!(status.observed_generation, Some(1));

    let event = eventually("a SourceNotFound event", WAIT, || async {
        events_about(&client, &ns, "vpc")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SourceNotFound"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("landform-controller")
    );

    // The same kind of object in CloudFormation form is served by the same controller.
    let stack: CloudFormationStack = serde_json::from_value(json!({
        "apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "net"},
        "spec": {"interval": "5m", "source": {"oci": {"url": "oci://127.0.0.1:1/team/net"}}}
    }))
    .unwrap();
    let stacks: Api<CloudFormationStack> = Api::namespaced(client.clone(), &ns);
    stacks.create(&PostParams::default(), &stack).await.unwrap();
    let ready = eventually("Ready=False on cfnstack/net", WAIT, || async {
        let s = stacks.get("net").await.ok()?;
        condition(s.status.as_ref()?, "Ready")
            .filter(|c| c.status == "False")
            .cloned()
    })
    .await;
    assert_eq!(ready.reason, "SourceUnavailable");
    assert!(
        ready
            .message
            .starts_with("cannot reach oci://127.0.0.1:1/team/net:latest"),
        "{}",
        ready.message
    );

    // Deleting releases the finalizer and says what happened to the infrastructure.
    tfs.delete("vpc", &DeleteParams::default()).await.unwrap();
    eventually("tf/vpc to be gone", WAIT, || async {
        tfs.get_opt("vpc").await.ok()?.is_none().then_some(())
    })
    .await;
    let finalized = events_about(&client, &ns, "vpc")
        .await
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Finalized"));
    let note = finalized.expect("a Finalized event").note.unwrap();
    assert!(note.contains("destroyOnDelete is false"), "{note}");

    assert_eq!(
        controller.terminate(),
        Some(0),
        "log: {}",
        controller.logs()
    );
}

#[tokio::test]
async fn a_spec_it_cannot_act_on_is_stalled_with_a_warning() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "stalled").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);

    create_tf(&client, &ns, "cross", json!({"interval": "1m", "sourceRef": {"kind": "OCIRepository", "name": "infra", "namespace": "flux-system"}})).await;
    let status = eventually("Stalled on tf/cross", WAIT, || async {
        let s = tfs.get("cross").await.ok()?.status?;
        condition(&s, "Stalled").is_some().then_some(s)
    })
    .await;
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "CrossNamespaceRefNotAllowed");
    assert!(
        ready.message.contains("OciRepository flux-system/infra"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("--allow-cross-namespace-refs"),
        "{}",
        ready.message
    );
    assert_eq!(status.failures, 1);
    let warning = eventually("a warning event", WAIT, || async {
        events_about(&client, &ns, "cross")
            .await
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning"))
    })
    .await;
    assert_eq!(
        warning.reason.as_deref(),
        Some("CrossNamespaceRefNotAllowed")
    );

    // Fixing the spec (a new generation) clears Stalled.
    tfs.patch(
        "cross",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"sourceRef": {"namespace": null}}})),
    )
    .await
    .unwrap();
    eventually("tf/cross to recover", WAIT, || async {
        let s = tfs.get("cross").await.ok()?.status?;
        let ok = condition(&s, "Stalled").is_none()
            && condition(&s, "Ready")?.reason == "SourceNotFound";
        (ok && s.failures == 0 && s.observed_generation == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn suspended_objects_are_left_alone() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "suspend").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    create_tf(
        &client,
        &ns,
        "paused",
        json!({"interval": "1m", "suspend": true, "sourceRef": {"kind": "Bucket", "name": "b"}}),
    )
    .await;
    let s = eventually("Ready on tf/paused", WAIT, || async {
        let s = tfs.get("paused").await.ok()?.status?;
        condition(&s, "Ready").is_some().then_some(s)
    })
    .await;
    assert_eq!(condition(&s, "Ready").unwrap().reason, "Suspended");
    assert!(condition(&s, "Reconciling").is_none());
    // Taking it in cost one status write: no finalizer (nothing ran, so nothing to clean
    // up), no event.
    let paused = tfs.get("paused").await.unwrap();
    assert!(paused.metadata.finalizers.is_none(), "{paused:?}");
    assert!(events_about(&client, &ns, "paused").await.is_empty());

    // Resumed, it is served as any other object.
    tfs.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let resumed = eventually("tf/paused resumed", WAIT, || async {
        let o = tfs.get("paused").await.ok()?;
        let reason = condition(o.status.as_ref()?, "Ready")?.reason.clone();
        (reason == "SourceNotFound").then_some(o)
    })
    .await;
    assert_eq!(
        resumed.metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_string()][..])
    );
}

#[tokio::test]
async fn metrics_health_and_leader_handover() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity).unwrap_or_default();

    let mut first = Controller::start_as(&client, &ns, "first", &[]).await;
    eventually("first to lead", WAIT, || async {
        (holder(leases.get("landform-controller").await.ok()?) == "first").then_some(())
    })
    .await;
    let (code, _) = eventually("/readyz on first", WAIT, || async {
        first.get("/readyz").await
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        first.get("/healthz").await.unwrap(),
        (200, "ok".to_string())
    );

    create_tf(
        &client,
        &ns,
        "m",
        json!({"interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "g"}}),
    )
    .await;
    let metrics = eventually("reconcile metrics", WAIT, || async {
        let (_, body) = first.get("/metrics").await?;
        // The counter goes up when a reconcile starts, the histogram when it ends.
        let counted = body.contains(&format!(
            "landform_reconciliations_total{{kind=\"Terraform\",namespace=\"{ns}\"}}"
        ));
        (counted && body.contains("landform_reconcile_duration_seconds_count{kind=\"Terraform\"}"))
            .then_some(body)
    })
    .await;
    assert!(metrics.contains("landform_leader 1"), "{metrics}");
    assert!(
        metrics.contains("landform_reconcile_duration_seconds_bucket{le="),
        "{metrics}"
    );

    // A second instance waits: alive and ready (so a rollout can go on), not leading.
    let mut second = Controller::start_as(&client, &ns, "second", &["--log-format", "json"]).await;
    let (code, _) = eventually("/readyz on second", WAIT, || async {
        second.get("/readyz").await
    })
    .await;
    assert_eq!(code, 200);
    assert_eq!(second.get("/healthz").await.unwrap().0, 200);
    let (_, metrics) = second.get("/metrics").await.unwrap();
    assert!(metrics.contains("landform_leader 0"), "{metrics}");
    assert_eq!(
        holder(leases.get("landform-controller").await.unwrap()),
        "first"
    );

    // SIGTERM: the first stops cleanly and releases the lease, so the second takes over at
    // once rather than after the lease expires.
    assert_eq!(first.terminate(), Some(0), "log: {}", first.logs());
    assert!(
        first.logs().contains("released the leader lease"),
        "{}",
        first.logs()
    );
    eventually("second to lead", Duration::from_secs(10), || async {
        (holder(leases.get("landform-controller").await.ok()?) == "second").then_some(())
    })
    .await;
    eventually("/readyz 200 on second", WAIT, || async {
        (second.get("/readyz").await?.0 == 200).then_some(())
    })
    .await;
    let lease = leases
        .get("landform-controller")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.lease_transitions, Some(1));

    // JSON logs: every line is a JSON object with a level and a message.
    assert_eq!(second.terminate(), Some(0));
    let logs = second.logs();
    let lines: Vec<_> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
}
