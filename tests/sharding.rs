//! Sharding: three controllers in one namespace (shard `blue`, shard `green`, and the default
//! shard that takes every unlabelled object) each take only their own objects, lead with a
//! Lease of their own, and one that stops holds up no other.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use landform::api::Terraform;
use serde_json::json;
use support::tf::{WAIT, tenant};
use support::*;

const KEY: &str = "sharding.fluxcd.io/key";

/// An object whose Flux source does not exist: each shard answers it at once, without a run.
async fn create(api: &Api<Terraform>, name: &str, shard: Option<&str>) {
    let labels = shard.map_or(json!({}), |s| json!({ KEY: s }));
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1",
        "kind": "Terraform", "metadata": {"name": name, "labels": labels},
        "spec": {"interval": "1h",
            "sourceRef": {"kind": "OCIRepository", "name": "not-there"}}}))
    .unwrap();
    api.create(&PostParams::default(), &tf).await.unwrap();
}

/// The controller instances that recorded events about `name`.
async fn reporters(client: &kube::Client, ns: &str, name: &str) -> BTreeSet<String> {
    events_about(client, ns, name)
        .await
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect()
}

/// Waits until `name` is answered (Ready says its source is missing), then returns who
/// recorded events about it.
async fn answered_by(
    client: &kube::Client,
    api: &Api<Terraform>,
    ns: &str,
    name: &str,
) -> BTreeSet<String> {
    eventually(&format!("{name} answered"), WAIT, || async {
        let s = api.get(name).await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        let who = reporters(client, ns, name).await;
        (ready.reason == "SourceNotFound" && !who.is_empty()).then_some(who)
    })
    .await
}

#[tokio::test]
async fn objects_land_only_on_their_shard_and_a_stopped_shard_stalls_no_other() {
    let (client, ns, tfs) = tenant("shards").await;
    let shards = [
        ("blue", format!("{KEY}=blue")),
        ("green", format!("{KEY}=green")),
        ("default", format!("!{KEY}")),
    ];
    let mut controllers = vec![];
    for (shard, selector) in &shards {
        let identity = format!("{shard}-{ns}");
        let c = Controller::start_as(
            &client,
            &ns,
            &identity,
            &["--watch-label-selector", selector],
        )
        .await;
        controllers.push(c);
    }
    let id = |shard: &str| BTreeSet::from([format!("{shard}-{ns}")]);

    let objects = [
        ("blue-1", Some("blue"), "blue"),
        ("blue-2", Some("blue"), "blue"),
        ("green-1", Some("green"), "green"),
        ("plain-1", None, "default"),
        ("plain-2", None, "default"),
    ];
    for (name, label, _) in objects {
        create(&tfs, name, label).await;
    }
    for (name, _, shard) in objects {
        let who = answered_by(&client, &tfs, &ns, name).await;
        assert_eq!(who, id(shard), "{name} was taken by {who:?}");
    }

    // Each shard leads on its own Lease: blue and green by name, the default by a hash of
    // its selector.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holders: BTreeSet<(String, String)> = leases
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|l| Some((l.metadata.name?, l.spec?.holder_identity?)))
        .collect();
    assert_eq!(holders.len(), 3, "{holders:?}");
    for (shard, _) in &shards[..2] {
        let lease = (
            format!("landform-controller-{shard}"),
            format!("{shard}-{ns}"),
        );
        assert!(holders.contains(&lease), "{lease:?} not in {holders:?}");
    }

    // Blue stops; green and the default go on with new objects, created after blue's.
    assert_eq!(controllers[0].terminate(), Some(0));
    create(&tfs, "blue-3", Some("blue")).await;
    create(&tfs, "green-2", Some("green")).await;
    create(&tfs, "plain-3", None).await;
    assert_eq!(
        answered_by(&client, &tfs, &ns, "green-2").await,
        id("green")
    );
    assert_eq!(
        answered_by(&client, &tfs, &ns, "plain-3").await,
        id("default")
    );
    // The objects after it were answered; blue's own waits for its shard, untouched.
    let blue3 = tfs.get("blue-3").await.unwrap();
    assert!(blue3.status.is_none(), "{:?}", blue3.status);
    assert!(blue3.metadata.finalizers.is_none());
    assert!(reporters(&client, &ns, "blue-3").await.is_empty());

    // Blue comes back and takes it up.
    let _blue = Controller::start_as(
        &client,
        &ns,
        &format!("blue-{ns}"),
        &["--watch-label-selector", &shards[0].1],
    )
    .await;
    assert_eq!(answered_by(&client, &tfs, &ns, "blue-3").await, id("blue"));
    for (name, _, shard) in objects {
        assert_eq!(reporters(&client, &ns, name).await, id(shard), "{name}");
    }
}

#[tokio::test]
async fn a_selector_the_api_server_refuses_stops_the_controller_with_its_answer() {
    let (client, ns, _) = tenant("shards-bad").await;
    let mut c = Controller::start_as(
        &client,
        &ns,
        &format!("bad-{ns}"),
        &["--watch-label-selector", "team=a b"],
    )
    .await;
    let code = c.exited_within(std::time::Duration::from_secs(60));
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {}", c.logs());
    assert!(
        c.logs()
            .contains("--watch-label-selector \"team=a b\" is refused by the API server"),
        "{}",
        c.logs()
    );
}
