use std::process::ExitCode;

use clap::{Parser, Subcommand};

use landform::{cli, controller, telemetry};

/// Reconciles OpenTofu/Terraform modules and AWS CloudFormation templates from Kubernetes.
#[derive(Parser)]
#[command(name = "landform", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Controller(controller::Options),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Publish a module directory or template file as a Flux-compatible OCI artifact.
    Push(cli::oci::PushArgs),
    /// Fetch an OCI artifact, verify its digests and extract it safely.
    Pull(cli::oci::PullArgs),
    /// Execute one run (plan, apply or destroy) and leave its results in Kubernetes objects.
    Runner(cli::runner::RunnerArgs),
    /// Show the current plan of an object.
    Plan(cli::objects::ObjectArgs),
    /// Approve the plan waiting on an object (exactly that plan).
    Approve(cli::objects::ApproveArgs),
    /// Show the last drift report of an object.
    Drift(cli::objects::ObjectArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Crds => match cli::crds::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: rendering the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Push(args) => run_cli(async move {
            cli::oci::push(args)
                .await
                .map_err(|e| (e.reason().as_str(), e.to_string()))
        }),
        Command::Pull(args) => run_cli(async move {
            cli::oci::pull(args)
                .await
                .map_err(|e| (e.reason().as_str(), e.to_string()))
        }),
        Command::Plan(args) => run_cli(async move {
            cli::objects::show(args)
                .await
                .map_err(|e| (e.reason(), e.to_string()))
        }),
        Command::Approve(args) => run_cli(async move {
            cli::objects::approve(args)
                .await
                .map_err(|e| (e.reason(), e.to_string()))
        }),
        Command::Drift(args) => run_cli(async move {
            cli::objects::drift(args)
                .await
                .map_err(|e| (e.reason(), e.to_string()))
        }),
        Command::Runner(args) => {
            telemetry::init(telemetry::LogFormat::Text);
            match runtime(false) {
                Ok(rt) => rt.block_on(cli::runner::run(args)),
                Err(code) => code,
            }
        }
        Command::Controller(opts) => {
            limit_malloc_arenas();
            telemetry::init(opts.log_format);
            let runtime = match runtime(true) {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match runtime.block_on(controller::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// glibc gives every thread that allocates an arena of its own, and memory freed in one is not
/// reused by another: the controller's resident memory would grow with its threads (workers,
/// blocking pool) rather than with its objects. Two arenas serve a process that mostly waits.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The async runtime: multi-threaded for the controller, one thread for one-shot commands.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: starting the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// Runs a one-shot command: its result on stdout, or the error (with its reason) on stderr.
fn run_cli<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = Result<String, (&'static str, String)>>,
{
    let runtime = match runtime(false) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(fut) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err((reason, message)) => {
            eprintln!("error ({reason}): {message}");
            ExitCode::FAILURE
        }
    }
}
