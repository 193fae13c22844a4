//! `bundle verify`: the device's checks, run by hand, optionally writing the verified target image.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use serde_json::json;
use time::OffsetDateTime;

use crate::bundle::{self, InstallStats, VerifyPolicy};
use crate::cli::CliError;
use crate::cli::bundle_create::describe;
use crate::cli::root::load_chain;
use crate::cli::util::{AtomicFile, emit, now, open, parse_time, progress};
use crate::hash::Sha256Digest;
use crate::limits::Limits;
use crate::manifest::PayloadKind;
use crate::stream::hash_reader;

/// Arguments of `bundle verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle.
    pub bundle: PathBuf,
    /// Trust root (root.json) the release signatures must satisfy. Repeat for a rotation chain, oldest
    /// first: the first is trusted on its own, each next one must be a valid rotation of the previous.
    #[arg(long = "root", required = true)]
    pub roots: Vec<PathBuf>,
    /// Required product.
    #[arg(long)]
    pub product: Option<String>,
    /// Committed security version; lower bundles are refused.
    #[arg(long, default_value_t = 0)]
    pub min_security_version: u64,
    /// Time to check expiry against (RFC 3339, default now).
    #[arg(long, value_parser = parse_time)]
    pub now: Option<OffsetDateTime>,
    /// The active image: delta payloads must apply to it, and are applied to check their target.
    #[arg(long)]
    pub source_image: Option<PathBuf>,
    /// Write the verified target image of the payload (first one unless --payload) here.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Payload to write with --output.
    #[arg(long, requires = "output")]
    pub payload: Option<String>,
}

/// Verifies a bundle end to end.
pub fn verify(args: &VerifyArgs, json: bool) -> Result<(), CliError> {
    let now = args.now.unwrap_or_else(now);
    let limits = Limits::DEFAULT;
    let root = load_chain(&args.roots, now)?;
    let (source, active) = match &args.source_image {
        Some(path) => {
            let file = open(path)?;
            let (_, digest) = hash_reader(BufReader::new(open(path)?), |_| {})
                .map_err(CliError::io(format!("reading {}", path.display())))?;
            (Some(file), Some(digest))
        }
        None => (None, None),
    };
    let policy = VerifyPolicy {
        product: args.product.as_deref().map(str::parse).transpose()?,
        min_security_version: args.min_security_version,
        now,
        active_source_sha256: active,
    };
    let file = open(&args.bundle)?;
    let bar = progress(file.metadata().map(|m| m.len()).unwrap_or(0), "verifying");
    let mut verified = bundle::open(bar.wrap_read(BufReader::new(file)), &root, &policy, &limits)?;
    let manifest = verified.manifest().clone();
    let manifest_sha256 = verified.manifest_sha256();
    let signers = verified.signers().to_vec();
    let wanted = match (&args.output, &args.payload) {
        (None, _) => None,
        (Some(_), Some(name)) => Some(name.clone()),
        (Some(_), None) => manifest.payloads.first().map(|p| p.name.to_string()),
    };
    let mut out = args.output.as_deref().map(AtomicFile::create).transpose()?;
    let installed = install_all(&mut verified, wanted.as_deref(), out.as_mut(), source.as_ref())?;
    verified.finish()?;
    bar.finish_and_clear();
    if let Some(name) = &wanted
        && !installed.iter().any(|s| s.payload.as_str() == name)
    {
        return Err(CliError::Usage(format!("no payload named {name}")));
    }
    if let Some(out) = out {
        out.commit()?;
    }
    report(json, &manifest, manifest_sha256, &signers, &installed, args);
    Ok(())
}

/// Verifies every payload; writes the `wanted` one to `out`, applies deltas to a sink when a source
/// image is at hand (checking their targets), and only hashes the rest.
fn install_all<R: std::io::Read>(
    verified: &mut bundle::VerifiedBundle<R>,
    wanted: Option<&str>,
    mut out: Option<&mut AtomicFile>,
    source: Option<&File>,
) -> Result<Vec<InstallStats>, CliError> {
    let mut installed = Vec::new();
    while let Some(payload) = verified.next_payload()? {
        let meta = payload.payload().clone();
        let selected = wanted == Some(meta.name.as_str());
        match (out.as_deref_mut(), selected, meta.kind, source) {
            (Some(out), true, _, _) => installed.push(install(payload, source, BufWriter::new(out.file()?))?),
            (_, _, PayloadKind::Delta, Some(src)) => {
                installed.push(bundle::install_payload(payload, Some(src), std::io::sink())?);
            }
            _ => payload.finish()?,
        }
    }
    Ok(installed)
}

fn install<R: std::io::Read>(
    payload: bundle::PayloadReader<'_, R>,
    source: Option<&File>,
    mut out: BufWriter<&mut File>,
) -> Result<InstallStats, CliError> {
    let stats = bundle::install_payload(payload, source, &mut out)?;
    out.flush().map_err(CliError::io("writing the output image"))?;
    Ok(stats)
}

fn report(
    json: bool,
    manifest: &crate::manifest::Manifest,
    digest: Sha256Digest,
    signers: &[crate::keys::KeyId],
    installed: &[InstallStats],
    args: &VerifyArgs,
) {
    let targets: Vec<_> = installed
        .iter()
        .map(|s| json!({"payload": s.payload, "kind": s.kind, "target_bytes": s.target_bytes, "target_sha256": s.target_sha256}))
        .collect();
    let mut text = format!(
        "bundle OK: {} signer(s), manifest sha256 {digest}\n{}",
        signers.len(),
        describe(manifest)
    );
    for s in installed {
        text.push_str(&format!(
            "\n  {} target verified: {} bytes sha256 {}",
            s.payload, s.target_bytes, s.target_sha256
        ));
    }
    if let Some(out) = &args.output {
        text.push_str(&format!("\nwrote {}", out.display()));
    }
    emit(
        json,
        &json!({"ok": true, "manifest_sha256": digest, "signers": signers, "manifest": manifest,
                "targets_verified": targets, "output": args.output}),
        &text,
    );
}
