//! What stands between one device and the server in virtual time: its site's network (up or
//! partitioned), the broker (up or restarting), packet loss and link speed. Shared by the world loop
//! (which moves messages) and the device's artifact fetcher (which moves bytes).

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use halyard_node::fetch::{DirFetcher, FetchError, Fetcher};

use super::clock::DeviceClock;

/// One device's link conditions.
#[derive(Debug, Default)]
pub struct Link {
    /// The device's site is cut off from the server.
    pub partitioned: AtomicBool,
    /// Per mille of requests (artifact ranges) or deliveries (messages) lost.
    pub loss_permille: AtomicU64,
    /// Link speed in KiB per second; 0 = not limited.
    pub kib_per_sec: AtomicU64,
    /// Draws made on this link (the deterministic loss sequence's position).
    draws: AtomicU64,
    seed: u64,
}

impl Link {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            seed,
            ..Self::default()
        })
    }

    pub fn is_up(&self) -> bool {
        !self.partitioned.load(Ordering::SeqCst)
    }

    /// Whether the next request or delivery is lost (seeded, so runs repeat).
    pub fn lose(&self) -> bool {
        let p = self.loss_permille.load(Ordering::SeqCst);
        if p == 0 {
            return false;
        }
        let n = self.draws.fetch_add(1, Ordering::SeqCst);
        super::mix(self.seed, n) % 1000 < p
    }

    /// World seconds `bytes` take on this link.
    pub fn transfer_secs(&self, bytes: u64) -> u64 {
        match self.kib_per_sec.load(Ordering::SeqCst) {
            0 => 0,
            k => bytes.div_ceil(k * 1024),
        }
    }
}

/// Artifact bytes straight from the server's content-addressed artifact store (the files behind
/// `GET /v1/artifacts/{sha256}`), through the device's link: partitions and losses fail a range the
/// way a dropped connection does, and a slow link spends device time.
#[derive(Debug)]
pub struct LinkFetcher {
    inner: DirFetcher,
    link: Arc<Link>,
    clock: DeviceClock,
}

impl LinkFetcher {
    pub fn new(artifacts: PathBuf, link: Arc<Link>, clock: DeviceClock) -> Self {
        Self {
            inner: DirFetcher::new(artifacts),
            link,
            clock,
        }
    }
}

impl Fetcher for LinkFetcher {
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError> {
        let broken = |what: &str| FetchError::Io {
            url: url.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, what.to_owned()),
        };
        if !self.link.is_up() {
            self.clock.spend(30);
            return Err(broken("network unreachable (site partitioned)"));
        }
        if self.link.lose() {
            self.clock.spend(10);
            return Err(broken("connection reset (lossy link)"));
        }
        self.clock
            .spend(self.link.transfer_secs(range.end.saturating_sub(range.start)));
        self.inner.fetch_range(url, range, out)
    }
}
