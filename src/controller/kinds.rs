//! What each kind hands its runs, in one place: the engine and what it works on (its [`Work`],
//! built from the spec), hence the spec fields that shape a plan; the state lock a run may
//! hold; how the kind is named and worded. Everything else about runs is shared. Adding a kind
//! is implementing [`Kind`]; adding a spec field that shapes plans is putting it into the
//! kind's `Work` (the test below fails until every spec field is one or the other).

use kube::ResourceExt;

use super::decide::drift::Wording;
use crate::api::{
    ArtifactStatus, BackendSpec, CloudFormationStack, Engine, KeyRef, Managed, Mode, Operation,
    Terraform,
};
use crate::contract::{ArtifactRef, Backend, ModuleRun, Owner, RunSpec, StackRun, Work, plan_id};

/// A kind whose objects are planned, applied, destroyed and checked for drift by runs.
pub trait Kind: Managed {
    /// How `kubectl` and Landform's messages name the kind (`tf`, `cfnstack`).
    const SHORT_NAME: &'static str;
    /// Where drift comes from and what it is measured against, in drift messages.
    const WORDING: Wording;
    /// Whether a destroy needs the artifact that was applied (a module does, a stack does
    /// not: deleting it needs only its name).
    const DESTROY_NEEDS_ARTIFACT: bool;
    /// The kind's own spec fields (as the API spells them) that do not shape a plan, besides
    /// the scheduling fields every kind shares; every other field flows into [`Kind::work`].
    const NOT_PLAN_SHAPING: &'static [&'static str];
    /// The engine and its input, for a run in namespace `ns`.
    fn work(&self, ns: &str) -> Work;
    /// The Lease a run holds while it has the state locked, if Landform can see it.
    fn state_lease(&self) -> Option<String> {
        None
    }
}

/// Hash of the plan-shaping fields, kept in `status.plan.inputs`: a change makes a new plan.
pub fn inputs_hash<K: Kind>(obj: &K, ns: &str) -> String {
    plan_id::digest(&serde_json::to_value(obj.work(ns)).unwrap_or_default())
}

/// The spec of a run of `operation` on `artifact`. `now` makes its name unique.
pub fn run_spec<K: Kind>(
    obj: &K,
    ns: &str,
    operation: Operation,
    plan_id: Option<String>,
    artifact: &ArtifactStatus,
    now: jiff::Timestamp,
) -> RunSpec {
    let name = obj.name_any();
    let suffix: String = crate::source::digest::sha256(format!("{:?}{now}", obj.uid()).as_bytes())
        .hex
        .chars()
        .take(6)
        .collect();
    let stem: String = name.chars().take(40).collect();
    let oci = obj.common().source.as_ref().map(|s| &s.oci);
    RunSpec {
        name: format!("{stem}-{operation}-{suffix}"),
        namespace: ns.to_string(),
        owner: Owner {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            name,
            uid: obj.uid().unwrap_or_default(),
        },
        operation,
        artifact: ArtifactRef {
            url: artifact.url.clone(),
            digest: artifact.digest.clone(),
            revision: artifact.revision.clone(),
            insecure: oci.is_some_and(|o| o.insecure),
            layer_media_type: oci.and_then(|o| o.layer_media_type.clone()),
            secret_ref: oci.and_then(|o| o.secret_ref.as_ref().map(|r| r.name.clone())),
        },
        work: obj.work(ns),
        plan_id,
        outputs_secret: obj.common().write_outputs_to_secret.clone(),
    }
}

impl Kind for Terraform {
    const SHORT_NAME: &'static str = "tf";
    const WORDING: Wording = Wording {
        changed_outside: "OpenTofu",
        desired: "the state",
    };
    const DESTROY_NEEDS_ARTIFACT: bool = true;
    // A module's plan does not depend on the mode: DriftOnly only never applies it.
    const NOT_PLAN_SHAPING: &'static [&'static str] = &["mode"];

    fn work(&self, ns: &str) -> Work {
        let spec = &self.spec;
        let backend = match &spec.backend {
            Some(BackendSpec {
                config: Some(hcl), ..
            }) => Backend::Raw { hcl: hcl.clone() },
            Some(BackendSpec {
                config_from: Some(KeyRef { name, key }),
                ..
            }) => Backend::FromSecret {
                name: name.clone(),
                key: key.clone(),
            },
            _ => Backend::Kubernetes {
                namespace: ns.to_string(),
                secret_suffix: self.name_any(),
            },
        };
        let module = ModuleRun {
            path: spec.path.clone().unwrap_or_default(),
            workspace: spec.workspace.clone().unwrap_or_else(|| "default".into()),
            vars: spec.vars.clone(),
            vars_from: spec.vars_from.clone(),
            backend,
        };
        match spec.engine {
            Engine::OpenTofu => Work::OpenTofu(module),
            Engine::Terraform => Work::Terraform(module),
        }
    }

    /// The Lease of the default `kubernetes` backend's state lock:
    /// `lock-tfstate-<workspace>-<name>`, whose holder is OpenTofu's lock ID.
    fn state_lease(&self) -> Option<String> {
        if self
            .spec
            .backend
            .as_ref()
            .is_some_and(|b| b.config.is_some() || b.config_from.is_some())
        {
            return None;
        }
        let workspace = self.spec.workspace.as_deref().unwrap_or("default");
        Some(format!("lock-tfstate-{workspace}-{}", self.name_any()))
    }
}

impl Kind for CloudFormationStack {
    const SHORT_NAME: &'static str = "cfnstack";
    // Template comparison also catches updates made through CloudFormation by someone else.
    const WORDING: Wording = Wording {
        changed_outside: "Landform",
        desired: "the desired template and parameters",
    };
    const DESTROY_NEEDS_ARTIFACT: bool = false;
    const NOT_PLAN_SHAPING: &'static [&'static str] = &[];

    fn work(&self, ns: &str) -> Work {
        let spec = &self.spec;
        Work::CloudFormation(StackRun {
            stack_name: stack_name(self, ns),
            template_path: spec
                .template_path
                .clone()
                .unwrap_or_else(|| "template.yaml".into()),
            parameters: spec.parameters.clone(),
            parameters_from: spec.parameters_from.clone(),
            tags: spec.tags.clone(),
            capabilities: spec.capabilities.clone(),
            role_arn: spec.role_arn.clone(),
            region: spec.region.clone(),
            endpoint_url: spec.endpoint_url.clone(),
            template_bucket: spec.template_bucket.clone(),
            credentials_secret: spec.credentials_secret_ref.as_ref().map(|r| r.name.clone()),
            adopt_existing: spec.adopt_existing,
            // A DriftOnly plan is a comparison, not a change set that could be executed.
            read_only: spec.common.mode == Mode::DriftOnly,
        })
    }
}

/// `spec.stackName`, or `<namespace>-<name>` made a valid stack name (letters, digits and
/// dashes, starting with a letter, at most 128 characters).
pub fn stack_name(stack: &CloudFormationStack, ns: &str) -> String {
    if let Some(name) = &stack.spec.stack_name {
        return name.clone();
    }
    let raw = format!("{ns}-{}", stack.name_any());
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "s-");
    }
    name.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::plan_id::PlanInputs;
    use serde_json::{Value, json};

    /// Spec fields of every kind that decide when and how runs happen, not what a plan does. The
    /// source decides the artifact, whose digest the plan ID holds.
    const SCHEDULING: &[&str] = &[
        "interval",
        "retryInterval",
        "maxRetries",
        "timeout",
        "sourceRef",
        "source",
        "approvePlan",
        "drift",
        "destroyOnDelete",
        "suspend",
        "dependsOn",
        "writeOutputsToSecret",
        "serviceAccountName",
        "runnerPodTemplate",
    ];

    /// Every spec field set, twice, to different values.
    fn common(variant: u8) -> Value {
        let v = variant.to_string();
        json!({
            "interval": format!("1{v}m"), "retryInterval": format!("{v}1s"), "maxRetries": variant,
            "timeout": format!("2{v}m"),
            "sourceRef": {"kind": "OCIRepository", "name": format!("infra{v}")},
            "source": {"oci": {"url": format!("oci://r/m{v}"), "insecure": variant == 1}},
            "approvePlan": if variant == 0 { "auto" } else { "" },
            "mode": if variant == 0 { "Reconcile" } else { "DriftOnly" },
            "drift": {"interval": format!("{v}3m"), "remediate": variant == 1},
            "destroyOnDelete": variant == 1, "suspend": variant == 1,
            "dependsOn": [{"name": format!("dep{v}")}],
            "writeOutputsToSecret": {"name": format!("out{v}")},
            "serviceAccountName": format!("sa{v}"),
            "runnerPodTemplate": {"spec": {"nodeSelector": {"pool": v}}},
        })
    }

    fn terraform_spec(variant: u8) -> Value {
        let v = variant.to_string();
        let mut spec = common(variant);
        let own = json!({
            "path": format!("mod{v}"), "workspace": format!("ws{v}"),
            "engine": if variant == 0 { "OpenTofu" } else { "Terraform" },
            "vars": [{"name": "region", "value": format!("eu-{v}")}],
            "varsFrom": [{"kind": "Secret", "name": format!("vars{v}")}],
            "backend": {"config": format!("terraform {{ backend \"s3\" {{ key = \"{v}\" }} }}")},
        });
        spec.as_object_mut()
            .unwrap()
            .extend(own.as_object().unwrap().clone());
        spec
    }

    fn stack_spec(variant: u8) -> Value {
        let v = variant.to_string();
        let mut spec = common(variant);
        let own = json!({
            "stackName": format!("stack{v}"), "templatePath": format!("t{v}.yaml"),
            "parameters": [{"key": "Size", "value": v}],
            "parametersFrom": [{"kind": "ConfigMap", "name": format!("p{v}")}],
            "tags": {"team": v}, "capabilities": [if variant == 0 { "CAPABILITY_IAM" } else { "CAPABILITY_NAMED_IAM" }],
            "roleARN": format!("arn:aws:iam::1:role/r{v}"), "region": format!("eu-west-{v}"),
            "endpointURL": format!("http://127.0.0.1:500{v}"), "templateBucket": format!("b{v}"),
            "credentialsSecretRef": {"name": format!("aws{v}")}, "adoptExisting": variant == 1,
        });
        spec.as_object_mut()
            .unwrap()
            .extend(own.as_object().unwrap().clone());
        spec
    }

    /// The spec's properties, as the generated CRD lists them.
    fn schema_fields<K: kube::CustomResourceExt>() -> Vec<String> {
        let crd = serde_json::to_value(K::crd()).unwrap();
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        props.as_object().unwrap().keys().cloned().collect()
    }

    fn object<K: Kind>(spec: &Value) -> K {
        serde_json::from_value(json!({
            "apiVersion": K::api_version(&()), "kind": K::kind(&()),
            "metadata": {"name": "vpc", "namespace": "team", "uid": "u-1"},
            "spec": spec,
        }))
        .expect("a valid object")
    }

    fn plan_id_of<K: Kind>(obj: &K) -> String {
        plan_id::plan_id(&PlanInputs {
            work: &obj.work("team"),
            artifact_digest: "sha256:aa",
            engine_version: "OpenTofu v1.12.6",
            resolved: &json!({}),
        })
    }

    /// Changing any one spec field changes the inputs hash and the plan ID exactly when the
    /// field is plan-shaping; a spec field the samples lack fails the test.
    fn every_field_shapes_the_plan_or_is_declared_not_to<K: Kind + kube::CustomResourceExt>(
        sample: fn(u8) -> Value,
    ) {
        let (base, other) = (sample(0), sample(1));
        let mut fields = schema_fields::<K>();
        fields.sort();
        let mut sampled: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
        sampled.sort();
        assert_eq!(fields, sampled, "the samples must set every spec field");
        let before: K = object(&base);
        for field in &fields {
            let mut changed = base.clone();
            changed[field.as_str()] = other[field.as_str()].clone();
            assert_ne!(changed, base, "{field}: the samples must differ");
            let after: K = object(&changed);
            let shaping = !SCHEDULING.contains(&field.as_str())
                && !K::NOT_PLAN_SHAPING.contains(&field.as_str());
            assert_eq!(
                inputs_hash(&before, "team") != inputs_hash(&after, "team"),
                shaping,
                "{} {field}: the inputs hash",
                K::KIND
            );
            assert_eq!(
                plan_id_of(&before) != plan_id_of(&after),
                shaping,
                "{} {field}: the plan ID",
                K::KIND
            );
        }
    }

    #[test]
    fn each_terraform_field_shapes_the_plan_or_is_declared_not_to() {
        every_field_shapes_the_plan_or_is_declared_not_to::<Terraform>(terraform_spec);
    }

    #[test]
    fn each_stack_field_shapes_the_plan_or_is_declared_not_to() {
        every_field_shapes_the_plan_or_is_declared_not_to::<CloudFormationStack>(stack_spec);
    }

    #[test]
    fn state_lease_only_for_the_default_backend() {
        let tf: Terraform =
            object(&json!({"interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "x"}}));
        assert_eq!(
            tf.state_lease().as_deref(),
            Some("lock-tfstate-default-vpc")
        );
        let custom: Terraform = object(&terraform_spec(0));
        assert_eq!(custom.state_lease(), None);
    }
}
