//! The resolve step: from `spec.source` / `spec.sourceRef` to an immutable artifact reference
//! (a digest), without downloading the artifact.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};

use super::context::Context;
use crate::api::{ArtifactStatus, CommonSpec, OciSource, SourceRef};
use crate::source::credentials::{self, Basic};
use crate::source::fetch::FetchError;
use crate::source::flux;
use crate::source::oci::Repository;

/// What resolving found.
#[derive(Debug)]
pub enum Resolution {
    Resolved(ArtifactStatus),
    /// Not an error: the source is not there or not ready yet. Watches on the source bring the
    /// object back as soon as it changes; `reason` and `message` say what we wait for.
    Waiting {
        reason: &'static str,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "the registry credentials Secret {name:?} (spec.source.oci.secretRef) does not exist in namespace {namespace}"
    )]
    CredentialsNotFound { namespace: String, name: String },
    #[error("the registry credentials Secret {name:?} cannot be used: {problem}")]
    CredentialsInvalid { name: String, problem: String },
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl SourceError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CredentialsNotFound { .. } => "CredentialsNotFound",
            Self::CredentialsInvalid { .. } => "CredentialsInvalid",
            Self::Api { .. } => "SourceUnavailable",
            Self::Fetch(e) => e.reason().as_str(),
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::Fetch(e) => e.retryable(),
            _ => true,
        }
    }
}

pub async fn resolve(
    spec: &CommonSpec,
    namespace: &str,
    ctx: &Context,
) -> Result<Resolution, SourceError> {
    match (&spec.source_ref, &spec.source) {
        (Some(r), _) => resolve_flux(r, namespace, ctx).await,
        (None, Some(s)) => resolve_oci(&s.oci, namespace, ctx).await,
        // The schema requires exactly one; an object stored before that rule still gets an answer.
        (None, None) => {
            Err(FetchError::InvalidSource("set spec.sourceRef or spec.source".into()).into())
        }
    }
}

async fn registry_credentials(
    oci: &OciSource,
    registry: &str,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<Basic>, SourceError> {
    let Some(secret_ref) = &oci.secret_ref else {
        return Ok(None);
    };
    let name = secret_ref.name.clone();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&name)
        .await
        .map_err(|source| SourceError::Api {
            what: format!("Secret {namespace}/{name}"),
            source,
        })?
        .ok_or_else(|| SourceError::CredentialsNotFound {
            namespace: namespace.into(),
            name: name.clone(),
        })?;
    let invalid = |problem: String| SourceError::CredentialsInvalid {
        name: name.clone(),
        problem,
    };
    let config = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .ok_or_else(|| invalid("it has no .dockerconfigjson key (create it with kubectl create secret docker-registry)".into()))?;
    match credentials::lookup(&config.0, registry).map_err(|e| invalid(e.to_string()))? {
        Some(basic) => Ok(Some(basic)),
        None => Err(invalid(format!("it has no credentials for {registry}"))),
    }
}

async fn resolve_oci(
    oci: &OciSource,
    namespace: &str,
    ctx: &Context,
) -> Result<Resolution, SourceError> {
    let repo = Repository::parse(&oci.url)?;
    let creds = registry_credentials(oci, &repo.registry, namespace, ctx).await?;
    let resolved = ctx
        .registries
        .get(oci.insecure, creds)
        .resolve(&repo, oci.reference.as_ref())
        .await?;
    Ok(Resolution::Resolved(ArtifactStatus {
        url: repo.url(),
        revision: resolved.revision,
        digest: resolved.digest,
    }))
}

async fn resolve_flux(
    r: &SourceRef,
    namespace: &str,
    ctx: &Context,
) -> Result<Resolution, SourceError> {
    let ns = r.namespace.as_deref().unwrap_or(namespace);
    let ar = flux::api_resource(r.kind);
    let shown = format!("{} {ns}/{}", ar.kind, r.name);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let obj = match api.get_opt(&r.name).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Ok(Resolution::Waiting {
                reason: "SourceNotFound",
                message: format!("{shown} does not exist (yet)"),
            });
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Ok(Resolution::Waiting {
                reason: "SourceNotFound",
                message: format!(
                    "the {} API ({}) is not served; install Flux's source-controller to use spec.sourceRef",
                    ar.kind, ar.api_version
                ),
            });
        }
        Err(source) => {
            return Err(SourceError::Api {
                what: shown,
                source,
            });
        }
    };
    match flux::state(obj.data.get("status")) {
        flux::State::NotReady { message } => Ok(Resolution::Waiting {
            reason: "SourceNotReady",
            message: match message {
                Some(m) => format!("{shown} has no artifact yet: {m}"),
                None => format!("{shown} has no artifact yet"),
            },
        }),
        flux::State::Artifact(a) => {
            // The artifact may have been garbage-collected since the status was written; a
            // HEAD request tells without downloading it.
            match ctx.http.head(&a.url).send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                    Ok(Resolution::Waiting {
                        reason: "ArtifactNotFound",
                        message: format!(
                            "{shown} advertises {} but it answers 404 (garbage-collected?); waiting for the source to serve it again",
                            a.url
                        ),
                    })
                }
                _ => Ok(Resolution::Resolved(ArtifactStatus {
                    url: a.url,
                    revision: a.revision,
                    digest: a.digest,
                })),
            }
        }
    }
}
