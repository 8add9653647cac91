//! The run's artifact: fetched (through the cache) with its digest verified, into a fresh
//! workspace.

use kube::Client;

use super::error::RunError;
use super::objects::secret_key;
use super::options::Options;
use super::redact::Secrets;
use super::workspace::{self, Workspace};
use crate::contract::RunSpec;
use crate::source::cache::Cache;
use crate::source::credentials;

/// Fetches the verified artifact into a fresh workspace, with `path` as its working directory.
pub async fn workspace(
    client: &Client,
    spec: &RunSpec,
    path: &str,
    opts: &Options,
    secrets: &Secrets,
) -> Result<Workspace, RunError> {
    let creds = match &spec.artifact.secret_ref {
        Some(name) => {
            let data =
                secret_key(client, &spec.namespace, name, ".dockerconfigjson", secrets).await?;
            let registry = crate::source::oci::Repository::parse(&spec.artifact.url)?.registry;
            let found = credentials::lookup(&data, &registry)
                .map_err(|e| RunError::Input(format!("Secret {name}: {e}")))?;
            if let Some(basic) = &found {
                secrets.add(&basic.password);
            }
            found
        }
        None => None,
    };
    let cache = Cache::new(&opts.cache_dir);
    Ok(workspace::prepare(&spec.artifact, creds, path, &cache, &opts.limits).await?)
}
