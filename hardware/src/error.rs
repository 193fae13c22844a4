//! Error types. Every variant names the backend, the path of the device or file, and the slot when one
//! is involved, so a log line alone says what failed where.

use std::io;
use std::path::PathBuf;

use crate::slot::Slot;

/// Errors of [`crate::block::BlockDevice`] backends, the GPT reader and the slot writer.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The operating system refused an I/O operation (or a fault injector pretended it did).
    #[error("{backend} {}: {op} at offset {offset} failed: {source}", .path.display())]
    Io {
        /// Backend name, e.g. `file`, `gpt-partition`, `faulty`.
        backend: &'static str,
        /// Device or file path.
        path: PathBuf,
        /// The operation: `open`, `read`, `write`, `flush`, `size`.
        op: &'static str,
        /// Byte offset of the operation inside the device.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An access past the end of the device.
    #[error("{backend} {}: {len} bytes at offset {offset} exceed the device size {size}", .path.display())]
    OutOfRange {
        /// Backend name.
        backend: &'static str,
        /// Device or file path.
        path: PathBuf,
        /// Start of the access.
        offset: u64,
        /// Length of the access.
        len: u64,
        /// Size of the device.
        size: u64,
    },
    /// Power was cut by a [`crate::block::faulty::PowerRail`]: this and all later I/O fails.
    #[error("{backend} {}: power cut during {op}", .path.display())]
    PowerCut {
        /// Backend name (the wrapped device's).
        backend: &'static str,
        /// Device path.
        path: PathBuf,
        /// The operation that hit the cut.
        op: &'static str,
    },
    /// The GPT header or entry array is malformed or fails its CRC32.
    #[error("gpt {}: {reason}", .path.display())]
    Gpt {
        /// Disk image or device path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No GPT entry carries the requested partition name.
    #[error("gpt {}: no partition named {name:?}", .path.display())]
    PartitionNotFound {
        /// Disk image or device path.
        path: PathBuf,
        /// The name looked for.
        name: String,
    },
    /// The image is larger than the slot.
    #[error("slot {slot} on {}: image larger than the {capacity}-byte slot", .path.display())]
    ImageTooLarge {
        /// Target slot.
        slot: Slot,
        /// Slot device path.
        path: PathBuf,
        /// Slot size in bytes.
        capacity: u64,
    },
    /// The image source (a `Read`) failed.
    #[error("slot {slot} on {}: reading the image failed after {offset} bytes: {source}", .path.display())]
    Source {
        /// Target slot.
        slot: Slot,
        /// Slot device path.
        path: PathBuf,
        /// Bytes read before the failure.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The streamed or read-back SHA-256 differs from the expected one.
    #[error("slot {slot} on {}: {stage} sha256 {actual} differs from expected {expected}", .path.display())]
    HashMismatch {
        /// Target slot.
        slot: Slot,
        /// Slot device path.
        path: PathBuf,
        /// `stream` (the bytes received) or `readback` (the bytes on the device).
        stage: &'static str,
        /// Expected digest, hex.
        expected: String,
        /// Computed digest, hex.
        actual: String,
    },
}

/// Errors of [`crate::boot::BootControl`] backends and the environment codecs.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The storage under the environment failed.
    #[error("{backend} {}: {source}", .path.display())]
    Device {
        /// Backend name: `grubenv`, `ubootenv`, `file`.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// The device error (boxed: it carries its own path and offset).
        #[source]
        source: Box<BlockError>,
    },
    /// A file operation on the environment failed.
    #[error("{backend} {}: {op} failed: {source}", .path.display())]
    Io {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The environment does not parse (bad signature, bad CRC in every copy, bad size).
    #[error("{backend} {}: corrupt environment: {reason}", .path.display())]
    Corrupt {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The variables do not fit the environment block.
    #[error("{backend} {}: environment needs {needed} bytes but holds {capacity}", .path.display())]
    TooLarge {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// A variable name or value cannot be stored in this format.
    #[error("{backend} {}: cannot store variable {key:?}: {reason}", .path.display())]
    InvalidVariable {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// Variable name.
        key: String,
        /// Why not.
        reason: &'static str,
    },
    /// `set_next` was given a try budget outside `1..=MAX_TRIES`.
    #[error("{backend} {}: slot {slot}: {tries} tries is outside 1..={max}", .path.display())]
    InvalidTries {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// The slot.
        slot: Slot,
        /// Requested tries.
        tries: u8,
        /// The maximum the bootloader scripts count down from.
        max: u8,
    },
    /// A boot-control operation on a slot failed; `source` says why.
    #[error("{backend} {}: {op}({slot}) failed: {source}", .path.display())]
    Operation {
        /// Backend name.
        backend: &'static str,
        /// Environment path.
        path: PathBuf,
        /// `set_next`, `mark_successful`, `mark_unbootable`.
        op: &'static str,
        /// The slot the operation was about.
        slot: Slot,
        /// The underlying failure.
        #[source]
        source: Box<BootError>,
    },
    /// The running slot cannot be determined.
    #[error("{backend} {}: current slot unknown: {reason}", .path.display())]
    CurrentSlotUnknown {
        /// Backend name.
        backend: &'static str,
        /// Where it was looked up (environment or command line path).
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Errors of [`crate::watchdog`] and [`crate::power`].
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An operation on a watchdog or power device failed.
    #[error("{backend} {}: {op} failed: {source}", .path.display())]
    Io {
        /// Backend name: `linux-watchdog`, `linux-power`.
        backend: &'static str,
        /// Device path (or the reboot command).
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
