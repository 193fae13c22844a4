//! Caps on every untrusted size, with documented defaults (see `docs/bundle-format.md`).
//!
//! A reader checks each length field against these before it allocates or reads, so a hostile file cannot
//! make it allocate or hash more than the caps allow.

/// Size and count caps for roots and bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `root.json` accepted. Default 256 KiB.
    pub max_root_bytes: usize,
    /// Largest manifest accepted. Default 64 KiB.
    pub max_manifest_bytes: u32,
    /// Most signatures in one bundle. Default 32.
    pub max_signatures: u16,
    /// Largest single signature. Default 512 bytes (Ed25519 uses 64).
    pub max_signature_bytes: u16,
    /// Most payloads in one bundle. Default 16.
    pub max_payloads: usize,
    /// Largest single payload. Default 64 GiB.
    pub max_payload_bytes: u64,
}

impl Limits {
    /// The documented defaults.
    pub const DEFAULT: Self = Self {
        max_root_bytes: 256 * 1024,
        max_manifest_bytes: 64 * 1024,
        max_signatures: 32,
        max_signature_bytes: 512,
        max_payloads: 16,
        max_payload_bytes: 64 << 30,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
