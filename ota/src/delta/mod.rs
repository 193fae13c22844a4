//! Binary delta engine: `diff(old, new)` and a streaming, memory-bounded `apply`.
//!
//! The format and the algorithm are described in `docs/delta-format.md`. Modules:
//! - `format`: header, framing, varints and limits (the only place that knows byte layouts).
//! - `blocks`: first matching pass, identical aligned blocks become copies.
//! - `sufarray`: second pass, bsdiff-style approximate matching over a suffix array.
//! - `plan`: the list of copy / add / insert operations the passes produce.
//! - `diff` / `encode`: builds the plan and writes it as three compressed streams in segments.
//! - `codec`: the per-stream entropy coders (zstd, raw LZMA2).
//! - `apply` / `stream`: the constant-memory decoder; `prefetch`: the diff and extra streams'
//!   decoding threads; `sink`: output buffers hashed on their own thread; `source`: random reads
//!   of the source.
//! - `x86`: optional 32-bit treatment of x86 displacements in add records.
//! - `error`: `DeltaError`.

mod apply;
mod blocks;
mod codec;
mod diff;
mod encode;
mod error;
mod format;
mod plan;
mod prefetch;
mod sink;
mod source;
mod stream;
mod sufarray;
mod x86;

pub use apply::{apply, apply_with};
pub use codec::{Codec, Lzma2Tuning};
pub use diff::diff;
pub use error::{DeltaError, Digest};
pub use format::{
    HEADER_LEN, MAGIC, MAX_SEGMENT_CAP, MAX_WINDOW_LOG, PatchHeader, Transform, VERSION, VERSION_ZSTD_ONLY,
    compress_bound, read_header,
};
pub use source::SourceRead;

/// When `diff` runs the aligned-block pass before suffix-array matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPass {
    /// Only when the source is larger than [`BlockPass::AUTO_THRESHOLD`] (filesystem images).
    Auto,
    /// Always.
    Always,
    /// Never: the suffix array sees the whole source.
    Never,
}

impl BlockPass {
    /// Source size above which `Auto` runs the block pass.
    pub const AUTO_THRESHOLD: usize = 48 << 20;

    fn enabled(self, old_len: usize) -> bool {
        match self {
            BlockPass::Auto => old_len > Self::AUTO_THRESHOLD,
            BlockPass::Always => true,
            BlockPass::Never => false,
        }
    }
}

/// Tuning of `diff`. The default aims at the best ratio that keeps `apply` under 16 MiB and fast,
/// and a 150 MB image diff under 1 GiB and 30 s on two cores.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// zstd level of the zstd-coded streams (1..=22).
    pub level: i32,
    /// Codec of the control, diff and extra streams.
    pub codecs: [Codec; 3],
    /// Encoder settings of the LZMA2-coded streams.
    pub lzma: Lzma2Tuning,
    /// Window (zstd, 10..=23) or dictionary (LZMA2, 12..=23) log of the control, diff and extra
    /// streams; apply needs about 2^log bytes per stream.
    pub window_logs: [u8; 3],
    /// Largest raw size of one stream's chunk in one segment (4 KiB..=1 MiB).
    pub segment_cap: u32,
    /// Block size of the aligned-block pass.
    pub block_size: usize,
    /// When to run the aligned-block pass.
    pub block_pass: BlockPass,
    /// Largest number of source bytes under one suffix array (memory: 5 bytes per byte).
    pub sa_window: usize,
    /// Added to the gain a suffix-array match needs over the current alignment to start a new
    /// one. That gain grows with the seek's distance (3 bytes under 16, 4 under 256, 8 under
    /// 2 KiB, 12 under 256 KiB, 16 under 32 MiB, 20 beyond; bsdiff uses a flat 8); larger
    /// values give fewer, longer operations.
    pub min_gain: usize,
    /// Runs of at least this many identical bytes inside an approximate match become copies
    /// instead of zeros in the diff stream (faster to compress and apply).
    pub copy_run: usize,
    /// How add records' diff bytes are computed (x86 displacements as 32-bit numbers by default).
    pub transform: Transform,
    /// Threads for matching (compression always uses one thread per stream).
    pub threads: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            level: 19,
            // LZMA2 diff and extra streams give 10-17 % smaller patches than zstd (the smallest of
            // every peer on the benchmark corpus) for ~0.05 s more apply on a 31 MB executable;
            // bandwidth to the device is what we optimise (docs/delta-format.md, "Codec choice").
            codecs: [Codec::Zstd, Codec::Lzma2, Codec::Lzma2],
            lzma: Lzma2Tuning::default(),
            window_logs: [20, 22, 22],
            segment_cap: 512 << 10,
            block_size: 4096,
            block_pass: BlockPass::Auto,
            sa_window: 80 << 20,
            min_gain: 0,
            copy_run: 256,
            transform: Transform::X86,
            threads: 2,
        }
    }
}

impl DiffOptions {
    fn validate(&self) -> Result<(), DeltaError> {
        let bad = |what| Err(DeltaError::InvalidOptions { what });
        if !(1..=22).contains(&self.level) {
            return bad("level must be 1..=22");
        }
        if self
            .window_logs
            .iter()
            .zip(self.codecs)
            .any(|(w, c)| !(c.min_window_log()..=MAX_WINDOW_LOG).contains(w))
        {
            return bad("window logs must be 10..=23 (zstd) or 12..=23 (LZMA2)");
        }
        let l = &self.lzma;
        if l.preset > 9 || l.lc + l.lp > 4 || l.pb > 4 || !(2..=273).contains(&l.nice_len) {
            return bad("LZMA2 tuning needs preset <= 9, lc + lp <= 4, pb <= 4, nice_len 2..=273");
        }
        if !(format::MIN_SEGMENT_CAP..=MAX_SEGMENT_CAP).contains(&self.segment_cap) {
            return bad("segment_cap must be 4 KiB..=1 MiB");
        }
        if self.block_size < 64 || self.sa_window < (1 << 16) || self.threads == 0 {
            return bad("block_size >= 64, sa_window >= 64 KiB and threads >= 1 are required");
        }
        Ok(())
    }
}

/// What `diff` produced.
#[derive(Debug, Clone, Default)]
pub struct DiffStats {
    /// Total patch size in bytes.
    pub patch_bytes: u64,
    /// Target bytes copied verbatim from the source.
    pub copy_bytes: u64,
    /// Target bytes rebuilt as source + diff.
    pub add_bytes: u64,
    /// Target bytes stored in the extra stream.
    pub insert_bytes: u64,
    /// Compressed bytes of the control, diff and extra streams.
    pub stream_bytes: [u64; 3],
    /// Operations (records other than seeks) written.
    pub ops: u64,
    /// Segments written.
    pub segments: u64,
    /// Source bytes put under a suffix array.
    pub indexed_bytes: u64,
    /// Largest suffix array, in bytes.
    pub index_heap_bytes: u64,
}

/// What `apply` did.
#[derive(Debug, Clone, Default)]
pub struct ApplyStats {
    /// Bytes written to the target.
    pub target_bytes: u64,
    /// Source bytes read by copy and add records (not counting the up-front hash).
    pub source_bytes_read: u64,
    /// Header and compressed chunk bytes read from the patch (framing not counted).
    pub patch_bytes: u64,
    /// Segments applied.
    pub segments: u64,
    /// Control records executed.
    pub ops: u64,
}

/// How `apply` checks the source before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceCheck {
    /// Hash the whole source and compare with the header (one extra sequential read).
    #[default]
    Full,
    /// Compare only the size; a wrong source then shows as a target hash mismatch at the end.
    SizeOnly,
    /// Compare only the size up front; hash the source only when the target's hash turns out
    /// wrong, to report [`DeltaError::SourceMismatch`] when the source is the cause. Saves
    /// one sequential read of the source on every successful apply; the target hash is always
    /// checked, but target bytes are written before a wrong source is noticed.
    OnFailure,
}

/// Options of `apply_with`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Source verification policy.
    pub source_check: SourceCheck,
    /// Largest target a patch may declare (`LimitExceeded` otherwise). A patch is small but
    /// may ask for a huge target made of repeated copies; callers that know the expected size
    /// (the bundle manifest's `target.size`) should set it, fuzzers should keep it small.
    pub max_target_size: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            source_check: SourceCheck::Full,
            max_target_size: Self::DEFAULT_MAX_TARGET,
        }
    }
}

impl ApplyOptions {
    /// Default cap on the declared target size: 64 GiB.
    pub const DEFAULT_MAX_TARGET: u64 = 64 << 30;
}
