//! `halyard-os build`: every artefact of one release in one output folder.
//!
//! | File | What |
//! |---|---|
//! | `rootfs.squashfs` | the read-only root image (reproducible) |
//! | `disk.img` | GPT disk: state, root-a (this release), root-b (empty), data |
//! | `full.bundle` | signed full bundle of the root image |
//! | `delta.bundle` | signed delta bundle from `--from`'s root image (only with `--from`) |
//! | `vmlinuz`, `initramfs.img`, `cmdline` | what `halyard-os run` boots |
//! | `build.json` | versions, sizes and SHA-256 of the above |

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::OsError;
use crate::spec::Spec;
use crate::{bundle, disk, initramfs, kernel, rootfs};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The image spec.
    pub spec: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// An older build folder: also write `delta.bundle` from its root image.
    pub from: Option<PathBuf>,
}

/// `build.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildSummary {
    /// Image name.
    pub name: String,
    /// Release version.
    pub version: semver::Version,
    /// Root image size.
    pub rootfs_bytes: u64,
    /// Root image SHA-256.
    pub rootfs_sha256: String,
    /// Disk image SHA-256.
    pub disk_sha256: String,
    /// Full bundle size.
    pub full_bundle_bytes: u64,
    /// Delta bundle: (source version, bundle bytes, raw patch bytes).
    pub delta: Option<(semver::Version, u64, u64)>,
    /// Kernel release.
    pub kernel: String,
    /// Modules in the initramfs, in load order.
    pub modules: Vec<String>,
}

fn sha256_file(path: &Path) -> Result<String, OsError> {
    let bytes = std::fs::read(path).map_err(OsError::io(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Read a build folder's `build.json`.
pub fn summary(dir: &Path) -> Result<BuildSummary, OsError> {
    let path = dir.join("build.json");
    let text = std::fs::read_to_string(&path).map_err(OsError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| OsError::Bundle(format!("{}: {e}", path.display())))
}

fn boot_files(spec: &Spec, out: &Path) -> Result<(String, Vec<String>), OsError> {
    let k = match &spec.kernel.unpacked {
        Some(tree) => kernel::open(tree)?,
        None => kernel::fetch(&spec.kernel.package, &kernel::cache_dir())?,
    };
    let modules = k.resolve(&spec.kernel.modules)?;
    let cpio = initramfs::build(&spec.init, &modules, spec.source_date_epoch)?;
    let initrd = out.join("initramfs.img");
    std::fs::write(&initrd, cpio).map_err(OsError::io(&initrd))?;
    let vmlinuz = out.join("vmlinuz");
    std::fs::copy(&k.vmlinuz, &vmlinuz).map_err(OsError::io(&k.vmlinuz))?;
    let cmdline = out.join("cmdline");
    std::fs::write(&cmdline, format!("{}\n", spec.kernel.cmdline)).map_err(OsError::io(&cmdline))?;
    let names = modules
        .iter()
        .filter_map(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Ok((k.release, names))
}

/// Build everything for `opts.spec` into `opts.out`.
pub fn build(opts: &BuildOptions) -> Result<BuildSummary, OsError> {
    let spec = Spec::load(&opts.spec)?;
    let out = &opts.out;
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(OsError::io(&work))?;
    let rootfs_path = out.join("rootfs.squashfs");
    rootfs::build(&spec, &work, &rootfs_path)?;
    let image = std::fs::read(&rootfs_path).map_err(OsError::io(&rootfs_path))?;
    let (kernel, modules) = boot_files(&spec, out)?;
    let disk_path = out.join("disk.img");
    disk::build(&spec, &rootfs_path, &work, &disk_path)?;
    let full_bundle_bytes = bundle::full(&spec, &image, &out.join("full.bundle"))?;
    let delta = match &opts.from {
        Some(from) => {
            let old_summary = summary(from)?;
            let old_path = from.join("rootfs.squashfs");
            let old = std::fs::read(&old_path).map_err(OsError::io(&old_path))?;
            let (b, p) = bundle::delta(
                &spec,
                &old,
                &old_summary.version,
                &image,
                &out.join("delta.bundle"),
            )?;
            Some((old_summary.version, b, p))
        }
        None => None,
    };
    let summary = BuildSummary {
        name: spec.name.clone(),
        version: spec.version.clone(),
        rootfs_bytes: image.len() as u64,
        rootfs_sha256: hex::encode(Sha256::digest(&image)),
        disk_sha256: sha256_file(&disk_path)?,
        full_bundle_bytes,
        delta,
        kernel,
        modules,
    };
    let path = out.join("build.json");
    let json = serde_json::to_string_pretty(&summary).map_err(|e| OsError::Bundle(e.to_string()))?;
    std::fs::write(&path, json).map_err(OsError::io(&path))?;
    std::fs::remove_dir_all(&work).map_err(OsError::io(&work))?;
    Ok(summary)
}
