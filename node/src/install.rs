//! Installing a downloaded bundle: verify it with `halyard_ota` (signatures, product, security floor,
//! expiry, delta source), stream its payload (full copy or delta against the active slot) into the
//! inactive slot, then read the slot back and check the target hash.
//!
//! A delta offer may also be a **server-side delta** (`docs/bundle-format.md`, "Server-side deltas"):
//! the release's signed bundle header followed by an unsigned patch instead of the payload. The agent
//! recognizes it by its verified manifest (a delta offer whose manifest has no delta payload), applies
//! the patch to the active slot with `bundle::install_from_external_delta`, and accepts the image only
//! when it equals the signed target of the manifest's full payload.
//!
//! `halyard_hardware::block::slot_writer::write_slot` pulls from a `Read`, while
//! `halyard_ota::bundle::install_payload` pushes into a `Write`; [`SlotSink`] is the adapter (a
//! buffered, bounds-checked sequential writer on a [`BlockDevice`]), and the read-back reuses the
//! hardware crate's `hash_prefix`. [`SlotSource`] gives the delta engine random reads of the active slot.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use halyard_hardware::block::BlockDevice;
use halyard_hardware::block::slot_writer::{DEFAULT_CHUNK, hash_prefix};
use halyard_hardware::{BlockError, Slot};
use halyard_ota::bundle::{self, BundleError, InstallStats, VerifiedBundle, VerifyPolicy};
use halyard_ota::delta::SourceRead;
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{Manifest, PayloadKind};
use halyard_ota::root::TrustedRoot;
use halyard_protocol::Sha256;

use crate::fsm::{Image, PayloadChoice};

/// Why an install failed. All of them leave the target slot unbootable.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The download file could not be opened.
    #[error("opening bundle {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The bundle was refused or its payload could not be applied.
    #[error("bundle rejected ({code}): {source}", code = source.code())]
    Bundle {
        /// Why.
        #[from]
        source: BundleError,
    },
    /// The bundle has no payload.
    #[error("bundle has no payload")]
    NoPayload,
    /// A slot could not be written or read back.
    #[error("slot {slot}: {source}")]
    Block {
        /// The slot.
        slot: Slot,
        /// Why.
        source: BlockError,
    },
    /// The slot does not read back as the image just written.
    #[error("slot {slot} reads back as {actual}, the bundle's target is {expected}")]
    Readback {
        /// The slot.
        slot: Slot,
        /// Target digest.
        expected: Sha256,
        /// Digest read back.
        actual: Sha256,
    },
}

/// What was installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The image now in the target slot.
    pub image: Image,
    /// The bundle's security version.
    pub security_version: u64,
    /// Full or delta, as the bundle said.
    pub kind: PayloadKind,
    /// Payload bytes read.
    pub payload_bytes: u64,
}

/// The active slot as a delta source: its first `len` bytes (the image, not the whole partition).
#[derive(Debug)]
pub struct SlotSource<'a> {
    dev: RefCell<&'a mut dyn BlockDevice>,
    len: u64,
}

impl<'a> SlotSource<'a> {
    /// The first `len` bytes of `dev`.
    pub fn new(dev: &'a mut dyn BlockDevice, len: u64) -> Self {
        Self {
            dev: RefCell::new(dev),
            len,
        }
    }
}

impl SourceRead for SlotSource<'_> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the source image",
            ));
        }
        self.dev
            .borrow_mut()
            .read_at(offset, buf)
            .map_err(io::Error::other)
    }
}

/// Sequential, buffered writes into a slot, refusing to go past its end.
#[derive(Debug)]
pub struct SlotSink<'a> {
    dev: &'a mut dyn BlockDevice,
    slot: Slot,
    offset: u64,
    buf: Vec<u8>,
}

impl<'a> SlotSink<'a> {
    /// Write `dev` (slot `slot`) from offset 0.
    pub fn new(dev: &'a mut dyn BlockDevice, slot: Slot) -> Self {
        Self {
            dev,
            slot,
            offset: 0,
            buf: Vec::with_capacity(DEFAULT_CHUNK),
        }
    }

    fn drain(&mut self) -> Result<(), BlockError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.offset + self.buf.len() as u64 > self.dev.size() {
            return Err(BlockError::ImageTooLarge {
                slot: self.slot,
                path: self.dev.location().to_path_buf(),
                capacity: self.dev.size(),
            });
        }
        self.dev.write_at(self.offset, &self.buf)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Write what is buffered and make it durable.
    pub fn finish(&mut self) -> Result<u64, BlockError> {
        self.drain()?;
        self.dev.flush()?;
        Ok(self.offset)
    }
}

impl Write for SlotSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = DEFAULT_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == DEFAULT_CHUNK {
            self.drain().map_err(io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.finish().map(|_| ()).map_err(io::Error::other)
    }
}

/// Where and how to install.
#[derive(Debug)]
pub struct Request<'a> {
    /// The downloaded bundle.
    pub bundle: &'a Path,
    /// The trust root.
    pub root: &'a TrustedRoot,
    /// Product, security floor, time, active image digest.
    pub policy: VerifyPolicy,
    /// Size caps.
    pub limits: &'a Limits,
    /// The slot to write and its device.
    pub target: (Slot, &'a mut dyn BlockDevice),
    /// The active slot's device and image length, for deltas.
    pub source: Option<(&'a mut dyn BlockDevice, u64)>,
    /// What the artifact was offered as: a delta offer may be a server-side delta.
    pub choice: PayloadChoice,
}

/// Verify the bundle and write its image into the target slot, then check it.
pub fn install(req: Request<'_>) -> Result<Installed, InstallError> {
    let file = File::open(req.bundle).map_err(|source| InstallError::Open {
        path: req.bundle.to_path_buf(),
        source,
    })?;
    let verified = bundle::open(BufReader::new(file), req.root, &req.policy, req.limits)?;
    let (version, security_version) = {
        let m = verified.manifest();
        (m.version.to_string(), m.security_version)
    };
    let (slot, target) = req.target;
    let source = req.source.map(|(dev, len)| SlotSource::new(dev, len));
    let mut sink = SlotSink::new(target, slot);
    let stats = write_image(verified, req.choice, source.as_ref(), &mut sink)?;
    sink.finish()
        .map_err(|source| InstallError::Block { slot, source })?;
    drop(sink);
    let expected = Sha256(stats.target_sha256.0);
    let actual = Sha256(
        hash_prefix(target, stats.target_bytes).map_err(|source| InstallError::Block { slot, source })?,
    );
    if actual != expected {
        return Err(InstallError::Readback {
            slot,
            expected,
            actual,
        });
    }
    tracing::info!(%slot, version, kind = ?stats.kind, bytes = stats.target_bytes, "image installed and verified");
    Ok(Installed {
        image: Image {
            version,
            size: stats.target_bytes,
            sha256: expected,
        },
        security_version,
        kind: stats.kind,
        payload_bytes: stats.payload_bytes,
    })
}

/// Whether a verified artifact offered as `choice` is a server-side delta: a delta offer whose signed
/// manifest carries no delta payload (its bytes after the header are then a patch, not the payload).
pub fn is_server_delta(choice: PayloadChoice, manifest: &Manifest) -> bool {
    choice == PayloadChoice::Delta && manifest.payloads.iter().all(|p| p.kind == PayloadKind::Full)
}

/// Streams the verified artifact's image into `sink`: its first payload (full copy, or a signed delta
/// against `source`), or for a server-side delta the patch after the header against `source`, checked
/// against the first full payload's signed target.
fn write_image<R: Read>(
    mut verified: VerifiedBundle<R>,
    choice: PayloadChoice,
    source: Option<&SlotSource<'_>>,
    sink: &mut SlotSink<'_>,
) -> Result<InstallStats, InstallError> {
    if !is_server_delta(choice, verified.manifest()) {
        let payload = verified.next_payload()?.ok_or(InstallError::NoPayload)?;
        let stats = bundle::install_payload(payload, source, &mut *sink)?;
        verified.finish()?;
        return Ok(stats);
    }
    let payload = verified
        .manifest()
        .payloads
        .first()
        .cloned()
        .ok_or(InstallError::NoPayload)?;
    let source = source.ok_or_else(|| BundleError::DeltaNeedsSource {
        payload: payload.name.clone(),
    })?;
    let patch = verified.into_tail().ok_or(InstallError::NoPayload)?;
    tracing::info!(payload = %payload.name, "installing a server-side delta against the active slot");
    // `apply` refuses bytes after the patch's end marker, so the whole tail is accounted for.
    Ok(bundle::install_from_external_delta(
        &payload, source, patch, sink,
    )?)
}
