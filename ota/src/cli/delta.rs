//! The raw delta pair: `diff OLD NEW -o PATCH` and `apply OLD PATCH -o NEW` (the benchmark calls these
//! two forms; keep them stable). `apply` streams: the source is read at random offsets from the file,
//! the patch through a buffered reader, the target is written to a temporary file renamed on success.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use serde_json::json;

use crate::cli::CliError;
use crate::cli::util::{emit, open, progress, read, write_atomic_with};
use crate::delta::{self, ApplyOptions, DiffOptions, SourceCheck};

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Source (old) image.
    pub old: PathBuf,
    /// Target (new) image.
    pub new: PathBuf,
    /// Patch file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// zstd level (1..=22).
    #[arg(long, default_value_t = 19)]
    pub level: i32,
    /// Matching threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Codec of the diff and extra streams (the small control stream stays zstd); default: the
    /// library's `DiffOptions` default.
    #[arg(long, value_enum)]
    pub codec: Option<CodecArg>,
}

/// `--codec` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CodecArg {
    /// zstd everywhere (fastest apply).
    Zstd,
    /// LZMA2 for the diff and extra streams (smallest patches; the default).
    Lzma2,
}

impl CodecArg {
    /// The per-stream codecs (control, diff, extra) this choice stands for.
    pub fn codecs(self) -> [delta::Codec; 3] {
        match self {
            CodecArg::Zstd => [delta::Codec::Zstd; 3],
            CodecArg::Lzma2 => [delta::Codec::Zstd, delta::Codec::Lzma2, delta::Codec::Lzma2],
        }
    }
}

/// Arguments of `apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Source (old) image the patch was made from.
    pub old: PathBuf,
    /// Patch file.
    pub patch: PathBuf,
    /// Target image to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Makes a patch.
pub fn diff(args: &DiffArgs, json: bool) -> Result<(), CliError> {
    let old = read(&args.old)?;
    let new = read(&args.new)?;
    let options = DiffOptions {
        level: args.level,
        threads: args.threads,
        codecs: args.codec.map_or(DiffOptions::default().codecs, CodecArg::codecs),
        ..DiffOptions::default()
    };
    let bar = progress(0, "diffing");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let stats = write_atomic_with(&args.output, |w| Ok(delta::diff(&old, &new, &options, w)?))?;
    bar.finish_and_clear();
    emit(
        json,
        &json!({"patch": args.output, "old_bytes": old.len(), "new_bytes": new.len(), "patch_bytes": stats.patch_bytes,
                "copy_bytes": stats.copy_bytes, "add_bytes": stats.add_bytes, "insert_bytes": stats.insert_bytes}),
        &format!(
            "wrote {}: {} bytes for {} -> {} bytes ({:.2}% of new)",
            args.output.display(),
            stats.patch_bytes,
            old.len(),
            new.len(),
            100.0 * stats.patch_bytes as f64 / new.len().max(1) as f64
        ),
    );
    Ok(())
}

/// Applies a patch as a stream.
pub fn apply(args: &ApplyArgs, json: bool) -> Result<(), CliError> {
    let source: File = open(&args.old)?;
    let patch_file = open(&args.patch)?;
    let bar = progress(patch_file.metadata().map(|m| m.len()).unwrap_or(0), "applying");
    let patch = bar.wrap_read(BufReader::new(patch_file));
    // The source's size is checked up front and the target's hash at the end; the source is
    // hashed only if the target comes out wrong, to name the cause (saves a read of OLD).
    let opts = ApplyOptions {
        source_check: SourceCheck::OnFailure,
        ..ApplyOptions::default()
    };
    let stats = write_atomic_with(&args.output, |w| Ok(delta::apply_with(&source, patch, w, &opts)?))?;
    bar.finish_and_clear();
    emit(
        json,
        &json!({"output": args.output, "target_bytes": stats.target_bytes, "patch_bytes": stats.patch_bytes,
                "source_bytes_read": stats.source_bytes_read}),
        &format!("wrote {} ({} bytes)", args.output.display(), stats.target_bytes),
    );
    Ok(())
}
