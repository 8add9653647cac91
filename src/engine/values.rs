//! Variables and parameters: the spec's values, then those read from Secrets and ConfigMaps.
//! Next to the values goes what stands for them in a plan ID. Plan IDs are public (status,
//! change-set names), so a value read from a Secret is represented there by the Secret's name
//! and resourceVersion, never by the value: a hash of a weak secret could be guessed offline.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::Api;
use serde_json::{Map, Value, json};

use super::error::{RunError, kube_err};
use super::redact::Secrets;
use crate::api::{ValuesFrom, ValuesFromKind};
use crate::contract::RunSpec;

/// Resolved values, and their stand-ins for plan IDs (same keys).
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    pub values: Map<String, Value>,
    pub identity: Map<String, Value>,
}

impl Resolved {
    /// Values written in the spec: public already, so they stand for themselves.
    pub fn from_spec(base: Map<String, Value>) -> Self {
        Self {
            identity: base.clone(),
            values: base,
        }
    }

    /// Takes the keys of one source (`version`: its resourceVersion); later sources win.
    pub fn merge(
        &mut self,
        kind: ValuesFromKind,
        name: &str,
        version: &str,
        data: BTreeMap<String, String>,
    ) {
        for (key, value) in data {
            let stands_for = match kind {
                ValuesFromKind::Secret => {
                    json!({"secret": name, "key": key, "resourceVersion": version})
                }
                ValuesFromKind::ConfigMap => Value::String(value.clone()),
            };
            self.identity.insert(key.clone(), stands_for);
            self.values.insert(key, Value::String(value));
        }
    }
}

/// `base`, then each source of `from` (the spec field `field`) in order; later values win.
/// Values read from Secrets are remembered in `secrets`, to be kept out of results.
pub async fn resolve(
    client: &Client,
    spec: &RunSpec,
    base: Map<String, Value>,
    from: &[ValuesFrom],
    field: &'static str,
    secrets: &Secrets,
) -> Result<Resolved, RunError> {
    let mut resolved = Resolved::from_spec(base);
    let ns = &spec.namespace;
    for src in from {
        let found: Option<(String, BTreeMap<String, Vec<u8>>)> = match src.kind {
            ValuesFromKind::Secret => Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&src.name)
                .await
                .map_err(kube_err(format!("reading Secret {ns}/{}", src.name)))?
                .map(|s| {
                    let data = s.data.unwrap_or_default();
                    let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
                    (s.metadata.resource_version.unwrap_or_default(), data)
                }),
            ValuesFromKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&src.name)
                .await
                .map_err(kube_err(format!("reading ConfigMap {ns}/{}", src.name)))?
                .map(|c| {
                    let data = c.data.unwrap_or_default();
                    let data = data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                    (c.metadata.resource_version.unwrap_or_default(), data)
                }),
        };
        let Some((version, data)) = found else {
            if src.optional {
                continue;
            }
            return Err(RunError::ValuesSourceNotFound {
                field,
                kind: src.kind,
                namespace: ns.clone(),
                name: src.name.clone(),
            });
        };
        let mut texts = BTreeMap::new();
        for (key, value) in data {
            if src.keys.as_ref().is_some_and(|keys| !keys.contains(&key)) {
                continue;
            }
            let text = String::from_utf8(value).map_err(|_| {
                RunError::Input(format!(
                    "{:?} {}: key {key} is not UTF-8 text",
                    src.kind, src.name
                ))
            })?;
            if src.kind == ValuesFromKind::Secret {
                secrets.add(&text);
            }
            texts.insert(key, text);
        }
        resolved.merge(src.kind, &src.name, &version, texts);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_values_never_stand_in_plan_ids_but_their_versions_do() {
        let mut base = Map::new();
        base.insert("region".into(), json!("eu-west-1"));
        base.insert("password".into(), json!("from the spec"));
        let mut r = Resolved::from_spec(base);
        r.merge(
            ValuesFromKind::ConfigMap,
            "settings",
            "7",
            data(&[("size", "3")]),
        );
        r.merge(
            ValuesFromKind::Secret,
            "db",
            "42",
            data(&[("password", "hunter2")]),
        );
        assert_eq!(r.values["password"], json!("hunter2"), "later sources win");
        assert_eq!(r.values["size"], json!("3"));
        assert_eq!(r.identity["region"], json!("eu-west-1"));
        assert_eq!(r.identity["size"], json!("3"));
        let shown = serde_json::to_string(&r.identity).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            r.identity["password"],
            json!({"secret": "db", "key": "password", "resourceVersion": "42"})
        );

        // A new value of the Secret is a new resourceVersion, so a new plan ID.
        let mut changed = Resolved::from_spec(Map::new());
        changed.merge(
            ValuesFromKind::Secret,
            "db",
            "43",
            data(&[("password", "hunter2")]),
        );
        assert_ne!(changed.identity["password"], r.identity["password"]);

        // A ConfigMap that overrides a Secret's key stands for its (public) value again.
        r.merge(
            ValuesFromKind::ConfigMap,
            "override",
            "8",
            data(&[("password", "public")]),
        );
        assert_eq!(r.identity["password"], json!("public"));
    }
}
