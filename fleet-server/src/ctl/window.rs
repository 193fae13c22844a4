//! The maintenance-window syntax of `halyardctl sites set --window`:
//!
//! ```text
//! [DAYS] HH:MM-HH:MM
//! DAYS = daily | DAY[,DAY...]      DAY = mon|tue|wed|thu|fri|sat|sun, or a range like mon-fri / fri-mon
//! ```
//!
//! e.g. `mon-fri 22:00-04:00` (starts Monday to Friday at 22:00 local time, ends 04:00 the next
//! morning), `sat,sun 01:00-06:00`, `02:00-03:00` (every day). An end at or before the start wraps
//! past midnight, as in the rollout engine.

use crate::model::WindowSpec;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a window could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window {input:?}: {why} (expected e.g. \"mon-fri 22:00-04:00\")")]
pub struct WindowError {
    input: String,
    why: String,
}

/// Parses `[DAYS] HH:MM-HH:MM` into the server's [`WindowSpec`].
pub fn parse_window(input: &str) -> Result<WindowSpec, WindowError> {
    let fail = |why: String| WindowError {
        input: input.to_owned(),
        why,
    };
    let parts: Vec<&str> = input.split_whitespace().collect();
    let (days, times) = match parts.as_slice() {
        [times] => (Vec::new(), *times),
        [days, times] => (parse_days(days).map_err(fail)?, *times),
        _ => return Err(fail("expected days and a time range".to_owned())),
    };
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| fail(format!("time range {times:?} has no '-'")))?;
    let start = parse_time(start).map_err(fail)?;
    let end = parse_time(end).map_err(fail)?;
    if start == end {
        return Err(fail("start and end are the same time".to_owned()));
    }
    Ok(WindowSpec { days, start, end })
}

/// Renders a window back in the syntax [`parse_window`] reads.
pub fn format_window(window: &WindowSpec) -> String {
    if window.days.is_empty() {
        format!("{}-{}", window.start, window.end)
    } else {
        format!("{} {}-{}", window.days.join(","), window.start, window.end)
    }
}

/// `daily`, or comma-separated days and day ranges, into day names in week order without repeats.
fn parse_days(input: &str) -> Result<Vec<String>, String> {
    if input.eq_ignore_ascii_case("daily") {
        return Ok(Vec::new());
    }
    let mut chosen = [false; 7];
    for item in input.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                let span = (to + 7 - from) % 7;
                (0..=span).for_each(|k| chosen[(from + k) % 7] = true);
            }
            None => chosen[day_index(item)?] = true,
        }
    }
    Ok(DAYS
        .iter()
        .zip(chosen)
        .filter(|(_, on)| *on)
        .map(|(d, _)| (*d).to_owned())
        .collect())
}

fn day_index(day: &str) -> Result<usize, String> {
    let lower = day.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == lower)
        .ok_or_else(|| format!("unknown day {day:?} (use mon, tue, wed, thu, fri, sat, sun)"))
}

/// `HH:MM` on a 24-hour clock, exactly two digits each.
fn parse_time(input: &str) -> Result<String, String> {
    let bad = || format!("time {input:?} is not HH:MM (00:00 to 23:59)");
    let (h, m) = input.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let hour: u8 = h.parse().map_err(|_| bad())?;
    let minute: u8 = m.parse().map_err(|_| bad())?;
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok(format!("{h}:{m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(window: &WindowSpec) -> Vec<&str> {
        window.days.iter().map(String::as_str).collect()
    }

    #[test]
    fn weekday_range_wrapping_midnight() {
        let w = parse_window("mon-fri 22:00-04:00").expect("valid window");
        assert_eq!(days(&w), ["mon", "tue", "wed", "thu", "fri"]);
        assert_eq!((w.start.as_str(), w.end.as_str()), ("22:00", "04:00"));
    }

    #[test]
    fn ranges_wrap_the_week_and_lists_merge_in_order() {
        let w = parse_window("fri-mon 01:00-05:00").expect("valid window");
        assert_eq!(days(&w), ["mon", "fri", "sat", "sun"]);
        let w = parse_window("sun,SAT,wed-thu,sat 01:00-05:00").expect("valid window");
        assert_eq!(days(&w), ["wed", "thu", "sat", "sun"]);
    }

    #[test]
    fn no_days_or_daily_means_every_day() {
        let w = parse_window("02:00-03:30").expect("valid window");
        assert!(w.days.is_empty());
        let w = parse_window("  daily   02:00-03:30 ").expect("valid window");
        assert!(w.days.is_empty());
        assert_eq!(w.end, "03:30");
    }

    #[test]
    fn rejects_bad_windows() {
        for bad in [
            "",
            "mon-fri",
            "mon-fri 22:00",
            "mon-fri 22:00-04:00 extra",
            "mon-fry 22:00-04:00",
            "mon-fri 24:00-04:00",
            "mon-fri 22:60-04:00",
            "mon-fri 2:00-04:00",
            "mon-fri +1:00-04:00",
            "mon-fri 22:00-22:00",
            "mon,,fri 22:00-04:00",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn errors_name_the_input_and_the_syntax() {
        let err = parse_window("mon-fry 22:00-04:00").expect_err("unknown day");
        let text = err.to_string();
        assert!(text.contains("\"fry\""), "{text}");
        assert!(text.contains("mon-fri 22:00-04:00"), "{text}");
    }

    #[test]
    fn format_round_trips() {
        for input in [
            "mon,tue,wed,thu,fri 22:00-04:00",
            "00:00-23:59",
            "sun 01:00-02:00",
        ] {
            let w = parse_window(input).expect("valid window");
            assert_eq!(format_window(&w), input);
            assert_eq!(parse_window(&format_window(&w)), Ok(w));
        }
    }
}
