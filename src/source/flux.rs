//! Flux sources (`source.toolkit.fluxcd.io/v1`): what their status says about the artifact.
//! Pure: the controller reads the object, this decides.

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::api::SourceKind;

pub const GROUP: &str = "source.toolkit.fluxcd.io";
pub const VERSION: &str = "v1";

/// The API resource of a Flux source kind.
pub fn api_resource(kind: SourceKind) -> ApiResource {
    let (k, plural) = match kind {
        SourceKind::GitRepository => ("GitRepository", "gitrepositories"),
        SourceKind::OciRepository => ("OCIRepository", "ocirepositories"),
        SourceKind::Bucket => ("Bucket", "buckets"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, k), plural)
}

/// An artifact a Flux source serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub url: String,
    pub digest: String,
    pub revision: String,
}

/// What a Flux source's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// An artifact is available (Flux keeps serving the last good one while a newer revision
    /// fails, so this does not require Ready).
    Artifact(Artifact),
    /// No artifact yet; the Ready condition's message says why, if there is one.
    NotReady { message: Option<String> },
}

/// Reads `status` of a Flux source object.
pub fn state(status: Option<&Value>) -> State {
    let status = status.unwrap_or(&Value::Null);
    let artifact = &status["artifact"];
    let field = |k: &str| {
        artifact[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let (Some(url), Some(digest), Some(revision)) =
        (field("url"), field("digest"), field("revision"))
    {
        return State::Artifact(Artifact {
            url,
            digest,
            revision,
        });
    }
    let message = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .map(str::to_string);
    State::NotReady { message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_artifact() {
        let status = json!({"artifact": {"url": "http://sc/x.tar.gz", "digest": "sha256:ab", "revision": "main@sha1:1"},
                            "conditions": [{"type": "Ready", "status": "False", "message": "fetch failed"}]});
        assert_eq!(
            state(Some(&status)),
            State::Artifact(Artifact {
                url: "http://sc/x.tar.gz".into(),
                digest: "sha256:ab".into(),
                revision: "main@sha1:1".into()
            })
        );
    }

    #[test]
    fn without_an_artifact_reports_the_ready_message() {
        let status =
            json!({"conditions": [{"type": "Ready", "status": "False", "message": "auth failed"}]});
        assert_eq!(
            state(Some(&status)),
            State::NotReady {
                message: Some("auth failed".into())
            }
        );
        assert_eq!(state(None), State::NotReady { message: None });
    }

    #[test]
    fn api_resources_use_v1() {
        let ar = api_resource(SourceKind::OciRepository);
        assert_eq!(
            (
                ar.api_version.as_str(),
                ar.kind.as_str(),
                ar.plural.as_str()
            ),
            (
                "source.toolkit.fluxcd.io/v1",
                "OCIRepository",
                "ocirepositories"
            )
        );
    }
}
