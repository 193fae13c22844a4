//! The partial download's ETag survives a restart: a new process (new fetcher, no memory) resumes
//! with `Range` from the durable offset and `If-Range` with the stored ETag; only when the server's
//! bundle changed in between does the download start over from zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ops::Range;
use std::time::Duration;

use halyard_hardware::block::faulty::{CutPoint, PowerRail};
use halyard_node::config::HttpSettings;
use halyard_node::driver::{Halt, VALIDATOR_FILE};
use halyard_node::fetch::{FetchError, Fetcher, Validator};
use halyard_node::fsm::State;
use halyard_node::transport::http::HttpFetcher;
use halyard_protocol::{Artifact, Sha256};
use support::http_server::ArtifactServer;
use support::*;

fn http() -> HttpFetcher {
    HttpFetcher::new(&HttpSettings {
        ca_file: None,
        max_artifact_bytes: 1 << 30,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

/// The HTTP fetcher, cutting the power after `after` ranges (as a power cut mid-download would).
#[derive(Debug)]
struct CutAfter {
    inner: HttpFetcher,
    calls: u32,
    after: u32,
    rail: PowerRail,
}

impl Fetcher for CutAfter {
    fn fetch_range(
        &mut self,
        url: &str,
        range: Range<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<(), FetchError> {
        self.calls += 1;
        if self.calls > self.after {
            self.rail.cut_now();
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

struct Setup {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    device: Device,
    server: ArtifactServer,
    artifact: Artifact,
    good: Vec<u8>,
}

/// A device whose first life downloads five chunks of `first` (served as `good`'s URL), then loses
/// power; `good` is the bundle the desired state names.
fn first_life(first_is_stale: bool) -> Setup {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v1 = image_bytes(200 * 1024, 31);
    let mut v2 = v1.clone();
    v2[1000..90_000].fill(9);
    let good = full_bundle("2.0.0", 1, &v2);
    let mut first = good.clone();
    if first_is_stale {
        first[good.len() - 10] ^= 0xFF; // same size, other bytes: an older upload under the same URL
    }
    let server = ArtifactServer::start();
    server.put("bundle.hyd", first);
    let device = Device::new(dirs.0.path(), dirs.1.path(), &v1);
    let artifact = Artifact {
        url: server.url("bundle.hyd"),
        sha256: Sha256::of(&good),
        size: good.len() as u64,
    };
    let rail = PowerRail::cut_at(CutPoint::Never, Default::default());
    device.bootloader(&rail).unwrap();
    let fetcher = CutAfter {
        inner: http(),
        calls: 0,
        after: 5,
        rail: rail.clone(),
    };
    let (mut driver, _) = device.start_with(&rail, Box::new(fetcher)).unwrap();
    let result = driver.desired(Some("r1".into()), install("2.0.0", &artifact, vec![]));
    assert!(result.is_err(), "power lost: {:?}", driver.state());
    let stored = std::fs::read_to_string(device.data_dir.join(VALIDATOR_FILE)).unwrap();
    assert!(
        stored.contains(&Sha256::of(&server_bytes(first_is_stale, &good)).to_hex()),
        "{stored}"
    );
    Setup {
        _dirs: dirs,
        device,
        server,
        artifact,
        good,
    }
}

/// The ETag the test server gives the first upload.
fn server_bytes(stale: bool, good: &[u8]) -> Vec<u8> {
    let mut first = good.to_vec();
    if stale {
        first[good.len() - 10] ^= 0xFF;
    }
    first
}

/// Restart on a fresh rail with a fresh HTTP fetcher; returns the requests of the second life.
fn second_life(s: &Setup) -> Vec<String> {
    let before = s.server.requests().len();
    let rail = PowerRail::always_on();
    s.device.bootloader(&rail).unwrap();
    let (driver, halt) = s.device.start_with(&rail, Box::new(http())).unwrap();
    assert_eq!(halt, Halt::Rebooting, "{:?}", driver.state());
    assert!(matches!(driver.state(), State::Rebooting { armed: true, .. }));
    s.server.requests()[before..].to_vec()
}

#[test]
fn resume_after_a_restart_sends_if_range_and_does_not_start_over() {
    let s = first_life(false);
    let sent_first = s.server.bytes_sent();
    let requests = second_life(&s);
    let chunk = s.device.settings().chunk;
    let etag = format!("\"{}\"", Sha256::of(&s.good).to_hex());
    assert!(
        requests[0].contains(&format!("range=Some(\"bytes={}-", 5 * chunk))
            && requests[0].contains(&format!("if-range=Some({etag:?})"))
            && requests[0].ends_with("206"),
        "{requests:?}"
    );
    assert!(!requests.iter().any(|r| r.contains("bytes=0-")), "{requests:?}");
    assert_eq!(
        s.server.bytes_sent() - sent_first,
        s.artifact.size - 5 * chunk,
        "only the bytes that were not durable"
    );
    assert!(
        !s.device.data_dir.join(VALIDATOR_FILE).exists(),
        "discarded with the download"
    );
}

#[test]
fn a_bundle_changed_while_the_device_was_down_is_fetched_again_from_zero() {
    let s = first_life(true);
    s.server.put("bundle.hyd", s.good.clone());
    let requests = second_life(&s);
    let chunk = s.device.settings().chunk;
    assert!(
        requests[0].contains(&format!("bytes={}-", 5 * chunk))
            && requests[0].contains("if-range=Some")
            && requests[0].ends_with("200"),
        "the stale ETag is refused: {requests:?}"
    );
    assert!(requests[1].contains("bytes=0-"), "then from zero: {requests:?}");
    assert_eq!(
        requests.iter().filter(|r| r.contains("bytes=0-")).count(),
        1,
        "{requests:?}"
    );
}
