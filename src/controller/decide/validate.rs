//! The validate step: what the schema cannot check, and the timing fields parsed. Its typed
//! error's static reason becomes the condition reason, the event reason and the metric label.

use std::time::Duration;

use crate::api::{CommonSpec, SourceKind};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("spec.{field}: {problem}")]
    InvalidSpec {
        field: &'static str,
        problem: String,
    },

    #[error(
        "spec.sourceRef points to {kind:?} {namespace}/{name} in another namespace; the controller refuses cross-namespace references unless it runs with --allow-cross-namespace-refs"
    )]
    CrossNamespaceRef {
        kind: SourceKind,
        namespace: String,
        name: String,
    },

    #[error(
        "spec.dependsOn names {namespace}/{name} in another namespace; the controller refuses cross-namespace references unless it runs with --allow-cross-namespace-refs"
    )]
    CrossNamespaceDependency { namespace: String, name: String },

    #[error("spec.dependsOn names this object itself")]
    DependsOnSelf,
}

impl ValidationError {
    /// The condition reason, event reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } | Self::DependsOnSelf => "InvalidSpec",
            Self::CrossNamespaceRef { .. } | Self::CrossNamespaceDependency { .. } => {
                "CrossNamespaceRefNotAllowed"
            }
        }
    }

    /// Whether retrying can help without a spec change.
    pub fn retryable(&self) -> bool {
        match self {
            Self::InvalidSpec { .. }
            | Self::DependsOnSelf
            | Self::CrossNamespaceRef { .. }
            | Self::CrossNamespaceDependency { .. } => false,
        }
    }
}

/// Timing settings of one object, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub retry_interval: Duration,
    pub max_retries: u32,
}

pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 10;

/// Checks what the schema cannot, and parses the timing fields. Pure.
pub fn validate(
    spec: &CommonSpec,
    namespace: &str,
    name: &str,
    allow_cross_namespace_refs: bool,
) -> Result<Timing, ValidationError> {
    let invalid = |field, problem| ValidationError::InvalidSpec { field, problem };
    let interval = spec.interval.parse().map_err(|p| invalid("interval", p))?;
    if interval.is_zero() {
        return Err(invalid("interval", "must be longer than zero".into()));
    }
    let retry_interval = match &spec.retry_interval {
        Some(d) => d.parse().map_err(|p| invalid("retryInterval", p))?,
        None => DEFAULT_RETRY_INTERVAL,
    };
    if let Some(d) = &spec.timeout {
        d.parse().map_err(|p| invalid("timeout", p))?;
    }
    if let Some(r) = &spec.source_ref {
        let target = r.namespace.as_deref().unwrap_or(namespace);
        if target != namespace && !allow_cross_namespace_refs {
            return Err(ValidationError::CrossNamespaceRef {
                kind: r.kind,
                namespace: target.to_string(),
                name: r.name.clone(),
            });
        }
    }
    for d in &spec.depends_on {
        let target = d.namespace.as_deref().unwrap_or(namespace);
        if d.name == name && target == namespace {
            return Err(ValidationError::DependsOnSelf);
        }
        // The same rule as for sourceRef: a tenant may not wait on (and so read the state of)
        // another namespace's objects unless the platform allows it.
        if target != namespace && !allow_cross_namespace_refs {
            return Err(ValidationError::CrossNamespaceDependency {
                namespace: target.to_string(),
                name: d.name.clone(),
            });
        }
    }
    Ok(Timing {
        interval,
        retry_interval: retry_interval.max(Duration::from_secs(1)),
        max_retries: spec.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DependsOn, SourceRef};

    fn spec() -> CommonSpec {
        serde_json::from_value(serde_json::json!({
            "interval": "10m",
            "sourceRef": {"kind": "GitRepository", "name": "infra"},
        }))
        .unwrap()
    }

    #[test]
    fn parses_timing_with_defaults() {
        let t = validate(&spec(), "ns", "obj", false).unwrap();
        assert_eq!(t.interval, Duration::from_secs(600));
        assert_eq!(t.retry_interval, DEFAULT_RETRY_INTERVAL);
        assert_eq!(t.max_retries, DEFAULT_MAX_RETRIES);
    }

    #[test]
    fn refuses_cross_namespace_refs_unless_allowed() {
        let mut s = spec();
        s.source_ref = Some(SourceRef {
            kind: SourceKind::GitRepository,
            name: "infra".into(),
            namespace: Some("flux-system".into()),
        });
        let err = validate(&s, "ns", "obj", false).unwrap_err();
        assert_eq!(err.reason(), "CrossNamespaceRefNotAllowed");
        assert!(err.to_string().contains("flux-system/infra"));
        assert!(!err.retryable());
        assert!(validate(&s, "ns", "obj", true).is_ok());
    }

    #[test]
    fn refuses_depending_on_itself() {
        let mut s = spec();
        s.depends_on = vec![DependsOn {
            name: "obj".into(),
            namespace: None,
        }];
        assert_eq!(
            validate(&s, "ns", "obj", false).unwrap_err().reason(),
            "InvalidSpec"
        );
        s.depends_on[0].namespace = Some("other".into());
        assert!(validate(&s, "ns", "obj", true).is_ok());
    }

    #[test]
    fn refuses_cross_namespace_dependencies_unless_allowed() {
        let mut s = spec();
        s.depends_on = vec![DependsOn {
            name: "net".into(),
            namespace: Some("shared".into()),
        }];
        let err = validate(&s, "ns", "obj", false).unwrap_err();
        assert_eq!(err.reason(), "CrossNamespaceRefNotAllowed");
        assert!(err.to_string().contains("shared/net"), "{err}");
        assert!(!err.retryable());
        assert!(validate(&s, "ns", "obj", true).is_ok());
        s.depends_on[0].namespace = Some("ns".into());
        assert!(validate(&s, "ns", "obj", false).is_ok());
    }

    #[test]
    fn reports_an_unparsable_duration() {
        let mut s = spec();
        s.interval = crate::api::Interval::new("5 minutes");
        let err = validate(&s, "ns", "obj", false).unwrap_err();
        assert!(err.to_string().starts_with("spec.interval:"), "{err}");
    }
}
