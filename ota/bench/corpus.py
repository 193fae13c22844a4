#!/usr/bin/env python3
"""Build the delta benchmark corpus: real artifact pairs from two adjacent upstream releases.

Every input is a PyPI wheel pinned by version AND sha256, so the corpus is byte-for-byte
reproducible. Pairs are written as <out>/<pair>/{old,new} plus <out>/SOURCES.txt.

  shlib  cryptography 42.0.7 -> 42.0.8, hazmat/bindings/_rust.abi3.so   (~10 MB Rust cdylib)
  exe    uv 0.4.20 -> 0.4.21, the `uv` executable                        (~31 MB static Rust binary)
  ext4   150 MiB ext4 images (mkfs.ext4 -d) of a site-packages tree holding numpy, pandas and
         cryptography; the new tree bumps each one to its next release (most files unchanged)

Usage: corpus.py OUT_DIR [--pairs shlib,exe,ext4]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

# (name, version, platform tag, sha256 of the wheel)
WHEELS = {
    ("cryptography", "42.0.7"): ("manylinux_2_28_x86_64",
        "efd0bf5205240182e0f13bcaea41be4fdf5c22c5129fc7ced4a0282ac86998c9"),
    ("cryptography", "42.0.8"): ("manylinux_2_28_x86_64",
        "9c0c1716c8447ee7dbf08d6db2e5c41c688544c61074b54fc4564196f55c25a7"),
    ("uv", "0.4.20"): ("manylinux_2_17_x86_64",
        "b8e3492d5f1613e88201b6f68a2e5fba48b0bdbe0f11179df9b222e9dd8d89d3"),
    ("uv", "0.4.21"): ("manylinux_2_17_x86_64",
        "9c08b01f8571d2c64d45d569990aa7bffad5eb259cf64bc329d40d8c787fb9ba"),
    ("numpy", "2.1.1"): ("manylinux_2_17_x86_64",
        "d51fc141ddbe3f919e91a096ec739f49d686df8af254b2053ba21a910ae518bf"),
    ("numpy", "2.1.2"): ("manylinux_2_17_x86_64",
        "e2b49c3c0804e8ecb05d59af8386ec2f74877f7ca8fd9c1e00be2672e4d399b1"),
    ("pandas", "2.2.2"): ("manylinux_2_17_x86_64",
        "6d2123dc9ad6a814bcdea0f099885276b31b24f7edf40f6cdbc0912672e22eee"),
    ("pandas", "2.2.3"): ("manylinux_2_17_x86_64",
        "c124333816c3a9b03fbeef3a9f230ba9a737e9e5bb4060aa2107a86cc0a497fc"),
}

SHLIB = ("cryptography", "42.0.7", "42.0.8", "cryptography/hazmat/bindings/_rust.abi3.so")
EXE = ("uv", "0.4.20", "0.4.21", "uv-{v}.data/scripts/uv")
EXT4_OLD = [("numpy", "2.1.1"), ("pandas", "2.2.2"), ("cryptography", "42.0.7")]
EXT4_NEW = [("numpy", "2.1.2"), ("pandas", "2.2.3"), ("cryptography", "42.0.8")]
EXT4_SIZE = "150M"
EXT4_UUID = "6a1f0e2c-4d3b-4c8e-9f10-0b5e7d2a9c41"
EPOCH = 1700000000  # fixed timestamp for every inode and the superblock
# What e2fsprogs 1.47.0 (Debian 12) produces; another mke2fs version may lay the images out
# differently, which is reported but not fatal.
EXT4_SHA256 = {
    "old": "b8eb3abb65ffbafe6b5e716b598e0e64f1b35fe3f331d6b4ed8d2ff630aaaf2a",
    "new": "07b5d3249208028c140acfae69f3d9f51bfbe73038f8480b4ae761185455b586",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(wheels_dir, name, version):
    """Download one pinned wheel (cached) and check its sha256."""
    platform, want = WHEELS[(name, version)]
    for f in os.listdir(wheels_dir):
        if f.startswith(f"{name}-{version}-") and f.endswith(".whl"):
            path = os.path.join(wheels_dir, f)
            if sha256(path) == want:
                return path
            os.unlink(path)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--platform", platform, "--python-version", "3.11", "--implementation", "cp",
         "-d", wheels_dir, f"{name}=={version}"],
        check=True,
    )
    for f in os.listdir(wheels_dir):
        if f.startswith(f"{name}-{version}-") and f.endswith(".whl"):
            path = os.path.join(wheels_dir, f)
            got = sha256(path)
            if got != want:
                sys.exit(f"corpus: {f}: sha256 {got} != pinned {want}")
            return path
    sys.exit(f"corpus: pip did not produce a wheel for {name}=={version}")


def extract_member(wheel, member, dest):
    tmp = dest + ".tmp"
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def single_pair(out, wheels_dir, pair, spec, sources):
    name, v_old, v_new, member = spec
    pdir = os.path.join(out, pair)
    os.makedirs(pdir, exist_ok=True)
    for side, ver in (("old", v_old), ("new", v_new)):
        wheel = fetch(wheels_dir, name, ver)
        dest = os.path.join(pdir, side)
        if not os.path.exists(dest):
            extract_member(wheel, member.format(v=ver), dest)
        sources.append(f"{pair}/{side}\t{sha256(dest)}\t{os.path.getsize(dest)}\t"
                       f"{os.path.basename(wheel)}:{member.format(v=ver)}")


def build_tree(root, wheels):
    """Unpack wheels into root/usr/lib/python3/dist-packages with normalised metadata."""
    if os.path.isdir(root):
        shutil.rmtree(root)
    site = os.path.join(root, "usr", "lib", "python3", "dist-packages")
    os.makedirs(site)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                dest = os.path.join(site, info.filename)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(dest, 0o755 if mode & 0o111 else 0o644)
    for d, dirs, files in os.walk(root, topdown=False):
        for n in files + dirs:
            os.utime(os.path.join(d, n), (EPOCH, EPOCH), follow_symlinks=False)
        os.chmod(d, 0o755)
    os.utime(root, (EPOCH, EPOCH))


def mkfs(tree, image):
    tmp = image + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH), SOURCE_DATE_EPOCH=str(EPOCH))
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-N", "8192", "-b", "4096", "-L", "halyard-bench", "-U", EXT4_UUID,
         "-E", f"root_owner=0:0,hash_seed={EXT4_UUID},lazy_itable_init=0,nodiscard",
         "-d", tree, tmp, EXT4_SIZE],
        check=True, env=env,
    )
    pin_inode_times(tree, tmp)
    os.replace(tmp, image)


def pin_inode_times(tree, image):
    """mkfs.ext4 -d copies each source file's ctime (which utime cannot set): pin every
    inode timestamp to EPOCH with debugfs so two builds of the same tree are identical."""
    paths = ["/"]
    for d, dirs, files in os.walk(tree):
        for n in dirs + files:
            rel = "/" + os.path.relpath(os.path.join(d, n), tree)
            if any(c.isspace() or c == '"' for c in rel):
                sys.exit(f"corpus: path with whitespace not supported: {rel!r}")
            paths.append(rel)
    cmds = []
    for rel in paths:
        for field in ("atime", "ctime", "mtime", "crtime"):
            cmds.append(f"sif {rel} {field} @{EPOCH}\n")
            cmds.append(f"sif {rel} {field}_extra 0\n")
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH), SOURCE_DATE_EPOCH=str(EPOCH))
    subprocess.run(["debugfs", "-w", "-f", "-", image], input="".join(cmds).encode(),
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ext4_pair(out, wheels_dir, sources):
    pdir = os.path.join(out, "ext4")
    os.makedirs(pdir, exist_ok=True)
    for side, specs in (("old", EXT4_OLD), ("new", EXT4_NEW)):
        wheels = [fetch(wheels_dir, n, v) for n, v in specs]
        image = os.path.join(pdir, side)
        if not os.path.exists(image):
            tree = os.path.join(out, "trees", side)
            build_tree(tree, wheels)
            mkfs(tree, image)
            shutil.rmtree(tree)
        names = " + ".join(os.path.basename(w) for w in wheels)
        digest = sha256(image)
        if digest != EXT4_SHA256[side]:
            print(f"corpus: warning: ext4/{side} sha256 {digest} differs from the reference "
                  f"build (another e2fsprogs version?)", file=sys.stderr)
        sources.append(f"ext4/{side}\t{digest}\t{os.path.getsize(image)}\t"
                       f"mkfs.ext4 -d ({EXT4_SIZE}, uuid {EXT4_UUID}) of {names}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--pairs", default="shlib,exe,ext4")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    wheels_dir = os.path.join(out, "wheels")
    os.makedirs(wheels_dir, exist_ok=True)
    sources = []
    for pair in args.pairs.split(","):
        if pair == "shlib":
            single_pair(out, wheels_dir, "shlib", SHLIB, sources)
        elif pair == "exe":
            single_pair(out, wheels_dir, "exe", EXE, sources)
        elif pair == "ext4":
            ext4_pair(out, wheels_dir, sources)
        else:
            sys.exit(f"corpus: unknown pair {pair!r}")
    header = "# pair/side\tsha256\tbytes\tsource (PyPI wheels pinned by version and sha256 in corpus.py)\n"
    with open(os.path.join(out, "SOURCES.txt"), "w") as f:
        f.write(header + "".join(line + "\n" for line in sources))
    for line in sources:
        key, _, size, _ = line.split("\t", 3)
        print(f"corpus: {key:10s} {int(size) / 1e6:8.2f} MB")


if __name__ == "__main__":
    main()
