//! Prometheus metrics in the text exposition format, from plain atomics (no registry crate).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and a latency histogram of the ingest path.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ingested: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
    pub desired_published: AtomicU64,
    pub engine_steps: AtomicU64,
    pub decisions: AtomicU64,
    pub http_requests: AtomicU64,
    /// Connections to the MQTT broker accepted (CONNACK), and attempts or connections that failed.
    pub broker_connects: AtomicU64,
    pub broker_errors: AtomicU64,
    /// Ingest latency (receipt → committed) buckets, in milliseconds.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

const BUCKETS: [u64; 9] = [1, 2, 5, 10, 25, 50, 100, 250, 1000];

impl Metrics {
    pub fn observe_ingest(&self, micros: u64) {
        let ms = micros / 1000;
        let i = BUCKETS.iter().position(|b| ms < *b).unwrap_or(BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The text format, with gauges the caller computed (devices online, rollouts active).
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let counters = [
            (
                "halyard_messages_ingested_total",
                "Device messages verified and stored",
                &self.ingested,
            ),
            (
                "halyard_messages_rejected_total",
                "Device messages refused (signature, unknown device, malformed, stale)",
                &self.rejected,
            ),
            (
                "halyard_messages_duplicate_total",
                "Redelivered device messages ignored",
                &self.duplicates,
            ),
            (
                "halyard_desired_published_total",
                "Desired-state envelopes published",
                &self.desired_published,
            ),
            (
                "halyard_engine_steps_total",
                "Rollout engine steps that changed something",
                &self.engine_steps,
            ),
            (
                "halyard_decisions_total",
                "Rollout decisions recorded",
                &self.decisions,
            ),
            (
                "halyard_http_requests_total",
                "HTTP requests served",
                &self.http_requests,
            ),
            (
                "halyard_broker_connects_total",
                "Connections to the MQTT broker accepted",
                &self.broker_connects,
            ),
            (
                "halyard_broker_errors_total",
                "MQTT broker connection attempts failed or connections lost (TLS errors included)",
                &self.broker_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.render_histogram(&mut out);
        out
    }

    fn render_histogram(&self, out: &mut String) {
        let name = "halyard_ingest_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Receipt to commit of device messages\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / 1000.0);
        }
        cumulative += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}
