//! Kubernetes Events about the objects. Landform records an event only when something changes
//! (a condition reason, a revision), so each one is worth keeping; kube's Recorder would fold
//! events with the same reason into one series and keep only the first note. The one
//! exception is the same failure again (a retry that fails as the last one did): that is
//! counted in the series of the event that reported it, as Kubernetes' own series are.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

pub const CONTROLLER: &str = "landform-controller";

/// Series remembered at most; past it they are forgotten (the next repeat starts a new event).
const MAX_SERIES: usize = 20_000;

/// The last event of one reason about one object, to count repeats in.
struct Series {
    name: String,
    count: i32,
}

pub struct Recorder {
    client: Client,
    instance: String,
    /// By the object's UID and the reason.
    series: Mutex<HashMap<(String, String), Series>>,
}

impl Recorder {
    pub fn new(client: Client, instance: String) -> Self {
        Self {
            client,
            instance,
            series: Mutex::default(),
        }
    }

    /// Records an event about `regarding`: a new one, or with `repeat`, one more in the series
    /// of the last event of this reason (a new one if there is none to count in).
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
        repeat: bool,
    ) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            reason.to_string(),
        );
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
        let known = self.lock().get(&key).map(|s| (s.name.clone(), s.count + 1));
        if let (true, Some((name, count))) = (repeat, known) {
            let patch = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Some(s) = self.lock().get_mut(&key) {
                        s.count = count;
                    }
                    return Ok(());
                }
                // Expired or deleted: a new event starts a new series.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(CONTROLLER),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".into()),
            reason: Some(reason.into()),
            note: Some(truncate(note, 1000)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            regarding: Some(regarding),
            reporting_controller: Some(CONTROLLER.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        // Only failures repeat; remembering every event would cost memory per object.
        if !warning {
            return Ok(());
        }
        let mut series = self.lock();
        if series.len() >= MAX_SERIES {
            series.clear();
        }
        series.insert(key, Series { name, count: 1 });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Series>> {
        // A panic elsewhere while holding it leaves nothing half-written worth refusing.
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// At most `max` bytes, cut on a character boundary (the API limits notes to 1 kB).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let t = truncate(&long, 1000);
        assert!(t.len() <= 1000 && t.ends_with('…'));
    }
}
