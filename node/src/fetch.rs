//! Getting artifact bytes: the [`Fetcher`] trait (one byte range of an artifact into a writer, so a
//! download resumes from its durable offset, like HTTP `Range`) and [`DirFetcher`], which serves
//! artifacts from a directory by the last segment of their URL (a USB stick, a mirror, test fixtures).
//! The HTTP fetcher is [`crate::transport::http::HttpFetcher`].

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::PathBuf;

/// A fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL does not name an artifact this fetcher serves.
    #[error("artifact {url} not found: {reason}")]
    NotFound {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The source holds fewer bytes than asked for.
    #[error("artifact {url} ends at byte {size}, range {start}..{end} asked")]
    ShortRange {
        /// The URL.
        url: String,
        /// First byte asked.
        start: u64,
        /// End asked.
        end: u64,
        /// Actual size.
        size: u64,
    },
    /// The artifact changed on the server since earlier ranges were fetched (its ETag or size
    /// differs): the bytes fetched so far belong to another file and the download must start over.
    #[error("artifact {url} changed on the server: {reason}")]
    Changed {
        /// The URL.
        url: String,
        /// What differed.
        reason: String,
    },
    /// The artifact is larger than the agent accepts.
    #[error("artifact {url} is {size} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The URL.
        url: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The agent is stopping (SIGTERM): the download pauses at its durable offset and resumes on
    /// the next start. Not a failure.
    #[error("fetching {url}: interrupted, the agent is stopping")]
    Interrupted {
        /// The URL.
        url: String,
    },
    /// Reading or writing failed (transient: the caller may retry).
    #[error("fetching {url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// Why.
        source: io::Error,
    },
}

/// What identifies one version of an artifact on its server: the HTTP `ETag` (when the server sends
/// one) and the total size. The driver persists it beside a partial download, so a resume after a
/// restart still sends `If-Range` and notices a changed artifact.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validator {
    /// The entity tag, verbatim (quotes included).
    pub etag: Option<String>,
    /// The artifact's total size.
    pub size: u64,
}

/// A source of artifact bytes.
pub trait Fetcher: std::fmt::Debug + Send {
    /// Write bytes `range` of the artifact at `url` to `out`, all of them or an error.
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError>;

    /// The validator of `url` as of the last range fetched (`None`: this source has none).
    fn validator(&self, _url: &str) -> Option<Validator> {
        None
    }

    /// Bytes already fetched from `url` (before a restart) belong to the version `validator` names:
    /// later ranges must come from that version, or fail with [`FetchError::Changed`].
    fn remember_validator(&mut self, _url: &str, _validator: Validator) {}
}

/// Artifacts in a directory, named by the last `/`-segment of their URL.
#[derive(Debug, Clone)]
pub struct DirFetcher {
    dir: PathBuf,
}

impl DirFetcher {
    /// Serve files from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path_of(&self, url: &str) -> Result<PathBuf, FetchError> {
        let name = url.rsplit('/').next().unwrap_or_default();
        let valid = !name.is_empty()
            && name != ".."
            && name != "."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(FetchError::NotFound {
                url: url.to_owned(),
                reason: format!("{name:?} is not a plain file name"),
            });
        }
        Ok(self.dir.join(name))
    }
}

impl Fetcher for DirFetcher {
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError> {
        let path = self.path_of(url)?;
        let io_err = |source| FetchError::Io {
            url: url.to_owned(),
            source,
        };
        let mut file = File::open(&path).map_err(|e| FetchError::NotFound {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let size = file.metadata().map_err(io_err)?.len();
        if range.end > size || range.start > range.end {
            return Err(FetchError::ShortRange {
                url: url.to_owned(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        file.seek(SeekFrom::Start(range.start)).map_err(io_err)?;
        let copied = io::copy(&mut file.take(range.end - range.start), out).map_err(io_err)?;
        if copied != range.end - range.start {
            return Err(io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank",
            )));
        }
        Ok(())
    }
}

/// A fetcher that stops handing out ranges once `stop` is set ([`FetchError::Interrupted`]), so a
/// long download ends at a chunk boundary when the agent is asked to stop.
#[derive(Debug)]
pub struct Interruptible<F> {
    inner: F,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<F: Fetcher> Interruptible<F> {
    /// `inner`, interrupted by `stop`.
    pub fn new(inner: F, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self { inner, stop }
    }
}

impl<F: Fetcher> Fetcher for Interruptible<F> {
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError> {
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(FetchError::Interrupted { url: url.to_owned() });
        }
        self.inner.fetch_range(url, range, out)
    }

    fn validator(&self, url: &str) -> Option<Validator> {
        self.inner.validator(url)
    }

    fn remember_validator(&mut self, url: &str, validator: Validator) {
        self.inner.remember_validator(url, validator);
    }
}
