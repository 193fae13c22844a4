//! `halyard-sim`: runs fleet scenarios. Until the simulator lands (issue 6) it only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    eprintln!(
        "halyard-sim {cmd}: not yet — the simulator and its demo land with issue 6. \
         Today you can try the update tooling: cargo run -p halyard-ota -- --help"
    );
    ExitCode::from(2)
}
