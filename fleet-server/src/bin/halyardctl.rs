//! `halyardctl`: the operator CLI of the Halyard fleet server. Everything is in
//! [`halyard_server::ctl`]; this only parses arguments and turns errors into exit codes
//! (0 ok, 1 server refused, 2 usage, 3 cannot reach server).

use std::process::ExitCode;

use clap::Parser;
use halyard_server::ctl::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("halyardctl: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
