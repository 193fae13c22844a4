//! [`HttpFetcher`]: the [`Fetcher`] over HTTP(S) with `Range` requests (ureq, rustls with ring).
//!
//! Each call fetches one byte range. When the connection drops mid-body, the fetcher asks again from
//! the first byte it has not written (so a cut costs the bytes in flight, not the range). It remembers
//! each artifact's validator (ETag and total size) and sends `If-Range`: a server whose artifact
//! changed answers `200` with the whole new file, which becomes [`FetchError::Changed`] so the driver
//! starts over from zero instead of splicing two files. The driver persists the validator beside the
//! partial download and hands it back after a restart ([`Fetcher::remember_validator`]), so a resume
//! in a new process sends `If-Range` too. Every response is size-capped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;

use ureq::http::{Response, StatusCode};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::client_cert::ClientIdentity;
use crate::config::HttpSettings;
use crate::fetch::{FetchError, Fetcher, Validator};

/// Re-requests after a cut connection within one range before giving up (the driver retries too).
const RESUMES_PER_RANGE: u32 = 8;

/// The CA file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA file {path}: {reason}")]
pub struct CaError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    pub reason: String,
}

/// HTTP(S) artifact fetcher.
#[derive(Debug)]
pub struct HttpFetcher {
    agent: ureq::Agent,
    max_bytes: u64,
    validators: HashMap<String, Validator>,
}

impl HttpFetcher {
    /// A fetcher with the given timeouts, size cap and trusted CA file.
    pub fn new(settings: &HttpSettings) -> Result<Self, CaError> {
        Self::with_client_cert(settings, None)
    }

    /// As [`HttpFetcher::new`], presenting `client` to servers that ask for a client certificate.
    pub fn with_client_cert(
        settings: &HttpSettings,
        client: Option<&ClientIdentity>,
    ) -> Result<Self, CaError> {
        Ok(Self {
            agent: agent_with_cert(
                settings.ca_file.as_deref(),
                client,
                settings.connect_timeout,
                settings.read_timeout,
            )?,
            max_bytes: settings.max_artifact_bytes,
            validators: HashMap::new(),
        })
    }

    /// One request for `range`; returns how many bytes reached `out` (fewer when the body was cut).
    fn request(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<u64, FetchError> {
        let known = self.validators.get(url).cloned();
        let mut req = self
            .agent
            .get(url)
            .header("Range", format!("bytes={}-{}", range.start, range.end - 1));
        if let Some(etag) = known.as_ref().and_then(|v| v.etag.as_deref()) {
            req = req.header("If-Range", etag);
        }
        let resp = req.call().map_err(|e| io_error(url, e))?;
        let seen = self.accept(url, &resp, &range, known.as_ref())?;
        self.validators.insert(url.to_owned(), seen);
        let mut body = resp.into_body().into_reader().take(range.end - range.start);
        copy_counting(&mut body, out).map_err(|(written, e)| {
            tracing::warn!(url, written, error = %e, "body cut, will resume");
            FetchError::Io {
                url: url.to_owned(),
                source: e,
            }
        })
    }

    /// Checks a response against the range asked and the artifact seen before; returns its validator.
    fn accept<B>(
        &mut self,
        url: &str,
        resp: &Response<B>,
        range: &Range<u64>,
        known: Option<&Validator>,
    ) -> Result<Validator, FetchError> {
        let etag = header(resp, "etag");
        let (start, total) = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                content_range(resp).ok_or_else(|| io_msg(url, "bad Content-Range"))?
            }
            StatusCode::OK if known.is_some() => {
                self.validators.remove(url);
                return Err(changed(url, "server answered If-Range with the whole file"));
            }
            StatusCode::OK => (0, content_length(resp).unwrap_or(u64::MAX)),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(FetchError::NotFound {
                    url: url.to_owned(),
                    reason: resp.status().to_string(),
                });
            }
            status => return Err(io_msg(url, &format!("HTTP status {status}"))),
        };
        if total > self.max_bytes && total != u64::MAX {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                size: total,
                max: self.max_bytes,
            });
        }
        let seen = Validator { etag, size: total };
        if let Some(before) = known.filter(|k| **k != seen) {
            self.validators.remove(url);
            return Err(changed(url, &format!("was {before:?}, now {seen:?}")));
        }
        if start != range.start {
            return Err(io_msg(
                url,
                &format!("asked from byte {}, got {start}", range.start),
            ));
        }
        if range.end > total {
            return Err(FetchError::ShortRange {
                url: url.to_owned(),
                start: range.start,
                end: range.end,
                size: total,
            });
        }
        Ok(seen)
    }
}

impl Fetcher for HttpFetcher {
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError> {
        if range.end > self.max_bytes {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                size: range.end,
                max: self.max_bytes,
            });
        }
        let mut pos = range.start;
        let mut resumes = 0;
        while pos < range.end {
            let mut counted = Counting { inner: out, bytes: 0 };
            let result = self.request(url, pos..range.end, &mut counted);
            pos += counted.bytes;
            match result {
                Ok(_) if pos < range.end => {
                    return Err(io_msg(url, "body ended before the range did"));
                }
                Ok(_) => {}
                Err(FetchError::Io { .. }) if counted.bytes > 0 && resumes < RESUMES_PER_RANGE => {
                    resumes += 1;
                    tracing::info!(url, pos, resumes, "resuming range");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn validator(&self, url: &str) -> Option<Validator> {
        self.validators.get(url).cloned()
    }

    fn remember_validator(&mut self, url: &str, validator: Validator) {
        self.validators.insert(url.to_owned(), validator);
    }
}

/// An HTTP(S) client (ureq, rustls with ring) trusting `ca_file`'s certificates (or the built-in web
/// PKI roots), with `connect` and per-read limits; error statuses come back as responses.
pub fn agent(
    ca_file: Option<&std::path::Path>,
    connect: std::time::Duration,
    read: std::time::Duration,
) -> Result<ureq::Agent, CaError> {
    agent_with_cert(ca_file, None, connect, read)
}

/// As [`agent`], presenting `client` when a server asks for a client certificate (mutual TLS).
pub fn agent_with_cert(
    ca_file: Option<&std::path::Path>,
    client: Option<&ClientIdentity>,
    connect: std::time::Duration,
    read: std::time::Duration,
) -> Result<ureq::Agent, CaError> {
    let roots = match ca_file {
        Some(path) => RootCerts::Specific(Arc::new(read_certs(path)?)),
        None => RootCerts::WebPki,
    };
    let client = client.map(ClientIdentity::for_ureq).transpose()?;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(read))
        .timeout_per_read(Some(read))
        .tls_config(TlsConfig::builder().root_certs(roots).client_cert(client).build())
        .build();
    Ok(config.into())
}

/// Counts bytes that reached the inner writer.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn copy_counting(from: &mut dyn Read, to: &mut dyn Write) -> Result<u64, (u64, io::Error)> {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((total, e)),
        };
        to.write_all(&buf[..n]).map_err(|e| (total, e))?;
        total += n as u64;
    }
}

fn header<B>(resp: &Response<B>, name: &str) -> Option<String> {
    resp.headers().get(name)?.to_str().ok().map(str::to_owned)
}

fn content_length<B>(resp: &Response<B>) -> Option<u64> {
    header(resp, "content-length")?.trim().parse().ok()
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn content_range<B>(resp: &Response<B>) -> Option<(u64, u64)> {
    let value = header(resp, "content-range")?;
    let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

pub(crate) fn read_certs(path: &std::path::Path) -> Result<Vec<Certificate<'static>>, CaError> {
    let fail = |reason: String| CaError {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) = item.map_err(|e| fail(e.to_string()))? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    Ok(certs)
}

fn changed(url: &str, reason: &str) -> FetchError {
    FetchError::Changed {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

fn io_msg(url: &str, msg: &str) -> FetchError {
    FetchError::Io {
        url: url.to_owned(),
        source: io::Error::other(msg.to_owned()),
    }
}

fn io_error(url: &str, e: ureq::Error) -> FetchError {
    FetchError::Io {
        url: url.to_owned(),
        source: e.into_io(),
    }
}
