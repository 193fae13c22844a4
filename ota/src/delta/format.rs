//! The patch format: header, segment framing, control records and their limits.
//!
//! The byte-level description lives in `docs/delta-format.md`; this module is its only encoder and
//! decoder for the fixed-size parts.

use std::io::Read;

use super::codec::Codec;
use super::error::{DeltaError, Digest};

/// First eight bytes of every patch.
pub const MAGIC: [u8; 8] = *b"HLYDELTA";
/// The format version this build writes (it also reads [`VERSION_ZSTD_ONLY`]).
pub const VERSION: u8 = 2;
/// The first format version: all streams zstd, header bytes 97..100 zero.
pub const VERSION_ZSTD_ONLY: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 100;
/// Largest window / dictionary (log2) a patch may ask a decoder for; keeps apply memory bounded.
pub const MAX_WINDOW_LOG: u8 = 23;
/// Largest per-segment raw size of each stream a patch may declare.
pub const MAX_SEGMENT_CAP: u32 = 1 << 20;
/// Smallest per-segment raw size a writer may choose.
pub const MIN_SEGMENT_CAP: u32 = 4096;
/// Segment tag: a segment follows.
pub const TAG_SEGMENT: u8 = b'S';
/// Segment tag: end of patch.
pub const TAG_END: u8 = b'E';

/// Control record kinds (low two bits of a record's varint).
pub const KIND_COPY: u64 = 0;
/// Add diff bytes to source bytes.
pub const KIND_ADD: u64 = 1;
/// Insert bytes from the extra stream.
pub const KIND_INSERT: u64 = 2;
/// Move the source cursor by a zigzag-encoded signed amount.
pub const KIND_SEEK: u64 = 3;

/// The three compressed streams of a patch, in the order their chunks appear in a segment.
pub const STREAMS: [&str; 3] = ["control", "diff", "extra"];

/// How the diff bytes of add records are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transform {
    /// Byte-wise: `diff = new - old` (mod 256).
    None,
    /// Byte-wise, except x86 32-bit displacements found in the source, which are subtracted
    /// as 32-bit numbers (see `docs/delta-format.md`).
    #[default]
    X86,
}

/// The fixed header at the start of every patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchHeader {
    /// Size of the source image the patch applies to.
    pub source_size: u64,
    /// SHA-256 of that source image.
    pub source_sha256: [u8; 32],
    /// Size of the image the patch produces.
    pub target_size: u64,
    /// SHA-256 of that image.
    pub target_sha256: [u8; 32],
    /// Window (zstd) or dictionary (LZMA2) log of the control, diff and extra streams (decoder
    /// memory is about 2^log each).
    pub window_logs: [u8; 3],
    /// Codec of the control, diff and extra streams.
    pub codecs: [Codec; 3],
    /// Largest raw size of any stream's chunk within one segment.
    pub segment_cap: u32,
    /// How add records' diff bytes are computed.
    pub transform: Transform,
}

impl PatchHeader {
    /// Serializes the header (see `docs/delta-format.md`).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8] = VERSION;
        b[9..12].copy_from_slice(&self.window_logs);
        b[12..16].copy_from_slice(&self.segment_cap.to_le_bytes());
        b[16..24].copy_from_slice(&self.source_size.to_le_bytes());
        b[24..56].copy_from_slice(&self.source_sha256);
        b[56..64].copy_from_slice(&self.target_size.to_le_bytes());
        b[64..96].copy_from_slice(&self.target_sha256);
        b[96] = match self.transform {
            Transform::None => 0,
            Transform::X86 => 1,
        };
        for (i, c) in self.codecs.iter().enumerate() {
            b[97 + i] = c.to_byte();
        }
        b
    }

    /// Parses and validates a header.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Self, DeltaError> {
        if b[..8] != MAGIC {
            return Err(DeltaError::BadMagic);
        }
        if b[8] != VERSION && b[8] != VERSION_ZSTD_ONLY {
            return Err(DeltaError::UnsupportedVersion { version: b[8] });
        }
        let codecs = read_codecs(b)?;
        let window_logs = [b[9], b[10], b[11]];
        if window_logs
            .iter()
            .zip(codecs)
            .any(|(&w, c)| !(c.min_window_log()..=MAX_WINDOW_LOG).contains(&w))
        {
            return Err(DeltaError::Corrupt {
                what: "window log out of range",
            });
        }
        let segment_cap = u32::from_le_bytes(arr(&b[12..16]));
        if !(MIN_SEGMENT_CAP..=MAX_SEGMENT_CAP).contains(&segment_cap) {
            return Err(DeltaError::Corrupt {
                what: "segment cap out of range",
            });
        }
        let transform = match b[96] {
            0 => Transform::None,
            1 => Transform::X86,
            _ => {
                return Err(DeltaError::Corrupt {
                    what: "unknown add transform",
                });
            }
        };
        Ok(Self {
            source_size: u64::from_le_bytes(arr(&b[16..24])),
            source_sha256: arr(&b[24..56]),
            target_size: u64::from_le_bytes(arr(&b[56..64])),
            target_sha256: arr(&b[64..96]),
            window_logs,
            codecs,
            segment_cap,
            transform,
        })
    }

    /// The source digest as a printable value.
    pub fn source_digest(&self) -> Digest {
        Digest(self.source_sha256)
    }

    /// The target digest as a printable value.
    pub fn target_digest(&self) -> Digest {
        Digest(self.target_sha256)
    }
}

/// Codec bytes 97..100: zero in version 1, one known codec per stream in version 2.
fn read_codecs(b: &[u8; HEADER_LEN]) -> Result<[Codec; 3], DeltaError> {
    if b[8] == VERSION_ZSTD_ONLY {
        if b[97..100] != [0; 3] {
            return Err(DeltaError::Corrupt {
                what: "reserved header bytes are not zero",
            });
        }
        return Ok([Codec::Zstd; 3]);
    }
    let mut codecs = [Codec::Zstd; 3];
    for (i, c) in codecs.iter_mut().enumerate() {
        *c = Codec::from_byte(b[97 + i]).ok_or(DeltaError::Corrupt {
            what: "unknown stream codec",
        })?;
    }
    Ok(codecs)
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// Reads and validates the header at the start of `patch`, leaving the reader just after it.
pub fn read_header<R: Read + ?Sized>(patch: &mut R) -> Result<PatchHeader, DeltaError> {
    let mut b = [0u8; HEADER_LEN];
    read_exact(patch, &mut b, "header")?;
    PatchHeader::from_bytes(&b)
}

/// `read_exact` that reports a short read as `Truncated { what }`.
pub fn read_exact<R: Read + ?Sized>(r: &mut R, buf: &mut [u8], what: &'static str) -> Result<(), DeltaError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => DeltaError::Truncated { what },
        _ => DeltaError::Io {
            context: "reading the patch",
            source: e,
        },
    })
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a LEB128 varint from a byte-at-a-time source, rejecting overlong or overflowing input.
pub fn get_varint(
    mut next: impl FnMut() -> Result<u8, DeltaError>,
    what: &'static str,
) -> Result<u64, DeltaError> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = next()?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(DeltaError::Corrupt { what });
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DeltaError::Corrupt { what });
            }
            return Ok(v);
        }
    }
    Err(DeltaError::Corrupt { what })
}

/// Reads a varint directly from the patch reader.
pub fn read_varint<R: Read + ?Sized>(r: &mut R, what: &'static str) -> Result<u64, DeltaError> {
    get_varint(
        || {
            let mut b = [0u8; 1];
            read_exact(r, &mut b, what)?;
            Ok(b[0])
        },
        what,
    )
}

/// Zigzag-encodes a signed offset.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of `zigzag`.
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Worst-case compressed size of `raw` input bytes for either codec (`ZSTD_COMPRESSBOUND` plus
/// flush framing slack; also above LZMA2's stored-chunk worst case of 3 bytes per 64 KiB).
pub fn compress_bound(raw: u64) -> u64 {
    let margin = if raw < (128 << 10) {
        ((128 << 10) - raw) >> 11
    } else {
        0
    };
    raw + (raw >> 8) + margin + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_rejects_overlong() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut it = buf.iter().copied();
            let got = get_varint(|| it.next().ok_or(DeltaError::Truncated { what: "t" }), "v");
            assert_eq!(got.ok(), Some(v));
        }
        let overlong = [0x80u8, 0x00];
        let mut it = overlong.iter().copied();
        assert!(get_varint(|| it.next().ok_or(DeltaError::Truncated { what: "t" }), "v").is_err());
        let too_big = [0xffu8; 10];
        let mut it = too_big.iter().copied();
        assert!(get_varint(|| it.next().ok_or(DeltaError::Truncated { what: "t" }), "v").is_err());
    }

    #[test]
    fn zigzag_round_trip() {
        for v in [0i64, 1, -1, 4096, -4096, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn header_round_trip() {
        let h = PatchHeader {
            source_size: 7,
            source_sha256: [1; 32],
            target_size: 9,
            target_sha256: [2; 32],
            window_logs: [20, 22, 22],
            codecs: [Codec::Zstd, Codec::Lzma2, Codec::Lzma2],
            segment_cap: 1 << 19,
            transform: Transform::X86,
        };
        assert_eq!(PatchHeader::from_bytes(&h.to_bytes()).ok(), Some(h));
    }
}
