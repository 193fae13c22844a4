//! `halyard-os`: the thin binary over [`halyard_os`]: build an image, boot a disk under QEMU, and the
//! `pipe` helper QEMU runs for each forwarded guest connection.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use halyard_os::image::{self, BuildOptions};
use halyard_os::qemu::{self, Forward, RunOptions};

/// Build and boot Halyard OS images.
#[derive(Debug, Parser)]
#[command(name = "halyard-os", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the root image, disk image, initramfs and bundles of an image spec.
    Build {
        /// The image spec (TOML).
        spec: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// An older build folder: also write a delta bundle from its root image.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Boot a disk image under QEMU (kernel, initramfs and cmdline from the disk's folder).
    Run {
        /// The disk image.
        disk: PathBuf,
        /// Guest-to-host forward GUEST_PORT:HOST_PORT (guest connects to 10.0.2.100:GUEST_PORT).
        #[arg(long = "forward", value_parser = parse_forward)]
        forwards: Vec<Forward>,
        /// Guest RAM in MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
    },
    /// Copy stdin/stdout to a TCP connection (QEMU runs this per forwarded connection).
    Pipe {
        /// host:port
        addr: String,
    },
}

fn parse_forward(s: &str) -> Result<Forward, String> {
    let (g, h) = s.split_once(':').ok_or("expected GUEST_PORT:HOST_PORT")?;
    Ok(Forward {
        guest_port: g.parse().map_err(|e| format!("{e}"))?,
        host_port: h.parse().map_err(|e| format!("{e}"))?,
    })
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
        Ok(code) => code,
        Err(e) => {
            eprintln!("halyard-os: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build { spec, out, from } => {
            let summary = image::build(&BuildOptions { spec, out, from }).context("building the image")?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Run {
            disk,
            forwards,
            memory,
        } => {
            let me = std::env::current_exe().context("locating halyard-os for the forwards")?;
            let mut opts = RunOptions::beside(&disk, me)?;
            opts.forwards = forwards;
            opts.memory_mib = memory;
            let status = opts.command().status().context("running qemu-system-x86_64")?;
            return Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Pipe { addr } => qemu::pipe(&addr)?,
    }
    Ok(ExitCode::SUCCESS)
}
