//! Iteration tool for the delta engine (not the product CLI, which is `halyard-ota diff/apply`).
//!
//! `cargo run --release -p halyard-ota --example delta -- diff OLD NEW PATCH [level] [blockpass]`
//! `cargo run --release -p halyard-ota --example delta -- apply OLD PATCH OUT`
//! Environment: `CODECS=zstd,lzma2,lzma2` (per stream), `LZMA=preset,extreme,lc,lp,pb,nice_len`,
//! `COPY_RUN`, `MIN_GAIN`.
//! Prints the stats and the wall time; run it under `/usr/bin/time -v` for peak RSS.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use halyard_ota::delta::{self, BlockPass, Codec, DiffOptions};

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let t = Instant::now();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["diff", old, new, patch, rest @ ..] => {
            let old = std::fs::read(old).with_context(|| format!("reading {old}"))?;
            let new = std::fs::read(new).with_context(|| format!("reading {new}"))?;
            let mut opts = DiffOptions::default();
            if let Some(level) = rest.first() {
                opts.level = level.parse().context("level")?;
            }
            if let Some(pass) = rest.get(1) {
                opts.block_pass = match *pass {
                    "always" => BlockPass::Always,
                    "never" => BlockPass::Never,
                    _ => BlockPass::Auto,
                };
            }
            if let Some(w) = rest.get(2) {
                let logs: Vec<u8> = w
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("window logs")?;
                opts.window_logs.copy_from_slice(&logs);
            }
            if let Ok(g) = std::env::var("COPY_RUN") {
                opts.copy_run = g.parse().context("COPY_RUN")?;
            }
            if let Ok(c) = std::env::var("CODECS") {
                for (slot, name) in opts.codecs.iter_mut().zip(c.split(',')) {
                    *slot = if name == "lzma2" {
                        Codec::Lzma2
                    } else {
                        Codec::Zstd
                    };
                }
            }
            if let Ok(t) = std::env::var("LZMA") {
                let v: Vec<u32> = t
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("LZMA")?;
                if let [preset, extreme, lc, lp, pb, nice] = v.as_slice() {
                    opts.lzma = delta::Lzma2Tuning {
                        preset: *preset,
                        extreme: *extreme != 0,
                        lc: *lc,
                        lp: *lp,
                        pb: *pb,
                        nice_len: *nice,
                    };
                }
            }
            if let Ok(g) = std::env::var("MIN_GAIN") {
                opts.min_gain = g.parse().context("MIN_GAIN")?;
            }
            let out = BufWriter::new(File::create(patch)?);
            let stats = delta::diff(&old, &new, &opts, out)?;
            let pct = 100.0 * stats.patch_bytes as f64 / new.len().max(1) as f64;
            println!("{stats:?}\npatch {} bytes = {pct:.3} % of new", stats.patch_bytes);
        }
        ["apply", old, patch, out] => {
            let source = File::open(old).with_context(|| format!("opening {old}"))?;
            let patch = BufReader::new(File::open(patch)?);
            let out = BufWriter::new(File::create(out)?);
            let stats = delta::apply(&source, patch, out)?;
            println!("{stats:?}");
        }
        _ => bail!("usage: delta diff OLD NEW PATCH [level] [auto|always|never] | delta apply OLD PATCH OUT"),
    }
    println!("{:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}
