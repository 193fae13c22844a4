//! The image spec: one TOML file names everything an image is built from. Relative paths are relative
//! to the spec file's folder. See `os/README.md` for a commented example.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::OsError;

/// A parsed and resolved image spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Image name (also the disk's identity seed: partition GUIDs derive from it).
    pub name: String,
    /// Release version (semver).
    pub version: semver::Version,
    /// Monotonic security version of the release bundle.
    #[serde(default = "one")]
    pub security_version: u64,
    /// Product (bundles are only accepted by devices of this product).
    pub product: String,
    /// Hardware class the image is built for.
    pub hardware_class: String,
    /// Build time as Unix seconds: every timestamp in the image and bundle (SOURCE_DATE_EPOCH).
    pub source_date_epoch: u64,
    /// Root image filesystem options.
    #[serde(default)]
    pub rootfs: RootfsSpec,
    /// Disk layout.
    #[serde(default)]
    pub disk: DiskSpec,
    /// The kernel and its modules.
    pub kernel: KernelSpec,
    /// The agent.
    pub agent: AgentSpec,
    /// The static PID 1 (`halyard-init`), also installed as `/sbin/reboot` and `/sbin/poweroff`.
    pub init: PathBuf,
    /// Release trust.
    pub trust: TrustSpec,
    /// Single files copied into the root image.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Folders copied (recursively) into the root image.
    #[serde(default)]
    pub overlays: Vec<FileSpec>,
    /// Programs the init starts beside the agent.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Device provisioning written to the data partition (not part of the release).
    #[serde(default)]
    pub provision: ProvisionSpec,
}

fn one() -> u64 {
    1
}

/// Filesystem of the root image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression: one changed file changes only its own bytes (smallest deltas).
    #[default]
    None,
    /// zstd per 128 KiB block: smaller image, larger deltas.
    Zstd,
}

/// `[rootfs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootfsSpec {
    /// Data and metadata compression.
    #[serde(default)]
    pub compression: Compression,
}

/// `[disk]`: partition sizes in MiB.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Boot environment partition (ext4 holding `grubenv`).
    pub state_mib: u64,
    /// Each root slot.
    pub slot_mib: u64,
    /// Persistent data partition (ext4).
    pub data_mib: u64,
}

impl Default for DiskSpec {
    fn default() -> Self {
        Self {
            state_mib: 8,
            slot_mib: 48,
            data_mib: 32,
        }
    }
}

/// `[kernel]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Debian package to fetch with `apt-get download` (its `linux-image-*` dependency too).
    #[serde(default = "cloud_kernel")]
    pub package: String,
    /// Or: an already unpacked package tree (holds `boot/vmlinuz-*` and `lib/modules/*`).
    #[serde(default)]
    pub unpacked: Option<PathBuf>,
    /// Modules to put in the initramfs (their dependencies are added).
    #[serde(default = "default_modules")]
    pub modules: Vec<String>,
    /// Kernel command line.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
}

fn cloud_kernel() -> String {
    "linux-image-cloud-amd64".to_owned()
}

fn default_modules() -> Vec<String> {
    ["virtio_pci", "virtio_blk", "virtio_net", "virtio-rng", "squashfs"]
        .map(str::to_owned)
        .to_vec()
}

/// `cryptomgr.notests` skips the crypto self-tests and `tsc=reliable no_timer_check` the clock
/// checks at boot: 10-15% less CPU time to the init under QEMU TCG (os/README.md has the numbers).
fn default_cmdline() -> String {
    "console=ttyS0 panic=-1 loglevel=4 quiet cryptomgr.notests tsc=reliable no_timer_check".to_owned()
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The static `halyard-agent` binary.
    pub binary: PathBuf,
    /// Agent configuration (TOML) merged over the OS defaults into `/etc/halyard/agent.toml`.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// `[trust]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    /// TUF-style `root.json`, installed as `/etc/halyard/root.json`.
    pub root: PathBuf,
    /// Release signing key (PKCS#8 PEM) for the bundles.
    pub signing_key: PathBuf,
}

/// A file or folder to copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// On the build host.
    pub src: PathBuf,
    /// Absolute path in the image.
    pub dst: PathBuf,
    /// Permission bits (files only; default 0644, or 0755 when the source is executable).
    #[serde(default)]
    pub mode: Option<u32>,
}

/// A service the init runs.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name (for logs).
    pub name: String,
    /// Program and arguments.
    pub exec: Vec<String>,
    /// Restart when it exits.
    #[serde(default)]
    pub restart: bool,
}

/// `[provision]`: per-device values for the data partition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSpec {
    /// One-time enrollment token.
    #[serde(default)]
    pub enroll_token: Option<String>,
}

impl Spec {
    /// Read `path`, resolve relative paths against its folder, check values.
    pub fn load(path: &Path) -> Result<Self, OsError> {
        let text = std::fs::read_to_string(path).map_err(OsError::io(path))?;
        let mut spec: Spec = toml::from_str(&text).map_err(|e| OsError::Spec {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        spec.resolve(base);
        spec.check().map_err(|reason| OsError::Spec {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(spec)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| *p = base.join(&*p);
        fix(&mut self.agent.binary);
        if let Some(c) = self.agent.config.as_mut() {
            fix(c);
        }
        fix(&mut self.init);
        fix(&mut self.trust.root);
        fix(&mut self.trust.signing_key);
        if let Some(u) = self.kernel.unpacked.as_mut() {
            fix(u);
        }
        for f in self.files.iter_mut().chain(self.overlays.iter_mut()) {
            fix(&mut f.src);
        }
    }

    fn check(&self) -> Result<(), String> {
        let d = &self.disk;
        if d.state_mib == 0 || d.slot_mib == 0 || d.data_mib < 2 {
            return Err("disk sizes must be positive (data at least 2 MiB)".into());
        }
        for f in self.files.iter().chain(&self.overlays) {
            if !f.dst.is_absolute() || f.dst.components().any(|c| c.as_os_str() == "..") {
                return Err(format!("{}: dst must be absolute without '..'", f.dst.display()));
            }
        }
        if let Some(s) = self.services.iter().find(|s| s.exec.is_empty()) {
            return Err(format!("service {}: exec is empty", s.name));
        }
        Ok(())
    }
}
