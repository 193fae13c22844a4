//! The server's own numbers after a real-time run, read from its Prometheus `/metrics`: how many
//! device messages it ingested or refused, and how long a message took from arrival to commit.

use std::time::Duration;

/// What the server saw during a run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ServerStats {
    /// Device messages stored.
    pub ingested: u64,
    /// Device messages refused (bad signature, unknown device, store failure).
    pub rejected: u64,
    /// Replays refused by sequence number.
    pub duplicates: u64,
    /// Ingest latency (arrival → committed), upper bound of the histogram bucket holding the quantile;
    /// infinite (and left out of the JSON) when it lies above the top finite bucket, see
    /// `ingest_p50_above_ms`.
    #[serde(skip_serializing_if = "is_infinite")]
    pub ingest_p50_ms: f64,
    /// As `ingest_p50_ms`, for the 99th percentile.
    #[serde(skip_serializing_if = "is_infinite")]
    pub ingest_p99_ms: f64,
    /// Set when the quantile lies above the histogram's top finite bucket: that bucket's bound, all the
    /// histogram can say (the quantile is larger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_p50_above_ms: Option<f64>,
    /// As `ingest_p50_above_ms`, for the 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_p99_above_ms: Option<f64>,
    /// Seconds from the first enrollment until every device reported.
    pub enroll_seconds: f64,
    /// Seconds from the first rollout's start until the last one ended.
    pub rollout_seconds: f64,
    /// `ingested` over the whole run's wall time.
    pub ingest_per_sec: f64,
}

impl ServerStats {
    /// Reads the counters and the ingest histogram out of a Prometheus text page.
    pub fn parse(text: &str) -> Self {
        let mut s = Self::default();
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let n = value.parse::<f64>().unwrap_or(0.0) as u64;
            match name {
                "halyard_messages_ingested_total" => s.ingested = n,
                "halyard_messages_rejected_total" => s.rejected = n,
                "halyard_messages_duplicate_total" => s.duplicates = n,
                _ => {
                    if let Some(le) = name
                        .strip_prefix("halyard_ingest_latency_seconds_bucket{le=\"")
                        .and_then(|r| r.strip_suffix("\"}"))
                    {
                        buckets.push((le.parse().unwrap_or(f64::INFINITY), n));
                    }
                }
            }
        }
        (s.ingest_p50_ms, s.ingest_p50_above_ms) = quantile_ms(&buckets, 0.50);
        (s.ingest_p99_ms, s.ingest_p99_above_ms) = quantile_ms(&buckets, 0.99);
        s
    }

    /// Adds the phase timings and the rate over `wall`.
    pub fn with_phases(mut self, enroll: Duration, rollout: Duration, wall: Duration) -> Self {
        self.enroll_seconds = enroll.as_secs_f64();
        self.rollout_seconds = rollout.as_secs_f64();
        self.ingest_per_sec = self.ingested as f64 / wall.as_secs_f64().max(1e-9);
        self
    }
}

fn is_infinite(x: &f64) -> bool {
    x.is_infinite()
}

/// The quantile `q` in milliseconds (see [`quantile`]) and, when that is infinite, the top finite
/// bucket's bound that it exceeds.
fn quantile_ms(buckets: &[(f64, u64)], q: f64) -> (f64, Option<f64>) {
    let at_most = quantile(buckets, q) * 1000.0;
    let above = at_most.is_infinite().then(|| {
        let top = buckets
            .iter()
            .map(|b| b.0)
            .filter(|le| le.is_finite())
            .fold(0.0, f64::max);
        top * 1000.0
    });
    (at_most, above)
}

/// The upper bound of the first cumulative bucket holding at least `q` of all observations.
fn quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let total = buckets.iter().map(|b| b.1).max().unwrap_or(0);
    if total == 0 {
        return 0.0;
    }
    let want = (q * total as f64).ceil() as u64;
    let mut sorted = buckets.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted
        .iter()
        .find(|b| b.1 >= want)
        .map(|b| b.0)
        .unwrap_or(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP x\nhalyard_messages_ingested_total 200\nhalyard_messages_rejected_total 3\n\
        halyard_messages_duplicate_total 1\n\
        halyard_ingest_latency_seconds_bucket{le=\"0.001\"} 50\n\
        halyard_ingest_latency_seconds_bucket{le=\"0.01\"} 150\n\
        halyard_ingest_latency_seconds_bucket{le=\"0.1\"} 197\n\
        halyard_ingest_latency_seconds_bucket{le=\"1\"} 199\n\
        halyard_ingest_latency_seconds_bucket{le=\"+Inf\"} 200\n";

    #[test]
    fn counters_and_quantiles_come_from_the_page() {
        let s = ServerStats::parse(PAGE);
        assert_eq!((s.ingested, s.rejected, s.duplicates), (200, 3, 1));
        assert_eq!(s.ingest_p50_ms, 10.0);
        assert_eq!(s.ingest_p99_ms, 1000.0);
        let s = s.with_phases(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4),
        );
        assert_eq!(s.ingest_per_sec, 50.0);
    }

    #[test]
    fn a_quantile_above_the_top_bucket_says_so_in_the_json() {
        let page = PAGE.replace("{le=\"1\"} 199", "{le=\"1\"} 150");
        let s = ServerStats::parse(&page);
        assert_eq!((s.ingest_p50_ms, s.ingest_p50_above_ms), (10.0, None));
        assert!(s.ingest_p99_ms.is_infinite());
        assert_eq!(s.ingest_p99_above_ms, Some(1000.0));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ingest_p50_ms"], 10.0);
        assert_eq!(json["ingest_p99_above_ms"], 1000.0);
        assert!(json.get("ingest_p99_ms").is_none(), "{json}");
        assert!(json.get("ingest_p50_above_ms").is_none(), "{json}");
    }

    #[test]
    fn an_empty_page_gives_zeros() {
        assert_eq!(ServerStats::parse(""), ServerStats::default());
    }
}
