//! Load generator for `halyard-server` (`fleet-server/bench/run.sh` drives it; see
//! `fleet-server/README.md`, "Load benchmark").
//!
//! Enrolls N simulated devices over the real HTTP API, opens one real MQTT connection per device
//! (rumqttc, all in this process), and has each device publish a signed `report` envelope (QoS 1,
//! retained) every `--period` seconds, spread evenly over the period. After `--warmup` it measures
//! for `--duration` seconds:
//! - end-to-end latency, publish → readable through the operator API: `--probes` devices are probes;
//!   after each probe publish a poller GETs `/api/v1/devices/{id}` every `--poll-ms` until the stored
//!   report carries the `at` just published (publishes between the two window scrapes count). The
//!   commit lies between the previous (stale) GET's send time and the fresh GET's answer time; both
//!   bounds are kept and the upper one is the headline;
//! - publish → PUBACK from the broker, for every device (the broker's share of the latency);
//! - the server's own `halyard_messages_ingested_total` and `halyard_ingest_latency_seconds` from
//!   `/metrics` (read at window start and end only: the handler scans every device);
//! - CPU time of the server, the broker (if `--broker-pid`) and this process; the server's RSS.
//!
//! Then it stops publishing, waits until the server has ingested every message sent, clears the
//! retained reports it left on the broker (empty retained publishes), and prints one JSON object.

mod fleet;
mod observe;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rumqttc::AsyncClient;

use tokio::time::Instant;

use crate::fleet::{Device, Shared, clean_up, connect_all, enroll_all, publish_loop};
use crate::observe::{
    ProbeJob, ProbeResults, Scrape, cpu_share, drain, follow_all, hist_quantile, http, latency_ms, procfs,
    scrape, watch_rss,
};

#[derive(Debug, Clone, Parser)]
struct Args {
    /// Base URL of the server's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:18480")]
    http: String,
    /// Broker the devices connect to (the server's broker).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// Admin bearer token (`halyard-server --print-admin-token`).
    #[arg(long, env = "HALYARD_ADMIN_TOKEN")]
    admin_token: String,
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seconds between two reports of one device.
    #[arg(long, default_value_t = 60.0)]
    period: f64,
    /// Seconds of publishing before the measured window starts.
    #[arg(long, default_value_t = 15.0)]
    warmup: f64,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 120.0)]
    duration: f64,
    /// Devices whose every report is followed through the API (0 = min(devices, 500)).
    #[arg(long, default_value_t = 0)]
    probes: usize,
    /// Interval between two API polls of one probe, milliseconds.
    #[arg(long, default_value_t = 2)]
    poll_ms: u64,
    /// Parallel enrollment workers.
    #[arg(long, default_value_t = 8)]
    enroll_workers: usize,
    /// New MQTT connections per second.
    #[arg(long, default_value_t = 1000)]
    connect_rate: u32,
    /// The server's process id (CPU, RSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The broker's process id, when it is a separate process (CPU).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Also write every probe sample here ("publish_s lower_ms upper_ms" per line), to see when
    /// slow ones happen.
    #[arg(long)]
    samples_out: Option<std::path::PathBuf>,
    /// Label for the broker in the result ("mosquitto", "embedded").
    #[arg(long, default_value = "mosquitto")]
    broker_name: String,
    /// Another replica's base URL: its `/metrics` counters are added to the server's (replicas on one
    /// database each store a share of the messages). Repeatable.
    #[arg(long)]
    also_metrics: Vec<String>,
}

impl Args {
    /// Every base URL whose `/metrics` are summed, comma-separated (see `observe::scrape`).
    fn metrics_bases(&self) -> String {
        std::iter::once(self.http.as_str())
            .chain(self.also_metrics.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let probes = if args.probes == 0 {
        args.devices.min(500)
    } else {
        args.probes.min(args.devices)
    };
    let t = std::time::Instant::now();
    let a2 = args.clone();
    let devices = tokio::task::spawn_blocking(move || enroll_all(&a2, probes)).await??;
    let enroll_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: enrolled {} devices in {enroll_secs:.1} s",
        devices.len()
    );
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        connected: AtomicUsize::new(0),
        conn_errors: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        last_pub: (0..devices.len()).map(|_| AtomicU64::new(0)).collect(),
        measuring: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        ack_us: Mutex::new(Vec::new()),
    });
    let t = std::time::Instant::now();
    let clients = connect_all(&args, &devices, &shared).await?;
    let connect_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} MQTT connections up in {connect_secs:.1} s",
        clients.len()
    );
    let result = measure(&args, &devices, &clients, &shared, probes).await?;
    clean_up(&devices, &clients, &shared).await;
    let mut result = result;
    result["enroll_secs"] = serde_json::json!((enroll_secs * 10.0).round() / 10.0);
    result["connect_secs"] = serde_json::json!((connect_secs * 10.0).round() / 10.0);
    result["server_vmhwm_mib"] = serde_json::json!(args.server_pid.and_then(|p| procfs::vm_mib(p, "VmHWM:")));
    result["loadgen_vmhwm_mib"] = serde_json::json!(procfs::vm_mib(std::process::id(), "VmHWM:"));
    println!("{result}");
    Ok(())
}

async fn measure(
    args: &Args,
    devices: &[Device],
    clients: &[AsyncClient],
    shared: &Arc<Shared>,
    probes: usize,
) -> anyhow::Result<serde_json::Value> {
    let agent = http::agent();
    let (m0, _) = scrape(&agent, &args.metrics_bases())?;
    let start_us = shared.us() + (args.warmup * 1e6) as u64;
    let end_us = start_us + (args.duration * 1e6) as u64;
    let (ptx, prx) = tokio::sync::mpsc::unbounded_channel::<ProbeJob>();
    let results = Arc::new(Mutex::new(ProbeResults::default()));
    let follower = tokio::spawn(follow_all(
        agent.clone(),
        format!("{}/api/v1/devices", args.http),
        Arc::from(args.admin_token.as_str()),
        Duration::from_millis(args.poll_ms),
        shared.clone(),
        results.clone(),
        prx,
    ));
    let window = tokio::spawn(window_marks(
        args.metrics_bases(),
        shared.clone(),
        start_us,
        end_us,
        [args.server_pid, args.broker_pid],
    ));
    let rss_stop = Arc::new(AtomicBool::new(false));
    let rss = tokio::spawn(watch_rss(args.server_pid, rss_stop.clone()));
    let sent = publish_loop(devices, clients, args, shared, ptx).await;
    let (w0, w1) = window.await?;
    follower.await?;
    let drained = drain(&agent, &args.metrics_bases(), m0.ingested + sent.total as f64).await;
    rss_stop.store(true, Relaxed);
    let rss_peak = rss.await?;
    let (m_end, _) = scrape(&agent, &args.metrics_bases())?;
    let probe = std::mem::take(&mut *results.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?);
    let ack = sorted(
        shared
            .ack_us
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?
            .iter()
            .map(|v| f64::from(*v)),
    );
    let outcome = Outcome {
        sent,
        ingested: drained - m0.ingested,
        rejected: m_end.rejected - m0.rejected,
        w0,
        w1,
        probe,
        ack,
        rss_peak,
    };
    Ok(summarize(args, devices.len(), probes, shared, &outcome))
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Everything a run measured, before it is summarized.
#[derive(Debug)]
struct Outcome {
    sent: fleet::Sent,
    ingested: f64,
    rejected: f64,
    w0: Mark,
    w1: Mark,
    probe: ProbeResults,
    ack: Vec<f64>,
    rss_peak: f64,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn write_samples(path: &std::path::Path, probe: &ProbeResults) -> std::io::Result<()> {
    let lines: Vec<String> = probe
        .bounds
        .iter()
        .map(|(at, lo, up)| {
            format!(
                "{:.3} {:.1} {:.1}",
                *at as f64 / 1e6,
                *lo as f64 / 1e3,
                *up as f64 / 1e3
            )
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n")
}

fn summarize(args: &Args, devices: usize, probes: usize, shared: &Shared, o: &Outcome) -> serde_json::Value {
    if let Some(path) = &args.samples_out
        && let Err(e) = write_samples(path, &o.probe)
    {
        eprintln!("loadgen: writing {}: {e}", path.display());
    }
    let upper = sorted(o.probe.bounds.iter().map(|b| b.2 as f64));
    let lower = sorted(o.probe.bounds.iter().map(|b| b.1 as f64));
    let secs = (o.w1.at_us - o.w0.at_us) as f64 / 1e6;
    let cpu = cpu_share(&o.w0.cpu, &o.w1.cpu, secs);
    let hist = |q| hist_quantile(&o.w0.scrape, &o.w1.scrape, q).map(|v| round1(v * 1e3));
    serde_json::json!({
        "broker": args.broker_name, "devices": devices, "period_s": args.period, "window_s": round1(secs),
        "offered_per_s": round1(o.sent.in_window as f64 / secs),
        "ingested_per_s": round1((o.w1.scrape.ingested - o.w0.scrape.ingested) / secs),
        "sent_total": o.sent.total, "publish_failed": o.sent.failed, "publisher_max_lag_ms": round1(o.sent.max_lag_ms),
        "ingested_total": o.ingested, "lost": o.sent.total as f64 - o.ingested, "rejected": o.rejected,
        "probes": probes, "probe_samples": upper.len(), "probe_timeouts": o.probe.timeouts,
        "e2e_p50_ms": latency_ms(&upper, 0.5), "e2e_p99_ms": latency_ms(&upper, 0.99), "e2e_max_ms": latency_ms(&upper, 1.0),
        "e2e_lower_p50_ms": latency_ms(&lower, 0.5), "e2e_lower_p99_ms": latency_ms(&lower, 0.99),
        "puback_p50_ms": latency_ms(&o.ack, 0.5), "puback_p99_ms": latency_ms(&o.ack, 0.99),
        "server_hist_p50_ms": hist(0.5), "server_hist_p99_ms": hist(0.99),
        "server_cpu_pct": cpu[0].map(f64::round), "broker_cpu_pct": cpu[1].map(f64::round), "loadgen_cpu_pct": cpu[2].map(f64::round),
        "server_rss_peak_mib": round1(o.rss_peak), "metrics_scrape_ms": round1(o.w0.scrape_secs.max(o.w1.scrape_secs) * 1e3),
        "mqtt_errors": shared.conn_errors.load(Relaxed),
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

/// The state at one edge of the measured window.
#[derive(Debug)]
struct Mark {
    at_us: u64,
    scrape: Scrape,
    scrape_secs: f64,
    cpu: [Option<f64>; 3],
}

async fn mark(base: &str, shared: &Shared, pids: [Option<u32>; 2]) -> Mark {
    let (agent, b) = (http::agent(), base.to_owned());
    let at_us = shared.us();
    let cpu = [
        pids[0].and_then(procfs::cpu_secs),
        pids[1].and_then(procfs::cpu_secs),
        procfs::cpu_secs(std::process::id()),
    ];
    let (scrape, scrape_secs) = tokio::task::spawn_blocking(move || scrape(&agent, &b))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Mark {
        at_us,
        scrape,
        scrape_secs,
        cpu,
    }
}

/// Takes the marks at the window's start and end and flips `measuring` between them.
async fn window_marks(
    base: String,
    shared: Arc<Shared>,
    start_us: u64,
    end_us: u64,
    pids: [Option<u32>; 2],
) -> (Mark, Mark) {
    let wait = |us: u64| tokio::time::sleep_until(shared.t0 + Duration::from_micros(us));
    wait(start_us).await;
    let m0 = mark(&base, &shared, pids).await;
    shared.measuring.store(true, Relaxed);
    wait(end_us).await;
    shared.measuring.store(false, Relaxed);
    let m1 = mark(&base, &shared, pids).await;
    (m0, m1)
}
