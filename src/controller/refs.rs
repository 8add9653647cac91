//! Who refers to what: the objects that use each Flux source and that depend on each object,
//! kept up to date as objects are reconciled. When a source or a dependency changes, its
//! watch asks this index for the objects to wake, at a cost that does not grow with the
//! number of objects (scanning every object on every change made taking in N objects cost
//! N² as the dependency watch saw each of them arrive).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::api::CommonSpec;

/// An object that refers: its kind, namespace and name.
pub type Referrer = (&'static str, String, String);

/// What an object refers to: a kind (a Flux source kind such as `GitRepository`, or a
/// Landform kind for a dependency), a namespace and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Default)]
struct Inner {
    by_target: HashMap<Target, HashSet<Referrer>>,
    by_referrer: HashMap<Referrer, Vec<Target>>,
}

#[derive(Default)]
pub struct Refs {
    inner: Mutex<Inner>,
}

/// The source and the dependencies `spec` (of an object of `kind` in `ns`) refers to.
pub fn targets(kind: &str, ns: &str, spec: &CommonSpec) -> Vec<Target> {
    let source = spec.source_ref.iter().map(|r| Target {
        kind: crate::source::flux::api_resource(r.kind).kind,
        namespace: r.namespace.clone().unwrap_or_else(|| ns.to_string()),
        name: r.name.clone(),
    });
    let deps = spec.depends_on.iter().map(|d| Target {
        kind: kind.to_string(),
        namespace: d.namespace.clone().unwrap_or_else(|| ns.to_string()),
        name: d.name.clone(),
    });
    source.chain(deps).collect()
}

impl Refs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update below leaves both maps consistent before anything can panic.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what `referrer` refers to now, replacing what it referred to before.
    pub fn set(&self, referrer: Referrer, targets: Vec<Target>) {
        let mut inner = self.lock();
        if inner.by_referrer.get(&referrer) == Some(&targets) {
            return;
        }
        Self::drop_referrer(&mut inner, &referrer);
        for t in &targets {
            inner
                .by_target
                .entry(t.clone())
                .or_default()
                .insert(referrer.clone());
        }
        if !targets.is_empty() {
            inner.by_referrer.insert(referrer, targets);
        }
    }

    /// Forgets `referrer` (it is gone).
    pub fn remove(&self, referrer: &Referrer) {
        Self::drop_referrer(&mut self.lock(), referrer);
    }

    fn drop_referrer(inner: &mut Inner, referrer: &Referrer) {
        for t in inner.by_referrer.remove(referrer).unwrap_or_default() {
            if let Some(set) = inner.by_target.get_mut(&t) {
                set.remove(referrer);
                if set.is_empty() {
                    inner.by_target.remove(&t);
                }
            }
        }
    }

    /// The namespaces and names of the objects of `kind` that refer to `target`.
    pub fn referrers(&self, kind: &str, target: &Target) -> Vec<(String, String)> {
        self.lock()
            .by_target
            .get(target)
            .into_iter()
            .flatten()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, ns, name)| (ns.clone(), name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> CommonSpec {
        serde_json::from_value(v).unwrap()
    }

    fn target(kind: &str, ns: &str, name: &str) -> Target {
        Target {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn finds_the_objects_that_refer_and_forgets_old_references() {
        let refs = Refs::default();
        let app = ("Terraform", "team".to_string(), "app".to_string());
        let s = spec(serde_json::json!({"interval": "1m",
            "sourceRef": {"kind": "GitRepository", "name": "infra"},
            "dependsOn": [{"name": "network"}, {"name": "dns", "namespace": "shared"}]}));
        refs.set(app.clone(), targets("Terraform", "team", &s));
        let found = |t: &Target| refs.referrers("Terraform", t);
        let app_ref = vec![("team".to_string(), "app".to_string())];
        assert_eq!(found(&target("GitRepository", "team", "infra")), app_ref);
        assert_eq!(found(&target("Terraform", "team", "network")), app_ref);
        assert_eq!(found(&target("Terraform", "shared", "dns")), app_ref);
        assert!(found(&target("Terraform", "team", "dns")).is_empty());
        assert!(
            refs.referrers(
                "CloudFormationStack",
                &target("Terraform", "team", "network")
            )
            .is_empty()
        );

        // The spec changes: the old references go.
        let s = spec(serde_json::json!({"interval": "1m",
            "sourceRef": {"kind": "OCIRepository", "name": "infra"}}));
        refs.set(app.clone(), targets("Terraform", "team", &s));
        assert!(found(&target("GitRepository", "team", "infra")).is_empty());
        assert!(found(&target("Terraform", "team", "network")).is_empty());
        assert_eq!(found(&target("OCIRepository", "team", "infra")), app_ref);

        refs.remove(&app);
        assert!(found(&target("OCIRepository", "team", "infra")).is_empty());
        assert!(refs.lock().by_target.is_empty() && refs.lock().by_referrer.is_empty());
    }
}
