//! `bundle create`, `bundle sign` and `bundle inspect`.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use time::OffsetDateTime;

use crate::bundle::format::{BundleHeader, CountingReader};
use crate::bundle::{self, FORMAT_VERSION};
use crate::cli::CliError;
use crate::cli::util::{AtomicFile, emit, fmt_time, now, open, parse_time, progress, read};
use crate::delta::{self, DiffOptions};
use crate::hash::Sha256Digest;
use crate::keys::{self, KeyId, SignatureEntry};
use crate::limits::Limits;
use crate::manifest::{ImageRef, Manifest, Name, Payload, SourceRef};
use crate::stream::hash_reader;

/// Arguments of `bundle create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Product (hardware class) the bundle is for.
    #[arg(long)]
    pub product: String,
    /// Release version (semver).
    #[arg(long)]
    pub version: semver::Version,
    /// Security version (devices refuse lower than what they committed).
    #[arg(long)]
    pub security_version: u64,
    /// The target image.
    #[arg(long)]
    pub image: PathBuf,
    /// Payload name.
    #[arg(long, default_value = "rootfs")]
    pub name: String,
    /// Make a delta payload from this source image instead of a full one.
    #[arg(long, requires = "from_version")]
    pub from: Option<PathBuf>,
    /// Release version of the --from image.
    #[arg(long)]
    pub from_version: Option<semver::Version>,
    /// zstd level for the delta (1..=22).
    #[arg(long, default_value_t = 19)]
    pub delta_level: i32,
    /// Codec of the delta's diff and extra streams (default: the library default).
    #[arg(long, value_enum)]
    pub delta_codec: Option<crate::cli::delta::CodecArg>,
    /// Private keys to sign with (none: sign later with `bundle sign`).
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// Creation time (RFC 3339, default now; set it for reproducible bundles).
    #[arg(long, value_parser = parse_time)]
    pub created: Option<OffsetDateTime>,
    /// Expiry (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub expires: Option<OffsetDateTime>,
    /// Output bundle.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Builds a bundle.
pub fn create(args: &CreateArgs, json: bool) -> Result<(), CliError> {
    let name: Name = args.name.parse()?;
    let keys = args
        .keys
        .iter()
        .map(|p| keys::read_private_key(p).map_err(CliError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let (payload, patch) = match (&args.from, &args.from_version) {
        (Some(from), Some(from_version)) => delta_payload(args, name, from, from_version)?,
        _ => (full_payload(args, name)?, None),
    };
    let mut manifest = Manifest::new(
        args.product.parse()?,
        args.version.clone(),
        args.security_version,
        args.created.unwrap_or_else(now),
        vec![payload],
    )?;
    manifest.expires = args.expires;
    let signatures = bundle::sign_manifest(&manifest, &keys);
    let mut out = AtomicFile::create(&args.output)?;
    let bar = progress(manifest.payloads[0].size, "writing");
    let mut writer = BufWriter::new(out.file()?);
    let written = match &patch {
        Some(bytes) => write(&mut writer, &manifest, &signatures, &mut &bytes[..], &bar)?,
        None => write(
            &mut writer,
            &manifest,
            &signatures,
            &mut BufReader::new(open(&args.image)?),
            &bar,
        )?,
    };
    drop(writer);
    bar.finish_and_clear();
    out.commit()?;
    let p = &manifest.payloads[0];
    emit(
        json,
        &json!({"bundle": args.output, "bytes": written, "manifest_sha256": Sha256Digest::of(&manifest.to_canonical_bytes()),
                "payload": p, "signatures": signatures.iter().map(|s| s.keyid).collect::<Vec<_>>()}),
        &format!(
            "wrote {} ({written} bytes): {} {} payload {} {:?} {} bytes, {} signature(s)",
            args.output.display(),
            manifest.product,
            manifest.version,
            p.name,
            p.kind,
            p.size,
            signatures.len()
        ),
    );
    Ok(())
}

fn write<W: Write>(
    out: &mut W,
    manifest: &Manifest,
    signatures: &[SignatureEntry],
    payload: &mut dyn Read,
    bar: &indicatif::ProgressBar,
) -> Result<u64, CliError> {
    let mut sources = [payload];
    let written = bundle::write_bundle(out, manifest, signatures, &mut sources, &mut |n| bar.inc(n))?;
    Ok(written)
}

fn full_payload(args: &CreateArgs, name: Name) -> Result<Payload, CliError> {
    let file = open(&args.image)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress(len, "hashing");
    let (size, sha) = hash_reader(BufReader::new(file), |n| bar.inc(n))
        .map_err(CliError::io(format!("reading {}", args.image.display())))?;
    bar.finish_and_clear();
    Ok(Payload::full(name, size, sha))
}

fn delta_payload(
    args: &CreateArgs,
    name: Name,
    from: &Path,
    from_version: &semver::Version,
) -> Result<(Payload, Option<Vec<u8>>), CliError> {
    let old = read(from)?;
    let new = read(&args.image)?;
    let options = DiffOptions {
        level: args.delta_level,
        codecs: args
            .delta_codec
            .map_or(DiffOptions::default().codecs, crate::cli::delta::CodecArg::codecs),
        ..DiffOptions::default()
    };
    let mut patch = Vec::new();
    let bar = progress(0, "diffing");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    delta::diff(&old, &new, &options, &mut patch)?;
    bar.finish_and_clear();
    let payload = Payload::delta(
        name,
        ImageRef {
            size: patch.len() as u64,
            sha256: Sha256Digest::of(&patch),
        },
        ImageRef {
            size: new.len() as u64,
            sha256: Sha256Digest::of(&new),
        },
        SourceRef {
            version: from_version.clone(),
            sha256: Sha256Digest::of(&old),
        },
    );
    Ok((payload, Some(patch)))
}

/// Arguments of `bundle sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The bundle.
    pub bundle: PathBuf,
    /// Private keys to sign with.
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// A raw 64-byte Ed25519 signature over the manifest (e.g. from `openssl pkeyutl -sign -rawin`);
    /// hex or base64 text is accepted too. Needs --public-key or --key-id.
    #[arg(long, requires = "signer")]
    pub signature: Option<PathBuf>,
    /// Public key of --signature (the signature is checked before it is added).
    #[arg(long, group = "signer")]
    pub public_key: Option<PathBuf>,
    /// Key id of --signature when the public key is not at hand (added unchecked).
    #[arg(long, group = "signer")]
    pub key_id: Option<KeyId>,
    /// Output (default: replace the input).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Adds signatures to a bundle.
pub fn sign(args: &SignArgs, json: bool) -> Result<(), CliError> {
    let limits = Limits::DEFAULT;
    let header = BundleHeader::read(
        &mut CountingReader::new(BufReader::new(open(&args.bundle)?)),
        &limits,
    )?;
    let mut entries = Vec::new();
    for path in &args.keys {
        entries.push(SignatureEntry::sign(
            &keys::read_private_key(path)?,
            &header.manifest,
        ));
    }
    if let Some(path) = &args.signature {
        entries.push(raw_signature(args, path, &header.manifest)?);
    }
    if entries.is_empty() {
        return Err(CliError::Usage("give --key or --signature".to_owned()));
    }
    let output = args.output.clone().unwrap_or_else(|| args.bundle.clone());
    let mut out = AtomicFile::create(&output)?;
    let input = BufReader::new(open(&args.bundle)?);
    let new_header = bundle::add_signatures(input, BufWriter::new(out.file()?), &entries, &limits)?;
    out.commit()?;
    let ids: Vec<KeyId> = new_header.signatures.iter().map(|s| s.keyid).collect();
    emit(
        json,
        &json!({"bundle": output, "added": entries.iter().map(|e| e.keyid).collect::<Vec<_>>(), "signatures": ids}),
        &format!("wrote {} ({} signature(s) now)", output.display(), ids.len()),
    );
    Ok(())
}

fn raw_signature(args: &SignArgs, path: &Path, manifest: &[u8]) -> Result<SignatureEntry, CliError> {
    let bytes = read(path)?;
    let sig = decode_signature(&bytes).ok_or_else(|| {
        CliError::Usage(format!(
            "{}: not a 64-byte signature (raw, hex or base64)",
            path.display()
        ))
    })?;
    let keyid = match (&args.public_key, args.key_id) {
        (Some(p), _) => {
            let key = keys::read_public_key(p)?;
            key.verify(manifest, &sig)?;
            key.id()
        }
        (None, Some(id)) => {
            tracing::warn!(key_id = %id, "adding a signature without checking it (no --public-key)");
            id
        }
        (None, None) => {
            return Err(CliError::Usage(
                "--signature needs --public-key or --key-id".to_owned(),
            ));
        }
    };
    Ok(SignatureEntry { keyid, sig })
}

fn decode_signature(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    if bytes.len() == keys::SIGNATURE_LEN {
        return Some(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .filter(|s| s.len() == keys::SIGNATURE_LEN)
}

/// Arguments of `bundle inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle.
    pub bundle: PathBuf,
    /// Write the manifest bytes (exactly what signatures cover) to this file.
    #[arg(long)]
    pub manifest_out: Option<PathBuf>,
}

/// Prints an unverified view of a bundle.
pub fn inspect(args: &InspectArgs, json: bool) -> Result<(), CliError> {
    let header = BundleHeader::read(
        &mut CountingReader::new(BufReader::new(open(&args.bundle)?)),
        &Limits::DEFAULT,
    )?;
    if let Some(path) = &args.manifest_out {
        crate::cli::util::write_atomic(path, &header.manifest)?;
    }
    let manifest = Manifest::from_canonical_bytes(&header.manifest);
    let digest = Sha256Digest::of(&header.manifest);
    let signers: Vec<KeyId> = header.signatures.iter().map(|s| s.keyid).collect();
    let manifest_json = match &manifest {
        Ok(m) => serde_json::to_value(m).unwrap_or_default(),
        Err(e) => json!({"error": e.to_string()}),
    };
    let text = match &manifest {
        Ok(m) => describe(m),
        Err(e) => format!("manifest does not parse: {e}"),
    };
    emit(
        json,
        &json!({"verified": false, "format_version": FORMAT_VERSION, "manifest_sha256": digest,
                "manifest_bytes": header.manifest.len(), "signatures": signers, "manifest": manifest_json}),
        &format!(
            "UNVERIFIED bundle {} (format {FORMAT_VERSION})\nmanifest sha256 {digest} ({} bytes)\nsignatures: {}\n{text}",
            args.bundle.display(),
            header.manifest.len(),
            signers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}

/// A short text description of a manifest.
pub fn describe(m: &Manifest) -> String {
    let mut out = format!(
        "product {} version {} security_version {} created {}{}",
        m.product,
        m.version,
        m.security_version,
        fmt_time(m.created),
        m.expires
            .map(|e| format!(" expires {}", fmt_time(e)))
            .unwrap_or_default()
    );
    for p in &m.payloads {
        out.push_str(&format!(
            "\n  payload {} {:?} {} bytes sha256 {} -> target {} bytes sha256 {}",
            p.name, p.kind, p.size, p.sha256, p.target.size, p.target.sha256
        ));
        if let Some(s) = &p.source {
            out.push_str(&format!(" (from {} sha256 {})", s.version, s.sha256));
        }
    }
    out
}
