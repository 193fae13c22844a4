//! `halyard-init`: PID 1 of Halyard OS, and `reboot`/`poweroff` (the same binary under those names
//! asks PID 1 to shut down). See [`halyard_init`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = argv0.rsplit('/').next().unwrap_or_default().to_owned();
    match name.as_str() {
        "reboot" | "poweroff" => match halyard_init::power::request(&name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                ExitCode::FAILURE
            }
        },
        _ if std::process::id() != 1 => {
            eprintln!("halyard-init: must run as PID 1 (or be called reboot/poweroff)");
            ExitCode::FAILURE
        }
        _ => halyard_init::run(),
    }
}
