//! CloudFormationStack tests: moto (the real CloudFormation and S3 APIs of the test environment),
//! SDK clients for it, and a namespace with a controller and AWS credentials.

use std::time::Duration;

use aws_sdk_cloudformation::types::{Stack, StackStatus};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use landform::api::{CloudFormationStack, ObjectStatus};
use serde_json::json;

use super::*;

pub const WAIT: Duration = Duration::from_secs(120);

pub const TEMPLATE_V1: &str = r#"AWSTemplateFormatVersion: "2010-09-09"
Description: A greeting, kept in SSM.
Parameters:
  Greeting:
    Type: String
    Default: hello
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${AWS::StackName}/greeting"
      Type: String
      Value: !Ref Greeting
Outputs:
  Greeting:
    Value: !Ref Greeting
  ParamName:
    Value: !Ref Param
"#;

/// V1 plus a queue.
pub fn template_v2() -> String {
    TEMPLATE_V1.replace("Outputs:", "  Queue:\n    Type: AWS::SQS::Queue\nOutputs:")
}

pub fn moto() -> String {
    testenv()["LANDFORM_TEST_MOTO"].replace("127.0.0.1", "localhost")
}

pub async fn aws() -> (aws_sdk_cloudformation::Client, aws_sdk_s3::Client) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(true)
        .build();
    (
        aws_sdk_cloudformation::Client::new(&conf),
        aws_sdk_s3::Client::from_conf(s3),
    )
}

/// The stack as DescribeStacks shows it.
pub async fn described(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Stack {
    let out = cfn.describe_stacks().stack_name(name).send().await.unwrap();
    out.stacks()[0].clone()
}

pub async fn stack_status(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Option<StackStatus> {
    let out = cfn.describe_stacks().stack_name(name).send().await.ok()?;
    out.stacks().first()?.stack_status().cloned()
}

pub async fn resources(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Vec<String> {
    let out = cfn
        .describe_stack_resources()
        .stack_name(name)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .stack_resources()
        .iter()
        .filter_map(|r| r.logical_resource_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

pub struct Env {
    pub client: kube::Client,
    pub ns: String,
    pub api: Api<CloudFormationStack>,
    pub controller: Controller,
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
}

pub async fn setup(prefix: &str) -> Env {
    let client = admin_client().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let creds: Secret = serde_json::from_value(json!({"metadata": {"name": "aws"},
        "stringData": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    let controller = Controller::start(&client, &ns, &[]).await;
    let (cfn, s3) = aws().await;
    Env {
        api: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        controller,
        cfn,
        s3,
    }
}

impl Env {
    /// A stack object with the moto endpoint and credentials filled in.
    pub async fn create(&self, name: &str, repo: &str, tag: &str, extra: serde_json::Value) {
        let mut spec = json!({"interval": "1h", "approvePlan": "auto",
            "source": {"oci": {"url": repo, "ref": {"tag": tag}, "insecure": true}},
            "stackName": self.stack(name), "region": "us-east-1", "endpointURL": moto(),
            "credentialsSecretRef": {"name": "aws"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let obj: CloudFormationStack =
            serde_json::from_value(json!({"apiVersion": "landform.dev/v1alpha1",
            "kind": "CloudFormationStack", "metadata": {"name": name}, "spec": spec}))
            .unwrap();
        self.api.create(&PostParams::default(), &obj).await.unwrap();
    }

    pub fn stack(&self, name: &str) -> String {
        format!("{}-{name}", self.ns)
    }

    pub async fn patch(&self, name: &str, spec: serde_json::Value) {
        self.api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Asks for a reconcile now, as `flux reconcile` does (a fresh plan).
    pub async fn request(&self, name: &str, token: &str) {
        let ask = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(ask))
            .await
            .unwrap();
    }

    /// Waits for the Ready condition to have `status` and `reason`.
    pub async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> ObjectStatus {
        eventually(
            &format!("{name} Ready={status} ({reason})"),
            WAIT,
            || async {
                let s = self.api.get(name).await.ok()?.status?;
                let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
                (ready.status == status && ready.reason == reason).then_some(s)
            },
        )
        .await
    }
}
