//! Verifying reader: signatures before the manifest is parsed, policy before any payload byte, digests
//! while payloads stream, and no trailing bytes.
//!
//! ```text
//! open(file, root, policy, limits) ─▶ VerifiedBundle ─ next_payload() ─▶ PayloadReader (impl Read)
//!                                                    ─ finish()  (drains, checks end of file)
//! ```
//! A payload reader yields the payload's bytes and fails at its end (withholding the last chunk) when
//! the digest does not match; `PayloadReader::finish` returns the typed [`BundleError`].

use std::io::{self, Read};

use tracing::info;

use crate::bundle::format::{BundleHeader, CountingReader};
use crate::bundle::{BundleError, VerifyPolicy};
use crate::hash::Sha256Digest;
use crate::keys::KeyId;
use crate::limits::Limits;
use crate::manifest::{Manifest, Payload, PayloadKind};
use crate::root::{RoleName, SignatureFailure, TrustedRoot};
use crate::stream::{StreamError, Verifier, stream_error};

/// Reads and verifies a bundle's front: header, release signatures (before the manifest is parsed),
/// manifest, then `policy`. Payloads are verified as they are read from the result.
pub fn open<R: Read>(
    input: R,
    root: &TrustedRoot,
    policy: &VerifyPolicy,
    limits: &Limits,
) -> Result<VerifiedBundle<R>, BundleError> {
    let mut input = CountingReader::new(input);
    let header = BundleHeader::read(&mut input, limits)?;
    root.ensure_current(policy.now)?;
    let signers = verify_signatures(root, &header)?;
    let manifest = Manifest::from_canonical_bytes(&header.manifest)?;
    check_policy(&manifest, policy, limits)?;
    let manifest_sha256 = Sha256Digest::of(&header.manifest);
    info!(
        product = %manifest.product,
        version = %manifest.version,
        security_version = manifest.security_version,
        manifest_sha256 = %manifest_sha256,
        signers = signers.len(),
        "bundle header verified"
    );
    Ok(VerifiedBundle {
        input,
        manifest,
        manifest_sha256,
        signers,
        next: 0,
        current: None,
    })
}

/// Checks the release-role threshold over the raw manifest bytes.
pub fn verify_signatures(root: &TrustedRoot, header: &BundleHeader) -> Result<Vec<KeyId>, BundleError> {
    root.signed()
        .check_signatures(RoleName::Release, &header.manifest, &header.signatures)
        .map_err(|failure| match failure {
            SignatureFailure::UnknownKey { key_id, .. } => BundleError::UnknownKey { key_id },
            SignatureFailure::BadSignature { key_id, .. } => BundleError::BadSignature { key_id },
            SignatureFailure::ThresholdNotMet { valid, threshold, .. } => {
                BundleError::ThresholdNotMet { valid, threshold }
            }
        })
}

/// Checks a verified manifest against the device policy and the limits.
pub fn check_policy(manifest: &Manifest, policy: &VerifyPolicy, limits: &Limits) -> Result<(), BundleError> {
    if let Some(expected) = &policy.product
        && *expected != manifest.product
    {
        return Err(BundleError::WrongProduct {
            expected: expected.clone(),
            found: manifest.product.clone(),
        });
    }
    if let Some(expires) = manifest.expires
        && policy.now >= expires
    {
        return Err(BundleError::Expired {
            expires,
            now: policy.now,
        });
    }
    if manifest.security_version < policy.min_security_version {
        return Err(BundleError::SecurityVersionTooLow {
            found: manifest.security_version,
            committed: policy.min_security_version,
        });
    }
    if manifest.payloads.len() > limits.max_payloads {
        return Err(BundleError::TooManyPayloads {
            count: manifest.payloads.len(),
            limit: limits.max_payloads,
        });
    }
    manifest
        .payloads
        .iter()
        .try_for_each(|p| check_payload(p, policy, limits))
}

fn check_payload(payload: &Payload, policy: &VerifyPolicy, limits: &Limits) -> Result<(), BundleError> {
    let size = payload.size.max(payload.target.size);
    if size > limits.max_payload_bytes {
        return Err(BundleError::PayloadTooLarge {
            payload: payload.name.clone(),
            size,
            limit: limits.max_payload_bytes,
        });
    }
    if let (PayloadKind::Delta, Some(source), Some(active)) =
        (payload.kind, &payload.source, policy.active_source_sha256)
        && source.sha256 != active
    {
        return Err(BundleError::DeltaSourceMismatch {
            payload: payload.name.clone(),
            expected: source.sha256,
            active,
        });
    }
    Ok(())
}

/// A bundle whose signatures, manifest and policy checked out; payloads verify as they stream.
#[derive(Debug)]
pub struct VerifiedBundle<R> {
    input: CountingReader<R>,
    manifest: Manifest,
    manifest_sha256: Sha256Digest,
    signers: Vec<KeyId>,
    next: usize,
    current: Option<(usize, Verifier)>,
}

impl<R: Read> VerifiedBundle<R> {
    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the manifest bytes (the release identity the server refers to).
    pub fn manifest_sha256(&self) -> Sha256Digest {
        self.manifest_sha256
    }

    /// Release keys whose signatures counted.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    /// The input right after the verified header, for an artifact whose bytes after the signed header
    /// are not this bundle's payloads but a patch producing one of them (a server-side delta,
    /// `docs/bundle-format.md`). `None` once a payload has been started.
    pub fn into_tail(self) -> Option<CountingReader<R>> {
        (self.next == 0 && self.current.is_none()).then_some(self.input)
    }

    /// The next payload's reader, after draining and verifying any unfinished previous one.
    pub fn next_payload(&mut self) -> Result<Option<PayloadReader<'_, R>>, BundleError> {
        self.finish_current()?;
        let Some(payload) = self.manifest.payloads.get(self.next) else {
            return Ok(None);
        };
        self.current = Some((self.next, Verifier::new(payload.size, payload.sha256)));
        self.next += 1;
        Ok(Some(PayloadReader { bundle: self }))
    }

    /// Verifies all remaining payloads and that nothing follows the last one.
    pub fn finish(mut self) -> Result<(), BundleError> {
        while let Some(payload) = self.next_payload()? {
            payload.finish()?;
        }
        let mut probe = [0u8; 1];
        let n = loop {
            match self.input.read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n > 0 {
            return Err(BundleError::TrailingData {
                offset: self.input.offset() - 1,
            });
        }
        Ok(())
    }

    fn finish_current(&mut self) -> Result<(), BundleError> {
        if let Some((index, verifier)) = &mut self.current {
            let index = *index;
            if let Err(e) = verifier.drain(&mut self.input) {
                return Err(self.payload_error(index, e));
            }
        }
        self.current = None;
        Ok(())
    }

    fn payload_error(&self, index: usize, err: io::Error) -> BundleError {
        let Some(payload) = self.manifest.payloads.get(index) else {
            return BundleError::from_io(err);
        };
        match stream_error(&err) {
            Some(StreamError::Truncated { .. }) => BundleError::Truncated {
                section: format!("payload {}", payload.name),
                offset: self.input.offset(),
            },
            Some(StreamError::DigestMismatch { expected, actual }) => BundleError::PayloadHashMismatch {
                payload: payload.name.clone(),
                expected: *expected,
                actual: *actual,
            },
            _ => BundleError::from_io(err),
        }
    }
}

/// Reads one payload; the last chunk is withheld and an error returned if its digest is wrong.
#[derive(Debug)]
pub struct PayloadReader<'a, R> {
    bundle: &'a mut VerifiedBundle<R>,
}

impl<R: Read> PayloadReader<'_, R> {
    /// The payload's manifest entry.
    pub fn payload(&self) -> &Payload {
        let index = self.bundle.current.as_ref().map_or(0, |(i, _)| *i);
        &self.bundle.manifest.payloads[index]
    }

    /// Reads whatever is left and returns the payload's verdict as a typed error.
    pub fn finish(self) -> Result<(), BundleError> {
        self.bundle.finish_current()
    }
}

impl<R: Read> Read for PayloadReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let bundle = &mut *self.bundle;
        let Some((index, verifier)) = bundle.current.as_mut() else {
            return Ok(0);
        };
        let index = *index;
        match verifier.read_from(&mut bundle.input, buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(bundle.payload_error(index, e).into_io()),
        }
    }
}
