//! `landform plan` and `landform approve`: the pending plan of an object, readably, and its
//! approval, without hand-editing YAML.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::api::{CloudFormationStack, ObjectStatus, PlanStatus, Terraform};
use crate::controller::work::Runnable;

#[derive(Clone, Debug, clap::Args)]
pub struct ObjectArgs {
    /// The object: `tf/NAME` (or `terraform/NAME`) or `cfnstack/NAME` (or
    /// `cloudformationstack/NAME`).
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

/// An object of either kind, named on the command line.
struct Object {
    /// How it is named in messages: `tf/NAME`, `cfnstack/NAME`.
    label: String,
    name: String,
    ns: String,
    /// For "changed outside …", as the controller words it.
    changed_outside: &'static str,
    client: Client,
    stack: bool,
}

impl Object {
    async fn find(args: &ObjectArgs) -> Result<Self, CliError> {
        let (stack, name) = parse(&args.object)?;
        let client = Client::try_default().await?;
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok(Self {
            label: format!("{}/{name}", if stack { "cfnstack" } else { "tf" }),
            name: name.to_string(),
            ns,
            changed_outside: if stack {
                <CloudFormationStack as Runnable>::CHANGED_OUTSIDE
            } else {
                <Terraform as Runnable>::CHANGED_OUTSIDE
            },
            client,
            stack,
        })
    }

    async fn status(&self) -> Result<Option<ObjectStatus>, CliError> {
        Ok(if self.stack {
            Api::<CloudFormationStack>::namespaced(self.client.clone(), &self.ns)
                .get(&self.name)
                .await?
                .status
        } else {
            Api::<Terraform>::namespaced(self.client.clone(), &self.ns)
                .get(&self.name)
                .await?
                .status
        })
    }

    async fn patch(&self, patch: &serde_json::Value) -> Result<(), CliError> {
        let params = PatchParams::default();
        if self.stack {
            Api::<CloudFormationStack>::namespaced(self.client.clone(), &self.ns)
                .patch(&self.name, &params, &Patch::Merge(patch))
                .await?;
        } else {
            Api::<Terraform>::namespaced(self.client.clone(), &self.ns)
                .patch(&self.name, &params, &Patch::Merge(patch))
                .await?;
        }
        Ok(())
    }
}

/// `KIND/NAME`: whether it names a stack, and the name.
fn parse(object: &str) -> Result<(bool, &str), CliError> {
    let stack = match object.split_once('/') {
        Some(("tf" | "terraform" | "terraforms", name)) if !name.is_empty() => (false, name),
        Some(("cfnstack" | "cloudformationstack" | "cloudformationstacks", name))
            if !name.is_empty() =>
        {
            (true, name)
        }
        _ => {
            return Err(CliError::Usage(format!(
                "{object:?}: name the object as tf/NAME or cfnstack/NAME"
            )));
        }
    };
    Ok(stack)
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
    let obj = Object::find(&args).await?;
    let plan =
        obj.status().await?.and_then(|s| s.plan).ok_or_else(|| {
            CliError::Refused(format!("{} in {} has no plan yet", obj.label, obj.ns))
        })?;
    Ok(render(&obj.label, &plan))
}

/// The drift report, as a person reads it.
pub fn render_drift(object: &str, engine: &str, drift: &crate::api::DriftStatus) -> String {
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
        "{} resource(s) changed outside {engine}.",
        drift.total
    ));
    out
}

pub async fn drift(args: ObjectArgs) -> Result<String, CliError> {
    let obj = Object::find(&args).await?;
    let drift = obj.status().await?.and_then(|s| s.drift).ok_or_else(|| {
        CliError::Refused(format!(
            "{} in {} has not been checked for drift (set spec.drift or mode: DriftOnly)",
            obj.label, obj.ns
        ))
    })?;
    Ok(render_drift(&obj.label, obj.changed_outside, &drift))
}

pub async fn approve(args: ApproveArgs) -> Result<String, CliError> {
    let obj = Object::find(&args.object).await?;
    let plan = obj
        .status()
        .await?
        .and_then(|s| s.plan)
        .filter(|p| p.pending)
        .ok_or_else(|| {
            CliError::Refused(format!(
                "{} in {} has no plan waiting for approval",
                obj.label, obj.ns
            ))
        })?;
    if let Some(wanted) = &args.plan
        && !plan.id.starts_with(wanted.as_str())
    {
        return Err(CliError::Refused(format!(
            "plan {wanted} is not the current plan of {} ({}); it is stale and cannot be approved",
            obj.label, plan.id
        )));
    }
    obj.patch(&serde_json::json!({"spec": {"approvePlan": plan.id}}))
        .await?;
    let s = &plan.summary;
    Ok(format!(
        "approved plan {} (+{} ~{} -{}) of {}",
        plan.id, s.add, s.change, s.destroy, obj.label
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
            render_drift("tf/x", "OpenTofu", &d),
            "tf/x: Drifted (checked never)\n  local_file.f (update: content)\n  … and 1 more\n2 resource(s) changed outside OpenTofu."
        );
    }

    #[test]
    fn names_objects_as_kind_slash_name() {
        assert_eq!(parse("tf/vpc").unwrap(), (false, "vpc"));
        assert_eq!(parse("terraform/vpc").unwrap(), (false, "vpc"));
        assert_eq!(parse("cfnstack/net").unwrap(), (true, "net"));
        assert!(parse("vpc").is_err() && parse("pod/x").is_err() && parse("tf/").is_err());
    }
}
