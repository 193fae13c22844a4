//! `halyardctl rollouts watch ID`: follows `GET /api/v1/rollouts/{id}/events` (Server-Sent Events)
//! and re-reads `GET /api/v1/rollouts/{id}` whenever the rollout changes; while the stream is down
//! (or the server refuses it) it polls every `--interval` seconds instead. It draws one progress
//! bar per wave from the rollout state and prints each new decision once, as it happens, until the
//! rollout reaches a final status (completed, reverted, aborted).
//!
//! The pure parts ([`wave_progress`], [`Seen::fresh`], [`is_final`], the SSE parser in
//! [`super::live`]) are unit-tested; the loop only fetches, draws and waits.

use std::collections::HashSet;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;

use halyard_rollout::RolloutState;

use super::client::segment;
use super::live::{self, Signal};
use super::table::time;
use super::{CtlError, Ctx, decode, print};
use crate::model::{Decision, Rollout};

/// `GET /api/v1/rollouts/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct RolloutDetail {
    pub rollout: Rollout,
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// Statuses after which nothing changes any more (`rollback` of a completed or aborted rollout
/// starts a new `reverting` phase, which `watch` would then follow again).
pub fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "reverted" | "aborted")
}

/// One wave's device counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaveProgress {
    /// Devices in the wave.
    pub total: usize,
    /// Committed and healthy (and not failed).
    pub committed: usize,
    /// Counted against the failure budget.
    pub failed: usize,
    /// Sent back (revert) or told to stay (cancel) without a failure of their own.
    pub exited: usize,
    /// Install issued, outcome pending.
    pub updating: usize,
}

impl WaveProgress {
    /// Devices whose part in the wave is settled.
    pub fn done(&self) -> usize {
        self.committed + self.failed + self.exited
    }

    /// One-line summary for a bar or a table.
    pub fn summary(&self) -> String {
        let mut text = format!("{} committed, {} failed", self.committed, self.failed);
        if self.updating > 0 {
            text.push_str(&format!(", {} updating", self.updating));
        }
        if self.exited > 0 {
            text.push_str(&format!(", {} reverted/cancelled", self.exited));
        }
        text
    }
}

/// Counts per wave, in wave order.
pub fn wave_progress(state: &RolloutState) -> Vec<WaveProgress> {
    let mut waves = vec![WaveProgress::default(); state.waves.len()];
    for (i, wave) in state.waves.iter().enumerate() {
        waves[i].total = wave.devices.len();
    }
    for record in state.devices.values() {
        let Some(w) = waves.get_mut(record.wave_index) else {
            continue;
        };
        if record.failure.is_some() {
            w.failed += 1;
        } else if record.exit.is_some() {
            w.exited += 1;
        } else if record.committed_at.is_some() {
            w.committed += 1;
        } else if record.assigned_at.is_some() {
            w.updating += 1;
        }
    }
    waves
}

/// The engine state inside a rollout record (`None` before the first step or if unreadable).
pub fn engine_state(rollout: &Rollout) -> Option<RolloutState> {
    RolloutState::deserialize(&rollout.state).ok()
}

/// Decisions already printed.
#[derive(Debug, Default)]
pub struct Seen(HashSet<(i64, String, String)>);

impl Seen {
    /// The decisions not printed yet, in the server's order; marks them printed.
    pub fn fresh<'a>(&mut self, decisions: &'a [Decision]) -> Vec<&'a Decision> {
        decisions
            .iter()
            .filter(|d| self.0.insert((d.at, d.kind.clone(), d.message.clone())))
            .collect()
    }
}

/// A decision as one line.
pub fn decision_line(d: &Decision) -> String {
    format!("{}  {}  {}", time(d.at), d.kind, d.message)
}

/// While the stream is up, the rollout is still re-read this often (a missed event costs no more).
const LIVE_SAFETY_POLL: Duration = Duration::from_secs(15);

/// Watches rollout `id` until it is final: live from the event stream, polling every `interval`
/// while the stream is unavailable.
pub fn watch(ctx: &Ctx, id: &str, interval: Duration) -> Result<(), CtlError> {
    let path = format!("/api/v1/rollouts/{}", segment(id));
    let signals = live::follow(ctx.client.clone(), format!("{path}/events"));
    let mut seen = Seen::default();
    let mut bars = Bars::new(ctx.json);
    let mut mode = Mode::Polling;
    loop {
        let answer = get_once_more_on_disconnect(ctx, &path, interval)?;
        let detail: RolloutDetail = decode(&answer, "rollout")?;
        for d in seen.fresh(&detail.decisions) {
            let line = if ctx.json {
                serde_json::to_string(d).unwrap_or_default()
            } else {
                decision_line(d)
            };
            bars.println(&line)?;
        }
        if let Some(state) = engine_state(&detail.rollout) {
            bars.update(&wave_progress(&state));
        }
        if is_final(&detail.rollout.status) {
            bars.finish();
            return finish(ctx, &answer, &detail.rollout);
        }
        mode = wait(&signals, mode, interval, &bars);
    }
}

/// Whether changes are pushed to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Polling,
}

/// Waits until the rollout may have changed: an event (live), or `interval` (polling). Tells the
/// operator on stderr when live updates stop.
fn wait(signals: &Receiver<Signal>, mode: Mode, interval: Duration, bars: &Bars) -> Mode {
    let timeout = match mode {
        Mode::Live => LIVE_SAFETY_POLL,
        Mode::Polling => interval,
    };
    let first = match signals.recv_timeout(timeout) {
        Ok(s) => Some(s),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => {
            // the follower gave up (refused stream): plain polling
            std::thread::sleep(interval);
            return Mode::Polling;
        }
    };
    // Coalesce a burst of changes into one re-read.
    std::thread::sleep(Duration::from_millis(50));
    let mut next = mode;
    for signal in first.into_iter().chain(signals.try_iter()) {
        next = match signal {
            Signal::Connected => Mode::Live,
            Signal::Changed => next,
            Signal::Lost(why) => {
                if next == Mode::Live {
                    bars.note(&format!(
                        "live updates interrupted ({why}); polling every {interval:?}"
                    ));
                }
                Mode::Polling
            }
            Signal::Refused(why) => {
                bars.note(&format!("no live updates ({why}); polling every {interval:?}"));
                Mode::Polling
            }
        };
    }
    next
}

/// A poll; a dropped connection (server restart, idle close) is retried once after `interval`
/// before `watch` gives up.
fn get_once_more_on_disconnect(ctx: &Ctx, path: &str, interval: Duration) -> Result<Value, CtlError> {
    match ctx.client.get(path) {
        Err(CtlError::Unreachable { .. }) => {
            std::thread::sleep(interval);
            ctx.client.get(path)
        }
        other => other,
    }
}

fn finish(ctx: &Ctx, answer: &Value, rollout: &Rollout) -> Result<(), CtlError> {
    if ctx.json {
        print(&format!("{}\n", answer["rollout"]))
    } else {
        print(&format!("rollout {} is {}\n", rollout.id, rollout.status))
    }
}

/// One bar per wave (none with `--json`; hidden automatically when stderr is not a terminal).
struct Bars {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    enabled: bool,
}

impl Bars {
    fn new(json: bool) -> Self {
        Self {
            multi: MultiProgress::new(),
            bars: Vec::new(),
            enabled: !json,
        }
    }

    fn update(&mut self, waves: &[WaveProgress]) {
        if !self.enabled {
            return;
        }
        while self.bars.len() < waves.len() {
            let bar = self.multi.add(ProgressBar::new(0));
            if let Ok(style) = ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg}") {
                bar.set_style(style);
            }
            bar.set_prefix(format!("wave {}", self.bars.len() + 1));
            self.bars.push(bar);
        }
        for (bar, wave) in self.bars.iter().zip(waves) {
            bar.set_length(wave.total as u64);
            bar.set_position(wave.done() as u64);
            bar.set_message(wave.summary());
        }
    }

    /// Prints above the bars (plain stdout when they are hidden).
    fn println(&self, line: &str) -> Result<(), CtlError> {
        self.multi.suspend(|| print(&format!("{line}\n")))
    }

    /// A status note on stderr (above the bars), never mixed into stdout's decision lines.
    fn note(&self, line: &str) {
        self.multi.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "halyardctl: {line}");
        });
    }

    fn finish(&self) {
        self.bars.iter().for_each(ProgressBar::abandon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> RolloutState {
        let t = "2026-11-26T01:00:00Z";
        let rec = |wave: usize, assigned: bool, committed: bool, failed: bool| {
            json!({
                "wave_index": wave, "hw_class": "pos-x86", "joined_late": false,
                "from_version": "1.0.0",
                "assigned_at": if assigned { json!(t) } else { Value::Null },
                "committed_at": if committed { json!(t) } else { Value::Null },
                "failure": if failed { json!({"kind": "unhealthy", "at": t, "reason": "x"}) } else { Value::Null },
                "exit": null
            })
        };
        serde_json::from_value(json!({
            "status": {"status": "running"}, "planned": true, "wave_index": 0,
            "waves": [{"devices": ["a", "b", "c", "d"], "started_at": t, "soak_started_at": null,
                       "completed_at": null, "forgiven": 0},
                      {"devices": ["e"], "started_at": null, "soak_started_at": null,
                       "completed_at": null, "forgiven": 0}],
            "devices": {
                "a": rec(0, true, true, false), "b": rec(0, true, false, false),
                "c": rec(0, true, true, true), "d": rec(0, false, false, false),
                "e": rec(1, false, false, false)
            },
            "already_current": [], "quarantined": [], "site_errors": []
        }))
        .expect("engine state JSON")
    }

    #[test]
    fn counts_per_wave() {
        let waves = wave_progress(&state());
        assert_eq!(
            waves[0],
            WaveProgress {
                total: 4,
                committed: 1,
                failed: 1,
                exited: 0,
                updating: 1
            }
        );
        assert_eq!(waves[0].done(), 2);
        assert_eq!(waves[0].summary(), "1 committed, 1 failed, 1 updating");
        assert_eq!(
            waves[1],
            WaveProgress {
                total: 1,
                ..WaveProgress::default()
            }
        );
    }

    #[test]
    fn decisions_print_once() {
        let d = |at: i64, msg: &str| Decision {
            rollout: "r".into(),
            at,
            kind: "wave_started".into(),
            message: msg.into(),
        };
        let mut seen = Seen::default();
        let first = vec![d(1, "wave 1 started")];
        assert_eq!(seen.fresh(&first).len(), 1);
        let second = vec![
            d(1, "wave 1 started"),
            d(2, "wave 1 soaked"),
            d(2, "wave 2 started"),
        ];
        let fresh: Vec<&str> = seen.fresh(&second).iter().map(|d| d.message.as_str()).collect();
        assert_eq!(fresh, ["wave 1 soaked", "wave 2 started"]);
        assert!(seen.fresh(&second).is_empty());
    }

    #[test]
    fn final_statuses() {
        for s in ["completed", "reverted", "aborted"] {
            assert!(is_final(s));
        }
        for s in ["running", "paused", "reverting"] {
            assert!(!is_final(s));
        }
    }

    #[test]
    fn unplanned_state_has_no_bars() {
        let rollout = Rollout {
            id: "r".into(),
            version: "2.0.0".into(),
            selector: String::new(),
            status: "running".into(),
            spec: json!({}),
            state: json!({}),
            created_at: 0,
            updated_at: 0,
        };
        assert!(engine_state(&rollout).is_none());
    }
}
