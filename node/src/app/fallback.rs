//! [`Fallback`]: when the broker has been unreachable for `after`, the [`super::Link`] polls the
//! server's `GET …/desired` every `every` and posts reports and events over HTTP(S) instead of
//! MQTT, until the broker is back. The decisions take `now` (Unix seconds from the agent's clock).

use crate::config::FallbackSettings;
use crate::transport::api::ServerApi;

/// The polling fallback's state.
#[derive(Debug)]
pub struct Fallback {
    /// The server's HTTP API.
    pub api: ServerApi,
    settings: FallbackSettings,
    down_since: Option<u64>,
    next_poll: u64,
    announced: bool,
}

impl Fallback {
    /// Counting unreachability from `now` (the broker has not been reached yet).
    pub fn new(api: ServerApi, settings: FallbackSettings, now: u64) -> Self {
        Self {
            api,
            settings,
            down_since: Some(now),
            next_poll: 0,
            announced: false,
        }
    }

    /// Note whether the broker is connected at `now`; `true` while the fallback is in charge.
    pub fn active(&mut self, connected: bool, now: u64) -> bool {
        if connected {
            self.announced = false;
            if self
                .down_since
                .take()
                .is_some_and(|t| now.saturating_sub(t) >= self.settings.after.as_secs())
            {
                tracing::info!("broker reachable again, HTTP polling stops");
            }
            return false;
        }
        let since = *self.down_since.get_or_insert(now);
        now.saturating_sub(since) >= self.settings.after.as_secs()
    }

    /// `true` once per fallback period: the first poll also posts the current report.
    pub fn take_announce(&mut self) -> bool {
        !std::mem::replace(&mut self.announced, true)
    }

    /// Whether a poll is due at `now` (and if so, schedule the next one).
    pub fn poll_due(&mut self, connected: bool, now: u64) -> bool {
        if !self.active(connected, now) || now < self.next_poll {
            return false;
        }
        self.next_poll = now.saturating_add(self.settings.every.as_secs());
        true
    }
}
