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
        Command::Controller(opts) => {
            telemetry::init(opts.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
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
