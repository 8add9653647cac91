//! Benchmark, not a test (`scripts/bench-scale` runs it; the suite skips it): how soon a new
//! revision of a Flux source becomes a run and a recorded plan. Flux's real source-controller
//! publishes `BENCH_RUNS` new revisions (default 5) of a trivial module, one after another;
//! for each, this prints the time from the moment the OCIRepository is seen Ready with the
//! new revision to the object's plan run being started, and to the plan being recorded. All
//! three are seen the same way (the API server, read every 20 ms), so they compare fairly.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use landform::api::Terraform;
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(120);
const EVERY: Duration = Duration::from_millis(20);

fn push(dir: &std::path::Path, url: &str) {
    let (ok, _, err) = run(landform().args(["push", dir.to_str().unwrap(), url, "--insecure"]));
    assert!(ok, "{err}");
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name:<40} p50 {:>6.0} ms   min {:>6.0} ms   max {:>6.0} ms",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    );
}

/// The revision of the source's artifact, once it is Ready with one.
async fn source_revision(api: &Api<DynamicObject>) -> Option<String> {
    let obj = api.get("infra").await.ok()?;
    match landform::source::flux::state(obj.data.get("status")) {
        landform::source::flux::State::Artifact(a) => Some(a.revision),
        _ => None,
    }
}

#[tokio::test]
#[ignore]
async fn a_new_flux_revision_to_a_started_and_a_recorded_plan() {
    landform::tls::init();
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "latency").await;
    let _controller = Controller::start(&client, &ns, &[]).await;
    let registry = testenv()["LANDFORM_TEST_REGISTRY"].clone();
    let module = tempfile::tempdir().unwrap();
    let url = format!("oci://{registry}/{ns}/mod:stable");
    std::fs::write(
        module.path().join("main.tf"),
        "output \"v\" { value = 0 }\n",
    )
    .unwrap();
    push(module.path(), &url);

    let repos: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &landform::source::flux::api_resource(landform::api::SourceKind::OciRepository),
    );
    let repo: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository", "metadata": {"name": "infra"},
        "spec": {"interval": "10m", "url": format!("oci://{registry}/{ns}/mod"), "ref": {"tag": "stable"}, "insecure": true}
    }))
    .unwrap();
    repos.create(&Default::default(), &repo).await.unwrap();
    let tfs: Api<Terraform> = Api::namespaced(client.clone(), &ns);
    let tf: Terraform = serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1", "kind": "Terraform", "metadata": {"name": "net"},
        "spec": {"interval": "10m", "sourceRef": {"kind": "OCIRepository", "name": "infra"}}})).unwrap();
    tfs.create(&Default::default(), &tf).await.unwrap();
    let mut revision = eventually("the first plan", WAIT, || async {
        let s = tfs.get("net").await.ok()?.status?;
        let planned = s.plan?.revision?;
        (Some(&planned) == source_revision(&repos).await.as_ref()).then_some(planned)
    })
    .await;

    let (mut to_run, mut to_plan, mut plan_run) = (vec![], vec![], vec![]);
    for i in 1..=runs {
        let last_run = tfs
            .get("net")
            .await
            .unwrap()
            .status
            .unwrap()
            .run
            .map(|r| r.name);
        std::fs::write(
            module.path().join("main.tf"),
            format!("output \"v\" {{ value = {i} }}\n"),
        )
        .unwrap();
        push(module.path(), &url);
        // Fetched now rather than at the source's interval.
        request_reconcile(&repos, "infra").await;
        let deadline = Instant::now() + WAIT;
        let (mut ready, mut started, mut planned) = (None, None, None);
        while planned.is_none() {
            assert!(Instant::now() < deadline, "revision {i} was never planned");
            if ready.is_none()
                && let Some(r) = source_revision(&repos).await
                && r != revision
            {
                ready = Some((Instant::now(), r));
            }
            let s = tfs.get("net").await.unwrap().status.unwrap_or_default();
            let run = s.run.as_ref().map(|r| r.name.clone());
            if started.is_none() && run.is_some() && run != last_run {
                started = Some(Instant::now());
            }
            if let (Some((_, r)), Some(p)) = (&ready, s.plan.as_ref())
                && p.revision.as_ref() == Some(r)
            {
                planned = Some(Instant::now());
            }
            tokio::time::sleep(EVERY).await;
        }
        let (ready_at, new) = ready.unwrap();
        let (started, planned) = (started.unwrap(), planned.unwrap());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let run_ms = ms(started.saturating_duration_since(ready_at));
        let plan_ms = ms(planned.saturating_duration_since(ready_at));
        println!(
            "revision {i}: source Ready → plan run started {run_ms:>6.0} ms, → plan recorded {plan_ms:>6.0} ms"
        );
        to_run.push(run_ms);
        to_plan.push(plan_ms);
        plan_run.push(ms(planned.saturating_duration_since(started)));
        revision = new;
    }
    summary("source Ready → plan run started", to_run);
    summary("source Ready → plan recorded", to_plan);
    summary("plan run started → recorded (the run)", plan_run);
}
