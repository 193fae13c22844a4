//! The supervisor: PID 1's loop after the switch. It starts the agent and the image's services, reaps
//! every child (orphans included), restarts those with `restart = true` after a second, and turns
//! SIGTERM/SIGINT into a reboot and SIGUSR1/SIGUSR2 into a power-off.
#![allow(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions, waitpid};
use serde::Deserialize;

use crate::power::{self, Kind};
use crate::say;

/// One supervised program.
#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    /// For logs.
    pub name: String,
    /// Program and arguments.
    pub exec: Vec<String>,
    /// Start again when it exits.
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Deserialize)]
struct ServicesFile {
    #[serde(default)]
    service: Vec<Service>,
}

/// The agent, always first.
pub fn agent() -> Service {
    Service {
        name: "halyard-agent".into(),
        exec: [
            "/usr/bin/halyard-agent",
            "--config",
            "/etc/halyard/agent.toml",
            "run",
        ]
        .map(str::to_owned)
        .to_vec(),
        restart: true,
    }
}

/// The agent plus `/etc/halyard/services.toml`.
pub fn services() -> Vec<Service> {
    let mut all = vec![agent()];
    let path = "/etc/halyard/services.toml";
    match std::fs::read_to_string(path).map(|t| toml::from_str::<ServicesFile>(&t)) {
        Ok(Ok(file)) => all.extend(file.service),
        Ok(Err(e)) => say!("{path}: {e}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => say!("{path}: {e}"),
    }
    all
}

struct Running {
    service: Service,
    pid: Option<Pid>,
    start_at: Option<Instant>,
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGHUP,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` is initialised; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

fn spawn(r: &mut Running) {
    r.start_at = None;
    let mut cmd = Command::new(&r.service.exec[0]);
    cmd.args(&r.service.exec[1..]).env("PATH", "/usr/bin:/sbin:/bin");
    match cmd.spawn() {
        Ok(child) => {
            say!("started {} (pid {})", r.service.name, child.id());
            r.pid = Pid::from_raw(child.id() as i32);
        }
        Err(e) => {
            say!("cannot start {}: {e}", r.service.name);
            if r.service.restart {
                r.start_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

fn reap(running: &mut [Running]) {
    while let Ok(Some((pid, status))) = waitpid(None, WaitOptions::NOHANG) {
        if let Some(r) = running.iter_mut().find(|r| r.pid == Some(pid)) {
            say!("{} exited ({status:?})", r.service.name);
            r.pid = None;
            if r.service.restart {
                r.start_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Run until a shutdown signal; never returns.
pub fn run() -> ! {
    let set = signal_set();
    // SAFETY: blocks the signals in this (single-threaded) process; children get an empty mask from
    // std's spawn.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);
    let mut running: Vec<Running> = services()
        .into_iter()
        .map(|service| Running {
            service,
            pid: None,
            start_at: Some(Instant::now()),
        })
        .collect();
    loop {
        let now = Instant::now();
        for r in running
            .iter_mut()
            .filter(|r| r.start_at.is_some_and(|t| t <= now))
        {
            spawn(r);
        }
        match wait_signal(&set, Duration::from_millis(500)) {
            Some(libc::SIGTERM | libc::SIGINT) => shutdown(Kind::Reboot),
            Some(libc::SIGUSR1 | libc::SIGUSR2) => shutdown(Kind::PowerOff),
            _ => reap(&mut running),
        }
    }
}

fn shutdown(kind: Kind) -> ! {
    say!("shutting down ({kind:?}): stopping processes");
    kill_all(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match waitpid(None, WaitOptions::NOHANG) {
            Ok(Some(_)) => {}
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    kill_all(libc::SIGKILL);
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {}
    power::halt(kind)
}

/// kill(-1, sig): every process but PID 1 (rustix's `Pid` cannot say -1).
fn kill_all(sig: libc::c_int) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(-1, sig) };
}
