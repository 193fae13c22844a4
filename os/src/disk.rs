//! The GPT disk image, written as a plain (sparse) file without loop devices or mounts:
//! `state` (ext4 holding the provisioned `grubenv`), `root-a` (the release's root image), `root-b`
//! (empty), `data` (ext4 holding the per-device agent drop-ins). The ext4 filesystems are made by
//! `mkfs.ext4 -d` with a fixed UUID, hash seed and time, so they are reproducible too.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use halyard_hardware::boot::grubenv::GrubEnv;
use halyard_hardware::boot::{CurrentSlotSource, EnvBootControl};
use sha2::{Digest, Sha256};

use crate::agentconf::{self, paths};
use crate::error::{OsError, run_tool};
use crate::gpt::Layout;
use crate::spec::Spec;

const MIB: u64 = 1 << 20;

/// The partition layout of `spec`.
pub fn layout(spec: &Spec) -> Layout {
    let d = &spec.disk;
    Layout::new(&[
        (paths::STATE, d.state_mib * MIB),
        (paths::ROOT_A, d.slot_mib * MIB),
        (paths::ROOT_B, d.slot_mib * MIB),
        (paths::DATA, d.data_mib * MIB),
    ])
}

/// What the disk's root slot A holds.
#[derive(Debug, Clone)]
pub struct Factory {
    /// Image size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Build `out` from the root image `rootfs`, using `work` for the partition filesystems.
pub fn build(spec: &Spec, rootfs: &Path, work: &Path, out: &Path) -> Result<Factory, OsError> {
    let layout = layout(spec);
    let image = std::fs::read(rootfs).map_err(OsError::io(rootfs))?;
    let factory = Factory {
        size: image.len() as u64,
        sha256: hex::encode(Sha256::digest(&image)),
    };
    let slot = layout.find(paths::ROOT_A).map(|p| p.size()).unwrap_or(0);
    if factory.size > slot {
        return Err(disk_err(
            out,
            format!("root image ({} bytes) exceeds the slot ({slot})", factory.size),
        ));
    }
    let state = state_fs(spec, work)?;
    let data = data_fs(spec, &factory, work)?;
    let mut disk = File::create(out).map_err(OsError::io(out))?;
    disk.set_len(layout.disk_bytes).map_err(OsError::io(out))?;
    for (at, bytes) in layout.gpt_writes(&spec.name) {
        write_at(&mut disk, out, at, &bytes)?;
    }
    for (name, bytes) in [
        (paths::STATE, &state),
        (paths::ROOT_A, &image),
        (paths::DATA, &data),
    ] {
        let part = layout
            .find(name)
            .ok_or_else(|| disk_err(out, format!("no partition {name}")))?;
        write_at(&mut disk, out, part.offset(), bytes)?;
    }
    disk.sync_all().map_err(OsError::io(out))?;
    tracing::info!(disk = %out.display(), bytes = layout.disk_bytes, "disk image written");
    Ok(factory)
}

fn disk_err(path: &Path, reason: String) -> OsError {
    OsError::Disk {
        path: path.to_path_buf(),
        reason,
    }
}

fn write_at(file: &mut File, path: &Path, at: u64, bytes: &[u8]) -> Result<(), OsError> {
    file.seek(SeekFrom::Start(at)).map_err(OsError::io(path))?;
    file.write_all(bytes).map_err(OsError::io(path))
}

/// The state filesystem: `grubenv` provisioned with the factory values (slot A good and booting).
fn state_fs(spec: &Spec, work: &Path) -> Result<Vec<u8>, OsError> {
    let dir = fresh_dir(&work.join("state"))?;
    let env = dir.join("grubenv");
    let mut control = EnvBootControl::new(GrubEnv::create_file(&env)?, CurrentSlotSource::Env);
    control.provision()?;
    mkfs(
        spec,
        paths::STATE,
        &dir,
        spec.disk.state_mib,
        &work.join("state.ext4"),
    )
}

/// The data filesystem: the agent's drop-ins naming the factory image and the enrollment token.
fn data_fs(spec: &Spec, factory: &Factory, work: &Path) -> Result<Vec<u8>, OsError> {
    let dir = fresh_dir(&work.join("data"))?;
    let dropins = dir.join(paths::DROPINS.trim_start_matches("/data/"));
    std::fs::create_dir_all(&dropins).map_err(OsError::io(&dropins))?;
    let factory_toml = agentconf::factory_toml(&spec.version, factory.size, &factory.sha256);
    write(&dropins.join("10-factory.toml"), &factory_toml)?;
    if let Some(token) = &spec.provision.enroll_token {
        write(&dropins.join("20-enroll.toml"), &agentconf::enroll_toml(token))?;
    }
    mkfs(
        spec,
        paths::DATA,
        &dir,
        spec.disk.data_mib,
        &work.join("data.ext4"),
    )
}

fn write(path: &Path, text: &str) -> Result<(), OsError> {
    std::fs::write(path, text).map_err(OsError::io(path))
}

fn fresh_dir(dir: &Path) -> Result<std::path::PathBuf, OsError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(OsError::io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(OsError::io(dir))?;
    Ok(dir.to_path_buf())
}

/// A fixed UUID for filesystem `label` of image `spec.name`.
fn fs_uuid(spec: &Spec, label: &str) -> String {
    let d = Sha256::new()
        .chain_update(b"halyard-os fs\0")
        .chain_update(spec.name.as_bytes())
        .chain_update(b"\0")
        .chain_update(label.as_bytes())
        .finalize();
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn mkfs(spec: &Spec, label: &str, dir: &Path, mib: u64, out: &Path) -> Result<Vec<u8>, OsError> {
    if out.exists() {
        std::fs::remove_file(out).map_err(OsError::io(out))?;
    }
    pin_times(dir, spec.source_date_epoch)?;
    let uuid = fs_uuid(spec, label);
    let epoch = spec.source_date_epoch.to_string();
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args([
        "-q", "-F", "-L", label, "-U", &uuid, "-m", "0", "-b", "4096", "-I", "256",
    ])
    .arg("-E")
    .arg(format!(
        "root_owner=0:0,hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0"
    ))
    .arg("-d")
    .arg(dir)
    .arg(out)
    .arg(format!("{mib}M"))
    .env("E2FSPROGS_FAKE_TIME", &epoch)
    .env("SOURCE_DATE_EPOCH", &epoch)
    .env("MKE2FS_DEVICE_SECTSIZE", "512")
    .env_remove("MKE2FS_CONFIG");
    run_tool(&mut cmd)?;
    pin_ctimes(dir, out, spec.source_date_epoch)?;
    let mut bytes = Vec::new();
    File::open(out)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(OsError::io(out))?;
    Ok(bytes)
}

/// Set every entry's times under `dir` (and its own) to `epoch`: `mkfs.ext4 -d` copies them.
fn pin_times(dir: &Path, epoch: u64) -> Result<(), OsError> {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let times = std::fs::FileTimes::new().set_accessed(at).set_modified(at);
    let entries = std::fs::read_dir(dir).map_err(OsError::io(dir))?;
    for entry in entries {
        let path = entry.map_err(OsError::io(dir))?.path();
        if path.is_dir() {
            pin_times(&path, epoch)?;
        } else {
            File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_times(times))
                .map_err(OsError::io(&path))?;
        }
    }
    File::open(dir)
        .and_then(|f| f.set_times(times))
        .map_err(OsError::io(dir))
}

/// `mkfs.ext4 -d` copies each file's ctime, which cannot be set on the host: rewrite them with
/// `debugfs` so the filesystem is reproducible.
fn pin_ctimes(dir: &Path, image: &Path, epoch: u64) -> Result<(), OsError> {
    let mut commands = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(OsError::io(&d))? {
            let path = entry.map_err(OsError::io(&d))?.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            commands.push_str(&format!("sif \"/{}\" ctime @{epoch}\n", rel.display()));
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    let script = image.with_extension("debugfs");
    write(&script, &commands)?;
    run_tool(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(image),
    )?;
    Ok(())
}
