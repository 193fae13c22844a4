//! The kernel: a Debian `linux-image-*` package fetched with `apt-get download` into a cache folder,
//! unpacked with `dpkg-deb -x` (never installed), and the modules the image needs with their
//! dependencies in load order. The package ships no `modules.dep` (depmod runs at install), so the
//! dependencies come from each module's `.modinfo` section (`depends=`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{OsError, run_tool};

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `vmlinuz-*`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/RELEASE`.
    pub modules: PathBuf,
    /// Kernel release (`6.1.0-56-cloud-amd64`).
    pub release: String,
}

/// `$HALYARD_OS_CACHE`, else `$XDG_CACHE_HOME/halyard-os`, else `~/.cache/halyard-os`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HALYARD_OS_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("halyard-os")
}

/// The unpacked `package` in `cache`, downloading and unpacking it (and the `linux-image-*` package
/// it depends on) the first time.
pub fn fetch(package: &str, cache: &Path) -> Result<Kernel, OsError> {
    let tree = cache.join(package).join("unpacked");
    if let Ok(k) = open(&tree) {
        return Ok(k);
    }
    let debs = cache.join(package).join("debs");
    std::fs::create_dir_all(&debs).map_err(OsError::io(&debs))?;
    let mut names = vec![package.to_owned()];
    let meta = download(package, &debs)?;
    names.extend(image_dependency(&meta)?);
    let staging = cache.join(package).join("unpacking");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(OsError::io(&staging))?;
    }
    for name in &names {
        let deb = download(name, &debs)?;
        run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    }
    std::fs::rename(&staging, &tree).map_err(OsError::io(&tree))?;
    tracing::info!(package, tree = %tree.display(), "kernel package unpacked");
    open(&tree)
}

fn download(name: &str, dir: &Path) -> Result<PathBuf, OsError> {
    if let Some(found) = find_deb(dir, name)? {
        return Ok(found);
    }
    run_tool(Command::new("apt-get").arg("download").arg(name).current_dir(dir))?;
    find_deb(dir, name)?.ok_or_else(|| OsError::Kernel(format!("apt-get download {name} left no .deb")))
}

fn find_deb(dir: &Path, name: &str) -> Result<Option<PathBuf>, OsError> {
    let prefix = format!("{name}_");
    Ok(sorted_entries(dir)?
        .into_iter()
        .find(|p| file_name(p).starts_with(&prefix) && file_name(p).ends_with(".deb")))
}

fn image_dependency(deb: &Path) -> Result<Option<String>, OsError> {
    let out = run_tool(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
        .map(str::to_owned))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, OsError> {
    let mut v = std::fs::read_dir(dir)
        .map_err(OsError::io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(OsError::io(dir))?;
    v.sort();
    Ok(v)
}

/// An unpacked package tree (`boot/vmlinuz-*`, `lib/modules/*`).
pub fn open(tree: &Path) -> Result<Kernel, OsError> {
    let boot = tree.join("boot");
    let vmlinuz = sorted_entries(&boot)?
        .into_iter()
        .find(|p| file_name(p).starts_with("vmlinuz-"))
        .ok_or_else(|| OsError::Kernel(format!("no vmlinuz-* in {}", boot.display())))?;
    let release = file_name(&vmlinuz).trim_start_matches("vmlinuz-").to_owned();
    let modules = tree.join("lib/modules").join(&release);
    if !modules.is_dir() {
        return Err(OsError::Kernel(format!("no {}", modules.display())));
    }
    Ok(Kernel {
        vmlinuz,
        modules,
        release,
    })
}

/// `virtio-rng` and `virtio_rng` are the same module.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

impl Kernel {
    /// Every `.ko` by canonical module name.
    fn index(&self) -> Result<BTreeMap<String, PathBuf>, OsError> {
        let mut index = BTreeMap::new();
        let mut stack = vec![self.modules.join("kernel")];
        while let Some(dir) = stack.pop() {
            for path in sorted_entries(&dir)? {
                let name = file_name(&path);
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(stem) = name.strip_suffix(".ko") {
                    index.insert(canonical(stem), path);
                }
            }
        }
        Ok(index)
    }

    /// The module files for `names` and their dependencies, dependencies first. Built-in modules
    /// (`modules.builtin`) are skipped.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<PathBuf>, OsError> {
        let index = self.index()?;
        let builtin_file = self.modules.join("modules.builtin");
        let builtin: BTreeSet<String> = std::fs::read_to_string(&builtin_file)
            .map_err(OsError::io(&builtin_file))?
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(canonical))
            .collect();
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            visit(&canonical(name), &index, &builtin, &mut seen, &mut order)?;
        }
        Ok(order)
    }
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<PathBuf>,
) -> Result<(), OsError> {
    if builtin.contains(name) || !seen.insert(name.to_owned()) {
        return Ok(());
    }
    let path = index
        .get(name)
        .ok_or_else(|| OsError::Kernel(format!("module {name} not found")))?;
    let bytes = std::fs::read(path).map_err(OsError::io(path))?;
    for dep in modinfo(&bytes, "depends")
        .ok_or_else(|| OsError::Kernel(format!("{}: no .modinfo", path.display())))?
        .split(',')
        .filter(|d| !d.is_empty())
    {
        visit(&canonical(dep), index, builtin, seen, order)?;
    }
    order.push(path.clone());
    Ok(())
}

/// The value of `key=` in the `.modinfo` section of an ELF64 little-endian module (`Some("")` when
/// the section exists without the key).
pub fn modinfo(elf: &[u8], key: &str) -> Option<String> {
    let section = modinfo_section(elf)?;
    let prefix = format!("{key}=");
    let value = section
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .unwrap_or_default();
    Some(String::from_utf8_lossy(value).into_owned())
}

fn modinfo_section(elf: &[u8]) -> Option<&[u8]> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    if elf.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let (entsize, count, strndx) = (
        u16_at(0x3a)? as usize,
        u16_at(0x3c)? as usize,
        u16_at(0x3e)? as usize,
    );
    let header = |i: usize| shoff + i * entsize;
    let range = |i: usize| -> Option<std::ops::Range<usize>> {
        let off = usize::try_from(u64_at(header(i) + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(header(i) + 0x20)?).ok()?;
        Some(off..off.checked_add(size)?)
    };
    let names = elf.get(range(strndx)?)?;
    (0..count).find_map(|i| {
        let name_at = u32_at(header(i))? as usize;
        let name = names.get(name_at..)?.split(|b| *b == 0).next()?;
        if name == b".modinfo" {
            elf.get(range(i)?)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a null section, `.modinfo` and `.shstrtab`.
    fn elf(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut e = vec![0u8; 64];
        e[..5].copy_from_slice(b"\x7fELF\x02");
        let info_at = e.len();
        e.extend_from_slice(modinfo);
        let names_at = e.len();
        e.extend_from_slice(names);
        let shoff = e.len();
        e[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        e[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        e[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        e[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        for (name, off, size) in [
            (0u32, 0usize, 0usize),
            (1, info_at, modinfo.len()),
            (10, names_at, names.len()),
        ] {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            e.extend_from_slice(&sh);
        }
        e
    }

    #[test]
    fn reads_depends_from_modinfo() {
        let m = elf(b"license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0");
        assert_eq!(modinfo(&m, "depends").as_deref(), Some("virtio,virtio_ring"));
        assert_eq!(modinfo(&m, "name").as_deref(), Some("virtio_blk"));
        assert_eq!(modinfo(&m, "alias").as_deref(), Some(""));
        assert_eq!(modinfo(b"not an elf", "depends"), None);
        assert_eq!(modinfo(&m[..100], "depends"), None);
    }

    #[test]
    fn dash_and_underscore_name_the_same_module() {
        assert_eq!(canonical("virtio-rng"), "virtio_rng");
    }
}
