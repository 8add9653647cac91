//! Sharding, as Flux does it: each controller instance takes only the objects that match its
//! `--watch-label-selector` (by convention on the `sharding.fluxcd.io/key` label), watches only
//! the runner pods of those objects, and leads with a Lease of its own, so that shards neither
//! share work nor wait for each other. Pure.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The label Flux's sharding convention selects on.
pub const SHARD_KEY: &str = "sharding.fluxcd.io/key";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("--watch-label-selector {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// Which objects this instance takes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shard {
    selector: Option<String>,
    /// The label keys the selector mentions; runner pods and their ConfigMaps carry the
    /// object's labels of these keys, so that the shard's pod watch selects them too.
    keys: Vec<String>,
}

impl Shard {
    /// Every object (no sharding).
    pub fn all() -> Self {
        Self::default()
    }

    /// The objects matching `selector` (Kubernetes label-selector syntax). Only its shape is
    /// checked here; the API server judges the rest when the watches start.
    pub fn new(selector: Option<&str>) -> Result<Self, Error> {
        let Some(selector) = selector.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::all());
        };
        let invalid = |why| Error::Invalid(selector.to_string(), why);
        let mut keys = vec![];
        for requirement in
            requirements(selector).ok_or_else(|| invalid("unbalanced parentheses"))?
        {
            let requirement = requirement.trim();
            let key: String = requirement
                .trim_start_matches('!')
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
                .collect();
            if key.is_empty() || key.len() > 317 {
                return Err(invalid("each requirement starts with a label key"));
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(Self {
            selector: Some(selector.to_string()),
            keys,
        })
    }

    pub fn selector(&self) -> Option<&str> {
        self.selector.as_deref()
    }

    /// The selector for this shard's objects, together with `other` (a selector of its own).
    pub fn and(&self, other: &str) -> String {
        match &self.selector {
            Some(s) => format!("{other},{s}"),
            None => other.to_string(),
        }
    }

    /// The leader-election Lease: `base` without sharding; `base-KEY` for the selector
    /// `sharding.fluxcd.io/key=KEY`; otherwise `base-` and a hash of the selector. Every shard
    /// leads on its own, so a shard that stops holds up no other.
    pub fn lease_name(&self, base: &str) -> String {
        let Some(selector) = &self.selector else {
            return base.to_string();
        };
        let value = selector
            .strip_prefix(SHARD_KEY)
            .and_then(|rest| rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')))
            .map(str::trim)
            .filter(|v| is_name_part(v));
        match value {
            Some(v) => format!("{base}-{}", v.to_ascii_lowercase()),
            None => {
                let hash = Sha256::digest(selector.as_bytes());
                format!("{base}-{}", &hex::encode(hash)[..10])
            }
        }
    }

    /// The labels of `object_labels` that this shard selects on.
    pub fn labels_of(&self, object_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        object_labels
            .iter()
            .filter(|(k, _)| self.keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A lease name part: a DNS label's characters, short enough to append.
fn is_name_part(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 40
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-')
}

/// The selector's requirements: split on the commas outside `in (…)` / `notin (…)` sets.
fn requirements(selector: &str) -> Option<Vec<&str>> {
    let (mut depth, mut start, mut parts) = (0i32, 0, vec![]);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    (depth == 0).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_selector_is_every_object_and_the_plain_lease() {
        let s = Shard::new(None).unwrap();
        assert_eq!(s, Shard::new(Some("  ")).unwrap());
        assert_eq!(s.lease_name("landform-controller"), "landform-controller");
        assert_eq!(s.and("landform.dev/run"), "landform.dev/run");
        assert!(s.labels_of(&labels(&[(SHARD_KEY, "a")])).is_empty());
    }

    #[test]
    fn the_flux_convention_names_the_lease_after_the_shard() {
        let s = Shard::new(Some("sharding.fluxcd.io/key=Shard1")).unwrap();
        assert_eq!(s.lease_name("lf"), "lf-shard1");
        assert_eq!(
            s.and("landform.dev/run"),
            "landform.dev/run,sharding.fluxcd.io/key=Shard1"
        );
        let of = s.labels_of(&labels(&[(SHARD_KEY, "Shard1"), ("team", "a")]));
        assert_eq!(of, labels(&[(SHARD_KEY, "Shard1")]));
    }

    #[test]
    fn other_selectors_get_distinct_hashed_leases() {
        let default = Shard::new(Some("!sharding.fluxcd.io/key")).unwrap();
        let team = Shard::new(Some("team in (a,b), tier!=x")).unwrap();
        let (a, b) = (default.lease_name("lf"), team.lease_name("lf"));
        assert!(a.starts_with("lf-") && a.len() == 13, "{a}");
        assert_ne!(a, b);
        assert_eq!(team.keys, ["team", "tier"]);
        assert_eq!(default.keys, [SHARD_KEY]);
        let odd = Shard::new(Some("sharding.fluxcd.io/key=a.b")).unwrap();
        assert_ne!(odd.lease_name("lf"), "lf-a.b");
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["team in (a,b", "a)", ",x", "=x", "team=a,,b=c"] {
            assert!(Shard::new(Some(bad)).is_err(), "{bad}");
        }
    }
}
