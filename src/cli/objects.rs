//! `landform plan` and `landform approve`: the pending plan of an object, readably, and its
//! approval, without hand-editing YAML.

use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::api::{CloudFormationStack, ObjectStatus, PlanStatus, Terraform};
use crate::controller::kinds::Kind;

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

/// The kinds the command line knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Terraform,
    CloudFormationStack,
}

/// Whether `word` names kind `K` as kubectl would: its short name, kind or plural.
fn names<K: Kind>(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    word == K::SHORT_NAME || word == K::kind(&()).to_ascii_lowercase() || word == K::plural(&())
}

/// `KIND/NAME`: which kind it names, and the name.
fn parse(object: &str) -> Result<(Which, &str), CliError> {
    let usage = || {
        CliError::Usage(format!(
            "{object:?}: name the object as tf/NAME or cfnstack/NAME"
        ))
    };
    let (kind, name) = object
        .split_once('/')
        .filter(|(_, name)| !name.is_empty())
        .ok_or_else(usage)?;
    if names::<Terraform>(kind) {
        Ok((Which::Terraform, name))
    } else if names::<CloudFormationStack>(kind) {
        Ok((Which::CloudFormationStack, name))
    } else {
        Err(usage())
    }
}

/// Runs `$body` with `$obj` bound to the object `$args` names, whatever its kind.
macro_rules! with_object {
    ($args:expr, |$obj:ident| $body:expr) => {
        match parse(&$args.object)? {
            (Which::Terraform, name) => {
                let $obj = Object::<Terraform>::find(name, $args).await?;
                $body
            }
            (Which::CloudFormationStack, name) => {
                let $obj = Object::<CloudFormationStack>::find(name, $args).await?;
                $body
            }
        }
    };
}

/// An object named on the command line.
struct Object<K> {
    /// How it is named in messages: `tf/NAME`, `cfnstack/NAME`.
    label: String,
    name: String,
    ns: String,
    api: Api<K>,
}

impl<K: Kind> Object<K> {
    async fn find(name: &str, args: &ObjectArgs) -> Result<Self, CliError> {
        let client = Client::try_default().await?;
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        Ok(Self {
            label: format!("{}/{name}", K::SHORT_NAME),
            name: name.to_string(),
            api: Api::namespaced(client, &ns),
            ns,
        })
    }

    async fn status(&self) -> Result<Option<ObjectStatus>, CliError> {
        Ok(self.api.get(&self.name).await?.object_status().cloned())
    }

    async fn patch(&self, patch: &serde_json::Value) -> Result<(), CliError> {
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
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
    with_object!(&args, |obj| {
        let plan = obj.status().await?.and_then(|s| s.plan).ok_or_else(|| {
            CliError::Refused(format!("{} in {} has no plan yet", obj.label, obj.ns))
        })?;
        Ok(render(&obj.label, &plan))
    })
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
    with_object!(&args, |obj| drift_of(obj).await)
}

async fn drift_of<K: Kind>(obj: Object<K>) -> Result<String, CliError> {
    let drift = obj.status().await?.and_then(|s| s.drift).ok_or_else(|| {
        CliError::Refused(format!(
            "{} in {} has not been checked for drift (set spec.drift or mode: DriftOnly)",
            obj.label, obj.ns
        ))
    })?;
    Ok(render_drift(&obj.label, K::WORDING.changed_outside, &drift))
}

pub async fn approve(args: ApproveArgs) -> Result<String, CliError> {
    with_object!(&args.object, |obj| approve_plan(obj, args.plan.as_deref())
        .await)
}

async fn approve_plan<K: Kind>(obj: Object<K>, wanted: Option<&str>) -> Result<String, CliError> {
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
    if let Some(wanted) = wanted
        && !plan.id.starts_with(wanted)
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
        assert_eq!(parse("tf/vpc").unwrap(), (Which::Terraform, "vpc"));
        assert_eq!(parse("terraform/vpc").unwrap(), (Which::Terraform, "vpc"));
        assert_eq!(parse("terraforms/vpc").unwrap(), (Which::Terraform, "vpc"));
        assert_eq!(
            parse("cfnstack/net").unwrap(),
            (Which::CloudFormationStack, "net")
        );
        assert_eq!(
            parse("CloudFormationStacks/net").unwrap(),
            (Which::CloudFormationStack, "net")
        );
        assert!(parse("vpc").is_err() && parse("pod/x").is_err() && parse("tf/").is_err());
    }
}
