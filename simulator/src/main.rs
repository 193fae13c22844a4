//! `halyard-sim`: the demo, and scenario files with their `expect` assertions.

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
    /// Run a scenario file (TOML, see simulator/README.md) and check its `expect` list.
    ///
    /// Writes results.json and chart.svg (devices per version over time) to --out, and in virtual
    /// time events.log (the same for the same scenario and seed, byte for byte).
    /// Exit codes: 0 every expectation held, 1 one failed, 2 the scenario could not run.
    Run {
        /// The scenario file.
        file: std::path::PathBuf,
        /// Where to write results.json and chart.svg.
        #[arg(long, default_value = "halyard-sim-results")]
        out: std::path::PathBuf,
        /// Print the results as JSON instead of the text summary.
        #[arg(long)]
        json: bool,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
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
        Cmd::Run {
            file,
            out,
            json,
            seed,
        } => match run_scenario(&file, &out, json, seed) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("halyard-sim run: {e:#}");
                ExitCode::from(2)
            }
        },
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

fn run_scenario(
    file: &std::path::Path,
    out: &std::path::Path,
    json: bool,
    seed: Option<u64>,
) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    let mut scenario = halyard_sim::scenario::Scenario::load(file)?;
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let work = tempfile::tempdir().context("temporary directory")?;
    let mut say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let report = match scenario.clock {
        halyard_sim::scenario::ClockMode::Real => halyard_sim::run::run(&scenario, work.path(), &mut say)?,
        halyard_sim::scenario::ClockMode::Virtual => {
            let (report, log) = halyard_sim::virt::scenario::run(&scenario, work.path(), &mut say)?;
            std::fs::write(out.join("events.log"), log).context("writing events.log")?;
            report
        }
    };
    let results = serde_json::to_string_pretty(&report).context("encoding results")?;
    std::fs::write(out.join("results.json"), &results).context("writing results.json")?;
    let chart = halyard_sim::chart::svg(
        &format!("{}: devices per version", report.scenario),
        &report.timeline,
        report.devices,
    );
    std::fs::write(out.join("chart.svg"), chart).context("writing chart.svg")?;
    if json {
        println!("{results}");
    } else {
        print!("{}", halyard_sim::run::summary(&report));
        println!(
            "results: {}, chart: {}",
            out.join("results.json").display(),
            out.join("chart.svg").display()
        );
    }
    Ok(report.passed())
}
