//! Bundle header codec: magic, format version, manifest bytes and signatures. Nothing here verifies.

use std::io::{self, Read};

use crate::bundle::BundleError;
use crate::hash::Sha256Digest;
use crate::keys::{KeyId, SignatureEntry};
use crate::limits::Limits;

/// First eight bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"HALYBNDL";
/// The format version written and read.
pub const FORMAT_VERSION: u16 = 1;

/// The unverified front of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleHeader {
    /// Manifest bytes exactly as stored (what signatures cover).
    pub manifest: Vec<u8>,
    /// Signatures in stored order.
    pub signatures: Vec<SignatureEntry>,
}

/// A reader that counts the bytes it has returned (the file offset for error messages).
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> CountingReader<R> {
    /// Wraps `inner`, starting at offset 0.
    pub fn new(inner: R) -> Self {
        Self { inner, offset: 0 }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `buf.len()` bytes, reporting early EOF as [`BundleError::Truncated`] in `section`.
    pub fn fill(&mut self, buf: &mut [u8], section: &str) -> Result<(), BundleError> {
        self.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => BundleError::Truncated {
                section: section.to_owned(),
                offset: self.offset,
            },
            _ => BundleError::from_io(e),
        })
    }

    fn u16(&mut self, section: &str) -> Result<u16, BundleError> {
        let mut b = [0u8; 2];
        self.fill(&mut b, section)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self, section: &str) -> Result<u32, BundleError> {
        let mut b = [0u8; 4];
        self.fill(&mut b, section)?;
        Ok(u32::from_be_bytes(b))
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl BundleHeader {
    /// Reads the header, checking every length against `limits` before reading it.
    pub fn read<R: Read>(r: &mut CountingReader<R>, limits: &Limits) -> Result<Self, BundleError> {
        let mut magic = [0u8; 8];
        r.fill(&mut magic, "magic")?;
        if magic != MAGIC {
            return Err(BundleError::BadMagic { found: magic });
        }
        let version = r.u16("format version")?;
        if version != FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion { found: version });
        }
        let size = r.u32("manifest length")?;
        if size > limits.max_manifest_bytes {
            return Err(BundleError::ManifestTooLarge {
                size,
                limit: limits.max_manifest_bytes,
            });
        }
        let mut manifest = vec![0u8; size as usize];
        r.fill(&mut manifest, "manifest")?;
        let signatures = read_signatures(r, limits)?;
        Ok(Self { manifest, signatures })
    }

    /// Encodes the header; fails only when a length does not fit its field.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let manifest_len = u32::try_from(self.manifest.len()).map_err(|_| BundleError::ManifestTooLarge {
            size: u32::MAX,
            limit: u32::MAX,
        })?;
        let count = u16::try_from(self.signatures.len()).map_err(|_| BundleError::TooManySignatures {
            count: u16::MAX,
            limit: u16::MAX,
        })?;
        let mut out = Vec::with_capacity(self.manifest.len() + 128 * self.signatures.len() + 32);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&manifest_len.to_be_bytes());
        out.extend_from_slice(&self.manifest);
        out.extend_from_slice(&count.to_be_bytes());
        for entry in &self.signatures {
            let len = u16::try_from(entry.sig.len()).map_err(|_| BundleError::SignatureTooLarge {
                key_id: entry.keyid,
                size: u16::MAX,
                limit: u16::MAX,
            })?;
            out.extend_from_slice(&entry.keyid.0.0);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&entry.sig);
        }
        Ok(out)
    }
}

fn read_signatures<R: Read>(
    r: &mut CountingReader<R>,
    limits: &Limits,
) -> Result<Vec<SignatureEntry>, BundleError> {
    let count = r.u16("signature count")?;
    if count > limits.max_signatures {
        return Err(BundleError::TooManySignatures {
            count,
            limit: limits.max_signatures,
        });
    }
    let mut signatures = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let mut id = [0u8; 32];
        r.fill(&mut id, "signatures")?;
        let keyid = KeyId(Sha256Digest(id));
        let size = r.u16("signatures")?;
        if size > limits.max_signature_bytes {
            return Err(BundleError::SignatureTooLarge {
                key_id: keyid,
                size,
                limit: limits.max_signature_bytes,
            });
        }
        let mut sig = vec![0u8; usize::from(size)];
        r.fill(&mut sig, "signatures")?;
        signatures.push(SignatureEntry { keyid, sig });
    }
    Ok(signatures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    #[test]
    fn header_round_trips_and_every_prefix_is_truncated() {
        let key = PrivateKey::from_seed(&[3; 32]);
        let header = BundleHeader {
            manifest: b"{}".to_vec(),
            signatures: vec![SignatureEntry::sign(&key, b"{}")],
        };
        let bytes = header.encode().expect("encodable");
        let mut r = CountingReader::new(&bytes[..]);
        assert_eq!(
            BundleHeader::read(&mut r, &Limits::DEFAULT).expect("reads"),
            header
        );
        assert_eq!(r.offset(), bytes.len() as u64);
        for cut in 0..bytes.len() {
            let mut r = CountingReader::new(&bytes[..cut]);
            let err = BundleHeader::read(&mut r, &Limits::DEFAULT).expect_err("truncated");
            assert!(matches!(err, BundleError::Truncated { .. }), "cut {cut}: {err}");
        }
    }
}
