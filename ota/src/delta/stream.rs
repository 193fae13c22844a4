//! Decoding side of the three streams (zstd or LZMA2): each segment's chunk is read into a
//! bounded buffer and decoded on demand, exactly as many bytes as the control records ask for.

use super::codec::{Codec, StreamDecoderImpl};
use super::error::DeltaError;
use super::format::STREAMS;

/// One stream's persistent decoder plus the current segment's compressed chunk.
pub(crate) struct StreamDecoder {
    name: &'static str,
    dec: StreamDecoderImpl,
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
    /// A decoder for stream `index` (0 control, 1 diff, 2 extra) whose history is bounded by
    /// `2^window_log` bytes (zstd refuses larger windows, LZMA2 gets exactly that dictionary).
    pub(crate) fn new(index: usize, codec: Codec, window_log: u8) -> Result<Self, DeltaError> {
        let dec =
            StreamDecoderImpl::new(codec, window_log).map_err(DeltaError::io("creating a stream decoder"))?;
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

    /// Takes `chunk` as this segment's compressed chunk that decodes to `raw` bytes.
    pub(crate) fn set_segment(&mut self, chunk: Vec<u8>, raw: u64) {
        self.chunk = chunk;
        self.pos = 0;
        self.raw_left = raw;
    }

    /// Raw bytes of this segment not yet read.
    pub(crate) fn raw_left(&self) -> u64 {
        self.raw_left
    }

    /// Decodes exactly `out.len()` bytes.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<(), DeltaError> {
        if out.len() as u64 > self.raw_left {
            return Err(DeltaError::Corrupt {
                what: Self::short_msg(self.name),
            });
        }
        let mut filled = 0;
        while filled < out.len() {
            let st = self
                .dec
                .run(&self.chunk[self.pos..], &mut out[filled..])
                .map_err(|_| DeltaError::Corrupt { what: self.bad_msg() })?;
            if st.read == 0 && st.written == 0 {
                return Err(DeltaError::Corrupt {
                    what: Self::short_msg(self.name),
                });
            }
            self.pos += st.read;
            filled += st.written;
        }
        self.raw_left -= out.len() as u64;
        Ok(())
    }

    /// Checks that the segment's chunk was used up exactly: all raw bytes read and the
    /// compressed chunk holds nothing more.
    pub(crate) fn end_segment(&mut self) -> Result<(), DeltaError> {
        if self.raw_left != 0 {
            return Err(DeltaError::Corrupt {
                what: Self::unused_msg(self.name),
            });
        }
        let mut probe = [0u8; 1];
        while self.pos < self.chunk.len() {
            let st = self
                .dec
                .run(&self.chunk[self.pos..], &mut probe)
                .map_err(|_| DeltaError::Corrupt { what: self.bad_msg() })?;
            if st.written > 0 || st.read == 0 {
                return Err(DeltaError::Corrupt {
                    what: Self::unused_msg(self.name),
                });
            }
            self.pos += st.read;
        }
        Ok(())
    }

    pub(crate) fn short_msg(name: &str) -> &'static str {
        match name {
            "control" => "control stream shorter than its segment needs",
            "diff" => "diff stream shorter than the add records need",
            _ => "extra stream shorter than the insert records need",
        }
    }

    fn bad_msg(&self) -> &'static str {
        match self.name {
            "control" => "control stream is not a valid compressed stream",
            "diff" => "diff stream is not a valid compressed stream",
            _ => "extra stream is not a valid compressed stream",
        }
    }

    pub(crate) fn unused_msg(name: &str) -> &'static str {
        match name {
            "control" => "control stream has data past its declared length",
            "diff" => "diff stream holds bytes no add record uses",
            _ => "extra stream holds bytes no insert record uses",
        }
    }
}
