//! Sites and their maintenance windows, evaluated in the site's own time zone.
//!
//! A window occurrence starts on a local date whose weekday is in `days` (empty = every day) at
//! `start` and ends at `end` the same day, or the next day when `end <= start` (it wraps past
//! midnight). Local times are turned into instants with the zone's rules for that date (jiff,
//! bundled tzdb): a start that falls in a spring-forward gap moves to the end of the gap, a time
//! in a fall-back fold takes its first occurrence. A site without windows is always open.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// Day of the week (serialized as "mon", "tue", ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<jiff::civil::Weekday> for Weekday {
    fn from(w: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday as J;
        match w {
            J::Monday => Weekday::Mon,
            J::Tuesday => Weekday::Tue,
            J::Wednesday => Weekday::Wed,
            J::Thursday => Weekday::Thu,
            J::Friday => Weekday::Fri,
            J::Saturday => Weekday::Sat,
            J::Sunday => Weekday::Sun,
        }
    }
}

/// A recurring maintenance window in the site's local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// Days the window starts on; empty = every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Local start, "HH:MM".
    pub start: String,
    /// Local end, "HH:MM"; at or before `start` means the next day.
    pub end: String,
}

/// A site: where devices are, in which time zone, when they may update, how many at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Site name (devices refer to it).
    pub name: String,
    /// IANA time zone, e.g. "Europe/Berlin".
    pub tz: String,
    /// Maintenance windows; empty = always open.
    #[serde(default)]
    pub windows: Vec<MaintenanceWindow>,
    /// Most devices of this site updating at once; `None` = no cap.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// An open window occurrence, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// Opening instant.
    pub start: Timestamp,
    /// Closing instant (exclusive).
    pub end: Timestamp,
}

/// Whether a site may start installs at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// The site has no windows.
    Always,
    /// Inside this occurrence.
    Open(Window),
    /// Outside every window.
    Closed,
}

/// A site the engine cannot evaluate (it then keeps the site closed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// Not an IANA zone name known to the bundled database.
    #[error("site {site}: unknown time zone {tz:?}")]
    TimeZone {
        /// Site name.
        site: String,
        /// The zone as given.
        tz: String,
    },
    /// Not "HH:MM".
    #[error("site {site}: window time {value:?} is not HH:MM")]
    Time {
        /// Site name.
        site: String,
        /// The value as given.
        value: String,
    },
}

/// "HH:MM" (24 h) to a civil time.
fn parse_hhmm(value: &str) -> Option<Time> {
    let (h, m) = value.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl Site {
    /// Checks the time zone and every window time.
    pub fn validate(&self) -> Result<(), SiteError> {
        self.zone()?;
        self.windows.iter().try_for_each(|w| self.times(w).map(|_| ()))
    }

    fn zone(&self) -> Result<TimeZone, SiteError> {
        TimeZone::get(&self.tz).map_err(|_| SiteError::TimeZone {
            site: self.name.clone(),
            tz: self.tz.clone(),
        })
    }

    fn times(&self, w: &MaintenanceWindow) -> Result<(Time, Time), SiteError> {
        let parse = |v: &str| {
            parse_hhmm(v).ok_or_else(|| SiteError::Time {
                site: self.name.clone(),
                value: v.to_owned(),
            })
        };
        Ok((parse(&w.start)?, parse(&w.end)?))
    }

    /// The window state at `now`. When several occurrences are open, the one closing last.
    pub fn window_at(&self, now: Timestamp) -> Result<WindowState, SiteError> {
        if self.windows.is_empty() {
            return Ok(WindowState::Always);
        }
        let tz = self.zone()?;
        let today = now.to_zoned_datetime(tz.clone()).date();
        let mut best: Option<Window> = None;
        for w in &self.windows {
            let (start, end) = self.times(w)?;
            for date in [today.yesterday().ok(), Some(today)].into_iter().flatten() {
                let open = occurrence(&tz, w, date, start, end).filter(|o| o.start <= now && now < o.end);
                best = best.max_by_end(open);
            }
        }
        Ok(best.map_or(WindowState::Closed, WindowState::Open))
    }
}

trait MaxByEnd {
    fn max_by_end(self, other: Option<Window>) -> Option<Window>;
}

impl MaxByEnd for Option<Window> {
    fn max_by_end(self, other: Option<Window>) -> Option<Window> {
        match (self, other) {
            (Some(a), Some(b)) => Some(if b.end > a.end { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// The occurrence of `w` that starts on local `date`, if `w` runs that weekday.
fn occurrence(tz: &TimeZone, w: &MaintenanceWindow, date: Date, start: Time, end: Time) -> Option<Window> {
    if !w.days.is_empty() && !w.days.contains(&Weekday::from(date.weekday())) {
        return None;
    }
    let end_date = if end <= start { date.tomorrow().ok()? } else { date };
    let start = tz
        .to_ambiguous_timestamp(date.to_datetime(start))
        .compatible()
        .ok()?;
    let end = tz
        .to_ambiguous_timestamp(end_date.to_datetime(end))
        .compatible()
        .ok()?;
    (start < end).then_some(Window { start, end })
}
