//! Server-side deltas (design §6; artifact layout in `docs/bundle-format.md`, "Server-side deltas").
//!
//! After a release R is uploaded, [`schedule`] runs one background job: for each source image S that
//! devices of R's product run (the active slot of their last report) and the images of the few
//! releases just before R, when the server holds S (the full payload of a stored bundle), it computes
//! `halyard_ota::delta::diff(S, R)`, writes the artifact (R's signed bundle header, byte for byte,
//! then the patch) content-addressed into the artifact store, and records it with
//! [`Store::put_delta`](crate::store::Store::put_delta). `desired` offers every recorded delta; the
//! agent takes the one whose source is its active image and falls back to the full bundle.
//!
//! The release key is offline, so the artifact is not signed as a whole: the device verifies the
//! header as for any bundle and accepts the image only when it equals the signed target digest.
//!
//! One job at a time in the process (a semaphore): a diff holds about four times an image in memory.
//! A (source, target) pair that is already recorded is never computed again.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use halyard_ota::bundle::format::{BundleHeader, CountingReader};
use halyard_ota::delta::{self, DeltaError, DiffOptions};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{Manifest, ManifestError, PayloadKind};
use sha2::Digest as _;

use crate::app::App;
use crate::model::{Delta, Release};
use crate::store::{Store, StoreError};

/// A delta is kept only when the artifact is smaller than this share (percent) of the full bundle.
pub const MAX_SHARE_PERCENT: u64 = 70;

/// Older releases (by version) whose images are diffed even when no device reports running them.
pub const RELEASE_SOURCES: usize = 3;

/// Why a delta job (or one pair of it) failed.
#[derive(Debug, thiserror::Error)]
pub enum DeltaJobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("stored bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("diff {source_sha256} -> {version}: {source}")]
    Diff {
        source_sha256: String,
        version: String,
        source: DeltaError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DeltaJobError + '_ {
    move |source| DeltaJobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Starts the delta job for release `version` in the background; returns at once.
pub fn schedule(app: &Arc<App>, version: &str) {
    if !app.settings.deltas {
        return;
    }
    let (app, version) = (app.clone(), version.to_owned());
    tokio::spawn(async move {
        let Ok(_permit) = app.delta_jobs.acquire().await else {
            return;
        };
        let (job_app, v) = (app.clone(), version.clone());
        match tokio::task::spawn_blocking(move || run(&job_app, &v)).await {
            Ok(Ok(0)) => tracing::debug!(%version, "no new server-side delta"),
            Ok(Ok(made)) => {
                tracing::info!(%version, made, "server-side deltas ready");
                app.notify("delta", &version);
                app.wake.notify_one();
            }
            Ok(Err(e)) => tracing::warn!(%version, error = %e, "server-side delta job failed"),
            Err(e) => tracing::warn!(%version, error = %e, "server-side delta job panicked"),
        }
    });
}

/// Schedules every stored release (e.g. at start-up, for jobs a restart interrupted, or after a
/// device reported an image no delta starts from yet). Pairs already recorded are skipped cheaply.
pub fn schedule_all(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        match app.db(|s| s.releases()).await {
            Ok(releases) => releases.iter().for_each(|r| schedule(&app, &r.version)),
            Err(e) => tracing::warn!(error = %e, "cannot list releases for server-side deltas"),
        }
    });
}

/// Computes and records the missing deltas towards `version`; returns how many were recorded. Runs
/// blocking; [`schedule`] calls it under the process's job semaphore (it clears temporary files
/// that a stopped job left, so two must not run at once on one artifact directory).
pub fn run(app: &App, version: &str) -> Result<usize, DeltaJobError> {
    let store = app.store.as_ref();
    remove_leftovers(&app.artifacts_dir);
    let Some(target) = store.release(version)? else {
        return Ok(0);
    };
    let done: HashSet<String> = store
        .deltas(version)?
        .into_iter()
        .map(|d| d.source_sha256)
        .collect();
    let todo: Vec<Release> = sources(store, &target)?
        .into_values()
        .filter(|s| !done.contains(&s.image_sha256))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    let stored = StoredBundle::read(&app.artifacts_dir, &target)?;
    if stored
        .manifest
        .payloads
        .iter()
        .any(|p| p.kind != PayloadKind::Full)
    {
        tracing::info!(%version, "release carries a delta payload: no server-side deltas for it");
        return Ok(0);
    }
    let mut made = 0;
    for source in &todo {
        match make(app, &target, &stored, source) {
            Ok(Some(delta)) => {
                store.put_delta(&delta)?;
                made += 1;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%version, from = %source.version, error = %e, "delta not made"),
        }
    }
    Ok(made)
}

/// Removes temporary artifacts a stopped job left (jobs run one at a time, so none is being written).
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".delta-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The releases whose images serve as sources for `target`, by image digest: the images devices of
/// the product run (when a stored release holds them) and the [`RELEASE_SOURCES`] releases just
/// below `target`'s version.
pub fn sources(store: &dyn Store, target: &Release) -> Result<BTreeMap<String, Release>, StoreError> {
    let mut releases: Vec<Release> = store
        .releases()?
        .into_iter()
        .filter(|r| r.product == target.product && r.image_sha256 != target.image_sha256)
        .collect();
    releases.sort_by_key(version_key);
    let running: HashSet<String> = store
        .devices()?
        .into_iter()
        .filter(|d| d.product == target.product)
        .filter_map(|d| {
            let report = d.report?;
            let slot = match report.active {
                halyard_protocol::Slot::A => report.slot_a,
                halyard_protocol::Slot::B => report.slot_b,
            };
            slot.image_sha256.map(|h| h.to_hex())
        })
        .collect();
    let target_key = version_key(target);
    let older = releases
        .iter()
        .filter(|r| version_key(r) < target_key)
        .rev()
        .take(RELEASE_SOURCES);
    let run = releases.iter().filter(|r| running.contains(&r.image_sha256));
    Ok(older
        .chain(run)
        .map(|r| (r.image_sha256.clone(), r.clone()))
        .collect())
}

/// Semver order, then upload time for versions that do not parse.
fn version_key(r: &Release) -> (Option<semver::Version>, i64) {
    (semver::Version::parse(&r.version).ok(), r.created_at)
}

/// Computes one delta; `None` when it is not worth offering.
fn make(
    app: &App,
    target: &Release,
    stored: &StoredBundle,
    source: &Release,
) -> Result<Option<Delta>, DeltaJobError> {
    let old = StoredBundle::read(&app.artifacts_dir, source)?;
    let started = std::time::Instant::now();
    let tmp = app.artifacts_dir.join(format!(
        ".delta-{}-{}",
        short(&source.image_sha256),
        short(&target.image_sha256)
    ));
    let (sha, size) = match write_artifact(&tmp, &stored.header, &old.image, &stored.image) {
        Ok(written) => written,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                Failure::Io(source) => DeltaJobError::Io { path: tmp, source },
                Failure::Diff(e) => DeltaJobError::Diff {
                    source_sha256: source.image_sha256.clone(),
                    version: target.version.clone(),
                    source: e,
                },
            });
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let (from, to) = (source.version.as_str(), target.version.as_str());
    if size.saturating_mul(100) >= target.bundle_size.saturating_mul(MAX_SHARE_PERCENT) {
        let _ = std::fs::remove_file(&tmp);
        tracing::info!(
            from,
            to,
            bytes = size,
            full = target.bundle_size,
            secs,
            "delta too large, not offered"
        );
        return Ok(None);
    }
    let path = app.artifacts_dir.join(&sha);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Ok(dir) = File::open(&app.artifacts_dir) {
        let _ = dir.sync_all();
    }
    tracing::info!(from, to, bytes = size, full = target.bundle_size, secs, sha256 = %sha, "server-side delta stored");
    Ok(Some(Delta {
        source_sha256: source.image_sha256.clone(),
        version: target.version.clone(),
        artifact_sha256: sha,
        size,
    }))
}

fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}

/// Why writing one artifact failed.
enum Failure {
    Io(io::Error),
    Diff(DeltaError),
}

/// Writes `header` then `diff(old, new)` to `path` (fsynced); returns the artifact's SHA-256 and size.
fn write_artifact(path: &Path, header: &[u8], old: &[u8], new: &[u8]) -> Result<(String, u64), Failure> {
    let file = File::create(path).map_err(Failure::Io)?;
    let mut out = HashingWriter {
        out: BufWriter::with_capacity(256 << 10, file),
        hasher: sha2::Sha256::new(),
        len: 0,
    };
    out.write_all(header).map_err(Failure::Io)?;
    delta::diff(old, new, &DiffOptions::default(), &mut out).map_err(Failure::Diff)?;
    let HashingWriter { out, hasher, len } = out;
    let file = out.into_inner().map_err(|e| Failure::Io(e.into_error()))?;
    file.sync_all().map_err(Failure::Io)?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// Counts and hashes what it writes.
struct HashingWriter<W> {
    out: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A stored release bundle: its raw header bytes, its manifest and its (first full payload's) image.
#[derive(Debug)]
struct StoredBundle {
    header: Vec<u8>,
    manifest: Manifest,
    image: Vec<u8>,
}

impl StoredBundle {
    /// Reads `release`'s bundle from the artifact store (verified when it was uploaded; the image is
    /// checked again against the manifest and the release record).
    fn read(dir: &Path, release: &Release) -> Result<Self, DeltaJobError> {
        let path = dir.join(&release.bundle_sha256);
        let bad = |reason: String| DeltaJobError::Bundle {
            path: path.clone(),
            reason,
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let mut input = CountingReader::new(BufReader::new(file));
        let header = BundleHeader::read(&mut input, &Limits::default()).map_err(|e| bad(e.to_string()))?;
        let header_len = input.offset();
        let manifest = Manifest::from_canonical_bytes(&header.manifest)
            .map_err(|e: ManifestError| bad(e.to_string()))?;
        let image = read_image(&mut input, &manifest, release, &path)?;
        let mut raw = vec![0u8; usize::try_from(header_len).map_err(|e| bad(e.to_string()))?];
        File::open(&path)
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(io_err(&path))?;
        Ok(Self {
            header: raw,
            manifest,
            image,
        })
    }
}

/// Reads the first full payload after the header (skipping any payload before it) and checks it.
fn read_image<R: Read>(
    input: &mut R,
    manifest: &Manifest,
    release: &Release,
    path: &Path,
) -> Result<Vec<u8>, DeltaJobError> {
    let bad = |reason: String| DeltaJobError::Bundle {
        path: path.to_path_buf(),
        reason,
    };
    for payload in &manifest.payloads {
        if payload.kind != PayloadKind::Full {
            io::copy(&mut input.take(payload.size), &mut io::sink()).map_err(io_err(path))?;
            continue;
        }
        if payload.target.sha256.to_hex() != release.image_sha256 || payload.size > release.bundle_size {
            return Err(bad(format!(
                "full payload {} is not the release's image",
                payload.name
            )));
        }
        let mut image = Vec::with_capacity(usize::try_from(payload.size).unwrap_or(0));
        input
            .take(payload.size)
            .read_to_end(&mut image)
            .map_err(io_err(path))?;
        if image.len() as u64 != payload.size || Sha256Digest::of(&image) != payload.sha256 {
            return Err(bad(format!(
                "full payload {} does not match its digest",
                payload.name
            )));
        }
        return Ok(image);
    }
    Err(bad("no full payload".to_owned()))
}
