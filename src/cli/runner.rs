//! `landform runner`: one run, from a run spec file, with results left in Kubernetes objects.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::contract::RunSpec;
use crate::engine::{self, Options};
use crate::source::archive::Limits;

#[derive(Clone, Debug, clap::Args)]
pub struct RunnerArgs {
    /// The run spec (JSON).
    #[arg(long, env = "LANDFORM_RUN_SPEC")]
    pub spec: PathBuf,
    /// The OpenTofu binary.
    #[arg(long, env = "LANDFORM_TOFU", default_value = "tofu")]
    pub tofu: PathBuf,
    /// The Terraform binary, for `engine: Terraform`.
    #[arg(long, env = "LANDFORM_TERRAFORM", default_value = "terraform")]
    pub terraform: PathBuf,
    /// Verified, extracted artifacts by digest.
    #[arg(
        long,
        env = "LANDFORM_CACHE_DIR",
        default_value = "/tmp/landform/artifacts"
    )]
    pub cache_dir: PathBuf,
    /// Provider plugin cache shared by runs (TF_PLUGIN_CACHE_DIR).
    #[arg(long, env = "LANDFORM_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Refuse artifacts that extract to more than this many bytes.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    pub max_bytes: u64,
    /// Refuse artifacts with more than this many entries.
    #[arg(long, default_value_t = Limits::default().max_files)]
    pub max_files: u64,
}

/// Exit 0: the run succeeded; 1: it failed (the result object says why); 2: no result could be
/// written.
pub async fn run(args: RunnerArgs) -> ExitCode {
    tracing::info!("runner started");
    engine::interrupt::on_terminate();
    let spec: RunSpec = match std::fs::read(&args.spec)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: reading the run spec {}: {e}", args.spec.display());
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: connecting to the Kubernetes API: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        tofu: args.tofu,
        terraform: args.terraform,
        cache_dir: args.cache_dir,
        limits: Limits {
            max_bytes: args.max_bytes,
            max_files: args.max_files,
        },
        plugin_cache_dir: args.plugin_cache_dir,
        in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        kubeconfig: std::env::var_os("KUBECONFIG").map(PathBuf::from),
    };
    match engine::run(&client, &spec, &opts).await {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            if result.succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error ({}): {e}", e.reason());
            ExitCode::from(2)
        }
    }
}
