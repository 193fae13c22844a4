//! Shared by the os tests: release keys and trust root, image specs, the static binaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod fleet;

use halyard_ota::keys::PrivateKey;
use halyard_ota::root::{RootFile, RootSigned};

/// Fixed build time of every test image.
pub const EPOCH: u64 = 1_767_225_600;

/// Writes `keys/root.json` and `keys/release.pem` under `dir`; returns root.json's bytes.
pub fn keys(dir: &Path) -> Vec<u8> {
    let root_key = PrivateKey::from_seed(&[7; 32]);
    let release_key = PrivateKey::from_seed(&[8; 32]);
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let signed = RootSigned::new(expires, (&[root_key.public()], 1), (&[release_key.public()], 1)).unwrap();
    let mut file = RootFile::unsigned(signed);
    file.sign(&root_key);
    let json = file.to_json();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/root.json"), &json).unwrap();
    std::fs::write(dir.join("keys/release.pem"), release_key.to_pem()).unwrap();
    json
}

/// Parameters of a test spec.
#[derive(Debug, Clone)]
pub struct SpecArgs {
    pub version: String,
    pub agent: PathBuf,
    pub init: PathBuf,
    pub agent_config: Option<String>,
    pub files: Vec<(String, String)>,
    pub compression: &'static str,
    pub token: Option<String>,
    pub kernel_unpacked: Option<PathBuf>,
}

impl SpecArgs {
    /// Dummy binaries (any file will do for images that are not booted).
    pub fn dummy(version: &str) -> Self {
        Self {
            version: version.into(),
            agent: PathBuf::from("/bin/true"),
            init: PathBuf::from("/bin/true"),
            agent_config: None,
            files: Vec::new(),
            compression: "none",
            token: None,
            kernel_unpacked: None,
        }
    }
}

/// Writes `dir/spec-VERSION.toml` (and its files) and returns its path.
pub fn spec(dir: &Path, a: &SpecArgs) -> PathBuf {
    let mut t = format!(
        "name = \"halyard-test\"\nversion = \"{}\"\nproduct = \"halyard-qemu\"\nhardware_class = \"qemu-x86_64\"\n\
         source_date_epoch = {EPOCH}\ninit = {:?}\n\n[rootfs]\ncompression = \"{}\"\n\n[disk]\nstate_mib = 8\nslot_mib = 40\ndata_mib = 24\n\n",
        a.version, a.init, a.compression
    );
    t.push_str("[kernel]\n");
    if let Some(k) = &a.kernel_unpacked {
        t.push_str(&format!("unpacked = {k:?}\n"));
    }
    t.push_str(&format!("\n[agent]\nbinary = {:?}\n", a.agent));
    if let Some(c) = &a.agent_config {
        let p = dir.join(format!("agent-{}.toml", a.version));
        std::fs::write(&p, c).unwrap();
        t.push_str(&format!("config = {p:?}\n"));
    }
    t.push_str("\n[trust]\nroot = \"keys/root.json\"\nsigning_key = \"keys/release.pem\"\n");
    for (i, (dst, content)) in a.files.iter().enumerate() {
        let p = dir.join(format!("file-{}-{i}", a.version));
        std::fs::write(&p, content).unwrap();
        t.push_str(&format!("\n[[files]]\nsrc = {p:?}\ndst = {dst:?}\n"));
    }
    if let Some(tok) = &a.token {
        t.push_str(&format!("\n[provision]\nenroll_token = {tok:?}\n"));
    }
    let path = dir.join(format!("spec-{}.toml", a.version));
    std::fs::write(&path, t).unwrap();
    path
}

/// How much of `image` slot `partition` of `disk` holds: (4 KiB blocks equal to the image's, blocks
/// of the image).
pub fn slot_progress(disk: &Path, partition: &str, image: &Path) -> (usize, usize) {
    use halyard_hardware::block::BlockDevice as _;
    let file = halyard_hardware::block::file::FileDevice::open_read_only(disk).unwrap();
    let mut slot = halyard_hardware::block::gpt::Partition::open(file, partition).unwrap();
    let want = std::fs::read(image).unwrap();
    let mut have = vec![0; want.len()];
    slot.read_at(0, &mut have).unwrap();
    let same = want
        .chunks(4096)
        .zip(have.chunks(4096))
        .filter(|(a, b)| a == b)
        .count();
    (same, want.len().div_ceil(4096))
}

pub fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The workspace's target folder (from this test's own `halyard-os` binary).
pub fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_halyard-os"));
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Builds the static `halyard-agent` and `halyard-init` (crt-static, x86_64-unknown-linux-gnu,
/// profile release-agent without LTO so it builds faster) into `TARGET/os-static` (its own target
/// folder: its own build lock and fingerprints, so it never rebuilds the host's test binaries);
/// returns their paths.
pub fn static_binaries() -> (PathBuf, PathBuf) {
    let target = target_dir().join("os-static");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new("nice")
        .arg(cargo)
        .args([
            "build",
            "-j2",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--profile",
            "release-agent",
        ])
        .args([
            "-p",
            "halyard-node",
            "--bin",
            "halyard-agent",
            "-p",
            "halyard-init",
            "--bin",
            "halyard-init",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // CARGO_ENCODED_RUSTFLAGS would win over RUSTFLAGS; build.rustflags would add to nothing.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_AGENT_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_AGENT_CODEGEN_UNITS", "16")
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "static build of halyard-agent and halyard-init (crt-static, x86_64-unknown-linux-gnu, \
         release-agent without LTO, into {}) failed: see cargo's output above",
        target.display()
    );
    let dir = target.join("x86_64-unknown-linux-gnu/release-agent");
    (dir.join("halyard-agent"), dir.join("halyard-init"))
}
