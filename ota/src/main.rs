//! `halyard-ota`: thin wrapper over [`halyard_ota::cli`] (args, tracing, exit status).

use std::process::ExitCode;

use clap::Parser;
use halyard_ota::cli::{self, Cli, EXIT_FAILURE, EXIT_OK};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_FAILURE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json;
    match cli::run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.code(), "message": e.to_string(), "exit": e.exit_code()})
                );
            }
            eprintln!("error[{}]: {e}", e.code());
            ExitCode::from(e.exit_code())
        }
    }
}
