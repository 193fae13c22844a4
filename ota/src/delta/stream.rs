//! Decoding side of the three zstd streams: each segment's chunk is read into a bounded buffer
//! and decoded on demand, exactly as many bytes as the control records ask for.

use zstd::stream::raw::{DParameter, Decoder, Operation};

use super::error::DeltaError;
use super::format::STREAMS;

/// One stream's persistent zstd decoder plus the current segment's compressed chunk.
pub(crate) struct StreamDecoder {
    name: &'static str,
    dec: Decoder<'static>,
    chunk: Vec<u8>,
    pos: usize,
    raw_left: u64,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("name", &self.name)
            .field("raw_left", &self.raw_left)
            .finish()
    }
}

impl StreamDecoder {
    /// A decoder for stream `index` (0 control, 1 diff, 2 extra) refusing windows over `window_log`.
    pub(crate) fn new(index: usize, window_log: u8) -> Result<Self, DeltaError> {
        let mut dec = Decoder::new().map_err(DeltaError::io("creating a zstd decoder"))?;
        dec.set_parameter(DParameter::WindowLogMax(u32::from(window_log)))
            .map_err(DeltaError::io("creating a zstd decoder"))?;
        Ok(Self {
            name: STREAMS[index],
            dec,
            chunk: Vec::new(),
            pos: 0,
            raw_left: 0,
        })
    }

    /// Buffer that the caller fills with this segment's compressed chunk of `comp` bytes
    /// (already checked against the limits) that decodes to `raw` bytes.
    pub(crate) fn start_segment(&mut self, comp: usize, raw: u64) -> &mut [u8] {
        self.chunk.clear();
        self.chunk.resize(comp, 0);
        self.pos = 0;
        self.raw_left = raw;
        &mut self.chunk
    }

    /// Raw bytes of this segment not yet read.
    pub(crate) fn raw_left(&self) -> u64 {
        self.raw_left
    }

    /// Decodes exactly `out.len()` bytes.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<(), DeltaError> {
        if out.len() as u64 > self.raw_left {
            return Err(DeltaError::Corrupt {
                what: self.short_msg(),
            });
        }
        let mut filled = 0;
        while filled < out.len() {
            let st = self
                .dec
                .run_on_buffers(&self.chunk[self.pos..], &mut out[filled..])
                .map_err(|_| DeltaError::Corrupt { what: self.bad_msg() })?;
            if st.bytes_read == 0 && st.bytes_written == 0 {
                return Err(DeltaError::Corrupt {
                    what: self.short_msg(),
                });
            }
            self.pos += st.bytes_read;
            filled += st.bytes_written;
        }
        self.raw_left -= out.len() as u64;
        Ok(())
    }

    /// Checks that the segment's chunk was used up exactly: all raw bytes read and the
    /// compressed chunk holds nothing more.
    pub(crate) fn end_segment(&mut self) -> Result<(), DeltaError> {
        if self.raw_left != 0 {
            return Err(DeltaError::Corrupt {
                what: self.unused_msg(),
            });
        }
        let mut probe = [0u8; 1];
        while self.pos < self.chunk.len() {
            let st = self
                .dec
                .run_on_buffers(&self.chunk[self.pos..], &mut probe)
                .map_err(|_| DeltaError::Corrupt { what: self.bad_msg() })?;
            if st.bytes_written > 0 || st.bytes_read == 0 {
                return Err(DeltaError::Corrupt {
                    what: self.unused_msg(),
                });
            }
            self.pos += st.bytes_read;
        }
        Ok(())
    }

    fn short_msg(&self) -> &'static str {
        match self.name {
            "control" => "control stream shorter than its segment needs",
            "diff" => "diff stream shorter than the add records need",
            _ => "extra stream shorter than the insert records need",
        }
    }

    fn bad_msg(&self) -> &'static str {
        match self.name {
            "control" => "control stream is not valid zstd",
            "diff" => "diff stream is not valid zstd",
            _ => "extra stream is not valid zstd",
        }
    }

    fn unused_msg(&self) -> &'static str {
        match self.name {
            "control" => "control stream has data past its declared length",
            "diff" => "diff stream holds bytes no add record uses",
            _ => "extra stream holds bytes no insert record uses",
        }
    }
}
