//! Saved plans: what `plan -out` wrote, gzip-compressed and cut into Secrets below the API's
//! size limit, labelled with the plan ID, so that apply runs exactly the plan that was made.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::contract::RunSpec;
use crate::contract::names::{self, LABEL_OWNER, LABEL_PART, LABEL_PLAN, PLAN_KEY};
use crate::engine::chunks;
use crate::engine::error::{RunError, io_err, kube_err};
use crate::engine::objects::{apply_secret, owned_secret, owner_labels};

/// The saved plan, gzip-compressed, in Secrets of at most ~900 KiB each.
pub async fn store(
    client: &Client,
    spec: &RunSpec,
    id: &str,
    bytes: &[u8],
) -> Result<(), RunError> {
    let pieces = chunks::pack(bytes, chunks::CHUNK).map_err(io_err("compressing the plan"))?;
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let labels = owner_labels(
            spec,
            &[
                (LABEL_PLAN, id.to_string()),
                (LABEL_PART, names::plan_part(i, count)),
            ],
        );
        let data = BTreeMap::from([(PLAN_KEY.to_string(), ByteString(piece))]);
        let name = names::plan_secret(&spec.owner.name, id, i);
        apply_secret(client, spec, &owned_secret(spec, name, labels, data)).await?;
    }
    Ok(())
}

/// The saved plan `id`, whole, or [`RunError::PlanNotFound`].
pub async fn load(client: &Client, spec: &RunSpec, id: &str) -> Result<Vec<u8>, RunError> {
    let selector = format!("{LABEL_OWNER}={},{LABEL_PLAN}={id}", spec.owner.name);
    let list = Api::<Secret>::namespaced(client.clone(), &spec.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err("listing the plan Secrets"))?;
    let mut parts: Vec<(usize, usize, Vec<u8>)> = list
        .items
        .into_iter()
        .filter_map(|s| {
            let (i, n) = names::parse_plan_part(s.metadata.labels.as_ref()?.get(LABEL_PART)?)?;
            let data = s.data?.remove(PLAN_KEY)?.0;
            Some((i, n, data))
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let complete = !parts.is_empty()
        && parts
            .iter()
            .enumerate()
            .all(|(i, p)| p.0 == i && p.1 == parts.len());
    if !complete {
        return Err(RunError::PlanNotFound { plan_id: id.into() });
    }
    let pieces: Vec<Vec<u8>> = parts.into_iter().map(|p| p.2).collect();
    chunks::unpack(&pieces).map_err(io_err("decompressing the plan"))
}
