//! What the benchmark reads from outside: the server's `/metrics`, `/proc` (CPU, RSS), and the
//! operator API for the end-to-end probes.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_protocol::DeviceId;
use tokio::time::Instant;

use crate::fleet::Shared;

pub mod http {
    use std::time::Duration;

    use anyhow::Context as _;

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .max_idle_connections(256)
            .max_idle_connections_per_host(256)
            .build()
            .into()
    }

    pub fn get(agent: &ureq::Agent, url: &str, token: &str) -> anyhow::Result<String> {
        let mut resp = agent
            .get(url)
            .header("authorization", format!("Bearer {token}"))
            .call()
            .with_context(|| format!("GET {url}"))?;
        Ok(resp.body_mut().read_to_string()?)
    }

    pub fn post(
        agent: &ureq::Agent,
        url: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = agent.post(url).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let mut resp = req
            .send(body.to_string())
            .with_context(|| format!("POST {url}"))?;
        Ok(serde_json::from_str(&resp.body_mut().read_to_string()?)?)
    }
}

/// What `/proc` says about a process.
pub mod procfs {
    /// User + system CPU seconds of the whole process (all threads).
    pub fn cpu_secs(pid: u32) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3; utime and stime are fields 14 and 15 (clock ticks, 100 Hz).
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// A `Vm*` line of /proc/PID/status, in MiB.
    pub fn vm_mib(pid: u32, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

/// The server's `/metrics` values this benchmark reads.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub ingested: f64,
    pub rejected: f64,
    /// (upper bound in seconds, cumulative count) of `halyard_ingest_latency_seconds`.
    pub buckets: Vec<(f64, f64)>,
}

/// `/metrics` of `bases` (comma-separated base URLs, one per replica), counters summed.
pub fn scrape(agent: &ureq::Agent, bases: &str) -> anyhow::Result<(Scrape, f64)> {
    let mut total = Scrape::default();
    let mut took = 0f64;
    for base in bases.split(',') {
        let (s, t) = scrape_one(agent, base)?;
        total.ingested += s.ingested;
        total.rejected += s.rejected;
        if total.buckets.is_empty() {
            total.buckets = s.buckets;
        } else {
            for (sum, (_, v)) in total.buckets.iter_mut().zip(s.buckets) {
                sum.1 += v;
            }
        }
        took = took.max(t);
    }
    Ok((total, took))
}

fn scrape_one(agent: &ureq::Agent, base: &str) -> anyhow::Result<(Scrape, f64)> {
    let t = std::time::Instant::now();
    let text = http::get(agent, &format!("{base}/metrics"), "")?;
    let took = t.elapsed().as_secs_f64();
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else { continue };
        if name == "halyard_messages_ingested_total" {
            s.ingested = v;
        } else if name == "halyard_messages_rejected_total" {
            s.rejected = v;
        } else if let Some(le) = name.strip_prefix("halyard_ingest_latency_seconds_bucket{le=\"") {
            let le = le.trim_end_matches("\"}");
            s.buckets.push((le.parse().unwrap_or(f64::INFINITY), v));
        }
    }
    Ok((s, took))
}

/// Quantile of the server histogram between two scrapes, interpolated inside the bucket.
pub fn hist_quantile(start: &Scrape, end: &Scrape, q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = end
        .buckets
        .iter()
        .zip(start.buckets.iter().map(|b| b.1).chain(std::iter::repeat(0.0)))
        .map(|((le, c), c0)| (*le, c - c0))
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let want = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, cum) in counts {
        if cum >= want {
            if le.is_infinite() {
                return Some(lo);
            }
            let frac = if cum > below {
                (want - below) / (cum - below)
            } else {
                1.0
            };
            return Some(lo + (le - lo) * frac);
        }
        (lo, below) = (le, cum);
    }
    None
}

pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * q).round() as usize).copied()
}

/// A probe publish to follow through the API.
#[derive(Debug)]
pub struct ProbeJob {
    pub id: DeviceId,
    pub at: u64,
    pub sent_us: u64,
}

/// Probe outcomes: (publish time since t0, lower bound, upper bound) of publish → readable, all in
/// microseconds; and probes that timed out.
#[derive(Debug, Default)]
pub struct ProbeResults {
    pub bounds: Vec<(u64, u64, u64)>,
    pub timeouts: u64,
}

/// Polls the API until the probe's report is stored; records the latency bounds.
pub async fn follow(
    agent: ureq::Agent,
    url: String,
    token: Arc<str>,
    job: ProbeJob,
    poll: Duration,
    shared: Arc<Shared>,
    out: Arc<Mutex<ProbeResults>>,
) {
    let mut prev_send = job.sent_us;
    let give_up = job.sent_us + 30_000_000;
    loop {
        let send = shared.us();
        let (a, u, t) = (agent.clone(), url.clone(), token.clone());
        let body = tokio::task::spawn_blocking(move || http::get(&a, &u, &t)).await;
        let answered = shared.us();
        let stored_at = body
            .ok()
            .and_then(Result::ok)
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["device"]["report"]["at"].as_u64());
        if let Ok(mut r) = out.lock() {
            if stored_at == Some(job.at) {
                let lower = prev_send.saturating_sub(job.sent_us);
                r.bounds.push((job.sent_us, lower, answered - job.sent_us));
                return;
            }
            if answered > give_up {
                r.timeouts += 1;
                return;
            }
        }
        prev_send = send;
        tokio::time::sleep(poll).await;
    }
}

pub fn cpu_share(a: &[Option<f64>; 3], b: &[Option<f64>; 3], secs: f64) -> [Option<f64>; 3] {
    let mut out = [None; 3];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x.zip(*y).map(|(x, y)| (y - x) / secs * 100.0);
    }
    out
}

/// Samples the server's RSS every second until `stop`; returns the peak, MiB.
pub async fn watch_rss(pid: Option<u32>, stop: Arc<AtomicBool>) -> f64 {
    let mut peak: f64 = 0.0;
    while !stop.load(Relaxed) {
        peak = peak.max(pid.and_then(|p| procfs::vm_mib(p, "VmRSS:")).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    peak
}

/// Waits until the server has ingested `want` messages (or 60 s pass); returns the last count.
pub async fn drain(agent: &ureq::Agent, base: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (agent.clone(), base.to_owned());
        let got = tokio::task::spawn_blocking(move || scrape(&a, &b))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0.0, |s| s.0.ingested);
        if got >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn latency_ms(sorted_us: &[f64], q: f64) -> Option<f64> {
    quantile(sorted_us, q).map(|us| (us / 100.0).round() / 10.0)
}

/// Follows every probe publish that arrives on `jobs` until the channel closes.
pub async fn follow_all(
    agent: ureq::Agent,
    devices_url: String,
    token: Arc<str>,
    poll: Duration,
    shared: Arc<Shared>,
    out: Arc<Mutex<ProbeResults>>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<ProbeJob>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(job) = jobs.recv().await {
        let url = format!("{devices_url}/{}", job.id);
        tasks.spawn(follow(
            agent.clone(),
            url,
            token.clone(),
            job,
            poll,
            shared.clone(),
            out.clone(),
        ));
    }
    tasks.join_all().await;
}
