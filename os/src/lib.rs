//! Halyard OS builder: an image spec becomes a reproducible read-only root image, a GPT A/B disk image and a
//! signed full bundle; disk images boot under QEMU.
//!
//! Planned module map (issue 7): `spec` (image spec TOML), `rootfs` (squashfs/erofs, reproducible),
//! `disk` (GPT: state, root A, root B, data), `kernel` (Debian cloud kernel and modules), `qemu` (run a disk
//! image with restricted user-mode networking); `init/` holds the static PID 1 for the initramfs.
