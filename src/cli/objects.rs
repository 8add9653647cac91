//! `landform plan` and `landform approve`: the pending plan of an object, readably, and its
//! approval, without hand-editing YAML.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::api::{PlanStatus, Terraform};

#[derive(Clone, Debug, clap::Args)]
pub struct ObjectArgs {
    /// The object, `tf/NAME` (or `terraform/NAME`).
    pub object: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(long, short)]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub object: ObjectArgs,
    /// The plan to approve (ID or prefix); refused unless it is the current plan.
    #[arg(long)]
    pub plan: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
    #[error("talking to the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl CliError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Usage(_) => "Usage",
            Self::Refused(_) => "Refused",
            Self::Kube(_) => "Unavailable",
        }
    }
}

fn name_of(object: &str) -> Result<&str, CliError> {
    match object.split_once('/') {
        Some(("tf" | "terraform" | "terraforms", name)) if !name.is_empty() => Ok(name),
        _ => Err(CliError::Usage(format!(
            "{object:?}: name a Terraform object as tf/NAME"
        ))),
    }
}

async fn api(args: &ObjectArgs) -> Result<(Api<Terraform>, String), CliError> {
    let client = Client::try_default().await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((Api::namespaced(client, &ns), ns))
}

/// The plan, as a person reads it.
pub fn render(object: &str, plan: &PlanStatus) -> String {
    let state = if plan.pending {
        "waiting for approval or apply"
    } else {
        "applied or nothing to apply"
    };
    let mut out = format!(
        "{object}: plan {} of revision {} ({state})\n",
        plan.id,
        plan.revision.as_deref().unwrap_or("?")
    );
    for r in &plan.resources {
        let sign = match r.action.as_str() {
            "create" => "+",
            "delete" => "-",
            "update" => "~",
            "replace" => "-/+",
            _ => " ",
        };
        let paths = if r.paths.is_empty() {
            String::new()
        } else {
            format!(": {}", r.paths.join(", "))
        };
        out.push_str(&format!("  {sign} {} ({}{paths})\n", r.address, r.action));
    }
    let s = &plan.summary;
    out.push_str(&format!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    ));
    out
}

pub async fn show(args: ObjectArgs) -> Result<String, CliError> {
    let name = name_of(&args.object)?.to_string();
    let (api, ns) = api(&args).await?;
    let tf = api.get(&name).await?;
    let plan = tf
        .status
        .and_then(|s| s.plan)
        .ok_or_else(|| CliError::Refused(format!("tf/{name} in {ns} has no plan yet")))?;
    Ok(render(&format!("tf/{name}"), &plan))
}

/// The drift report, as a person reads it.
pub fn render_drift(object: &str, drift: &crate::api::DriftStatus) -> String {
    let checked = drift
        .last_checked_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| "never".into());
    let mut out = format!("{object}: {:?} (checked {checked})\n", drift.state);
    for r in &drift.resources {
        let paths = if r.paths.is_empty() {
            String::new()
        } else {
            format!(": {}", r.paths.join(", "))
        };
        out.push_str(&format!("  {} ({}{paths})\n", r.address, r.action));
    }
    let listed = drift.resources.len() as u32;
    if drift.total > listed {
        out.push_str(&format!("  … and {} more\n", drift.total - listed));
    }
    out.push_str(&format!(
        "{} resource(s) changed outside OpenTofu.",
        drift.total
    ));
    out
}

pub async fn drift(args: ObjectArgs) -> Result<String, CliError> {
    let name = name_of(&args.object)?.to_string();
    let (api, ns) = api(&args).await?;
    let tf = api.get(&name).await?;
    let drift = tf.status.and_then(|s| s.drift).ok_or_else(|| {
        CliError::Refused(format!(
            "tf/{name} in {ns} has not been checked for drift (set spec.drift or mode: DriftOnly)"
        ))
    })?;
    Ok(render_drift(&format!("tf/{name}"), &drift))
}

pub async fn approve(args: ApproveArgs) -> Result<String, CliError> {
    let name = name_of(&args.object.object)?.to_string();
    let (api, ns) = api(&args.object).await?;
    let tf = api.get(&name).await?;
    let plan = tf
        .status
        .as_ref()
        .and_then(|s| s.plan.clone())
        .filter(|p| p.pending)
        .ok_or_else(|| {
            CliError::Refused(format!(
                "tf/{name} in {ns} has no plan waiting for approval"
            ))
        })?;
    if let Some(wanted) = &args.plan
        && !plan.id.starts_with(wanted.as_str())
    {
        return Err(CliError::Refused(format!(
            "plan {wanted} is not the current plan of tf/{name} ({}); it is stale and cannot be approved",
            plan.id
        )));
    }
    let patch = serde_json::json!({"spec": {"approvePlan": plan.id}});
    api.patch(
        &tf.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let s = &plan.summary;
    Ok(format!(
        "approved plan {} (+{} ~{} -{}) of tf/{name}",
        plan.id, s.add, s.change, s.destroy
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PlanSummary, ResourceChange};

    #[test]
    fn renders_a_plan_readably() {
        let plan = PlanStatus {
            id: "3f9a2c1d0e4b5a6c".into(),
            pending: true,
            revision: Some("1.0.0@sha256:aa".into()),
            summary: PlanSummary {
                add: 1,
                change: 1,
                destroy: 0,
            },
            resources: vec![
                ResourceChange {
                    address: "random_pet.name".into(),
                    resource_type: None,
                    action: "create".into(),
                    paths: vec![],
                },
                ResourceChange {
                    address: "terraform_data.m".into(),
                    resource_type: None,
                    action: "update".into(),
                    paths: vec!["input".into()],
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            render("tf/vpc", &plan),
            "tf/vpc: plan 3f9a2c1d0e4b5a6c of revision 1.0.0@sha256:aa (waiting for approval or apply)\n  + random_pet.name (create)\n  ~ terraform_data.m (update: input)\nPlan: 1 to add, 1 to change, 0 to destroy."
        );
    }

    #[test]
    fn renders_a_drift_report() {
        let d = crate::api::DriftStatus {
            state: crate::api::DriftState::Drifted,
            last_checked_at: None,
            total: 2,
            resources: vec![ResourceChange {
                address: "local_file.f".into(),
                resource_type: None,
                action: "update".into(),
                paths: vec!["content".into()],
            }],
        };
        assert_eq!(
            render_drift("tf/x", &d),
            "tf/x: Drifted (checked never)\n  local_file.f (update: content)\n  … and 1 more\n2 resource(s) changed outside OpenTofu."
        );
    }

    #[test]
    fn names_objects_as_kind_slash_name() {
        assert_eq!(name_of("tf/vpc").unwrap(), "vpc");
        assert_eq!(name_of("terraform/vpc").unwrap(), "vpc");
        assert!(name_of("vpc").is_err() && name_of("cfnstack/x").is_err());
    }
}
