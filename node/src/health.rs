//! Health checks run during a trial boot: a command's exit code, a TCP connect, an HTTP GET's status
//! (plain HTTP/1.1 over a `TcpStream`), a systemd unit's `is-active` (skipped, with the reason,
//! when systemd is not the init system), the fleet server's reachability (TCP connect to the
//! broker, or an HTTP(S) GET of the server URL). Every check has a timeout and returns a [`CheckResult`]
//! whose [`Verdict`] carries the reason.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where systemd says it is running (`sd_booted`).
pub const SYSTEMD_MARKER: &str = "/run/systemd/system";

/// One health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Run `program args…`; healthy when it exits 0 within the timeout.
    Command {
        /// Program path.
        program: PathBuf,
        /// Arguments.
        args: Vec<String>,
        /// Limit.
        timeout: Duration,
    },
    /// Healthy when a TCP connection to `addr` opens within the timeout.
    Tcp {
        /// Address.
        addr: SocketAddr,
        /// Limit.
        timeout: Duration,
    },
    /// `GET path` on `addr`; healthy when the status is `expect`.
    Http {
        /// Address.
        addr: SocketAddr,
        /// Host header.
        host: String,
        /// Request path.
        path: String,
        /// Expected status.
        expect: u16,
        /// Limit for connect, write and read each.
        timeout: Duration,
    },
    /// `systemctl is-active <unit>`; skipped when systemd is not running.
    SystemdUnit {
        /// Unit name.
        unit: String,
        /// Limit.
        timeout: Duration,
    },
    /// The fleet server is reachable.
    Server {
        /// How to reach it.
        probe: ServerProbe,
        /// Limit.
        timeout: Duration,
    },
    /// Healthy while `path` exists: the ready marker an application writes once it serves.
    File {
        /// The marker.
        path: PathBuf,
    },
    /// A check the program embedding the agent supplies (not in the configuration file).
    Probe(Probe),
}

/// A named check function from the program that embeds the agent as a library (the simulator's
/// images that start slowly); the agent runs it like any other check.
#[derive(Clone)]
pub struct Probe {
    name: String,
    run: Arc<dyn Fn() -> Verdict + Send + Sync>,
}

impl Probe {
    /// A probe called `name` whose verdict `run` gives.
    pub fn new(name: impl Into<String>, run: impl Fn() -> Verdict + Send + Sync + 'static) -> Self {
        Self {
            name: name.into(),
            run: Arc::new(run),
        }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Probes are equal when they are the same function under the same name.
impl PartialEq for Probe {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.run, &other.run)
    }
}

impl Eq for Probe {}

/// How the `server` check reaches the fleet server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerProbe {
    /// A TCP connection to the MQTT broker opens (the name is resolved on every run).
    Broker {
        /// Broker host.
        host: String,
        /// Broker port.
        port: u16,
    },
    /// An HTTP(S) `GET` of the server's base URL gets an answer below 500 (any such status means
    /// the server itself is up; TLS is checked against `ca_file` like every other request).
    Http {
        /// `server.url`.
        url: String,
        /// `server.ca_file`.
        ca_file: Option<PathBuf>,
    },
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy.
    Pass,
    /// Unhealthy, and why.
    Fail(String),
    /// Not applicable here, and why (counts as healthy).
    Skipped(String),
}

/// A named outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
}

impl Check {
    /// A short name for reports: `command:/bin/true`, `tcp:127.0.0.1:80`, …
    pub fn name(&self) -> String {
        match self {
            Self::Command { program, .. } => format!("command:{}", program.display()),
            Self::Tcp { addr, .. } => format!("tcp:{addr}"),
            Self::Http { addr, path, .. } => format!("http:{addr}{path}"),
            Self::SystemdUnit { unit, .. } => format!("systemd:{unit}"),
            Self::Server {
                probe: ServerProbe::Broker { host, port },
                ..
            } => format!("server:broker {host}:{port}"),
            Self::Server {
                probe: ServerProbe::Http { url, .. },
                ..
            } => format!("server:http {url}"),
            Self::File { path } => format!("file:{}", path.display()),
            Self::Probe(p) => format!("probe:{}", p.name),
        }
    }

    /// Run the check once.
    pub fn run(&self) -> CheckResult {
        let verdict = match self {
            Self::Command {
                program,
                args,
                timeout,
            } => run_command(program, args, *timeout),
            Self::Tcp { addr, timeout } => match TcpStream::connect_timeout(addr, *timeout) {
                Ok(_) => Verdict::Pass,
                Err(e) => Verdict::Fail(format!("connect failed: {e}")),
            },
            Self::Http {
                addr,
                host,
                path,
                expect,
                timeout,
            } => http_status(*addr, host, path, *timeout).map_or_else(Verdict::Fail, |status| {
                if status == *expect {
                    Verdict::Pass
                } else {
                    Verdict::Fail(format!("status {status}, expected {expect}"))
                }
            }),
            Self::SystemdUnit { unit, timeout } => systemd_unit(Path::new(SYSTEMD_MARKER), unit, *timeout),
            Self::Server { probe, timeout } => server(probe, *timeout),
            Self::File { path } => match path.try_exists() {
                Ok(true) => Verdict::Pass,
                Ok(false) => Verdict::Fail("missing".to_owned()),
                Err(e) => Verdict::Fail(e.to_string()),
            },
            Self::Probe(p) => (p.run)(),
        };
        let name = self.name();
        tracing::debug!(check = %name, ?verdict, "health check");
        CheckResult { name, verdict }
    }
}

/// Run every check; the first failure's `name: reason`, or `None` when all are healthy.
pub fn first_failure(checks: &[Check]) -> Option<String> {
    checks.iter().map(Check::run).find_map(|r| match r.verdict {
        Verdict::Fail(reason) => Some(format!("{}: {reason}", r.name)),
        Verdict::Pass | Verdict::Skipped(_) => None,
    })
}

fn run_command(program: &Path, args: &[String], timeout: Duration) -> Verdict {
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Verdict::Fail(format!("cannot start: {e}")),
    };
    let start = Instant::now();
    // Poll quickly first (most checks end within milliseconds), then back off to 50 ms.
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Verdict::Pass,
            Ok(Some(status)) => return Verdict::Fail(format!("exited with {status}")),
            Ok(None) if start.elapsed() >= timeout => {
                // Best effort: the child may have exited in between; either way it is reaped below.
                let _ = child.kill();
                let _ = child.wait();
                return Verdict::Fail(format!("timed out after {timeout:?}"));
            }
            Ok(None) => {
                std::thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Verdict::Fail(format!("wait failed: {e}")),
        }
    }
}

/// The status code of `GET path` on `addr`.
fn http_status(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect failed: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket setup failed: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: halyard-agent\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("request failed: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 1024 && !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("reading the status line failed: {e}")),
        }
    }
    parse_status_line(&String::from_utf8_lossy(&head))
}

fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("not an HTTP/1.x status line: {:?}", line.trim_end())),
    }
}

/// The fleet server's reachability.
fn server(probe: &ServerProbe, timeout: Duration) -> Verdict {
    match probe {
        ServerProbe::Broker { host, port } => {
            let addrs = match (host.as_str(), *port).to_socket_addrs() {
                Ok(addrs) => addrs.collect::<Vec<_>>(),
                Err(e) => return Verdict::Fail(format!("cannot resolve {host}: {e}")),
            };
            let mut last = format!("{host} resolves to no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => return Verdict::Pass,
                    Err(e) => last = format!("connect to {addr} failed: {e}"),
                }
            }
            Verdict::Fail(last)
        }
        ServerProbe::Http { url, ca_file } => {
            let agent = match crate::transport::http::agent(ca_file.as_deref(), timeout, timeout) {
                Ok(agent) => agent,
                Err(e) => return Verdict::Fail(e.to_string()),
            };
            match agent.get(url).call() {
                Ok(resp) if resp.status().as_u16() < 500 => Verdict::Pass,
                Ok(resp) => Verdict::Fail(format!("status {}", resp.status())),
                Err(e) => Verdict::Fail(format!("GET {url} failed: {e}")),
            }
        }
    }
}

/// `systemctl is-active --quiet unit`, or skipped when `marker` (systemd's runtime dir) is absent.
pub fn systemd_unit(marker: &Path, unit: &str, timeout: Duration) -> Verdict {
    if !marker.is_dir() {
        return Verdict::Skipped(format!("systemd is not running ({} is absent)", marker.display()));
    }
    let args = vec!["is-active".to_owned(), "--quiet".to_owned(), unit.to_owned()];
    match run_command(Path::new("systemctl"), &args, timeout) {
        Verdict::Fail(reason) => Verdict::Fail(format!("unit {unit} is not active ({reason})")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_strictly() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content\r\n"), Ok(204));
        assert!(parse_status_line("SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line("HTTP/1.1 abc\r\n").is_err());
        assert!(parse_status_line("").is_err());
    }
}
