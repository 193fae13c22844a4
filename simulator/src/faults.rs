//! Faults a scenario injects, and durations written the way people write them ("90s", "15m", "36h",
//! "2d"). Which kinds each clock supports: virtual time runs all of them; real time runs power cuts
//! (the others need the simulated network of virtual time).

use serde::Deserialize;

/// A span of time: an integer number of seconds, or a string with a unit (s, m, h, d).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub u64);

impl Span {
    pub fn secs(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Parses `"36h"`, `"15m"`, `"2d"`, `"90s"` or `"90"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as \"90s\", \"15m\", \"36h\" or \"2d\""))?;
        let mul = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("unknown unit {other:?} in {text:?} (use s, m, h or d)")),
        };
        Ok(Self(n * mul))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Self(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        match s {
            s if s % 86_400 == 0 && s > 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 && s > 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 && s > 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

/// A fault injected into a run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Times (`at`) count from this rollout's start; without it, from the end of enrollment. For
    /// `power_cut` it is the rollout during which the power fails.
    pub rollout: Option<String>,
    /// Share of the devices hit, percent (seeded choice): power cuts, lossy or slow links, skew.
    #[serde(default = "hundred")]
    pub share: u8,
    /// Only devices of this site (required for `partition`).
    pub site: Option<String>,
    /// When the fault starts.
    #[serde(default)]
    pub at: Span,
    /// How long it lasts (partition, broker or server down time, lossy or slow link).
    #[serde(default, rename = "for")]
    pub lasts: Span,
    /// `lossy_link`: percent of messages and artifact requests lost.
    pub loss_percent: Option<u8>,
    /// `slow_link`: link speed.
    pub kib_per_sec: Option<u64>,
    /// `clock_skew`: seconds the device clocks are off (negative: behind).
    pub skew_secs: Option<i64>,
    /// `corrupt_artifact`: the release whose bundle is damaged on the server.
    pub version: Option<String>,
}

fn hundred() -> u8 {
    100
}

/// Kinds of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Power fails once while the device updates: every write stops at that instant; it boots again.
    PowerCut,
    /// The site's network is cut off from the server (MQTT and HTTPS) from `at` for `for`.
    Partition,
    /// The broker goes down at `at` and is back after `for`; every connection drops.
    BrokerRestart,
    /// The server process dies at `at` (kill -9: only committed state survives) and restarts after `for`.
    ServerCrash,
    /// Messages and artifact requests are lost at `loss_percent`.
    LossyLink,
    /// Downloads run at `kib_per_sec`.
    SlowLink,
    /// Device clocks are off by `skew_secs` from the start.
    ClockSkew,
    /// One byte of the release's bundle flips in the server's artifact store at `at`.
    CorruptArtifact,
}

impl FaultKind {
    /// Runs in real time too (the others need virtual time's simulated network).
    pub fn in_real_time(self) -> bool {
        self == Self::PowerCut
    }
}

impl FaultSpec {
    /// What is missing for this kind, if anything.
    pub fn problem(&self) -> Option<String> {
        let need = |ok: bool, what: &str| (!ok).then(|| format!("{:?} needs {what}", self.kind));
        match self.kind {
            FaultKind::PowerCut => need(self.rollout.is_some(), "`rollout`"),
            FaultKind::Partition => need(self.site.is_some() && self.lasts.0 > 0, "`site` and `for`"),
            FaultKind::BrokerRestart | FaultKind::ServerCrash => need(self.lasts.0 > 0, "`for`"),
            FaultKind::LossyLink => need(
                self.loss_percent.is_some_and(|p| p <= 100) && self.lasts.0 > 0,
                "`loss_percent` (0..=100) and `for`",
            ),
            FaultKind::SlowLink => need(
                self.kib_per_sec.is_some_and(|k| k > 0) && self.lasts.0 > 0,
                "`kib_per_sec` and `for`",
            ),
            FaultKind::ClockSkew => need(self.skew_secs.is_some(), "`skew_secs`"),
            FaultKind::CorruptArtifact => need(self.version.is_some(), "`version`"),
        }
        .or_else(|| (self.share > 100).then(|| "share above 100".to_owned()))
    }
}

/// Seeded choice: is the `index`-th device among the `share` percent a fault hits?
pub fn chosen(index: usize, seed: u64, share: u8) -> bool {
    crate::virt::mix(seed, index as u64) % 100 < u64::from(share)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spans_parse_and_print() {
        for (text, secs) in [
            ("90", 90),
            ("90s", 90),
            ("15m", 900),
            ("36h", 129_600),
            ("2d", 172_800),
        ] {
            assert_eq!(Span::parse(text).unwrap().0, secs, "{text}");
        }
        assert!(Span::parse("3w").is_err());
        assert!(Span::parse("h").is_err());
        assert_eq!(Span(129_600).to_string(), "36h");
        assert_eq!(Span(61).to_string(), "61s");
    }

    #[test]
    fn the_seeded_choice_hits_about_the_share_and_repeats() {
        let hits = (0..10_000).filter(|i| chosen(*i, 5, 5)).count();
        assert!((400..600).contains(&hits), "{hits}");
        let again = (0..10_000).filter(|i| chosen(*i, 5, 5)).count();
        assert_eq!(hits, again);
        assert_eq!((0..100).filter(|i| chosen(*i, 5, 0)).count(), 0);
        assert_eq!((0..100).filter(|i| chosen(*i, 5, 100)).count(), 100);
    }
}
