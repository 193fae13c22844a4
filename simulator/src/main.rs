//! `halyard-sim`: runs the demo (scenario files land with the rest of issue 6).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Halyard fleet simulator: real agents over fake hardware against the real server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Embedded server + broker, a simulated fleet, a good rollout and a bad one caught by the canary.
    ///
    /// Exit codes: 0 the demo behaved as expected, 1 it did not, 2 it could not run.
    Demo {
        /// Number of simulated devices (spread over 3 sites and 3 hardware classes).
        #[arg(long, default_value_t = 300)]
        devices: usize,
        /// Seed for canary selection.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,rumqttd=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Cmd::Demo { devices, seed } => {
            match halyard_sim::demo::run(&halyard_sim::demo::DemoOptions { devices, seed }) {
                Ok(o) if o.passed(devices) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("halyard-sim demo: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
