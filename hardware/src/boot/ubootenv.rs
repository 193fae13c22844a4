//! The U-Boot environment, compatible with `fw_printenv`/`fw_setenv` (libubootenv) and `mkenvimage`.
//!
//! Image format (little-endian): `crc32` (4 bytes) over the data area, then in redundant layouts a
//! `flags` byte, then the data area: `name=value\0` entries sorted by name, an empty entry (`\0`) as
//! terminator, `0xff` padding to the environment size. This is byte for byte what `mkenvimage`
//! (`-r` for redundant) produces from sorted input, and what `fw_setenv` writes.
//!
//! Crash safety:
//! - Redundant: two copies; the valid copy with the newer `flags` counter (incremented, wrapping at
//!   255, as U-Boot and libubootenv do for non-NAND media) is active. An update writes the *other*
//!   copy with `flags + 1` and flushes: a cut during the write leaves that copy with a bad CRC, so the
//!   old copy stays active. Always the old or the new environment.
//! - Single: one copy, overwritten in place: a cut during the write leaves a bad CRC and U-Boot falls
//!   back to its built-in default environment (the documented risk). When the environment is a file,
//!   [`UBootEnv::open_file`] writes it via temp + rename instead, which is atomic.

use std::path::{Path, PathBuf};

use super::EnvStore;
use super::vars::EnvVars;
use crate::block::BlockDevice;
use crate::block::file::{AtomicFile, FileDevice};
use crate::error::{BlockError, BootError};

const BACKEND: &str = "ubootenv";

/// How many copies the environment has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One copy: `crc32` + data.
    Single,
    /// Two copies: `crc32` + `flags` + data each.
    Redundant,
}

impl Layout {
    /// Header bytes before the data area.
    pub fn header_len(self) -> usize {
        match self {
            Layout::Single => 4,
            Layout::Redundant => 5,
        }
    }
}

/// Why an image cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UBootEnvError {
    /// The image is not larger than its header.
    TooSmall,
    /// The stored CRC32 does not match the data area.
    BadCrc {
        /// CRC32 in the header.
        stored: u32,
        /// CRC32 of the data area.
        computed: u32,
    },
    /// The variables need more than the data area.
    TooLarge {
        /// Bytes needed, terminator included.
        needed: usize,
    },
    /// A name is empty or contains `=` or NUL, or a value contains NUL.
    BadVariable(String),
}

/// Encode `vars` (sorted by name) into an image of `size` bytes.
pub fn encode(vars: &EnvVars, size: usize, layout: Layout, flags: u8) -> Result<Vec<u8>, UBootEnvError> {
    let header = layout.header_len();
    let mut data = Vec::new();
    for (name, value) in vars.sorted().iter() {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(UBootEnvError::BadVariable(name.to_owned()));
        }
        data.extend_from_slice(name.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data.push(0);
    let capacity = size.saturating_sub(header);
    if data.len() > capacity {
        return Err(UBootEnvError::TooLarge { needed: data.len() });
    }
    data.resize(capacity, 0xff);
    let mut image = crc32fast::hash(&data).to_le_bytes().to_vec();
    if layout == Layout::Redundant {
        image.push(flags);
    }
    image.extend_from_slice(&data);
    Ok(image)
}

/// Decode an image; returns the variables and the flags byte (0 for single copies).
pub fn decode(image: &[u8], layout: Layout) -> Result<(EnvVars, u8), UBootEnvError> {
    let header = layout.header_len();
    if image.len() <= header {
        return Err(UBootEnvError::TooSmall);
    }
    let stored = u32::from_le_bytes([image[0], image[1], image[2], image[3]]);
    let data = &image[header..];
    let computed = crc32fast::hash(data);
    if stored != computed {
        return Err(UBootEnvError::BadCrc { stored, computed });
    }
    let flags = if layout == Layout::Redundant { image[4] } else { 0 };
    let mut vars = EnvVars::new();
    for entry in data.split(|&b| b == 0).take_while(|e| !e.is_empty()) {
        let text = String::from_utf8_lossy(entry);
        if let Some((name, value)) = text.split_once('=') {
            vars.set(name, value);
        }
    }
    Ok((vars, flags))
}

/// Which copy U-Boot uses: the valid one, or of two valid ones the newer counter (255 → 0 wraps).
pub fn active_copy(first: Option<u8>, second: Option<u8>) -> Option<usize> {
    match (first, second) {
        (None, None) => None,
        (Some(_), None) => Some(0),
        (None, Some(_)) => Some(1),
        (Some(255), Some(0)) => Some(1),
        (Some(0), Some(255)) => Some(0),
        (Some(a), Some(b)) => Some(if b > a { 1 } else { 0 }),
    }
}

/// One copy's decoding: its variables and flags, or why it is invalid.
type Decoded = Result<(EnvVars, u8), UBootEnvError>;

/// A U-Boot environment on one or two ([`Layout::Redundant`]) regions of block devices.
#[derive(Debug)]
pub struct UBootEnv<D: BlockDevice> {
    copies: Vec<(D, u64)>,
    size: usize,
    layout: Layout,
}

impl UBootEnv<AtomicFile> {
    /// A single-copy environment that is a whole file, replaced atomically (temp + rename) on update.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self, BootError> {
        let dev = AtomicFile::open(&path).map_err(|source| device_err(path.as_ref(), source))?;
        let size = dev.size() as usize;
        Ok(Self::single(dev, 0, size))
    }
}

impl UBootEnv<FileDevice> {
    /// Open what a libubootenv `fw_env.config` describes (`device offset size` per line, one line for
    /// a single copy, two for redundant copies), writing in place like `fw_setenv`.
    pub fn open_fw_env_config(config: impl AsRef<Path>) -> Result<Self, BootError> {
        let config = config.as_ref();
        let corrupt = |reason: String| BootError::Corrupt {
            backend: BACKEND,
            path: config.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(config).map_err(|e| corrupt(e.to_string()))?;
        let mut copies = Vec::new();
        let mut size = 0;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(dev), Some(offset), Some(len)) = (fields.first(), fields.get(1), fields.get(2)) else {
                return Err(corrupt(format!("expected `device offset size`, got {line:?}")));
            };
            let (offset, len) = (parse_number(offset), parse_number(len));
            let (Some(offset), Some(len)) = (offset, len) else {
                return Err(corrupt(format!("bad number in {line:?}")));
            };
            let dev = FileDevice::open(dev).map_err(|source| device_err(Path::new(dev), source))?;
            copies.push((dev, offset));
            size = len as usize;
        }
        match copies.len() {
            1 => Ok(Self {
                copies,
                size,
                layout: Layout::Single,
            }),
            2 => Ok(Self {
                copies,
                size,
                layout: Layout::Redundant,
            }),
            n => Err(corrupt(format!("{n} environment lines, expected 1 or 2"))),
        }
    }
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn device_err(path: &Path, source: BlockError) -> BootError {
    BootError::Device {
        backend: BACKEND,
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

impl<D: BlockDevice> UBootEnv<D> {
    /// One copy of `size` bytes at `offset` of `dev`.
    pub fn single(dev: D, offset: u64, size: usize) -> Self {
        Self {
            copies: vec![(dev, offset)],
            size,
            layout: Layout::Single,
        }
    }

    /// Two copies of `size` bytes each (they may be two handles on one device).
    pub fn redundant(first: (D, u64), second: (D, u64), size: usize) -> Self {
        Self {
            copies: vec![first, second],
            size,
            layout: Layout::Redundant,
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Write `vars` into every copy (flags 1), like flashing a `mkenvimage` image at provisioning.
    pub fn format(&mut self, vars: &EnvVars) -> Result<(), BootError> {
        let image = encode(vars, self.size, self.layout, 1).map_err(|e| self.format_err(e))?;
        for i in 0..self.copies.len() {
            self.write_copy(i, &image)?;
        }
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.copies
            .first()
            .map(|(d, _)| d.location().to_path_buf())
            .unwrap_or_default()
    }

    fn format_err(&self, e: UBootEnvError) -> BootError {
        let path = self.path();
        match e {
            UBootEnvError::TooLarge { needed } => BootError::TooLarge {
                backend: BACKEND,
                path,
                needed,
                capacity: self.size.saturating_sub(self.layout.header_len()),
            },
            UBootEnvError::BadVariable(key) => BootError::InvalidVariable {
                backend: BACKEND,
                path,
                key,
                reason: "names must be non-empty without '=' or NUL; values without NUL",
            },
            other => BootError::Corrupt {
                backend: BACKEND,
                path,
                reason: format!("{other:?}"),
            },
        }
    }

    /// Read and decode every copy (device errors abort, format errors are per copy).
    fn read_copies(&mut self) -> Result<Vec<Decoded>, BootError> {
        let mut out = Vec::new();
        for (dev, offset) in &mut self.copies {
            let mut image = vec![0u8; self.size];
            dev.read_at(*offset, &mut image)
                .map_err(|source| device_err(dev.location(), source))?;
            out.push(decode(&image, self.layout));
        }
        Ok(out)
    }

    fn write_copy(&mut self, index: usize, image: &[u8]) -> Result<(), BootError> {
        let Some((dev, offset)) = self.copies.get_mut(index) else {
            return Ok(());
        };
        dev.write_at(*offset, image)
            .map_err(|source| device_err(dev.location(), source))?;
        dev.flush().map_err(|source| device_err(dev.location(), source))
    }

    /// The active copy's index, variables and flags.
    fn active(&mut self) -> Result<(usize, EnvVars, u8), BootError> {
        let mut copies = self.read_copies()?;
        let flags: Vec<Option<u8>> = copies.iter().map(|c| c.as_ref().ok().map(|(_, f)| *f)).collect();
        let pick = active_copy(flags.first().copied().flatten(), flags.get(1).copied().flatten());
        match pick {
            Some(i) => match copies.swap_remove(i) {
                Ok((vars, flags)) => Ok((i, vars, flags)),
                Err(e) => Err(self.format_err(e)),
            },
            None => {
                let reasons: Vec<String> = copies
                    .iter()
                    .filter_map(|c| c.as_ref().err())
                    .map(|e| format!("{e:?}"))
                    .collect();
                let reason = format!("no valid copy: {}", reasons.join(", "));
                Err(BootError::Corrupt {
                    backend: BACKEND,
                    path: self.path(),
                    reason,
                })
            }
        }
    }
}

impl<D: BlockDevice> EnvStore for UBootEnv<D> {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn location(&self) -> &Path {
        self.copies.first().map_or(Path::new(""), |(d, _)| d.location())
    }

    fn load(&mut self) -> Result<EnvVars, BootError> {
        Ok(self.active()?.1)
    }

    fn store(&mut self, vars: &EnvVars) -> Result<(), BootError> {
        let (target, flags) = match self.layout {
            Layout::Single => (0, 0),
            Layout::Redundant => match self.active() {
                Ok((i, _, flags)) => (1 - i, flags.wrapping_add(1)),
                Err(BootError::Corrupt { .. }) => (0, 1),
                Err(e) => return Err(e),
            },
        };
        let image = encode(vars, self.size, self.layout, flags).map_err(|e| self.format_err(e))?;
        self.write_copy(target, &image)?;
        tracing::debug!(path = %self.path().display(), copy = target, flags, "U-Boot environment written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_crc() {
        let vars: EnvVars = [("b", "2"), ("a", "x y")].into_iter().collect();
        for layout in [Layout::Single, Layout::Redundant] {
            let image = encode(&vars, 64, layout, 7).unwrap();
            assert_eq!(image.len(), 64);
            let (back, flags) = decode(&image, layout).unwrap();
            assert_eq!(back, vars.sorted());
            assert_eq!(flags, if layout == Layout::Redundant { 7 } else { 0 });
            let mut bad = image.clone();
            bad[40] ^= 1;
            assert!(matches!(decode(&bad, layout), Err(UBootEnvError::BadCrc { .. })));
        }
        assert!(matches!(
            encode(&vars, 12, Layout::Single, 0),
            Err(UBootEnvError::TooLarge { .. })
        ));
    }

    #[test]
    fn newer_counter_wins_with_wraparound() {
        assert_eq!(active_copy(Some(3), Some(4)), Some(1));
        assert_eq!(active_copy(Some(4), Some(3)), Some(0));
        assert_eq!(active_copy(Some(255), Some(0)), Some(1));
        assert_eq!(active_copy(Some(0), Some(255)), Some(0));
        assert_eq!(active_copy(Some(2), Some(2)), Some(0));
        assert_eq!(active_copy(None, Some(9)), Some(1));
        assert_eq!(active_copy(None, None), None);
    }
}
