//! The pod of a run: the runner image, the run spec from a ConfigMap, the object's service
//! account, `runnerPodTemplate` overrides, and a restricted security context (non-root,
//! read-only root filesystem with emptyDirs for what must be written, no privilege escalation,
//! no capabilities, RuntimeDefault seccomp). Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, Pod,
    PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use kube::api::ObjectMeta;

use super::shard::Shard;
use crate::api::RunnerPodTemplate;
use crate::contract::names::{self, LABEL_OWNER, LABEL_RUN, SPEC_KEY};
use crate::contract::{RunSpec, STOP_GRACE};
pub const SPEC_DIR: &str = "/etc/landform/run";
pub const DEFAULT_SERVICE_ACCOUNT: &str = "landform-runner";
/// Seconds a runner pod's grace period allows beyond the runner's own [`STOP_GRACE`].
const POD_GRACE_MARGIN: i64 = 10;
/// UID and GID of the runner image's user.
pub const RUNNER_UID: i64 = 65532;

/// Controller-wide pod settings.
#[derive(Clone, Debug)]
pub struct PodSettings {
    pub image: String,
    pub timeout: Duration,
    /// Longest a runner pod may stay Pending (unschedulable, its namespace terminating, its
    /// image not pulled) before its run counts as lost.
    pub pending_timeout: Duration,
    /// The shard whose labels runner pods and their ConfigMaps carry.
    pub shard: Shard,
}

fn meta(spec: &RunSpec, name: String, extra_labels: &BTreeMap<String, String>) -> ObjectMeta {
    let mut labels = extra_labels.clone();
    labels.insert(LABEL_RUN.into(), spec.name.clone());
    labels.insert(LABEL_OWNER.into(), spec.owner.name.clone());
    ObjectMeta {
        name: Some(name),
        namespace: Some(spec.namespace.clone()),
        labels: Some(labels),
        owner_references: Some(vec![spec.owner.reference()]),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The ConfigMap holding the run spec (no secret values: variables are references) and the
/// pod that runs it.
pub fn build(
    spec: &RunSpec,
    object_labels: &BTreeMap<String, String>,
    service_account: Option<&str>,
    template: Option<&RunnerPodTemplate>,
    timeout: Option<Duration>,
    settings: &PodSettings,
) -> Result<(ConfigMap, Pod), serde_json::Error> {
    let default = RunnerPodTemplate::default();
    let t = template.unwrap_or(&default);
    // The shard's labels win over the template's, so that the shard's watch sees the pod.
    let shard_labels = settings.shard.labels_of(object_labels);
    let mut pod_labels = t.labels.clone();
    pod_labels.extend(shard_labels.clone());
    let config_map = ConfigMap {
        metadata: meta(spec, names::spec_config_map(&spec.name), &shard_labels),
        data: Some(BTreeMap::from([(
            SPEC_KEY.to_string(),
            serde_json::to_string(spec)?,
        )])),
        ..Default::default()
    };
    let mut env = vec![
        EnvVar {
            name: "HOME".into(),
            value: Some("/home/landform".into()),
            ..Default::default()
        },
        EnvVar {
            name: "TMPDIR".into(),
            value: Some("/tmp".into()),
            ..Default::default()
        },
    ];
    env.extend(t.spec.env.iter().cloned());
    let mut mounts = vec![
        mount("tmp", "/tmp", false),
        mount("home", "/home/landform", false),
        mount("run-spec", SPEC_DIR, true),
    ];
    mounts.extend(t.spec.volume_mounts.iter().cloned());
    let mut volumes = vec![
        empty_dir("tmp"),
        empty_dir("home"),
        Volume {
            name: "run-spec".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::spec_config_map(&spec.name),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    volumes.extend(t.spec.volumes.iter().cloned());
    let container = Container {
        name: "runner".into(),
        image: Some(
            t.spec
                .image
                .clone()
                .unwrap_or_else(|| settings.image.clone()),
        ),
        command: Some(vec!["landform".into(), "runner".into()]),
        args: Some(vec![
            "--spec".into(),
            format!("{SPEC_DIR}/{SPEC_KEY}"),
            "--cache-dir".into(),
            "/tmp/landform/artifacts".into(),
        ]),
        env: Some(env),
        env_from: (!t.spec.env_from.is_empty()).then(|| t.spec.env_from.clone()),
        resources: t.spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut pod_meta = meta(spec, spec.name.clone(), &pod_labels);
    if !t.annotations.is_empty() {
        pod_meta.annotations = Some(t.annotations.clone());
    }
    let timeout = timeout.unwrap_or(settings.timeout);
    let pod = Pod {
        metadata: pod_meta,
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(service_account.unwrap_or(DEFAULT_SERVICE_ACCOUNT).into()),
            active_deadline_seconds: Some(timeout.as_secs().max(1) as i64),
            // Time for the runner to interrupt OpenTofu, which then writes its state and
            // releases its lock, before the pod is killed.
            termination_grace_period_seconds: Some(STOP_GRACE.as_secs() as i64 + POD_GRACE_MARGIN),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUNNER_UID),
                run_as_group: Some(RUNNER_UID),
                fs_group: Some(RUNNER_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container],
            volumes: Some(volumes),
            node_selector: (!t.spec.node_selector.is_empty()).then(|| t.spec.node_selector.clone()),
            tolerations: (!t.spec.tolerations.is_empty()).then(|| t.spec.tolerations.clone()),
            affinity: t.spec.affinity.clone(),
            image_pull_secrets: (!t.spec.image_pull_secrets.is_empty())
                .then(|| t.spec.image_pull_secrets.clone()),
            priority_class_name: t.spec.priority_class_name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((config_map, pod))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RunnerPodSpec;
    use crate::contract::{ArtifactRef, Backend, ModuleRun, Operation, Owner, Work};

    fn spec() -> RunSpec {
        RunSpec {
            name: "vpc-plan-abc123".into(),
            namespace: "team-a".into(),
            owner: Owner {
                api_version: "landform.dev/v1alpha1".into(),
                kind: "Terraform".into(),
                name: "vpc".into(),
                uid: "u-1".into(),
            },
            operation: Operation::Plan,
            artifact: ArtifactRef {
                url: "oci://r/x".into(),
                digest: "sha256:aa".into(),
                revision: "1@sha256:aa".into(),
                insecure: false,
                layer_media_type: None,
                secret_ref: None,
            },
            work: Work::OpenTofu(ModuleRun {
                path: String::new(),
                workspace: "default".into(),
                vars: vec![],
                vars_from: vec![],
                backend: Backend::Kubernetes {
                    namespace: "team-a".into(),
                    secret_suffix: "vpc".into(),
                },
            }),
            plan_id: None,
            outputs_secret: None,
        }
    }

    fn settings() -> PodSettings {
        PodSettings {
            image: "landform:1".into(),
            timeout: Duration::from_secs(1800),
            pending_timeout: Duration::from_secs(600),
            shard: Shard::all(),
        }
    }

    #[test]
    fn restricted_owned_and_ephemeral() {
        let (cm, pod) = build(&spec(), &BTreeMap::new(), None, None, None, &settings()).unwrap();
        let s = pod.spec.unwrap();
        assert_eq!(s.restart_policy.as_deref(), Some("Never"));
        assert_eq!(s.service_account_name.as_deref(), Some("landform-runner"));
        assert_eq!(s.active_deadline_seconds, Some(1800));
        assert!(s.termination_grace_period_seconds.unwrap() > STOP_GRACE.as_secs() as i64);
        let psc = s.security_context.unwrap();
        assert_eq!(
            (psc.run_as_non_root, psc.run_as_user),
            (Some(true), Some(RUNNER_UID))
        );
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &s.containers[0];
        let csc = c.security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(csc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let mounts: Vec<_> = c
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|m| m.mount_path)
            .collect();
        assert_eq!(mounts, ["/tmp", "/home/landform", SPEC_DIR]);
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.name.as_str(), owner.controller), ("vpc", Some(true)));
        assert_eq!(owner.block_owner_deletion, None);
        assert_eq!(pod.metadata.labels.unwrap()[LABEL_RUN], "vpc-plan-abc123");
        let run_json = &cm.data.unwrap()[SPEC_KEY];
        assert_eq!(serde_json::from_str::<RunSpec>(run_json).unwrap(), spec());
    }

    #[test]
    fn template_overrides_apply() {
        let t = RunnerPodTemplate {
            labels: BTreeMap::from([("team".into(), "a".into())]),
            annotations: BTreeMap::new(),
            spec: RunnerPodSpec {
                image: Some("registry/landform:custom".into()),
                node_selector: BTreeMap::from([("pool".into(), "infra".into())]),
                env: vec![EnvVar {
                    name: "HTTPS_PROXY".into(),
                    value: Some("http://proxy:3128".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        let (_, pod) = build(
            &spec(),
            &BTreeMap::new(),
            Some("custom-sa"),
            Some(&t),
            Some(Duration::from_secs(60)),
            &settings(),
        )
        .unwrap();
        assert_eq!(pod.metadata.labels.unwrap()["team"], "a");
        let s = pod.spec.unwrap();
        assert_eq!(s.service_account_name.as_deref(), Some("custom-sa"));
        assert_eq!(s.active_deadline_seconds, Some(60));
        assert_eq!(s.node_selector.unwrap()["pool"], "infra");
        let c = &s.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry/landform:custom"));
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "HTTPS_PROXY")
        );
    }

    #[test]
    fn pods_and_their_config_maps_carry_the_shard_label_whatever_the_template_says() {
        let key = super::super::shard::SHARD_KEY;
        let settings = PodSettings {
            shard: Shard::new(Some(&format!("{key}=blue"))).unwrap(),
            ..settings()
        };
        let t = RunnerPodTemplate {
            labels: BTreeMap::from([(key.into(), "red".into()), ("team".into(), "a".into())]),
            ..Default::default()
        };
        let object = BTreeMap::from([(key.into(), "blue".into()), ("app".into(), "x".into())]);
        let (cm, pod) = build(&spec(), &object, None, Some(&t), None, &settings).unwrap();
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(
            (labels[key].as_str(), labels["team"].as_str()),
            ("blue", "a")
        );
        assert!(!labels.contains_key("app"));
        assert_eq!(cm.metadata.labels.unwrap()[key], "blue");
    }
}
