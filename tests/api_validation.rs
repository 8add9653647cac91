//! The CRDs against the real API server: they install, and the schema turns bad objects away
//! with messages a user can act on.

mod support;

use kube::api::{Api, Patch, PatchParams, PostParams};
use landform::api::{CloudFormationStack, Terraform};
use serde_json::{Value, json};
use support::*;

fn tf(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": name}, "spec": spec})
}

/// Creates the object and returns the API server's refusal message, or None if it was accepted.
async fn refusal(client: &kube::Client, ns: &str, obj: Value) -> Option<String> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "landform.dev",
            "v1alpha1",
            obj["kind"].as_str().unwrap(),
        )),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected 422 Invalid, got {s:?}");
            Some(s.message)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn invalid_objects_are_rejected_with_readable_messages() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "validation").await;
    let src = json!({"kind": "GitRepository", "name": "infra"});
    let oci = json!({"oci": {"url": "oci://registry.example/team/vpc"}});
    let cases = [
        (
            "negative interval",
            tf("a", json!({"interval": "-5m", "sourceRef": src})),
            "spec.interval: Invalid value: \"-5m\": must be a positive duration",
        ),
        (
            "unitless interval",
            tf("b", json!({"interval": "10", "sourceRef": src})),
            "must be a positive duration",
        ),
        (
            "unknown approvePlan",
            tf(
                "c",
                json!({"interval": "1m", "sourceRef": src, "approvePlan": "sometimes"}),
            ),
            "spec.approvePlan: Invalid value: \"sometimes\": must be 'auto' (apply every plan), empty (wait for manual approval) or a plan ID",
        ),
        (
            "both sources",
            tf(
                "d",
                json!({"interval": "1m", "sourceRef": src, "source": oci}),
            ),
            "exactly one of spec.sourceRef (a Flux source) or spec.source (an OCI artifact) must be set",
        ),
        (
            "neither source",
            tf("e", json!({"interval": "1m"})),
            "exactly one of spec.sourceRef",
        ),
        (
            "missing interval",
            tf("f", json!({"sourceRef": src})),
            "spec.interval: Required value",
        ),
        (
            "unknown mode",
            tf(
                "g",
                json!({"interval": "1m", "sourceRef": src, "mode": "Sometimes"}),
            ),
            "spec.mode: Unsupported value: \"Sometimes\": supported values: \"Reconcile\", \"DriftOnly\"",
        ),
        (
            "unknown source kind",
            tf(
                "h",
                json!({"interval": "1m", "sourceRef": {"kind": "HelmRepository", "name": "x"}}),
            ),
            "spec.sourceRef.kind: Unsupported value: \"HelmRepository\"",
        ),
        (
            "escaping path",
            tf(
                "i",
                json!({"interval": "1m", "sourceRef": src, "path": "../other"}),
            ),
            "must be a relative path inside the artifact, without '..'",
        ),
        (
            "absolute path",
            tf(
                "j",
                json!({"interval": "1m", "sourceRef": src, "path": "/etc"}),
            ),
            "must be a relative path",
        ),
        (
            "absolute path behind ./",
            tf(
                "j2",
                json!({"interval": "1m", "sourceRef": src, "path": ".//tmp/x"}),
            ),
            "must be a relative path",
        ),
        (
            "an interval under a second",
            tf("j3", json!({"interval": "1ms", "sourceRef": src})),
            "spec.interval: Invalid value: \"1ms\": must be at least 1s",
        ),
        (
            "a drift interval under a second",
            tf(
                "j4",
                json!({"interval": "1m", "sourceRef": src, "drift": {"interval": "500ms"}}),
            ),
            "must be at least 1s",
        ),
        (
            "negative maxRetries",
            tf(
                "k",
                json!({"interval": "1m", "sourceRef": src, "maxRetries": -1}),
            ),
            "spec.maxRetries: Invalid value: -1: spec.maxRetries in body should be greater than or equal to 0",
        ),
        (
            "non-OCI url",
            tf(
                "l",
                json!({"interval": "1m", "source": {"oci": {"url": "https://example.com/x"}}}),
            ),
            "spec.source.oci.url",
        ),
        (
            "bad digest",
            tf(
                "m",
                json!({"interval": "1m", "source": {"oci": {"url": "oci://r.example/x", "ref": {"digest": "sha256:abc"}}}}),
            ),
            "spec.source.oci.ref.digest",
        ),
        (
            "stack name",
            json!({"apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "n"}, "spec": {"interval": "1m", "sourceRef": src, "stackName": "9-starts-with-a-digit"}}),
            "spec.stackName",
        ),
        (
            "unknown capability",
            json!({"apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "o"}, "spec": {"interval": "1m", "sourceRef": src, "capabilities": ["CAPABILITY_EVERYTHING"]}}),
            "supported values: \"CAPABILITY_IAM\", \"CAPABILITY_NAMED_IAM\", \"CAPABILITY_AUTO_EXPAND\"",
        ),
        (
            "cfn without source",
            json!({"apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "p"}, "spec": {"interval": "1m"}}),
            "exactly one of spec.sourceRef",
        ),
        (
            "a runner pod volume that reaches the node",
            tf(
                "q",
                json!({"interval": "1m", "sourceRef": src, "runnerPodTemplate": {"spec": {
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}]}}}),
            ),
            "spec.runnerPodTemplate.spec.volumes: Invalid value: runner pod volumes may only be configMap, secret, emptyDir",
        ),
    ];
    let mut failures = vec![];
    for (what, obj, expected) in cases {
        match refusal(&client, &ns, obj).await {
            None => failures.push(format!("{what}: accepted")),
            Some(msg) if !msg.contains(expected) => {
                failures.push(format!("{what}: message {msg:?} lacks {expected:?}"))
            }
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn valid_objects_are_accepted_with_defaults() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "defaults").await;
    let accepted = [
        tf(
            "plain",
            json!({"interval": "10m", "sourceRef": {"kind": "OCIRepository", "name": "infra"}}),
        ),
        tf(
            "auto",
            json!({"interval": "1h30m", "source": {"oci": {"url": "oci://127.0.0.1:5000/team/vpc", "ref": {"tag": "1.2.0"}}}, "approvePlan": "auto", "path": "./vpc", "vars": [{"name": "tags", "value": {"team": "a"}}, {"name": "count", "value": 3}]}),
        ),
        tf(
            "byid",
            json!({"interval": "30s", "sourceRef": {"kind": "Bucket", "name": "b"}, "approvePlan": "3f9a2c1d0e", "mode": "DriftOnly"}),
        ),
    ];
    for obj in accepted {
        assert_eq!(refusal(&client, &ns, obj.clone()).await, None, "{obj}");
    }
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    let plain = tfs.get("plain").await.unwrap();
    assert_eq!(
        plain.spec.common.approve_plan.0, "",
        "manual approval is the default"
    );
    assert_eq!(plain.spec.common.mode, landform::api::Mode::Reconcile);
    assert!(!plain.spec.common.destroy_on_delete);
    let auto = tfs.get("auto").await.unwrap();
    assert_eq!(auto.spec.vars[0].value, json!({"team": "a"}));
    assert_eq!(auto.spec.vars[1].value, json!(3));

    let stack = json!({"apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "s"},
        "spec": {"interval": "5m", "sourceRef": {"kind": "GitRepository", "name": "g"}, "stackName": "team-a-vpc", "capabilities": ["CAPABILITY_IAM"],
                 "parameters": [{"key": "Env", "value": "dev"}], "region": "eu-west-1", "endpointURL": "http://127.0.0.1:5000"}});
    assert_eq!(refusal(&client, &ns, stack).await, None);
    let stacks: Api<CloudFormationStack> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        stacks.get("s").await.unwrap().spec.stack_name.as_deref(),
        Some("team-a-vpc")
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "columns").await;
    assert_eq!(
        refusal(
            &client,
            &ns,
            tf(
                "vpc",
                json!({"interval": "10m", "sourceRef": {"kind": "OCIRepository", "name": "infra"}})
            )
        )
        .await,
        None
    );
    let status = json!({
        "apiVersion": "landform.dev/v1alpha1", "kind": "Terraform",
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Applied", "message": "Applied revision 1.2.0",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "lastAppliedRevision": "1.2.0@sha256:0123", "plan": {"id": "3f9a2c1d0e4b", "summary": {"add": 1, "change": 0, "destroy": 0}},
            "drift": {"state": "InSync"}
        }
    });
    Api::<Terraform>::namespaced(client.clone(), &ns)
        .patch_status("vpc", &PatchParams::apply(MANAGER), &Patch::Apply(&status))
        .await
        .unwrap();

    let out = kubectl(&["get", "tf", "-n", &ns]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let header: Vec<_> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "REASON", "STATUS", "PLAN", "DRIFT", "AGE"],
        "{text}"
    );
    let row = text.lines().nth(1).unwrap();
    for cell in [
        "vpc",
        "True",
        "Applied",
        "Applied revision 1.2.0",
        "3f9a2c1d0e4b",
        "InSync",
    ] {
        assert!(row.contains(cell), "row {row:?} lacks {cell:?}");
    }

    let wide =
        String::from_utf8(kubectl(&["get", "terraform", "-n", &ns, "-o", "wide"]).stdout).unwrap();
    assert!(wide.lines().next().unwrap().contains("REVISION"), "{wide}");
    assert!(wide.contains("1.2.0@sha256:0123"), "{wide}");

    // The category lists both kinds.
    let stack = json!({"apiVersion": "landform.dev/v1alpha1", "kind": "CloudFormationStack", "metadata": {"name": "net"},
        "spec": {"interval": "5m", "sourceRef": {"kind": "GitRepository", "name": "g"}}});
    assert_eq!(refusal(&client, &ns, stack).await, None);
    let all = String::from_utf8(kubectl(&["get", "landform", "-n", &ns]).stdout).unwrap();
    assert!(all.contains("terraform.landform.dev/vpc"), "{all}");
    assert!(
        all.contains("cloudformationstack.landform.dev/net"),
        "{all}"
    );
    let short = kubectl(&["get", "cfnstack", "net", "-n", &ns]);
    assert!(
        short.status.success(),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
}
