//! The read-only root image: a staged tree (agent, init helpers, config, trust root, the spec's files
//! and overlays) packed by `mksquashfs` so that the same inputs give the same bytes.
//!
//! Reproducibility: `-reproducible`, every timestamp set to the spec's `source_date_epoch`, owner
//! root:root for everything, no xattrs, modes set explicitly while staging (the umask and the source
//! files' modes do not leak in). Delta size: uncompressed data, inodes and fragments by default, so a
//! changed file changes its own bytes and a few metadata bytes (see README for the measured ratio).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::agentconf;
use crate::error::{OsError, run_tool};
use crate::spec::{Compression, Spec};

/// Folders every image has (mount points and config).
const DIRS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "data",
    "boot/state",
    "etc/halyard",
    "sbin",
    "usr/bin",
];

/// Stage the root tree of `spec` in `stage` (which must not exist yet).
pub fn stage(spec: &Spec, stage: &Path) -> Result<(), OsError> {
    for d in DIRS {
        mkdir(&stage.join(d))?;
    }
    copy_file(&spec.agent.binary, &stage.join("usr/bin/halyard-agent"), 0o755)?;
    copy_file(&spec.init, &stage.join("sbin/halyard-init"), 0o755)?;
    for link in ["sbin/reboot", "sbin/poweroff"] {
        let at = stage.join(link);
        symlink("halyard-init", &at).map_err(OsError::io(&at))?;
    }
    let etc = stage.join("etc/halyard");
    copy_file(&spec.trust.root, &etc.join("root.json"), 0o644)?;
    write(&etc.join("agent.toml"), &agentconf::agent_toml(spec)?)?;
    write(&etc.join("services.toml"), &agentconf::services_toml(spec)?)?;
    let dropins = etc.join("agent.d");
    symlink(agentconf::paths::DROPINS, &dropins).map_err(OsError::io(&dropins))?;
    write(&stage.join("etc/os-release"), &os_release(spec))?;
    for f in &spec.files {
        let to = inside(stage, &f.dst);
        let mode = f.mode.unwrap_or_else(|| default_mode(&f.src));
        copy_file(&f.src, &to, mode)?;
    }
    for o in &spec.overlays {
        copy_tree(&o.src, &inside(stage, &o.dst))?;
    }
    Ok(())
}

fn os_release(spec: &Spec) -> String {
    format!(
        "NAME=\"Halyard OS\"\nID=halyard\nIMAGE_ID={}\nIMAGE_VERSION={}\nVARIANT_ID={}\n",
        spec.name, spec.version, spec.product
    )
}

fn inside(stage: &Path, dst: &Path) -> PathBuf {
    stage.join(dst.strip_prefix("/").unwrap_or(dst))
}

fn default_mode(src: &Path) -> u32 {
    let exec = std::fs::metadata(src).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    if exec { 0o755 } else { 0o644 }
}

fn mkdir(path: &Path) -> Result<(), OsError> {
    std::fs::create_dir_all(path).map_err(OsError::io(path))?;
    set_mode(path, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), OsError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(OsError::io(path))
}

fn write(path: &Path, text: &str) -> Result<(), OsError> {
    std::fs::write(path, text).map_err(OsError::io(path))?;
    set_mode(path, 0o644)
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<(), OsError> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    std::fs::copy(from, to).map_err(OsError::io(from))?;
    set_mode(to, mode)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), OsError> {
    mkdir(to)?;
    let mut entries = std::fs::read_dir(from)
        .map_err(OsError::io(from))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(OsError::io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(OsError::io(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(OsError::io(&src))?;
            symlink(target, &dst).map_err(OsError::io(&dst))?;
        } else {
            copy_file(&src, &dst, default_mode(&src))?;
        }
    }
    Ok(())
}

/// `mksquashfs` arguments after source and destination.
pub fn squashfs_args(compression: Compression, epoch: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "-noappend",
        "-reproducible",
        "-all-root",
        "-no-xattrs",
        "-quiet",
        "-no-progress",
        "-mkfs-time",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(epoch.to_string());
    args.push("-all-time".into());
    args.push(epoch.to_string());
    match compression {
        Compression::None => args.extend(["-noI", "-noD", "-noF", "-noX"].map(str::to_owned)),
        Compression::Zstd => args.extend(["-comp", "zstd", "-b", "128K"].map(str::to_owned)),
    }
    args
}

/// Pack `stage` into the squashfs image `out`.
pub fn pack(stage: &Path, out: &Path, compression: Compression, epoch: u64) -> Result<(), OsError> {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(stage)
        .arg(out)
        .args(squashfs_args(compression, epoch))
        // The times are on the command line; mksquashfs refuses both.
        .env_remove("SOURCE_DATE_EPOCH");
    run_tool(&mut cmd)?;
    Ok(())
}

/// Stage and pack the root image of `spec` into `out`, using `work` for the staging tree.
pub fn build(spec: &Spec, work: &Path, out: &Path) -> Result<(), OsError> {
    let tree = work.join("rootfs");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).map_err(OsError::io(&tree))?;
    }
    stage(spec, &tree)?;
    pack(&tree, out, spec.rootfs.compression, spec.source_date_epoch)?;
    tracing::info!(image = %out.display(), version = %spec.version, "root image built");
    Ok(())
}
