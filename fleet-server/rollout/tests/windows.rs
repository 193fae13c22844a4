//! Maintenance windows in site-local time (DST, midnight wrap, weekdays) and per-site caps.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use halyard_rollout::*;

fn win(days: &[Weekday], start: &str, end: &str) -> MaintenanceWindow {
    MaintenanceWindow {
        days: days.to_vec(),
        start: start.into(),
        end: end.into(),
    }
}

fn windowed(tz: &str, w: MaintenanceWindow) -> Site {
    Site {
        name: "s".into(),
        tz: tz.into(),
        windows: vec![w],
        max_concurrent: None,
    }
}

fn open(start: &str, end: &str) -> WindowState {
    WindowState::Open(Window {
        start: ts(start),
        end: ts(end),
    })
}

/// Rows: (case, zone, window, instant, expected state).
#[test]
fn window_table() {
    let daily = |s, e| win(&[], s, e);
    let rows: Vec<(&str, &str, MaintenanceWindow, &str, WindowState)> = vec![
        (
            "berlin winter, open",
            "Europe/Berlin",
            daily("02:00", "04:00"),
            "2026-03-28T02:30:00Z",
            open("2026-03-28T01:00:00Z", "2026-03-28T03:00:00Z"),
        ),
        (
            "berlin spring forward: 02:00 does not exist, opens 03:00 CEST",
            "Europe/Berlin",
            daily("02:00", "04:00"),
            "2026-03-29T01:30:00Z",
            open("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"),
        ),
        (
            "berlin spring forward: before the gap",
            "Europe/Berlin",
            daily("02:00", "04:00"),
            "2026-03-29T00:30:00Z",
            WindowState::Closed,
        ),
        (
            "berlin spring forward: 04:00 CEST is 02:00Z, closed",
            "Europe/Berlin",
            daily("02:00", "04:00"),
            "2026-03-29T02:30:00Z",
            WindowState::Closed,
        ),
        (
            "berlin fall back: 02:00-03:00 lasts two hours",
            "Europe/Berlin",
            daily("02:00", "03:00"),
            "2026-10-25T01:30:00Z",
            open("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),
        ),
        (
            "berlin day after fall back: one hour",
            "Europe/Berlin",
            daily("02:00", "03:00"),
            "2026-10-26T01:30:00Z",
            open("2026-10-26T01:00:00Z", "2026-10-26T02:00:00Z"),
        ),
        (
            "new york wrap over spring forward",
            "America/New_York",
            daily("22:00", "06:00"),
            "2026-03-08T09:30:00Z",
            open("2026-03-08T03:00:00Z", "2026-03-08T10:00:00Z"),
        ),
        (
            "new york: 06:00 EDT passed (fixed -5 would say open)",
            "America/New_York",
            daily("22:00", "06:00"),
            "2026-03-08T10:30:00Z",
            WindowState::Closed,
        ),
        (
            "new york wrap over fall back: 06:00 EST",
            "America/New_York",
            daily("22:00", "06:00"),
            "2026-11-01T10:30:00Z",
            open("2026-11-01T02:00:00Z", "2026-11-01T11:00:00Z"),
        ),
        (
            "wrap: friday night window, friday 23:30",
            "UTC",
            win(&[Weekday::Fri], "23:00", "02:00"),
            "2026-11-27T23:30:00Z",
            open("2026-11-27T23:00:00Z", "2026-11-28T02:00:00Z"),
        ),
        (
            "wrap: the friday window runs into saturday",
            "UTC",
            win(&[Weekday::Fri], "23:00", "02:00"),
            "2026-11-28T01:30:00Z",
            open("2026-11-27T23:00:00Z", "2026-11-28T02:00:00Z"),
        ),
        (
            "wrap: saturday night is not friday",
            "UTC",
            win(&[Weekday::Fri], "23:00", "02:00"),
            "2026-11-28T23:30:00Z",
            WindowState::Closed,
        ),
        (
            "wrap: thursday night is not friday",
            "UTC",
            win(&[Weekday::Fri], "23:00", "02:00"),
            "2026-11-26T23:30:00Z",
            WindowState::Closed,
        ),
        (
            "end is exclusive",
            "UTC",
            daily("01:00", "02:00"),
            "2026-11-26T02:00:00Z",
            WindowState::Closed,
        ),
        (
            "start is inclusive",
            "UTC",
            daily("01:00", "02:00"),
            "2026-11-26T01:00:00Z",
            open("2026-11-26T01:00:00Z", "2026-11-26T02:00:00Z"),
        ),
        (
            "weekday is local: tokyo monday 01:00 is sunday UTC",
            "Asia/Tokyo",
            win(&[Weekday::Mon], "00:00", "03:00"),
            "2026-11-29T16:30:00Z",
            open("2026-11-29T15:00:00Z", "2026-11-29T18:00:00Z"),
        ),
    ];
    for (case, tz, w, at, expected) in rows {
        assert_eq!(windowed(tz, w).window_at(ts(at)).unwrap(), expected, "{case}");
    }
}

#[test]
fn no_windows_means_always_open_and_bad_config_is_an_error() {
    assert_eq!(
        site("s", "UTC").window_at(ts("2026-01-01T00:00:00Z")).unwrap(),
        WindowState::Always
    );
    assert!(matches!(
        site("s", "Mars/Olympus").validate(),
        Err(SiteError::TimeZone { .. })
    ));
    for bad in ["25:00", "2:00", "02:60", "0200", "ab:cd"] {
        let s = windowed("UTC", win(&[], bad, "03:00"));
        assert!(matches!(s.validate(), Err(SiteError::Time { .. })), "{bad}");
    }
    assert!(
        windowed("Europe/Berlin", win(&[Weekday::Sat], "22:00", "06:00"))
            .validate()
            .is_ok()
    );
}

fn one_site_fleet(s: Site, respect: bool) -> Fleet {
    let now = ts("2026-11-26T12:00:00Z");
    let mut spec = spec(
        vec![wave(WaveSize::Percent(100), 600, Budget::Count(0))],
        Breach::Pause,
    );
    spec.policy.respect_windows = respect;
    let devs = devices(&[s.name.as_str()], &["x"], 6, now);
    Fleet::new(spec, devs, vec![s], now)
}

#[test]
fn installs_wait_for_the_window_and_carry_it() {
    let site = Site {
        name: "ber".into(),
        ..windowed("Europe/Berlin", win(&[], "02:00", "04:00"))
    };
    let mut f = one_site_fleet(site, true);
    assert!(f.step().is_empty(), "13:00 in Berlin: closed");
    f.now = ts("2026-11-27T01:30:00Z"); // 02:30 CET
    let actions = f.step();
    assert_eq!(actions.len(), 6);
    let expected = Window {
        start: ts("2026-11-27T01:00:00Z"),
        end: ts("2026-11-27T03:00:00Z"),
    };
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::Install { window: Some(w), .. } if *w == expected))
    );
}

#[test]
fn windows_are_ignored_when_the_policy_says_so() {
    let site = Site {
        name: "ber".into(),
        ..windowed("Europe/Berlin", win(&[], "02:00", "04:00"))
    };
    let mut f = one_site_fleet(site, false);
    let actions = f.step();
    assert_eq!(actions.len(), 6);
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::Install { window: None, .. }))
    );
}

#[test]
fn unknown_site_keeps_its_devices_waiting_and_says_so_once() {
    let mut f = one_site_fleet(site("ber", "UTC"), true);
    f.sites.clear();
    assert!(f.step().is_empty());
    f.tick(60);
    assert!(f.step().is_empty());
    let errors = f
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::SiteError)
        .count();
    assert_eq!(errors, 1);
}

#[test]
fn concurrency_cap_per_site() {
    let now = ts("2026-11-26T12:00:00Z");
    let spec = spec(
        vec![wave(WaveSize::Percent(100), 60, Budget::Count(0))],
        Breach::Pause,
    );
    let mut capped = site("a", "UTC");
    capped.max_concurrent = Some(2);
    let mut f = Fleet::new(
        spec,
        devices(&["a", "b"], &["x"], 5, now),
        vec![capped, site("b", "UTC")],
        now,
    );
    f.behave = |_| Behave::StuckStaged;
    let first = f.step();
    let in_site = |acts: &[Action], s: &str| {
        acts.iter()
            .filter(|a| matches!(a, Action::Install { device, .. } if device.starts_with(s)))
            .count()
    };
    assert_eq!(
        (in_site(&first, "a-"), in_site(&first, "b-")),
        (2, 5),
        "site a capped at 2, b uncapped"
    );
    f.apply(&first);
    f.tick(60);
    assert!(f.step().is_empty(), "staged devices are still updating");
    // One of site a's devices commits: one slot frees up.
    let a_dev = first.iter().find_map(|a| match a {
        Action::Install { device, .. } if device.starts_with("a-") => Some(device.clone()),
        _ => None,
    });
    react(f.dev(&a_dev.unwrap()), NEW, Behave::Good);
    f.tick(60);
    let next = f.step();
    assert_eq!(in_site(&next, "a-"), 1);
}

#[test]
fn devices_busy_with_another_release_count_against_the_cap() {
    let now = ts("2026-11-26T12:00:00Z");
    let spec = spec(
        vec![wave(WaveSize::Percent(100), 60, Budget::Count(0))],
        Breach::Pause,
    );
    let mut capped = site("a", "UTC");
    capped.max_concurrent = Some(2);
    let mut devs = devices(&["a"], &["x"], 4, now);
    devs[0].phase = Phase::Installing;
    devs[0].phase_version = Some("0.9.0".into());
    let mut f = Fleet::new(spec, devs, vec![capped], now);
    assert_eq!(f.step().len(), 1);
}

/// Moves the clock to `when`; online devices report.
fn at(f: &mut Fleet, when: &str) {
    f.tick(ts(when).as_second() - f.now.as_second());
}

#[test]
fn a_device_that_misses_its_window_waits_for_the_next_one() {
    let site = Site {
        name: "ber".into(),
        ..windowed("Europe/Berlin", win(&[], "02:00", "04:00"))
    };
    let mut f = one_site_fleet(site, true);
    at(&mut f, "2026-11-27T01:30:00Z");
    let first = f.step();
    assert_eq!(first.len(), 6);
    f.apply(&first[1..]); // the first device never picks its install up
    let Action::Install { device: sleepy, .. } = first[0].clone() else {
        panic!()
    };
    at(&mut f, "2026-11-27T02:59:59Z");
    assert!(f.step().is_empty(), "window still open");
    at(&mut f, "2026-11-27T03:00:00Z");
    assert!(f.step().is_empty(), "window closed: nothing to issue");
    assert!(
        f.decisions
            .iter()
            .any(|d| d.kind == DecisionKind::Requeued && d.message.contains(&sleepy))
    );
    assert_eq!(
        f.state.status,
        Status::Running,
        "a missed window is not a failure"
    );
    at(&mut f, "2026-11-28T01:00:00Z");
    let again = f.step();
    let next = Window {
        start: ts("2026-11-28T01:00:00Z"),
        end: ts("2026-11-28T03:00:00Z"),
    };
    assert_eq!(
        again,
        vec![Action::Install {
            device: sleepy,
            version: NEW.into(),
            window: Some(next)
        }]
    );
}
