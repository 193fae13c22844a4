//! Booting a disk image under `qemu-system-x86_64 -M q35` (TCG): direct kernel boot with the image's
//! kernel and initramfs, the disk as a virtio block device, a virtio NIC on user-mode networking with
//! `restrict=on` (the guest reaches nothing but the forwards), a virtio RNG, serial console on stdout,
//! `-no-reboot` (a guest reboot ends the run; the next boot is a new run on the same disk).
//!
//! Guest-to-host forwards use `guestfwd=...-cmd:halyard-os pipe 127.0.0.1:PORT`: QEMU starts the pipe
//! once per guest connection, so any number of connections reach the host's loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::OsError;

/// The guest-side address that forwards reach the host through.
pub const HOST_ALIAS: &str = "10.0.2.100";

/// One guest-to-host TCP forward: the guest connects to `HOST_ALIAS:guest_port`, the host side
/// reaches `127.0.0.1:host_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Port the guest connects to on [`HOST_ALIAS`].
    pub guest_port: u16,
    /// Port on the host's 127.0.0.1.
    pub host_port: u16,
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The disk image (written in place).
    pub disk: PathBuf,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Guest-to-host forwards.
    pub forwards: Vec<Forward>,
    /// The program QEMU runs per forwarded connection (`halyard-os`, run as `pipe ADDR`).
    pub pipe_program: PathBuf,
    /// Cap on the disk's write rate in bytes per second (QEMU `throttling.bps-write`); `None`
    /// writes at full speed. A slow disk widens the window in which a test cuts the power.
    pub write_bytes_per_sec: Option<u64>,
}

impl RunOptions {
    /// Defaults for `disk`: `vmlinuz`, `initramfs.img` and `cmdline` beside it, 256 MiB.
    pub fn beside(disk: &Path, pipe_program: PathBuf) -> Result<Self, OsError> {
        let dir = disk.parent().unwrap_or(Path::new("."));
        let cmdline_file = dir.join("cmdline");
        let cmdline = std::fs::read_to_string(&cmdline_file).map_err(OsError::io(&cmdline_file))?;
        Ok(Self {
            disk: disk.to_path_buf(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initramfs.img"),
            cmdline: cmdline.trim().to_owned(),
            memory_mib: 256,
            forwards: Vec::new(),
            pipe_program,
            write_bytes_per_sec: None,
        })
    }

    /// The `qemu-system-x86_64` command line.
    pub fn command(&self) -> Command {
        let mut netdev = "user,id=n0,restrict=on".to_owned();
        for f in &self.forwards {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{HOST_ALIAS}:{}-cmd:{} pipe 127.0.0.1:{}",
                f.guest_port,
                self.pipe_program.display(),
                f.host_port
            ));
        }
        let mut drive = format!("file={},format=raw,if=virtio,cache=unsafe", self.disk.display());
        if let Some(bps) = self.write_bytes_per_sec {
            drive.push_str(&format!(",throttling.bps-write={bps}"));
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-M", "q35", "-accel", "tcg", "-smp", "1"])
            .arg("-m")
            .arg(format!("{}M", self.memory_mib))
            .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(&self.cmdline)
            .arg("-drive")
            .arg(drive)
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0,romfile="])
            .args(["-device", "virtio-rng-pci"]);
        cmd
    }
}

/// A running guest whose console lines are collected.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    /// When QEMU was started.
    pub started: Instant,
}

impl Vm {
    /// Start QEMU; console lines are kept and also appended to `log` (when given).
    pub fn start(opts: &RunOptions, log: Option<&Path>) -> Result<Self, OsError> {
        let mut cmd = opts.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(|e| OsError::Tool {
            program: "qemu-system-x86_64".into(),
            reason: format!("cannot start: {e}"),
        })?;
        let stdout = child.stdout.take().ok_or_else(|| OsError::Tool {
            program: "qemu-system-x86_64".into(),
            reason: "no stdout".into(),
        })?;
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        let mut file = match log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(OsError::io(p))?,
            ),
            None => None,
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if let Some(f) = file.as_mut() {
                    let _ = std::io::Write::write_all(f, format!("{line}\n").as_bytes());
                }
                let (m, cv) = &*sink;
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
                cv.notify_all();
            }
        });
        Ok(Self {
            child,
            lines,
            started: Instant::now(),
        })
    }

    /// Wait until a console line contains `needle`; returns the time since start.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Duration, OsError> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut seen = 0;
        let mut lines = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if lines[seen..].iter().any(|l| l.contains(needle)) {
                return Ok(self.started.elapsed());
            }
            seen = lines.len();
            let now = Instant::now();
            if now >= deadline {
                return Err(OsError::Tool {
                    program: "qemu-system-x86_64".into(),
                    reason: format!("no console line with {needle:?} within {timeout:?}"),
                });
            }
            lines = cv
                .wait_timeout(lines, (deadline - now).min(Duration::from_millis(500)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// All console lines so far.
    pub fn console(&self) -> Vec<String> {
        self.lines
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Wait for QEMU to exit (a guest reboot or power-off); `None` on timeout (QEMU keeps running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>, OsError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(OsError::io(Path::new("qemu")))? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Power cut: SIGKILL QEMU and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `halyard-os pipe ADDR`: copy stdin to a TCP connection to `addr` and the connection to stdout.
pub fn pipe(addr: &str) -> Result<(), OsError> {
    let io = |e| OsError::Io {
        path: PathBuf::from(addr),
        source: e,
    };
    let stream = std::net::TcpStream::connect(addr).map_err(io)?;
    let mut up = stream.try_clone().map_err(io)?;
    let writer = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = stream;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match std::io::Read::read(&mut down, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let w = std::io::Write::write_all(&mut out, &buf[..n]);
                if w.and_then(|()| std::io::Write::flush(&mut out)).is_err() {
                    break;
                }
            }
        }
    }
    drop(writer);
    Ok(())
}
