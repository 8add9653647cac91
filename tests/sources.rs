//! The controller resolves sources to immutable digests, against the real registry (and Flux's
//! source-controller), and says in conditions what is wrong when it cannot.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use landform::api::{ObjectStatus, Terraform};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn push(url: &str) -> String {
    let (ok, out, err) = run(landform().args([
        "push",
        repo_root()
            .join("examples/terraform/hello")
            .to_str()
            .unwrap(),
        url,
        "--insecure",
    ]));
    assert!(ok, "{err}");
    out.trim().rsplit('@').next().unwrap().to_string()
}

fn ready(s: &ObjectStatus) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == "Ready")
}

async fn create(client: &kube::Client, ns: &str, name: &str, spec: serde_json::Value) {
    let obj: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<Terraform>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
}

async fn wait_reason(client: &kube::Client, ns: &str, name: &str, reason: &str) -> ObjectStatus {
    let api: Api<Terraform> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{name} to report {reason}"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        (ready(&s)?.reason == reason).then_some(s)
    })
    .await
}

#[tokio::test]
async fn oci_tags_resolve_to_digests_and_new_revisions_are_recorded() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "oci").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let repo = format!("{}/{ns}/hello", testenv()["LANDFORM_TEST_REGISTRY"]);
    let d1 = push(&format!("oci://{repo}:1.0.0"));

    create(&client, &ns, "hello", json!({"interval": "10m", "source": {"oci": {"url": format!("oci://{repo}"), "ref": {"tag": "1.0.0"}, "insecure": true}}})).await;
    // Resolved, then planned from exactly that revision (manual approval: it waits).
    let s = wait_reason(&client, &ns, "hello", "AwaitingApproval").await;
    assert_eq!(
        s.plan.as_ref().unwrap().revision.as_deref(),
        Some(format!("1.0.0@{d1}").as_str())
    );
    let artifact = s.artifact.unwrap();
    assert_eq!(artifact.revision, format!("1.0.0@{d1}"));
    assert_eq!(artifact.digest, d1);
    assert_eq!(artifact.url, format!("oci://{repo}"));

    // A semver range picks the highest matching tag.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("main.tf"), "# changed\n").unwrap();
    let (ok, out, err) = run(landform().args([
        "push",
        other.path().to_str().unwrap(),
        &format!("oci://{repo}:1.1.0"),
        "--insecure",
    ]));
    assert!(ok, "{err}");
    let d2 = out.trim().rsplit('@').next().unwrap().to_string();
    Api::<Terraform>::namespaced(client.clone(), &ns)
        .patch("hello", &PatchParams::default(), &Patch::Merge(json!({"spec": {"source": {"oci": {"ref": {"tag": null, "semver": ">=1.0.0 <2.0.0"}}}}})))
        .await
        .unwrap();
    let api: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    eventually("revision 1.1.0", WAIT, || async {
        let s = api.get("hello").await.ok()?.status?;
        (s.artifact?.revision == format!("1.1.0@{d2}")).then_some(())
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let notes: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("NewRevision"))
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(
        notes.contains(&format!("New revision 1.1.0@{d2} (was 1.0.0@{d1})")),
        "{notes:?}"
    );

    // A tag that does not exist.
    create(&client, &ns, "missing", json!({"interval": "10m", "source": {"oci": {"url": format!("oci://{repo}"), "ref": {"tag": "9.9.9"}, "insecure": true}}})).await;
    let s = wait_reason(&client, &ns, "missing", "ArtifactNotFound").await;
    assert!(
        ready(&s)
            .unwrap()
            .message
            .contains(&format!("oci://{repo}:9.9.9 was not found")),
        "{:?}",
        ready(&s)
    );
}

#[tokio::test]
async fn a_missing_credentials_secret_is_named_and_recovery_follows_its_creation() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "creds").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let env = testenv();
    let host = env["LANDFORM_TEST_REGISTRY_AUTH"].clone();
    let (user, password) = (
        env["LANDFORM_TEST_REGISTRY_USER"].clone(),
        env["LANDFORM_TEST_REGISTRY_PASSWORD"].clone(),
    );
    // Publish with the credentials in a Docker config.
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#);
    let docker = tempfile::tempdir().unwrap();
    std::fs::write(docker.path().join("config.json"), &config).unwrap();
    let url = format!("oci://{host}/{ns}/private");
    let (ok, _, err) = run(landform()
        .args([
            "push",
            repo_root()
                .join("examples/terraform/hello")
                .to_str()
                .unwrap(),
            &format!("{url}:1"),
            "--insecure",
        ])
        .env("DOCKER_CONFIG", docker.path()));
    assert!(ok, "{err}");

    create(&client, &ns, "private", json!({"interval": "10m", "retryInterval": "1s",
        "source": {"oci": {"url": url, "ref": {"tag": "1"}, "insecure": true, "secretRef": {"name": "regcred"}}}})).await;
    let s = wait_reason(&client, &ns, "private", "CredentialsNotFound").await;
    let cond = ready(&s).unwrap();
    assert_eq!(cond.status, "False");
    assert!(
        cond.message.contains("\"regcred\"") && cond.message.contains(&ns),
        "{}",
        cond.message
    );

    // Without a secret the registry refuses us; with it, it resolves.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // Resolved with the credentials, and fetched by the runner with them too.
    let s = wait_reason(&client, &ns, "private", "AwaitingApproval").await;
    assert!(s.artifact.unwrap().revision.starts_with("1@sha256:"));
    assert_eq!(s.failures, 0);

    // The password is nowhere in status or events.
    let status_json = serde_json::to_string(
        &Api::<Terraform>::namespaced(client.clone(), &ns)
            .get("private")
            .await
            .unwrap()
            .status,
    )
    .unwrap();
    assert!(!status_json.contains(&password));
    let events = serde_json::to_string(
        &Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!events.contains(&password) && !events.contains(&auth));
}
