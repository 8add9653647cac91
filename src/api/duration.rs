//! Durations written the way Kubernetes and Flux users write them: `30s`, `10m`, `1h30m`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A positive duration such as `30s`, `10m`, `1h30m` or `500ms`.
///
/// The CRD schema validates the format, so a stored object always parses; [`Duration::parse`]
/// is still total, for objects written before a schema change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

/// The schema rule, shared by the CRD and by [`Duration::parse`]'s tests.
const CEL_RULE: &str = r"self.matches('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$')";

impl Duration {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Parses `1h30m`, `45s`, `1.5h`, `250ms`. Units: h, m, s, ms.
    pub fn parse(&self) -> Result<std::time::Duration, String> {
        parse_go_duration(&self.0)
    }

    /// The parsed duration, or `fallback` when it does not parse.
    pub fn or(&self, fallback: std::time::Duration) -> std::time::Duration {
        self.parse().unwrap_or(fallback)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema(vec![])
    }
}

/// A duration's schema: a short string in the format of [`CEL_RULE`], and `extra` rules.
fn schema(extra: Vec<serde_json::Value>) -> Schema {
    let mut rules = vec![serde_json::json!({
        "rule": CEL_RULE,
        "message": "must be a positive duration made of numbers with the units h, m, s or ms, for example 30s, 10m or 1h30m",
    })];
    rules.extend(extra);
    json_schema!({
        "type": "string",
        "maxLength": 32,
        "x-kubernetes-validations": rules,
    })
}

/// How often something happens: a [`Duration`] of at least one second, so that no object
/// can keep the controller planning in a loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Interval(pub Duration);

impl Interval {
    pub fn new(s: impl Into<String>) -> Self {
        Self(Duration::new(s))
    }

    pub fn parse(&self) -> Result<std::time::Duration, String> {
        self.0.parse()
    }

    pub fn or(&self, fallback: std::time::Duration) -> std::time::Duration {
        self.0.or(fallback)
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for Interval {
    fn schema_name() -> Cow<'static, str> {
        "Interval".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The minimum is checked only on a well-formed duration; the format rule speaks for
        // the others.
        schema(vec![serde_json::json!({
            "rule": format!("!{CEL_RULE} || duration(self) >= duration('1s')"),
            "message": "must be at least 1s",
        })])
    }
}

fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 30s, 10m or 1h30m");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return Err(bad());
        };
        total += value * unit;
        rest = &rest[len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(Duration::new("30s").parse(), Ok(Std::from_secs(30)));
        assert_eq!(Duration::new("10m").parse(), Ok(Std::from_secs(600)));
        assert_eq!(Duration::new("1h30m").parse(), Ok(Std::from_secs(5400)));
        assert_eq!(Duration::new("250ms").parse(), Ok(Std::from_millis(250)));
        assert_eq!(Duration::new("1.5h").parse(), Ok(Std::from_secs(5400)));
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for bad in ["", "-5m", "10", "m", "5d", "1h-2m", "abc", "1.2.3s"] {
            assert!(Duration::new(bad).parse().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn schema_carries_a_readable_rule() {
        let schema = serde_json::to_value(schemars::schema_for!(Duration)).unwrap();
        assert_eq!(schema["x-kubernetes-validations"][0]["rule"], CEL_RULE);
        assert!(
            schema["x-kubernetes-validations"][0]["message"]
                .as_str()
                .unwrap()
                .contains("positive duration")
        );
    }
}
