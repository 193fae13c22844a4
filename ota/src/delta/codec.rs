//! The two entropy coders a patch stream may use: zstd and raw LZMA2.
//!
//! Both are driven the same way: the encoder is flushed at every segment boundary (so a chunk
//! decodes completely once read) and keeps its history across segments; the decoder is fed one
//! segment's chunk at a time. LZMA2 is written raw (no `.xz` container): its chunks carry their
//! own properties, the decoder only needs the dictionary size, which the header fixes, so a
//! hostile patch cannot make `apply` allocate more. A stream cut into parts compressed on
//! several threads simply concatenates them: zstd frames follow each other, and every LZMA2
//! part starts with a dictionary-reset chunk (no part writes an end marker).

use std::io::Write;

use liblzma::stream::{Action, Filters, LzmaOptions, PRESET_EXTREME, Status, Stream};
use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, Operation};

/// Entropy coder of one patch stream (header bytes 97..100, see `docs/delta-format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// zstd frames (fast to decode).
    #[default]
    Zstd,
    /// Raw LZMA2 chunks (smaller on sparse diff bytes, slower to decode).
    Lzma2,
}

impl Codec {
    /// The codec's byte in the header.
    pub fn to_byte(self) -> u8 {
        match self {
            Codec::Zstd => 0,
            Codec::Lzma2 => 1,
        }
    }

    /// The codec of a header byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Codec::Zstd),
            1 => Some(Codec::Lzma2),
            _ => None,
        }
    }

    /// Smallest window / dictionary log the codec accepts.
    pub fn min_window_log(self) -> u8 {
        match self {
            Codec::Zstd => 10,
            Codec::Lzma2 => 12,
        }
    }
}

/// Encoder settings of LZMA2 streams (decoder memory depends only on the dictionary, i.e.
/// the stream's window log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lzma2Tuning {
    /// Preset 0..=9 the options start from.
    pub preset: u32,
    /// Use the preset's "extreme" variant (slower encoding, same decoding).
    pub extreme: bool,
    /// Literal context bits (lc).
    pub lc: u32,
    /// Literal position bits (lp; lc + lp <= 4).
    pub lp: u32,
    /// Position bits (pb).
    pub pb: u32,
    /// Match length at which the encoder stops looking for better matches (2..=273).
    pub nice_len: u32,
}

impl Default for Lzma2Tuning {
    fn default() -> Self {
        Self {
            preset: 9,
            extreme: true,
            lc: 3,
            lp: 0,
            pb: 2,
            nice_len: 273,
        }
    }
}

/// Settings one stream encoder is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderConfig {
    pub codec: Codec,
    pub window_log: u8,
    pub zstd_level: i32,
    pub lzma: Lzma2Tuning,
}

fn lzma_filters(dict_log: u8, tuning: Option<&Lzma2Tuning>) -> std::io::Result<Filters> {
    let mut opts = match tuning {
        Some(t) => {
            let preset = t.preset.min(9) | if t.extreme { PRESET_EXTREME } else { 0 };
            let mut o = LzmaOptions::new_preset(preset)?;
            o.literal_context_bits(t.lc)
                .literal_position_bits(t.lp)
                .position_bits(t.pb)
                .nice_len(t.nice_len);
            o
        }
        None => LzmaOptions::new(),
    };
    opts.dict_size(1u32 << dict_log);
    let mut filters = Filters::new();
    filters.lzma2(&opts);
    Ok(filters)
}

/// One stream part's encoder: `chunk` returns the compressed bytes of one segment's raw bytes.
pub(crate) enum StreamEncoder {
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Lzma2(Box<Stream>),
}

impl std::fmt::Debug for StreamEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamEncoder::Zstd(_) => "StreamEncoder::Zstd",
            StreamEncoder::Lzma2(_) => "StreamEncoder::Lzma2",
        })
    }
}

impl StreamEncoder {
    pub(crate) fn new(cfg: &EncoderConfig) -> std::io::Result<Self> {
        match cfg.codec {
            Codec::Zstd => {
                let mut raw = Encoder::new(cfg.zstd_level)?;
                raw.set_parameter(CParameter::WindowLog(u32::from(cfg.window_log)))?;
                Ok(StreamEncoder::Zstd(zstd::stream::write::Encoder::with_encoder(
                    Vec::new(),
                    raw,
                )))
            }
            Codec::Lzma2 => {
                let filters = lzma_filters(cfg.window_log, Some(&cfg.lzma))?;
                Ok(StreamEncoder::Lzma2(Box::new(Stream::new_raw_encoder(&filters)?)))
            }
        }
    }

    /// Compresses `raw` and flushes, returning everything produced since the last call.
    pub(crate) fn chunk(&mut self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            StreamEncoder::Zstd(enc) => {
                if !raw.is_empty() {
                    enc.write_all(raw)?;
                    enc.flush()?;
                }
                Ok(std::mem::take(enc.get_mut()))
            }
            StreamEncoder::Lzma2(enc) => {
                let mut out = Vec::with_capacity(raw.len() / 4 + 64);
                if raw.is_empty() {
                    return Ok(out);
                }
                let mut input = raw;
                loop {
                    if out.capacity() - out.len() < 4096 {
                        out.reserve(out.capacity().max(4096));
                    }
                    let before = enc.total_in();
                    let status = enc.process_vec(input, &mut out, Action::SyncFlush)?;
                    input = &input[(enc.total_in() - before) as usize..];
                    if matches!(status, Status::StreamEnd) {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// Ends the part: zstd closes its frame (returns the epilogue); LZMA2 writes nothing, the
    /// next part starts with a dictionary reset.
    pub(crate) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            StreamEncoder::Zstd(enc) => enc.finish(),
            StreamEncoder::Lzma2(_) => Ok(Vec::new()),
        }
    }
}

/// Result of one decoder step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub read: usize,
    pub written: usize,
}

/// One stream's persistent decoder.
pub(crate) enum StreamDecoderImpl {
    Zstd(Decoder<'static>),
    Lzma2(Box<Stream>),
}

impl std::fmt::Debug for StreamDecoderImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamDecoderImpl::Zstd(_) => "StreamDecoderImpl::Zstd",
            StreamDecoderImpl::Lzma2(_) => "StreamDecoderImpl::Lzma2",
        })
    }
}

impl StreamDecoderImpl {
    /// A decoder whose memory is bounded by `2^window_log` bytes of history.
    pub(crate) fn new(codec: Codec, window_log: u8) -> std::io::Result<Self> {
        match codec {
            Codec::Zstd => {
                let mut dec = Decoder::new()?;
                dec.set_parameter(DParameter::WindowLogMax(u32::from(window_log)))?;
                Ok(StreamDecoderImpl::Zstd(dec))
            }
            Codec::Lzma2 => {
                let filters = lzma_filters(window_log, None)?;
                Ok(StreamDecoderImpl::Lzma2(Box::new(Stream::new_raw_decoder(
                    &filters,
                )?)))
            }
        }
    }

    /// Decodes from `input` into `output`; an error means the data is not valid for the codec.
    pub(crate) fn run(&mut self, input: &[u8], output: &mut [u8]) -> Result<Progress, ()> {
        match self {
            StreamDecoderImpl::Zstd(dec) => dec
                .run_on_buffers(input, output)
                .map(|st| Progress {
                    read: st.bytes_read,
                    written: st.bytes_written,
                })
                .map_err(|_| ()),
            StreamDecoderImpl::Lzma2(dec) => {
                let (in0, out0) = (dec.total_in(), dec.total_out());
                dec.process(input, output, Action::Run).map_err(|_| ())?;
                Ok(Progress {
                    read: (dec.total_in() - in0) as usize,
                    written: (dec.total_out() - out0) as usize,
                })
            }
        }
    }
}
