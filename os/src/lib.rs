//! Halyard OS builder: an image spec becomes a reproducible read-only root image, a GPT A/B disk image,
//! an initramfs with a static PID 1, and signed bundles; disk images boot under QEMU.
//!
//! Modules: [`spec`] (the image spec TOML), [`agentconf`] (the agent config an image ships),
//! [`rootfs`] (staging and `mksquashfs`), [`gpt`] (GPT writer), [`disk`] (the disk image and its ext4
//! state and data filesystems), [`kernel`] (Debian kernel package and module dependencies),
//! [`initramfs`] (newc cpio writer), [`bundle`] (signed full and delta bundles via `halyard_ota`),
//! [`image`] (`halyard-os build`), [`qemu`] (`halyard-os run` and the test VM). The init itself is the
//! `halyard-init` crate in `os/init/`. See `os/README.md` for the spec and the boot flow.

pub mod agentconf;
pub mod bundle;
pub mod disk;
pub mod error;
pub mod gpt;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod rootfs;
pub mod spec;

pub use error::OsError;
