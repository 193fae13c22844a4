//! Root image and disk image without booting: reproducibility, the GPT as other tools read it, and
//! how small a one-file change keeps the whole image's delta.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use halyard_hardware::block::file::FileDevice;
use halyard_hardware::block::gpt::GptTable;
use halyard_os::spec::Spec;
use halyard_os::{bundle, disk, rootfs};
use support::{SpecArgs, sha256, spec};

fn build_root(dir: &Path, args: &SpecArgs, out: &str) -> (Spec, std::path::PathBuf) {
    let spec = Spec::load(&spec(dir, args)).unwrap();
    let work = dir.join(format!("work-{out}"));
    std::fs::create_dir_all(&work).unwrap();
    let image = dir.join(out);
    rootfs::build(&spec, &work, &image).unwrap();
    (spec, image)
}

#[test]
fn root_and_disk_images_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    support::keys(dir.path());
    let mut args = SpecArgs::dummy("1.0.0");
    args.files = vec![("/etc/motd".into(), "hello\n".into())];
    args.token = Some("tok".into());
    let (spec, a) = build_root(dir.path(), &args, "a.squashfs");
    let (_, b) = build_root(dir.path(), &args, "b.squashfs");
    assert_eq!(sha256(&a), sha256(&b));
    let work = dir.path().join("disk-work");
    std::fs::create_dir_all(&work).unwrap();
    let d1 = dir.path().join("d1.img");
    let d2 = dir.path().join("d2.img");
    disk::build(&spec, &a, &work, &d1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    disk::build(&spec, &a, &work, &d2).unwrap();
    assert_eq!(sha256(&d1), sha256(&d2), "disk images differ");
}

#[test]
fn disk_has_the_four_partitions_and_the_root_image() {
    let dir = tempfile::tempdir().unwrap();
    support::keys(dir.path());
    let (spec, root) = build_root(dir.path(), &SpecArgs::dummy("1.0.0"), "r.squashfs");
    let img = dir.path().join("disk.img");
    let work = dir.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    let factory = disk::build(&spec, &root, &work, &img).unwrap();
    let table = GptTable::read(&mut FileDevice::open_read_only(&img).unwrap()).unwrap();
    let names: Vec<_> = table.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["state", "root-a", "root-b", "data"]);
    let a = table.find("root-a").unwrap();
    let bytes = std::fs::read(&img).unwrap();
    let start = (a.first_lba * 512) as usize;
    let image = std::fs::read(&root).unwrap();
    assert_eq!(&bytes[start..start + image.len()], &image[..]);
    assert_eq!(factory.size, image.len() as u64);
    let out = std::process::Command::new("sgdisk")
        .arg("-v")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No problems found"), "sgdisk -v: {text}");
}

/// Pseudo-random bytes (incompressible, like a binary's code), deterministic.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn ratio(compression: &'static str) -> (usize, usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::keys(d);
    let old = noise(3 << 20, 1);
    let mut new = old.clone();
    new.splice(1 << 20..(1 << 20) + 4096, noise(8192, 2));
    let bin = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut args = SpecArgs::dummy("1.0.0");
    args.compression = compression;
    args.agent = bin("agent-old", &old);
    let (_, root_old) = build_root(d, &args, "old.squashfs");
    args.agent = bin("agent-new", &new);
    let (_, root_new) = build_root(d, &args, "new.squashfs");
    let whole = bundle::patch(
        &std::fs::read(root_old).unwrap(),
        &std::fs::read(root_new).unwrap(),
    )
    .unwrap();
    let file = bundle::patch(&old, &new).unwrap();
    (whole.len(), file.len(), whole.len() as f64 / file.len() as f64)
}

#[test]
fn one_changed_file_keeps_the_image_delta_close_to_the_file_delta() {
    let (whole, file, r) = ratio("none");
    eprintln!("uncompressed squashfs: image delta {whole} B, file delta {file} B, ratio {r:.2}");
    let (zwhole, zfile, zr) = ratio("zstd");
    eprintln!("zstd squashfs: image delta {zwhole} B, file delta {zfile} B, ratio {zr:.2}");
    assert!(r < 1.5, "uncompressed image delta {whole} vs file delta {file}");
    assert!(r < zr, "the default should beat zstd on deltas");
}
