//! Benchmark, not a test (`scripts/bench-pods` runs it; the suite skips it): what a runner pod
//! adds to a run. A module of 1 MB with a provider from the local mirror is planned by
//! `BENCH_RUNS` objects (default 5) one after another, each plan in a runner pod run by the
//! test node in a real container. For each pod it prints the time from the pod's creation (seen by a watch) to the
//! runner's first log line, and from there to the runner starting OpenTofu.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use landform::api::Terraform;
use serde_json::json;
use support::node::NodeAgent;
use support::*;

const IMAGE: &str = "localhost/landform:test";
const MODULE: &str = "terraform {\n  required_providers {\n    random = { source = \"hashicorp/random\" }\n  }\n}\nresource \"random_pet\" \"p\" {}\noutput \"size\" { value = length(file(\"${path.module}/blob.txt\")) }\n";

/// 1 MiB of text that does not compress (a linear congruential sequence as hex).
fn blob() -> String {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut s = String::with_capacity(1 << 20);
    while s.len() < 1 << 20 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        s.push_str(&format!("{:016x}", x));
    }
    s
}

/// The timestamp of the first line of `log` that contains `what`.
fn logged(log: &str, what: &str) -> Option<jiff::Timestamp> {
    let line = log.lines().find(|l| l.contains(what))?;
    line.split_whitespace().next()?.parse().ok()
}

fn ms(d: jiff::Span) -> f64 {
    d.total(jiff::Unit::Millisecond).unwrap_or(f64::NAN)
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name:<34} p50 {:>7.0} ms   min {:>7.0} ms   max {:>7.0} ms",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    );
}

#[tokio::test]
#[ignore = "a benchmark: scripts/bench-pods"]
async fn runner_pod_overhead() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "bench-pods").await;
    let yaml = std::fs::read_to_string(repo_root().join("deploy/tenant/runner.yaml"))
        .unwrap()
        .replace("TENANT", &ns);
    apply_yaml(&client, &yaml, Some(&ns)).await.unwrap();
    let _controller =
        Controller::start(&client, &ns, &["--runner", "pod", "--runner-image", IMAGE]).await;
    let _agent = NodeAgent::start(client.clone(), &ns);

    // When each pod was created, as a watch sees it.
    let created: Arc<Mutex<HashMap<String, jiff::Timestamp>>> = Arc::default();
    let seen = created.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let watch = tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            if let watcher::Event::Apply(p) = event {
                let name = p.metadata.name.unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .entry(name)
                    .or_insert_with(jiff::Timestamp::now);
            }
        }
    });

    let blob = blob();
    let repo = publish_files(
        &ns,
        "big",
        "1",
        &[("main.tf", MODULE), ("blob.txt", blob.as_str())],
    );
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    // One object per plan, one after another: a plan that waits for approval is not planned
    // again, and runs in parallel would measure the machine's two cores instead.
    let mut plans = vec![];
    for i in 0..runs {
        let name = format!("bench-{i}");
        let obj: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1",
            "kind": "Terraform", "metadata": {"name": name},
            "spec": {"interval": "1h", "approvePlan": "",
                "source": {"oci": {"url": repo, "ref": {"tag": "1"}, "insecure": true}}}}))
        .unwrap();
        tfs.create(&PostParams::default(), &obj).await.unwrap();
        let run = eventually(
            &format!("{name}'s plan"),
            Duration::from_secs(180),
            || async {
                let s = tfs.get(&name).await.ok()?.status?;
                let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                (ready.reason == "AwaitingApproval").then_some(s.run?.name)
            },
        )
        .await;
        plans.push(run);
    }
    watch.abort();

    println!(
        "\nrunner pod overhead: {runs} plans of a 1 MiB module (provider from the local mirror), \
         each in its own pod, image {IMAGE}"
    );
    let (mut to_runner, mut to_engine) = (vec![], vec![]);
    for name in &plans {
        let log = std::fs::read_to_string(logs_dir().join(format!("pod-{ns}-{name}.log")))
            .unwrap_or_default();
        let created = created.lock().unwrap().get(name).copied();
        let (Some(created), Some(started), Some(engine)) = (
            created,
            logged(&log, "runner started"),
            logged(&log, "running the engine"),
        ) else {
            panic!("{name}: no creation time or runner log lines:\n{log}");
        };
        let (a, b) = (ms(started - created), ms(engine - started));
        println!(
            "  {name}: pod created → runner started {a:>6.0} ms; runner started → OpenTofu started {b:>6.0} ms"
        );
        to_runner.push(a);
        to_engine.push(b);
    }
    summary("pod created → runner started", to_runner);
    summary("runner started → OpenTofu started", to_engine);
}
