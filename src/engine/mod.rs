//! `landform runner`: executes exactly one run (engine × operation) and exits. In a pod in
//! production; as a local process in `--runner=local` mode and in tests.
//!
//! This file only dispatches: the run spec's [`Work`] names the engine (`tofu/`,
//! `cloudformation/`), and whatever the engine returns, or the error it fails with, becomes the
//! run's result object. What every engine shares sits in leaf modules: [`error`], [`options`],
//! Kubernetes I/O in [`objects`], the verified artifact in [`artifact`], [`values`] and
//! [`workspace`].

pub mod artifact;
pub mod chunks;
pub mod cloudformation;
pub mod error;
pub mod interrupt;
pub mod objects;
pub mod options;
pub mod redact;
pub mod tofu;
pub mod values;
pub mod workspace;

use kube::Client;

use crate::contract::reasons::RunnerReason;
use crate::contract::{Operation, RunResult, RunSpec, Work};
pub use error::RunError;
pub use options::Options;
use redact::Secrets;

/// Runs `spec` and writes its result object; returns the result.
pub async fn run(client: &Client, spec: &RunSpec, opts: &Options) -> Result<RunResult, RunError> {
    let secrets = Secrets::default();
    let outcome = match precheck(client, spec).await {
        Err(e) => Err(e),
        Ok(()) => dispatch(client, spec, opts, &secrets).await,
    };
    let mut result = outcome.unwrap_or_else(|e| RunResult {
        succeeded: false,
        reason: Some(e.reason().into()),
        message: Some(e.to_string()),
        ..Default::default()
    });
    if !result.succeeded && interrupt::requested() {
        result.reason = Some(<&str>::from(RunnerReason::Interrupted).into());
        result.message = Some(format!(
            "the run was told to stop (its pod deleted or evicted, or its controller stopping); \
             the engine was interrupted and wrote the state it had: {}",
            result.message.as_deref().unwrap_or("")
        ));
    }
    // Whatever an engine quoted, no value read from a Secret leaves the runner, and nothing
    // larger than a result may hold (a Secret has a size limit; the real reason must fit).
    secrets.redact_result(&mut result);
    if let Some(message) = result.message.as_mut() {
        crate::contract::result::bound(message, crate::contract::result::limits::TEXT);
    }
    objects::write_result(client, spec, &result).await?;
    Ok(result)
}

/// What must hold before a plan or apply changes anything: an outputs Secret the run may
/// write.
async fn precheck(client: &Client, spec: &RunSpec) -> Result<(), RunError> {
    match (&spec.outputs_secret, spec.operation) {
        (Some(target), Operation::Plan | Operation::Apply) => {
            objects::check_outputs_target(client, spec, target).await
        }
        _ => Ok(()),
    }
}

async fn dispatch(
    client: &Client,
    spec: &RunSpec,
    opts: &Options,
    secrets: &Secrets,
) -> Result<RunResult, RunError> {
    match &spec.work {
        Work::OpenTofu(module) => {
            tofu::run::run(client, spec, module, &opts.tofu, opts, secrets).await
        }
        Work::Terraform(module) => {
            tofu::run::run(client, spec, module, &opts.terraform, opts, secrets).await
        }
        Work::CloudFormation(stack) => {
            cloudformation::run::run(client, spec, stack, opts, secrets).await
        }
    }
}
