//! Prometheus metrics. Labels are bounded: kind, namespace and a static reason, never an error
//! string or an object name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: &'static str,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub kind: &'static str,
    pub namespace: String,
    /// plan, apply or destroy.
    pub operation: &'static str,
    /// succeeded, failed or lost.
    pub result: &'static str,
}

/// One object. Bounded by the number of objects, for per-object drift alerts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectNameLabels {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftCheckLabels {
    pub kind: &'static str,
    pub namespace: String,
    /// in_sync or drifted.
    pub result: &'static str,
}

/// An HTTP method of a Kubernetes API request (a watch is a GET).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Family<ObjectLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub runs: Family<RunLabels, Counter>,
    pub drifted_resources: Family<ObjectNameLabels, Gauge>,
    pub drift_checks: Family<DriftCheckLabels, Counter>,
    pub drift_last_check: Family<ObjectNameLabels, Gauge>,
    pub leader: Gauge,
    pub api_requests: Family<MethodLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("landform");
        let reconciliations = Family::<ObjectLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let leader = Gauge::default();
        let api_requests = Family::<MethodLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests this controller sent to the Kubernetes API, by HTTP method",
            api_requests.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        let drifted_resources = Family::<ObjectNameLabels, Gauge>::default();
        let drift_checks = Family::<DriftCheckLabels, Counter>::default();
        let drift_last_check = Family::<ObjectNameLabels, Gauge>::default();
        registry.register(
            "drifted_resources",
            "Resources found changed outside OpenTofu at the last drift check, per object",
            drifted_resources.clone(),
        );
        registry.register(
            "drift_checks",
            "Drift checks, by kind, namespace and result",
            drift_checks.clone(),
        );
        registry.register(
            "drift_last_check_timestamp_seconds",
            "When the last drift check of an object finished (Unix time)",
            drift_last_check.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciliations, by kind and namespace",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciliations, by kind, namespace and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation, by kind",
            duration.clone(),
        );
        registry.register(
            "runs",
            "Finished runs, by kind, namespace, operation and result",
            runs.clone(),
        );
        registry.register(
            "leader",
            "1 while this controller instance holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            runs,
            drifted_resources,
            drift_checks,
            drift_last_check,
            leader,
            api_requests,
        }
    }
}

impl Metrics {
    /// Counts one Kubernetes API request.
    pub fn count_request(&self, method: &::http::Method) {
        let method = match *method {
            ::http::Method::GET => "GET",
            ::http::Method::POST => "POST",
            ::http::Method::PUT => "PUT",
            ::http::Method::PATCH => "PATCH",
            ::http::Method::DELETE => "DELETE",
            _ => "other",
        };
        self.api_requests
            .get_or_create(&MethodLabels { method })
            .inc();
    }

    /// Drops the series of a deleted object, so that they do not outlive it.
    pub fn forget(&self, kind: &'static str, namespace: &str, name: &str) {
        let object = ObjectNameLabels {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        };
        self.drifted_resources.remove(&object);
        self.drift_last_check.remove(&object);
    }

    pub fn record_drift(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        drifted_resources: u32,
        drifted: bool,
    ) {
        let object = ObjectNameLabels {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        };
        self.drifted_resources
            .get_or_create(&object)
            .set(i64::from(drifted_resources));
        self.drift_last_check
            .get_or_create(&object)
            .set(jiff::Timestamp::now().as_second());
        let result = if drifted { "drifted" } else { "in_sync" };
        self.drift_checks
            .get_or_create(&DriftCheckLabels {
                kind,
                namespace: namespace.into(),
                result,
            })
            .inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
