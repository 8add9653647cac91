//! Flux's real source-controller produces status.artifact; landform follows it, fetches and
//! verifies the artifact, and notices new revisions and garbage-collected artifacts.

mod support;

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use landform::api::{ObjectStatus, Terraform};
use landform::source::digest::Digest;
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(120);

fn push(dir: &std::path::Path, url: &str) {
    let (ok, _, err) = run(landform().args(["push", dir.to_str().unwrap(), url, "--insecure"]));
    assert!(ok, "{err}");
}

fn ocirepos(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &landform::source::flux::api_resource(landform::api::SourceKind::OciRepository),
    )
}

async fn artifact_of(
    api: &Api<DynamicObject>,
    name: &str,
    not: Option<&str>,
) -> landform::source::flux::Artifact {
    eventually("an OCIRepository artifact", WAIT, || async {
        let obj = api.get(name).await.ok()?;
        match landform::source::flux::state(obj.data.get("status")) {
            landform::source::flux::State::Artifact(a) if Some(a.revision.as_str()) != not => {
                Some(a)
            }
            _ => None,
        }
    })
    .await
}

fn ready_reason(s: &ObjectStatus) -> Option<&str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.as_str())
}

#[tokio::test]
async fn follows_an_oci_repository_and_verifies_its_artifact() {
    landform::tls::init();
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "flux").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let registry = testenv()["LANDFORM_TEST_REGISTRY"].clone();
    let module = tempfile::tempdir().unwrap();
    std::fs::write(
        module.path().join("main.tf"),
        "output \"v\" { value = 1 }\n",
    )
    .unwrap();
    push(module.path(), &format!("oci://{registry}/{ns}/mod:stable"));

    let repo: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository", "metadata": {"name": "infra"},
        "spec": {"interval": "10m", "url": format!("oci://{registry}/{ns}/mod"), "ref": {"tag": "stable"}, "insecure": true}
    }))
    .unwrap();
    let repos = ocirepos(&client, &ns);
    repos.create(&Default::default(), &repo).await.unwrap();
    let first = artifact_of(&repos, "infra", None).await;
    assert!(first.revision.starts_with("stable@sha256:"), "{first:?}");

    // Fetch it as a runner will: streamed, digest-verified, safely extracted.
    let http = reqwest::Client::new();
    let work = tempfile::tempdir().unwrap();
    let expected: Digest = first.digest.parse().unwrap();
    let file = work.path().join("artifact.tgz");
    landform::source::fetch::download(&http, &first.url, &expected, &file)
        .await
        .unwrap();
    let out = work.path().join("tree");
    landform::source::archive::extract(
        std::fs::File::open(&file).unwrap(),
        &out,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("main.tf")).unwrap(),
        "output \"v\" { value = 1 }\n"
    );
    // A wrong digest is refused, naming both, and leaves nothing behind.
    let wrong: Digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
    let err =
        landform::source::fetch::download(&http, &first.url, &wrong, &work.path().join("bad.tgz"))
            .await
            .unwrap_err();
    assert_eq!(err.reason().as_str(), "DigestMismatch");
    assert!(
        err.to_string().contains(&wrong.to_string()) && err.to_string().contains(&first.digest),
        "{err}"
    );
    assert!(!work.path().join("bad.tgz").exists());

    // A Terraform object follows the OCIRepository.
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": "net"},
        "spec": {"interval": "10m", "sourceRef": {"kind": "OCIRepository", "name": "infra"}}})).unwrap();
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    tfs.create(&Default::default(), &tf).await.unwrap();
    let status = eventually("tf/net to resolve", WAIT, || async {
        let s = tfs.get("net").await.ok()?.status?;
        // Resolved and planned (an output to create), waiting for approval.
        (ready_reason(&s)? == "AwaitingApproval").then_some(s)
    })
    .await;
    let a = status.artifact.unwrap();
    assert_eq!(
        (a.url.as_str(), a.digest.as_str(), a.revision.as_str()),
        (
            first.url.as_str(),
            first.digest.as_str(),
            first.revision.as_str()
        )
    );

    // A new revision: the source-controller publishes it, and the watch brings tf/net along
    // without waiting for its 10m interval.
    std::fs::write(
        module.path().join("main.tf"),
        "output \"v\" { value = 2 }\n",
    )
    .unwrap();
    push(module.path(), &format!("oci://{registry}/{ns}/mod:stable"));
    request_reconcile(&repos, "infra").await;
    let second = artifact_of(&repos, "infra", Some(&first.revision)).await;
    // ... and plans it, so that no run of it is still fetching the artifact below.
    eventually("tf/net to plan the new revision", WAIT, || async {
        let s = tfs.get("net").await.ok()?.status?;
        let planned = s.plan.as_ref()?.revision.as_deref() == Some(second.revision.as_str());
        (planned && ready_reason(&s)? == "AwaitingApproval").then_some(())
    })
    .await;

    // The artifact disappears from the source-controller's storage (garbage collection).
    let storage = kubeconfig_path()
        .parent()
        .unwrap()
        .join("source-controller");
    let path = second.url.splitn(4, '/').nth(3).unwrap();
    std::fs::remove_file(storage.join(path)).unwrap();
    request_reconcile(&tfs, "net").await;
    let status = eventually("tf/net to report the missing artifact", WAIT, || async {
        let s = tfs.get("net").await.ok()?.status?;
        (ready_reason(&s)? == "ArtifactNotFound").then_some(s)
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.status, "Unknown",
        "a missing artifact is waited for, not a failure"
    );
    assert!(ready.message.contains("answers 404"), "{}", ready.message);
    assert_eq!(status.failures, 0);
}
