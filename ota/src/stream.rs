//! Streaming adapters that bound and hash untrusted bytes as they pass.
//!
//! - [`Verifier`]: the state of "exactly `size` bytes with digest `sha256`", fed from any reader; it never
//!   reads past `size`, errors on early EOF, and withholds the final chunk when the digest does not match,
//!   so a consumer never sees the end of a bad stream as success.
//! - [`VerifyingReader`]: a [`Verifier`] that owns its reader.
//! - [`HashingWriter`]: hashes and counts what is written and refuses to write past a cap.
//! - [`hash_reader`]: size and digest of a whole stream.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::hash::Sha256Digest;

/// Why a verified stream failed. Travels inside `io::Error` (kind `InvalidData` / `UnexpectedEof`) and can
/// be recovered with `io::Error::into_inner` + `downcast`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The input ended before the expected size.
    #[error("stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// All bytes arrived but their digest is wrong.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The expected digest.
        expected: Sha256Digest,
        /// The digest of what arrived.
        actual: Sha256Digest,
    },
    /// A writer was asked to write past its cap.
    #[error("more than {limit} bytes written")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match e {
            StreamError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            StreamError::DigestMismatch { .. } | StreamError::TooLarge { .. } => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Finds a [`StreamError`] carried by `err`, if any.
pub fn stream_error(err: &io::Error) -> Option<&StreamError> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<StreamError>())
}

/// Expects exactly `size` bytes with digest `sha256`.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected_size: u64,
    expected: Sha256Digest,
    seen: u64,
    hasher: Sha256,
    outcome: Option<Result<(), StreamError>>,
}

impl Verifier {
    /// Expects `size` bytes hashing to `sha256`.
    pub fn new(size: u64, sha256: Sha256Digest) -> Self {
        Self {
            expected_size: size,
            expected: sha256,
            seen: 0,
            hasher: Sha256::new(),
            outcome: None,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.expected_size - self.seen
    }

    /// `Some(result)` once the stream has ended (successfully or not).
    pub fn outcome(&self) -> Option<&Result<(), StreamError>> {
        self.outcome.as_ref()
    }

    /// Reads the next chunk from `inner` into `buf`; `Ok(0)` only after the whole stream verified.
    pub fn read_from<R: Read + ?Sized>(&mut self, inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(done) = &self.outcome {
            return done.clone().map(|()| 0).map_err(io::Error::from);
        }
        if self.remaining() == 0 {
            return self.finish().map(|()| 0).map_err(io::Error::from);
        }
        let want = usize::try_from(self.remaining()).map_or(buf.len(), |r| r.min(buf.len()));
        if want == 0 {
            return Ok(0);
        }
        let n = inner.read(&mut buf[..want])?;
        if n == 0 {
            let err = StreamError::Truncated {
                expected: self.expected_size,
                got: self.seen,
            };
            self.outcome = Some(Err(err.clone()));
            return Err(err.into());
        }
        self.hasher.update(&buf[..n]);
        self.seen += n as u64;
        if self.remaining() == 0 {
            // Withhold the last chunk unless the whole stream matches.
            self.finish()?;
        }
        Ok(n)
    }

    fn finish(&mut self) -> Result<(), StreamError> {
        let actual = Sha256Digest::from_hasher(self.hasher.clone());
        let result = if actual == self.expected {
            Ok(())
        } else {
            Err(StreamError::DigestMismatch {
                expected: self.expected,
                actual,
            })
        };
        self.outcome = Some(result.clone());
        result
    }

    /// Reads and discards whatever is left, returning the final verdict.
    pub fn drain<R: Read + ?Sized>(&mut self, inner: &mut R) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read_from(inner, &mut buf)? > 0 {}
        Ok(())
    }
}

/// A reader that yields exactly `size` bytes of `inner` and fails unless they hash to `sha256`.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    verifier: Verifier,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, size: u64, sha256: Sha256Digest) -> Self {
        Self {
            inner,
            verifier: Verifier::new(size, sha256),
        }
    }

    /// Reads the rest and returns the verdict.
    pub fn finish(mut self) -> io::Result<R> {
        self.verifier.drain(&mut self.inner)?;
        Ok(self.inner)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.verifier.read_from(&mut self.inner, buf)
    }
}

/// Hashes and counts everything written; refuses to go past `limit` bytes.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner` with a cap of `limit` bytes.
    pub fn new(inner: W, limit: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
            limit,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the inner writer, the byte count and the digest.
    pub fn finish(mut self) -> io::Result<(W, u64, Sha256Digest)> {
        self.inner.flush()?;
        Ok((self.inner, self.written, Sha256Digest::from_hasher(self.hasher)))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(StreamError::TooLarge { limit: self.limit }.into());
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size and SHA-256 of everything `reader` yields; `progress` is called with each chunk's length.
pub fn hash_reader<R: Read>(mut reader: R, mut progress: impl FnMut(u64)) -> io::Result<(u64, Sha256Digest)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
    Ok((total, Sha256Digest::from_hasher(hasher)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_passes_good_data() {
        let data = b"hello world".to_vec();
        let mut r = VerifyingReader::new(&data[..], 11, Sha256Digest::of(&data));
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("matches");
        assert_eq!(out, data);
    }

    #[test]
    fn verifying_reader_withholds_bad_tail_and_stops_at_size() {
        let data = b"hello world".to_vec();
        let mut r = VerifyingReader::new(&data[..], 11, Sha256Digest::of(b"hello there"));
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).expect_err("mismatch");
        assert!(matches!(
            stream_error(&err),
            Some(StreamError::DigestMismatch { .. })
        ));
        assert!(out.len() < data.len());
        let longer = b"hello worldEXTRA".to_vec();
        let mut r = VerifyingReader::new(&longer[..], 11, Sha256Digest::of(&data));
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("stops at size");
        assert_eq!(out, data);
    }

    #[test]
    fn verifying_reader_reports_truncation() {
        let data = b"hello".to_vec();
        let mut r = VerifyingReader::new(&data[..], 11, Sha256Digest::of(b"hello world"));
        let err = r.read_to_end(&mut Vec::new()).expect_err("short");
        assert_eq!(
            stream_error(&err),
            Some(&StreamError::Truncated { expected: 11, got: 5 })
        );
    }

    #[test]
    fn hashing_writer_caps_and_hashes() {
        let mut w = HashingWriter::new(Vec::new(), 4);
        w.write_all(b"abc").expect("under cap");
        assert!(w.write_all(b"de").is_err());
        let (inner, n, digest) = w.finish().expect("flush");
        assert_eq!((inner.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(digest, Sha256Digest::of(b"abc"));
    }
}
