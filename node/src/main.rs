//! `halyard-agent`: the thin binary over [`halyard_node::app`]. Arguments, logging, configuration,
//! then one library call; errors become a message and exit code 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use halyard_node::app;
use halyard_node::config::{DEFAULT_CONFIG, Sources};
use halyard_node::driver::Halt;

/// Halyard device agent: A/B updates driven by a fleet server.
#[derive(Debug, Parser)]
#[command(name = "halyard-agent", version)]
struct Cli {
    /// Main config file (its drop-ins are read from `agent.d/` beside it).
    #[arg(long, global = true, default_value = halyard_node::config::SYSTEM_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Print the journaled state and the slots' images.
    Status,
    /// Install a local bundle file through the normal verify and install path.
    Install {
        /// The bundle.
        file: PathBuf,
    },
    /// Print the shipped default configuration.
    PrintDefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halyard-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::PrintDefaultConfig = command {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let sources = Sources::around(&cli.config);
    let settings = sources
        .load()
        .with_context(|| format!("loading configuration from {}", cli.config.display()))?;
    match command {
        Command::Status => print!("{}", app::status(&settings)?),
        Command::Install { file } => {
            let hardware = app::setup::linux_hardware(&settings).context("opening the device")?;
            let halt = app::install_file(&settings, &file, hardware)
                .with_context(|| format!("installing {}", file.display()))?;
            report_halt(halt);
        }
        Command::Run | Command::PrintDefaultConfig => {
            let stop = stop_on_signals().context("installing signal handlers")?;
            let halt = app::run(&settings, &stop).context("running the agent")?;
            report_halt(halt);
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT set the returned flag: the agent loop sees it between two steps (the journal is
/// consistent there), disconnects and exits 0. A second signal while it winds down exits at once
/// (status 1): the journal is crash-safe at any instant, so that is still safe.
fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

fn report_halt(halt: Halt) {
    match halt {
        Halt::Rebooting => tracing::info!("reboot requested; exiting so init can restart the machine"),
        Halt::Waiting => tracing::info!("agent stopped"),
    }
}
