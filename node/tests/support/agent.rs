//! The `halyard-agent` binary on a file-backed device in a temp dir (file boot env, file slots,
//! trust root, server key of seed 42), with extra config layered as a drop-in; spawn, signal, wait.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use halyard_hardware::boot::SimulatedBoot;
use halyard_hardware::boot::file::FileEnv;
use halyard_node::identity::Identity;
use halyard_protocol::Sha256;

use super::{PRODUCT, SLOT_SIZE, image_bytes, root_json};

pub struct AgentBox {
    pub tmp: tempfile::TempDir,
    pub v1: Vec<u8>,
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl AgentBox {
    /// The device, with `extra` TOML layered over the base config.
    pub fn new(extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let v1 = image_bytes(200 * 1024, 21);
        let mut a = vec![0u8; SLOT_SIZE];
        a[..v1.len()].copy_from_slice(&v1);
        std::fs::write(p.join("slot-a"), a).unwrap();
        std::fs::write(p.join("slot-b"), vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::write(p.join("root.json"), root_json()).unwrap();
        let server = halyard_ota::keys::PrivateKey::from_seed(&[42; 32])
            .public()
            .to_pem();
        std::fs::write(p.join("server.pem"), server).unwrap();
        let mut boot = FileEnv::boot_control(p.join("bootenv"));
        boot.provision().unwrap();
        boot.simulate_boot().unwrap();
        let s = |path: &str| p.join(path).display().to_string();
        let config = format!(
            "data_dir = {:?}\nproduct = \"{PRODUCT}\"\ntrust_root = {:?}\nserver_key = {:?}\n\
             [poll]\ntick_secs = 1\n\
             [boot]\nbackend = \"file\"\nenv = {:?}\ncurrent = \"env\"\nreboot = \"/bin/true\"\n\
             [slots]\na = {:?}\nb = {:?}\n\
             [factory]\nversion = \"1.0.0\"\nsize = {}\nsha256 = \"{}\"\n",
            s("data"),
            s("root.json"),
            s("server.pem"),
            s("bootenv"),
            s("slot-a"),
            s("slot-b"),
            v1.len(),
            Sha256::of(&v1).to_hex(),
        );
        std::fs::write(p.join("agent.toml"), config).unwrap();
        std::fs::create_dir_all(p.join("agent.d")).unwrap();
        std::fs::write(p.join("agent.d/test.toml"), extra).unwrap();
        std::fs::create_dir_all(p.join("data")).unwrap();
        Self { tmp, v1 }
    }

    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// The device identity (created now if the agent has not run yet).
    pub fn identity(&self) -> Identity {
        Identity::load_or_create(&self.data(), &halyard_node::faults::NoCrash).unwrap()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `halyard-agent run`, logging to `log`.
    pub fn spawn(&self, log: &Path) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
            .arg("--config")
            .arg(self.tmp.path().join("agent.toml"))
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            log: log.to_path_buf(),
        }
    }
}

/// A running agent, killed when dropped.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `text` (or panic after `limit`, showing the log).
    pub fn wait_log(&mut self, text: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited ({status}) before {text:?}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < limit,
                "no {text:?} within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send SIGTERM.
    pub fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the exit (or panic after `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "still running after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
