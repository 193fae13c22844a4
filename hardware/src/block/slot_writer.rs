//! Streaming an image into a slot and proving it landed: [`write_slot`] hashes while it writes, flushes,
//! then reads the bytes back and hashes them again; [`hash_prefix`] hashes the first N bytes of a slot
//! (the active slot's digest, e.g. to pick a delta source).
//!
//! The caller marks the slot unbootable before writing and calls `set_next` only after this returns
//! `Ok`: a power cut in between leaves a slot the bootloader never picks.

use std::io::{ErrorKind, Read};

use sha2::{Digest, Sha256};

use super::BlockDevice;
use crate::error::BlockError;
use crate::slot::Slot;

/// Default write size: large enough for flash, small enough for a 64 MiB box.
pub const DEFAULT_CHUNK: usize = 256 * 1024;

/// What [`write_slot`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotWriteReport {
    /// Image length in bytes.
    pub bytes: u64,
    /// SHA-256 of the image, verified on the device.
    pub sha256: [u8; 32],
}

/// Stream `image` into `dev` (the slot `slot`) in `chunk`-byte writes, then verify that the first
/// `bytes` of the device hash to `expected`. Fails without writing past the slot if the image is larger.
pub fn write_slot<D, R>(
    dev: &mut D,
    slot: Slot,
    mut image: R,
    expected: &[u8; 32],
    chunk: usize,
) -> Result<SlotWriteReport, BlockError>
where
    D: BlockDevice + ?Sized,
    R: Read,
{
    let mut buf = vec![0u8; chunk.max(1)];
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        let n = fill(&mut image, &mut buf).map_err(|source| BlockError::Source {
            slot,
            path: dev.location().to_path_buf(),
            offset,
            source,
        })?;
        if n == 0 {
            break;
        }
        if offset + n as u64 > dev.size() {
            return Err(BlockError::ImageTooLarge {
                slot,
                path: dev.location().to_path_buf(),
                capacity: dev.size(),
            });
        }
        dev.write_at(offset, &buf[..n])?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    dev.flush()?;
    check(dev, slot, "stream", expected, &hasher.finalize().into())?;
    let readback = hash_prefix(dev, offset)?;
    check(dev, slot, "readback", expected, &readback)?;
    tracing::info!(%slot, path = %dev.location().display(), bytes = offset, "slot written and verified");
    Ok(SlotWriteReport {
        bytes: offset,
        sha256: readback,
    })
}

/// SHA-256 of the first `len` bytes of `dev`.
pub fn hash_prefix<D: BlockDevice + ?Sized>(dev: &mut D, len: u64) -> Result<[u8; 32], BlockError> {
    let mut buf = vec![0u8; len.min(DEFAULT_CHUNK as u64) as usize];
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        dev.read_at(offset, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize().into())
}

fn check<D: BlockDevice + ?Sized>(
    dev: &D,
    slot: Slot,
    stage: &'static str,
    expected: &[u8; 32],
    actual: &[u8; 32],
) -> Result<(), BlockError> {
    if expected == actual {
        return Ok(());
    }
    Err(BlockError::HashMismatch {
        slot,
        path: dev.location().to_path_buf(),
        stage,
        expected: hex::encode(expected),
        actual: hex::encode(actual),
    })
}

/// Read until `buf` is full or the source ends; returns the bytes read.
fn fill<R: Read>(src: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
