//! CloudFormationStack against a real CloudFormation API (moto server): change sets, approval,
//! outputs of an adopted stack, parameters from Secrets, the template bucket, ownership and destroy-on-delete.

mod support;

use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::cfn::*;
use support::*;

#[tokio::test]
async fn creates_then_plans_changes_for_approval_and_skips_no_ops() {
    let env = setup("cfn").await;
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    let params: Secret = serde_json::from_value(json!({"metadata": {"name": "params"},
        "stringData": {"Greeting": "hello from a Secret"}}))
    .unwrap();
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &params)
        .await
        .unwrap();
    env.create(
        "greeting",
        &repo,
        "1",
        json!({"parametersFrom": [{"kind": "Secret", "name": "params"}],
            "tags": {"team": "platform"}}),
    )
    .await;
    let s = env.wait_ready("greeting", "True", "Applied").await;
    let stack = env.stack("greeting");
    assert_eq!(
        stack_status(&env.cfn, &stack).await,
        Some(StackStatus::CreateComplete)
    );
    let plan = s.plan.clone().unwrap();
    assert_eq!(plan.summary.add, 1, "{plan:?}");
    assert_eq!(plan.resources[0].address, "Param");
    assert_eq!(plan.resources[0].action, "create");
    assert!(
        s.stack_events.iter().any(|e| e.status == "CREATE_COMPLETE"),
        "{:?}",
        s.stack_events
    );
    // The parameter read from a Secret reached the stack, and nothing of it is in status.
    let deployed = described(&env.cfn, &stack).await;
    assert_eq!(
        deployed.parameters()[0].parameter_value(),
        Some("hello from a Secret")
    );
    let status_json = serde_json::to_string(&s).unwrap();
    assert!(
        !status_json.contains("hello from a Secret"),
        "{status_json}"
    );
    // Landform's ownership tags next to the user's.
    let tags: Vec<(String, String)> = deployed
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert!(
        tags.contains(&("team".into(), "platform".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("landform.dev/owner".into(), format!("{}/greeting", env.ns))),
        "{tags:?}"
    );

    // Unchanged template, planned again: no changes, nothing executed.
    let updated_before = deployed.last_updated_time().cloned();
    env.request("greeting", "again").await;
    let s = eventually("a plan without changes", WAIT, || async {
        let s = env.api.get("greeting").await.ok()?.status?;
        let planned = s.conditions.iter().find(|c| c.type_ == "Planned")?;
        (s.last_handled_reconcile_at.as_deref() == Some("again")
            && planned.reason == "NoChanges"
            && s.run.as_ref()?.phase != landform::api::RunPhase::Running)
            .then_some(s)
    })
    .await;
    assert!(!s.plan.as_ref().unwrap().pending);
    let deployed = described(&env.cfn, &stack).await;
    assert_eq!(deployed.last_updated_time().cloned(), updated_before);
    let no_op = format!("landform-{}", &s.plan.as_ref().unwrap().id[8..]);
    let change_set = env
        .cfn
        .describe_change_set()
        .stack_name(&stack)
        .change_set_name(&no_op)
        .send()
        .await;
    assert!(
        change_set.is_err(),
        "the empty change set {no_op} is cleaned up: {change_set:?}"
    );

    // A new template under manual approval: a change set waits, and nothing changes until the
    // plan is approved.
    publish_files(
        &env.ns,
        "greeting",
        "2",
        &[("template.yaml", &template_v2())],
    );
    env.patch(
        "greeting",
        json!({"approvePlan": "", "source": {"oci": {"url": repo, "ref": {"tag": "2"}, "insecure": true}}}),
    )
    .await;
    let s = env
        .wait_ready("greeting", "False", "AwaitingApproval")
        .await;
    let plan = s.plan.unwrap();
    assert!(plan.pending);
    assert_eq!(
        (plan.summary.add, plan.summary.change, plan.summary.destroy),
        (1, 0, 0)
    );
    assert_eq!(plan.resources[0].address, "Queue");
    assert_eq!(resources(&env.cfn, &stack).await, ["Param"]);
    let (ok, out, err) = run(landform()
        .args([
            "approve",
            "cfnstack/greeting",
            "--plan",
            &plan.id[..8],
            "-n",
            &env.ns,
        ])
        .env("KUBECONFIG", kubeconfig_path()));
    assert!(ok, "{out}{err}");
    env.wait_ready("greeting", "True", "Applied").await;
    assert_eq!(resources(&env.cfn, &stack).await, ["Param", "Queue"]);
    assert_eq!(
        stack_status(&env.cfn, &stack).await,
        Some(StackStatus::UpdateComplete)
    );
}

#[tokio::test]
async fn large_templates_go_through_the_template_bucket() {
    let env = setup("cfn-big").await;
    // Padding in template metadata takes it over the 51,200-byte inline limit.
    let big = format!(
        "Metadata:\n  Padding: \"{}\"\n{TEMPLATE_V1}",
        "x".repeat(60_000)
    );
    let repo = publish_files(&env.ns, "big", "1", &[("template.yaml", &big)]);
    env.create("big", &repo, "1", json!({})).await;
    let s = env.wait_ready("big", "False", "TemplateTooLarge").await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains("spec.templateBucket"),
        "{}",
        ready.message
    );
    assert_eq!(stack_status(&env.cfn, &env.stack("big")).await, None);

    let bucket = format!("templates-{}", env.ns);
    env.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    env.patch("big", json!({"templateBucket": bucket})).await;
    env.wait_ready("big", "True", "Applied").await;
    assert_eq!(
        stack_status(&env.cfn, &env.stack("big")).await,
        Some(StackStatus::CreateComplete)
    );
    let listed = env
        .s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1, "the template was uploaded once");
}

#[tokio::test]
async fn rejected_templates_and_foreign_stacks_are_refused_clearly() {
    let env = setup("cfn-bad").await;
    let broken = "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Param:\n    Type: AWS::SSM::Parameter\n    Properties:\n      Type: String\n      Value: !Ref NoSuchParameter\n";
    let repo = publish_files(&env.ns, "broken", "1", &[("template.yaml", broken)]);
    env.create("broken", &repo, "1", json!({})).await;
    let s = env.wait_ready("broken", "False", "InvalidTemplate").await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains("NoSuchParameter"),
        "{}",
        ready.message
    );
    assert_eq!(stack_status(&env.cfn, &env.stack("broken")).await, None);

    // A stack that Landform did not create is left alone unless adopting is asked for.
    let foreign = env.stack("foreign");
    env.cfn
        .create_stack()
        .stack_name(&foreign)
        .template_body(TEMPLATE_V1)
        .parameters(
            Parameter::builder()
                .parameter_key("Greeting")
                .parameter_value("made by hand")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    env.create("foreign", &repo, "1", json!({})).await;
    let s = env.wait_ready("foreign", "False", "StackNotOwned").await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("adoptExisting"), "{}", ready.message);
    let deployed = described(&env.cfn, &foreign).await;
    assert_eq!(
        deployed.parameters()[0].parameter_value(),
        Some("made by hand"),
        "the foreign stack is untouched"
    );
    // Adopted with the parameter it already has: nothing to change, and the stack's outputs
    // go to the outputs Secret. (Adoption is also where outputs can be checked on the emulator:
    // moto only computes outputs for stacks made by CreateStack, not through change sets.)
    env.patch(
        "foreign",
        json!({"adoptExisting": true,
            "parameters": [{"key": "Greeting", "value": "made by hand"}],
            "writeOutputsToSecret": {"name": "foreign-outputs"}}),
    )
    .await;
    let s = eventually("the adopted stack's outputs", WAIT, || async {
        let s = env.api.get("foreign").await.ok()?.status?;
        (!s.outputs.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(s.outputs, ["Greeting", "ParamName"]);
    let planned = s.conditions.iter().find(|c| c.type_ == "Planned").unwrap();
    assert_eq!(planned.reason, "NoChanges");
    let outputs = Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get("foreign-outputs")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(outputs["Greeting"].0, b"made by hand");
    assert_eq!(
        outputs["ParamName"].0,
        format!("/{foreign}/greeting").as_bytes()
    );
    assert_eq!(
        deployed.last_updated_time(),
        described(&env.cfn, &foreign).await.last_updated_time(),
        "adopting without changes executes nothing"
    );
}

#[tokio::test]
async fn deleting_destroys_the_stack_only_with_destroy_on_delete() {
    let env = setup("cfn-del").await;
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    env.create("doomed", &repo, "1", json!({"destroyOnDelete": true}))
        .await;
    env.create("kept", &repo, "1", json!({})).await;
    env.wait_ready("doomed", "True", "Applied").await;
    env.wait_ready("kept", "True", "Applied").await;
    for name in ["doomed", "kept"] {
        env.api
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["doomed", "kept"] {
        eventually(&format!("{name} to be gone"), WAIT, || async {
            env.api.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    assert_eq!(stack_status(&env.cfn, &env.stack("doomed")).await, None);
    assert_eq!(
        stack_status(&env.cfn, &env.stack("kept")).await,
        Some(StackStatus::CreateComplete)
    );
}

#[tokio::test]
async fn depends_on_waits_for_another_stack_and_refuses_other_namespaces() {
    let env = setup("cfn-deps").await;
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    env.create("network", &repo, "1", json!({"approvePlan": ""}))
        .await;
    env.create(
        "app",
        &repo,
        "1",
        json!({"dependsOn": [{"name": "network"}]}),
    )
    .await;

    let network = env.wait_ready("network", "False", "AwaitingApproval").await;
    // The dependency is looked up as a stack (not as a Terraform object), and app says what
    // it waits for.
    let app = eventually("app to wait for network's approval", WAIT, || async {
        let s = env.api.get("app").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "DependencyNotReady" && ready.message.contains("waits for approval"))
            .then_some(ready.message.clone())
    })
    .await;
    assert!(
        app.starts_with(&format!(
            "waiting for cfnstack {}/network to be Ready: Plan ",
            env.ns
        )),
        "{app}"
    );
    assert_eq!(
        stack_status(&env.cfn, &env.stack("app")).await,
        None,
        "nothing runs before the dependency is ready"
    );

    env.patch("network", json!({"approvePlan": network.plan.unwrap().id}))
        .await;
    env.wait_ready("network", "True", "Applied").await;
    // The watch on the dependency brings app along.
    env.wait_ready("app", "True", "Applied").await;
    assert_eq!(
        stack_status(&env.cfn, &env.stack("app")).await,
        Some(StackStatus::CreateComplete)
    );

    // A dependency in another namespace is refused without --allow-cross-namespace-refs.
    env.create(
        "far",
        &repo,
        "1",
        json!({"dependsOn": [{"name": "network", "namespace": "elsewhere"}]}),
    )
    .await;
    let far = env
        .wait_ready("far", "False", "CrossNamespaceRefNotAllowed")
        .await;
    let stalled = far
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert!(
        stalled.message.contains("elsewhere/network")
            && stalled.message.contains("--allow-cross-namespace-refs"),
        "{}",
        stalled.message
    );
    assert_eq!(stack_status(&env.cfn, &env.stack("far")).await, None);
}

#[tokio::test]
async fn a_short_approval_names_the_changes_not_only_the_inputs() {
    let env = setup("cfn-approve").await;
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    env.create("greeting", &repo, "1", json!({"approvePlan": ""}))
        .await;
    let s = env
        .wait_ready("greeting", "False", "AwaitingApproval")
        .await;
    let approved = s.plan.unwrap();
    env.patch("greeting", json!({"approvePlan": &approved.id[..8]}))
        .await;
    env.wait_ready("greeting", "True", "Applied").await;
    let stack = env.stack("greeting");

    // Out of band, someone adds a queue to the stack (keeping its tags and parameters).
    let deployed = described(&env.cfn, &stack).await;
    env.cfn
        .update_stack()
        .stack_name(&stack)
        .template_body(template_v2())
        .set_tags(Some(deployed.tags().to_vec()))
        .set_parameters(Some(deployed.parameters().to_vec()))
        .send()
        .await
        .unwrap();
    eventually("the update out of band", WAIT, || async {
        (stack_status(&env.cfn, &stack).await == Some(StackStatus::UpdateComplete)).then_some(())
    })
    .await;
    assert_eq!(resources(&env.cfn, &stack).await, ["Param", "Queue"]);

    // A plan of the same inputs now removes the queue: nobody approved that.
    env.request("greeting", "again").await;
    let s = eventually("the re-plan to be handled", WAIT, || async {
        let s = env.api.get("greeting").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        let applied_again = s.last_handled_reconcile_at.as_deref() == Some("again")
            && ready.reason == "Applied"
            && s.run.as_ref()?.operation == landform::api::Operation::Apply;
        (ready.reason == "ApprovalStale" || applied_again).then_some(s)
    })
    .await;
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "ApprovalStale", "{}", ready.message);
    let replanned = s.plan.unwrap();
    assert_eq!(replanned.summary.destroy, 1, "{replanned:?}");
    assert!(replanned.pending);
    assert_eq!(replanned.id[8..], approved.id[8..], "the same inputs");
    assert_ne!(replanned.id[..8], approved.id[..8], "other changes");
    assert_eq!(resources(&env.cfn, &stack).await, ["Param", "Queue"]);
}
