//! `landform runner` against real OpenTofu, the real registry and the real API server: state in
//! the kubernetes backend, saved plans in Secrets, outputs in a Secret, errors quoted.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use landform::api::Terraform;
use landform::contract::RunResult;
use serde_json::{Value, json};
use support::*;

struct Fixture {
    client: kube::Client,
    ns: String,
    owner: Value,
    cache: tempfile::TempDir,
}

async fn fixture(prefix: &str) -> Fixture {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform",
        "metadata": {"name": "hello"}, "spec": {"interval": "10m", "sourceRef": {"kind": "OCIRepository", "name": "x"}}})).unwrap();
    let tf = Api::<Terraform>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &tf)
        .await
        .unwrap();
    let owner = json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "name": "hello", "uid": tf.metadata.uid.unwrap()});
    Fixture {
        client,
        ns,
        owner,
        cache: tempfile::tempdir().unwrap(),
    }
}

/// Pushes a module directory and returns its artifact reference for a run spec.
fn publish(dir: &std::path::Path, ns: &str, tag: &str) -> Value {
    let repo = format!("{}/{ns}/module", testenv()["LANDFORM_TEST_REGISTRY"]);
    let (ok, out, err) = run(landform().args([
        "push",
        dir.to_str().unwrap(),
        &format!("oci://{repo}:{tag}"),
        "--insecure",
    ]));
    assert!(ok, "{err}");
    let digest = out.trim().rsplit('@').next().unwrap().to_string();
    json!({"url": format!("oci://{repo}"), "digest": digest, "revision": format!("{tag}@{digest}"), "insecure": true})
}

impl Fixture {
    fn run(&self, name: &str, operation: &str, artifact: &Value, extra: Value) -> RunResult {
        let mut spec = json!({
            "name": name, "namespace": self.ns, "owner": self.owner, "operation": operation, "engine": "OpenTofu",
            "artifact": artifact, "backend": {"type": "kubernetes", "namespace": self.ns, "secretSuffix": "hello"},
            "outputsSecret": {"name": "hello-outputs"},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let file = self.cache.path().join(format!("{name}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let (_, stdout, stderr) = run(landform()
            .args(["runner", "--spec"])
            .arg(&file)
            .arg("--tofu")
            .arg(testenv_dir().join("bin/tofu"))
            .arg("--cache-dir")
            .arg(self.cache.path().join("artifacts"))
            .env("KUBECONFIG", kubeconfig_path())
            .env("TF_CLI_CONFIG_FILE", &testenv()["TF_CLI_CONFIG_FILE"]));
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("runner printed no result ({e}): {stderr}"))
    }

    async fn state_resources(&self) -> usize {
        state_resources(&self.client, &self.ns, "hello").await
    }

    async fn secret(&self, name: &str) -> Option<Secret> {
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .unwrap()
    }
}

fn module(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

const MODULE: &str = GREETING_MODULE;

#[tokio::test]
async fn plan_apply_outputs_and_destroy_with_state_in_a_secret() {
    let f = fixture("runner").await;
    let dir = module(&[("main.tf", MODULE)]);
    let artifact = publish(dir.path(), &f.ns, "1");

    let plan = f.run("plan-1", "plan", &artifact, json!({}));
    assert!(plan.succeeded, "{plan:?}");
    let id = plan.plan_id.clone().unwrap();
    assert_eq!(id.len(), 16);
    let summary = plan.summary.unwrap();
    assert_eq!((summary.add, summary.change, summary.destroy), (2, 0, 0));
    let addresses: Vec<_> = plan
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(
        addresses,
        [
            ("random_pet.name", "create"),
            ("terraform_data.message", "create")
        ]
    );
    assert!(plan.engine_version.unwrap().starts_with("OpenTofu v1.12."));
    let parts = Api::<Secret>::namespaced(f.client.clone(), &f.ns)
        .list(&ListParams::default().labels(&format!("landform.dev/plan-id={id}")))
        .await
        .unwrap();
    assert_eq!(parts.items.len(), 1);
    let part = &parts.items[0];
    assert_eq!(
        part.metadata.owner_references.as_ref().unwrap()[0].name,
        "hello"
    );
    // Nothing is applied by a plan: no outputs yet.
    assert!(f.secret("hello-outputs").await.is_none());

    let result = f.secret("plan-1-result").await.unwrap();
    let stored: RunResult = serde_json::from_slice(&result.data.unwrap()["result.json"].0).unwrap();
    assert_eq!(stored.plan_id.as_deref(), Some(id.as_str()));

    // Apply exactly that saved plan.
    let apply = f.run("apply-1", "apply", &artifact, json!({"planId": id}));
    assert!(apply.succeeded, "{apply:?}");
    assert_eq!(apply.outputs, ["message", "name"]);
    let outputs = f.secret("hello-outputs").await.unwrap().data.unwrap();
    let name: String = serde_json::from_slice(&outputs["name"].0).unwrap();
    let message: String = serde_json::from_slice(&outputs["message"].0).unwrap();
    assert_eq!(message, format!("Hello, {name}"));

    // State in the kubernetes backend's Secret; its Lease lock released.
    assert_eq!(f.state_resources().await, 2, "state holds what was applied");
    let lease = Api::<Lease>::namespaced(f.client.clone(), &f.ns)
        .get_opt("lock-tfstate-default-hello")
        .await
        .unwrap();
    let holder = lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert_eq!(holder, "", "the state lock is released");

    // A variable from a Secret changes the plan ID and the plan.
    let vars: Secret = serde_json::from_value(
        json!({"metadata": {"name": "vars"}, "stringData": {"greeting": "Bonjour"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &vars)
        .await
        .unwrap();
    let replan = f.run(
        "plan-2",
        "plan",
        &artifact,
        json!({"varsFrom": [{"kind": "Secret", "name": "vars"}]}),
    );
    assert!(replan.succeeded, "{replan:?}");
    assert_ne!(replan.plan_id.as_deref(), Some(id.as_str()));
    let changed: Vec<_> = replan
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str()))
        .collect();
    assert_eq!(changed, [("terraform_data.message", "update")]);
    assert!(
        replan.resources[0].paths.contains(&"input".to_string()),
        "{:?}",
        replan.resources[0].paths
    );
    assert!(
        !serde_json::to_string(&replan).unwrap().contains("Bonjour"),
        "values never reach the result"
    );

    // Destroy removes everything in state.
    let destroy = f.run("destroy-1", "destroy", &artifact, json!({}));
    assert!(destroy.succeeded, "{destroy:?}");
    assert_eq!(destroy.summary.unwrap().destroy, 2);
    assert_eq!(f.state_resources().await, 0);
}

#[tokio::test]
async fn bad_input_is_reported_in_words_and_nothing_is_applied() {
    let f = fixture("runner-bad").await;
    let broken = module(&[(
        "main.tf",
        "resource \"terraform_data\" \"x\" {\n  input = \n}\n",
    )]);
    let artifact = publish(broken.path(), &f.ns, "broken");
    let r = f.run("plan-broken", "plan", &artifact, json!({}));
    assert!(!r.succeeded);
    assert_eq!(r.reason.as_deref(), Some("InitFailed"));
    let msg = r.message.unwrap();
    assert!(
        msg.contains("Error:") && msg.contains("main.tf line 2"),
        "{msg}"
    );
    assert_eq!(f.state_resources().await, 0, "nothing was applied");

    let ok = module(&[("main.tf", MODULE)]);
    let artifact = publish(ok.path(), &f.ns, "ok");
    let r = f.run(
        "plan-vars",
        "plan",
        &artifact,
        json!({"varsFrom": [{"kind": "Secret", "name": "absent"}]}),
    );
    assert_eq!(r.reason.as_deref(), Some("VarsSourceNotFound"));
    assert!(
        r.message
            .unwrap()
            .contains(&format!("Secret {}/absent", f.ns))
    );

    let r = f.run("plan-path", "plan", &artifact, json!({"path": "nowhere"}));
    assert_eq!(r.reason.as_deref(), Some("InvalidSource"));
    assert!(
        r.message
            .unwrap()
            .contains("\"nowhere\" holds no .tf files")
    );

    let r = f.run(
        "apply-gone",
        "apply",
        &artifact,
        json!({"planId": "0123456789abcdef"}),
    );
    assert_eq!(r.reason.as_deref(), Some("PlanNotFound"));

    // Hostile artifacts: refused with their own reason before the engine ever runs.
    let hostile: [(&[RawEntry], &str); 2] = [
        (
            &[
                ("main.tf", tar::EntryType::Regular, "", b"# ok\n"),
                ("../escape.tf", tar::EntryType::Regular, "", b"x"),
            ],
            "contains '..'",
        ),
        (
            &[(
                "main.tf",
                tar::EntryType::Symlink,
                "../../../etc/hostname",
                b"",
            )],
            "points outside the artifact",
        ),
    ];
    for (i, (entries, words)) in hostile.into_iter().enumerate() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("a.tgz"), raw_targz(entries)).unwrap();
        let repo = format!("{}/{}/hostile", testenv()["LANDFORM_TEST_REGISTRY"], f.ns);
        let (ok, _, err) = run(testenv_tool("oras").current_dir(work.path()).args([
            "push",
            "--plain-http",
            &format!("{repo}:{i}"),
            "a.tgz:application/vnd.cncf.flux.content.v1.tar+gzip",
        ]));
        assert!(ok, "{err}");
        let (_, manifest, _) = run(testenv_tool("oras").args([
            "manifest",
            "fetch",
            "--plain-http",
            "--descriptor",
            &format!("{repo}:{i}"),
        ]));
        let digest = serde_json::from_str::<Value>(&manifest).unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let artifact = json!({"url": format!("oci://{repo}"), "digest": digest, "revision": format!("{i}@{digest}"), "insecure": true});
        let r = f.run(&format!("plan-hostile-{i}"), "plan", &artifact, json!({}));
        assert_eq!(r.reason.as_deref(), Some("UnsafeArtifact"), "{r:?}");
        assert!(r.message.as_deref().unwrap().contains(words), "{r:?}");
        assert!(r.engine_version.is_none(), "the engine never ran");
    }
    assert_eq!(f.state_resources().await, 0, "nothing was ever applied");
}
