//! The HTTP fetcher against a loopback artifact server: whole ranges, resume after a cut connection
//! (bytes on the wire stay ≈ the artifact size), a changed artifact (ETag) restarting from zero, the
//! size cap, and a full update through the driver over HTTP with the artifact replaced mid-download.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ops::Range;
use std::time::Duration;

use halyard_hardware::block::faulty::PowerRail;
use halyard_node::config::HttpSettings;
use halyard_node::driver::Halt;
use halyard_node::fetch::{FetchError, Fetcher};
use halyard_node::fsm::State;
use halyard_node::transport::http::HttpFetcher;
use halyard_protocol::{Artifact, Sha256};
use support::http_server::ArtifactServer;
use support::*;

fn settings(max: u64) -> HttpSettings {
    HttpSettings {
        ca_file: None,
        max_artifact_bytes: max,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

fn fetch(f: &mut HttpFetcher, url: &str, range: Range<u64>) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    f.fetch_range(url, range, &mut out).map(|()| out)
}

#[test]
fn whole_file_in_one_range() {
    let server = ArtifactServer::start();
    let bytes = image_bytes(300_000, 1);
    server.put("a.bin", bytes.clone());
    let mut f = HttpFetcher::new(&settings(1 << 30)).unwrap();
    assert_eq!(fetch(&mut f, &server.url("a.bin"), 0..300_000).unwrap(), bytes);
    assert_eq!(
        fetch(&mut f, &server.url("a.bin"), 1000..2000).unwrap(),
        &bytes[1000..2000]
    );
    assert_eq!(server.bytes_sent(), 301_000);
}

#[test]
fn cut_connection_resumes_from_the_offset() {
    let server = ArtifactServer::start();
    let bytes = image_bytes(500_000, 2);
    server.put("a.bin", bytes.clone());
    server.cut_after(123_456);
    let mut f = HttpFetcher::new(&settings(1 << 30)).unwrap();
    assert_eq!(fetch(&mut f, &server.url("a.bin"), 0..500_000).unwrap(), bytes);
    let sent = server.bytes_sent();
    assert!(
        (500_000..=500_000 + 16 * 1024).contains(&sent),
        "sent {sent}, not ≈ the size"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1].contains("bytes=123456-499999") && requests[1].contains("if-range=Some"),
        "{requests:?}"
    );
}

#[test]
fn changed_artifact_is_reported_and_then_fetched_anew() {
    let server = ArtifactServer::start();
    let old = image_bytes(100_000, 3);
    let new = image_bytes(100_000, 4);
    server.put("a.bin", old.clone());
    let mut f = HttpFetcher::new(&settings(1 << 30)).unwrap();
    let url = server.url("a.bin");
    assert_eq!(fetch(&mut f, &url, 0..50_000).unwrap(), &old[..50_000]);
    server.put("a.bin", new.clone());
    let err = fetch(&mut f, &url, 50_000..100_000).unwrap_err();
    assert!(matches!(err, FetchError::Changed { .. }), "{err}");
    assert_eq!(
        fetch(&mut f, &url, 0..100_000).unwrap(),
        new,
        "starts over from zero"
    );
}

#[test]
fn size_cap_and_missing_files() {
    let server = ArtifactServer::start();
    server.put("big.bin", vec![7; 10_000]);
    let mut f = HttpFetcher::new(&settings(5_000)).unwrap();
    let err = fetch(&mut f, &server.url("big.bin"), 0..1000).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::TooLarge {
                size: 10_000,
                max: 5_000,
                ..
            }
        ),
        "{err}"
    );
    let err = fetch(&mut f, &server.url("nope.bin"), 0..10).unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err}");
    let err = fetch(&mut f, &server.url("big.bin"), 4_000..6_000).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
}

/// Replaces the artifact on the server after the first chunk, like a republished URL.
#[derive(Debug)]
struct ReplaceAfterFirst {
    inner: HttpFetcher,
    server: ArtifactServer,
    replacement: Option<(String, Vec<u8>)>,
}

impl Fetcher for ReplaceAfterFirst {
    fn fetch_range(
        &mut self,
        url: &str,
        range: Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<(), FetchError> {
        let result = self.inner.fetch_range(url, range, out);
        if let Some((name, bytes)) = self.replacement.take() {
            self.server.put(&name, bytes);
        }
        result
    }
}

#[test]
fn driver_starts_over_when_the_artifact_changes_and_commits() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v1 = image_bytes(200 * 1024, 5);
    let v2 = image_bytes(200 * 1024, 6);
    let good = full_bundle("2.0.0", 1, &v2);
    let mut stale = good.clone();
    stale[good.len() / 2] ^= 0xFF; // same size, other bytes: an older upload under the same URL
    let server = ArtifactServer::start();
    server.put("bundle.hyd", stale);
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let rail = PowerRail::always_on();
    device.bootloader(&rail).unwrap();
    let fetcher = ReplaceAfterFirst {
        inner: HttpFetcher::new(&settings(1 << 30)).unwrap(),
        server: server.clone(),
        replacement: Some(("bundle.hyd".into(), good.clone())),
    };
    let (mut driver, _) = device.start_with(&rail, Box::new(fetcher)).unwrap();
    let artifact = Artifact {
        url: server.url("bundle.hyd"),
        sha256: Sha256::of(&good),
        size: good.len() as u64,
    };
    let halt = driver
        .desired(Some("r1".into()), install("2.0.0", &artifact, vec![]))
        .unwrap();
    assert_eq!(halt, Halt::Rebooting, "{:?}", driver.state());
    assert!(
        matches!(driver.state(), State::Rebooting { .. }),
        "{:?}",
        driver.state()
    );
    let restarted = server
        .requests()
        .iter()
        .filter(|r| r.contains("bytes=0-"))
        .count();
    assert_eq!(restarted, 2, "{:?}", server.requests());
}
