//! Drift of CloudFormation stacks on moto: a stack updated behind Landform's back (another
//! template, another parameter) is reported resource by resource and cleared when undone; in
//! DriftOnly mode nothing is created, changed or tagged, and no ownership is needed.

mod support;

use aws_sdk_cloudformation::types::Parameter;
use landform::api::{DriftState, ObjectStatus};
use serde_json::json;
use support::cfn::*;
use support::*;

async fn wait_drift(env: &Env, name: &str, state: DriftState) -> ObjectStatus {
    eventually(&format!("{name} drift {state:?}"), WAIT, || async {
        let s = env.api.get(name).await.ok()?.status?;
        (s.drift.as_ref()?.state == state).then_some(s)
    })
    .await
}

fn greeting(value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key("Greeting")
        .parameter_value(value)
        .build()
}

/// UpdateStack, as someone working behind Landform's back would.
async fn update_by_hand(env: &Env, stack: &str, template: &str, value: &str) {
    env.cfn
        .update_stack()
        .stack_name(stack)
        .template_body(template)
        .parameters(greeting(value))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn stacks_changed_out_of_band_are_reported_and_drift_only_changes_nothing() {
    let env = setup("cfn-drift").await;
    // A stack that something else deploys, watched by a DriftOnly object that does not own it.
    let watched = env.stack("watched");
    env.cfn
        .create_stack()
        .stack_name(&watched)
        .template_body(TEMPLATE_V1)
        .parameters(greeting("hello"))
        .send()
        .await
        .unwrap();
    let repo = publish_files(&env.ns, "greeting", "1", &[("template.yaml", TEMPLATE_V1)]);
    let drift_only = json!({"mode": "DriftOnly", "interval": "2s"});
    env.create("watched", &repo, "1", drift_only.clone()).await;
    env.create("absent", &repo, "1", drift_only).await;

    let s = wait_drift(&env, "watched", DriftState::InSync).await;
    let plan = s.plan.clone().unwrap();
    assert!(!plan.pending, "{plan:?}");
    let drifted = s.conditions.iter().find(|c| c.type_ == "Drifted").unwrap();
    assert_eq!(drifted.reason, "NoDrift");
    // moto has no DetectStackDrift; the condition says what was compared instead.
    assert!(
        drifted
            .message
            .contains("only the deployed template and parameters were compared"),
        "{}",
        drifted.message
    );

    // A stack that does not exist: the plan says what would be created, and nothing is.
    let s = wait_drift(&env, "absent", DriftState::Drifted).await;
    let plan = s.plan.unwrap();
    assert!(plan.pending);
    assert_eq!(
        (plan.summary.add, plan.resources[0].address.as_str()),
        (1, "Param")
    );
    assert_eq!(s.drift.unwrap().resources[0].address, env.stack("absent"));
    assert_eq!(stack_status(&env.cfn, &env.stack("absent")).await, None);

    // Updated behind Landform's back: another template (a queue more) and another parameter.
    update_by_hand(&env, &watched, &template_v2(), "changed by hand").await;
    let s = wait_drift(&env, "watched", DriftState::Drifted).await;
    let drift = s.drift.unwrap();
    let found: Vec<(&str, &str, Vec<String>)> = drift
        .resources
        .iter()
        .map(|r| (r.address.as_str(), r.action.as_str(), r.paths.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("(parameters)", "update", vec!["Parameters.Greeting".into()]),
            ("Queue", "create", vec![]),
        ]
    );
    assert_eq!(drift.total, 2);
    let status_json = serde_json::to_string(&env.api.get("watched").await.unwrap()).unwrap();
    assert!(!status_json.contains("changed by hand"), "{status_json}");
    let detected = eventually("a DriftDetected event", WAIT, || async {
        let notes = events(&env.client, &env.ns, "DriftDetected").await;
        let ours: Vec<String> = notes.into_iter().filter(|n| n.contains("Queue")).collect();
        (!ours.is_empty()).then_some(ours)
    })
    .await;
    assert!(
        detected[0].contains("changed outside Landform"),
        "{detected:?}"
    );
    let (ok, shown, err) = run(landform()
        .args(["drift", "cfnstack/watched", "-n", &env.ns])
        .env("KUBECONFIG", kubeconfig_path()));
    assert!(ok, "{err}");
    assert!(
        shown.contains("cfnstack/watched: Drifted")
            && shown.contains("  Queue (create)")
            && shown.contains("  (parameters) (update: Parameters.Greeting)")
            && shown.contains("2 resource(s) changed outside Landform."),
        "{shown}"
    );

    // DriftOnly changed nothing: the stack is as it was left, untagged, with no change sets.
    let stack = described(&env.cfn, &watched).await;
    assert_eq!(
        stack.parameters()[0].parameter_value(),
        Some("changed by hand")
    );
    assert!(stack.tags().is_empty(), "{:?}", stack.tags());
    assert_eq!(resources(&env.cfn, &watched).await, ["Param", "Queue"]);
    let change_sets = env
        .cfn
        .list_change_sets()
        .stack_name(&watched)
        .send()
        .await
        .unwrap();
    assert!(
        change_sets
            .summaries()
            .iter()
            .all(|c| c.stack_name() != Some(&watched)),
        "{change_sets:?}"
    );

    // Undone out of band: in sync again, and one DriftResolved event says so.
    update_by_hand(&env, &watched, TEMPLATE_V1, "hello").await;
    wait_drift(&env, "watched", DriftState::InSync).await;
    eventually("a DriftResolved event", WAIT, || async {
        let notes = events(&env.client, &env.ns, "DriftResolved").await;
        (!notes.is_empty()).then_some(())
    })
    .await;
}
