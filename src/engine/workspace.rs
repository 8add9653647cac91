//! A run's working directory: the verified artifact, the backend configuration and the
//! variables, in a temporary directory removed when the run ends.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::contract::{ArtifactRef, Backend};
use crate::source::archive::Limits;
use crate::source::cache::{Cache, place_tree};
use crate::source::credentials::Basic;
use crate::source::digest::Digest;
use crate::source::fetch::{self, FetchError};
use crate::source::oci::{Registry, Repository};

/// File names Landform writes into the module directory. The backend goes in an override file
/// so that it replaces any backend block the module itself declares.
pub const BACKEND_FILE: &str = "zz_landform_backend_override.tf";
pub const VARS_FILE: &str = "zz_landform.auto.tfvars.json";

pub struct Workspace {
    _root: tempfile::TempDir,
    /// The module directory (`path` inside the artifact).
    pub module: PathBuf,
    /// Where plan files go (outside the module, so they are never packed or read as config).
    pub scratch: PathBuf,
}

/// Fetches the artifact (by digest, verified, through the cache) and lays out a workspace.
pub async fn prepare(
    artifact: &ArtifactRef,
    credentials: Option<Basic>,
    path: &str,
    cache: &Cache,
    limits: &Limits,
) -> Result<Workspace, FetchError> {
    // The cache is keyed by the parsed digest: what a registry or a source wrote never
    // becomes part of a path unchecked.
    let digest: Digest = artifact
        .digest
        .parse()
        .map_err(|e| FetchError::InvalidSource(format!("artifact digest: {e}")))?;
    let entry = if artifact.url.starts_with("oci://") {
        let repo = Repository::parse(&artifact.url)?;
        let registry = Registry::new(artifact.insecure, credentials);
        let media = artifact.layer_media_type.clone();
        cache
            .get_or_fetch(&digest, limits, |dest| async move {
                registry
                    .fetch_layer(&repo, &artifact.digest, media.as_deref(), &dest)
                    .await
                    .map(|_| ())
            })
            .await?
    } else {
        crate::tls::init();
        let http = reqwest::Client::new();
        let expected = &digest;
        cache
            .get_or_fetch(&digest, limits, |dest| async move {
                fetch::download(&http, &artifact.url, expected, &dest)
                    .await
                    .map(|_| ())
            })
            .await?
    };
    let root = tempfile::Builder::new()
        .prefix("landform-run-")
        .tempdir()
        .map_err(|e| FetchError::failed("creating the workspace", e))?;
    let tree = root.path().join("artifact");
    place_tree(&entry.dir, &tree, false)
        .map_err(|e| FetchError::failed("copying the artifact into the workspace", e))?;
    let module = inside(&tree, path)?;
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| FetchError::failed("creating the workspace", e))?;
    Ok(Workspace {
        _root: root,
        module,
        scratch,
    })
}

/// `rel` below `base`, normalised: `.` and empty parts dropped; a root, a prefix or `..` (which
/// the schema refuses too) is refused here as well, however it is spelled (`.//tmp`).
pub fn inside(base: &Path, rel: &str) -> Result<PathBuf, FetchError> {
    let mut out = base.to_path_buf();
    for part in Path::new(rel).components() {
        match part {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::CurDir => {}
            _ => {
                return Err(FetchError::InvalidSource(format!(
                    "{rel:?} is not a relative path inside the artifact"
                )));
            }
        }
    }
    Ok(out)
}

/// Refuses a module directory without configuration, naming the path and revision.
pub fn require_config(ws: &Workspace, path: &str, revision: &str) -> Result<(), FetchError> {
    let has_config = std::fs::read_dir(&ws.module)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".tf"))
        })
        .unwrap_or(false);
    if has_config {
        return Ok(());
    }
    Err(FetchError::InvalidSource(format!(
        "spec.path {:?} holds no .tf files in revision {revision}",
        if path.is_empty() { "." } else { path },
    )))
}

/// The backend block for `backend`, as HCL. `raw` is the block read from a Secret, when the
/// backend comes from one.
pub fn backend_hcl(
    backend: &Backend,
    raw: Option<&str>,
    in_cluster: bool,
    kubeconfig: Option<&Path>,
) -> String {
    match backend {
        Backend::Kubernetes {
            namespace,
            secret_suffix,
        } => {
            let auth = if in_cluster {
                "    in_cluster_config = true\n".to_string()
            } else {
                kubeconfig
                    .map(|p| {
                        format!(
                            "    config_path = {}\n",
                            hcl_string(&p.display().to_string())
                        )
                    })
                    .unwrap_or_default()
            };
            format!(
                "terraform {{\n  backend \"kubernetes\" {{\n    secret_suffix = {}\n    namespace = {}\n{auth}  }}\n}}\n",
                hcl_string(secret_suffix),
                hcl_string(namespace)
            )
        }
        Backend::Raw { hcl } => hcl.clone(),
        Backend::FromSecret { .. } => raw.unwrap_or_default().to_string(),
    }
}

/// An HCL string literal (JSON string escaping is valid HCL; `${` and `%{` are escaped).
fn hcl_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace("${", "$${")
        .replace("%{", "%%{")
}

/// Writes the backend and variables files into the module directory.
pub fn write_inputs(
    ws: &Workspace,
    backend: &str,
    vars: &Map<String, Value>,
) -> std::io::Result<()> {
    std::fs::write(ws.module.join(BACKEND_FILE), backend)?;
    std::fs::write(ws.module.join(VARS_FILE), serde_json::to_vec_pretty(vars)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_artifact_however_they_are_spelled() {
        let base = Path::new("/w/artifact");
        assert_eq!(inside(base, "./vpc//x/.").unwrap(), base.join("vpc/x"));
        assert_eq!(inside(base, "").unwrap(), base);
        // Once trimmed of "./" this was "/tmp/x", which a join takes for an absolute path.
        assert_eq!(inside(base, ".//tmp/x").unwrap(), base.join("tmp/x"));
        for bad in ["/etc", "a/../../b", "../x"] {
            assert!(inside(base, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kubernetes_backend_in_and_out_of_cluster() {
        let b = Backend::Kubernetes {
            namespace: "team-a".into(),
            secret_suffix: "vpc-${x}".into(),
        };
        let pod = backend_hcl(&b, None, true, None);
        assert!(pod.contains("backend \"kubernetes\""));
        assert!(
            pod.contains("secret_suffix = \"vpc-$${x}\""),
            "interpolation is escaped: {pod}"
        );
        assert!(pod.contains("in_cluster_config = true"));
        let local = backend_hcl(&b, None, false, Some(Path::new("/tmp/kc")));
        assert!(local.contains("config_path = \"/tmp/kc\"") && !local.contains("in_cluster"));
        let raw = Backend::Raw {
            hcl: "terraform { backend \"s3\" {} }".into(),
        };
        assert_eq!(
            backend_hcl(&raw, None, true, None),
            "terraform { backend \"s3\" {} }"
        );
    }
}
