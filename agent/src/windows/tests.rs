use super::*;

fn windows(entries: &[&str], zone: &str) -> Windows {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    Windows::parse(&entries, zone).unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn err(entries: &[&str], zone: &str) -> String {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    Windows::parse(&entries, zone).unwrap_err().to_string()
}

#[test]
fn weekday_window_in_winter_time() {
    // Berlin is UTC+1 in January; 2026-01-14 is a Wednesday.
    let w = windows(&["Mon-Fri 02:00-05:00"], "Europe/Berlin");
    assert!(!w.is_open(at("2026-01-14T00:59:00Z")), "01:59 local");
    assert!(w.is_open(at("2026-01-14T01:00:00Z")), "02:00 local opens");
    assert!(w.is_open(at("2026-01-14T03:59:59Z")));
    assert!(
        !w.is_open(at("2026-01-14T04:00:00Z")),
        "05:00 local: the end is not inside"
    );
    assert!(!w.is_open(at("2026-01-17T01:30:00Z")), "Saturday");
    // From Friday morning after the window, the next one is Monday 02:00 local.
    assert_eq!(
        w.next_open(at("2026-01-16T05:00:00Z")),
        Some(at("2026-01-19T01:00:00Z"))
    );
    let now = at("2026-01-14T02:00:00Z");
    assert_eq!(w.next_open(now), Some(now), "open now: now");
}

#[test]
fn summer_time_moves_the_window_in_utc() {
    let w = windows(&["Mon-Fri 02:00-05:00"], "Europe/Berlin");
    // July: UTC+2.
    assert!(w.is_open(at("2026-07-15T00:00:00Z")));
    assert!(!w.is_open(at("2026-07-15T03:00:00Z")));
}

#[test]
fn window_crossing_midnight() {
    let w = windows(&["Fri 22:00-02:00"], "UTC");
    // 2026-01-16 is a Friday.
    assert!(!w.is_open(at("2026-01-16T21:59:00Z")));
    assert!(w.is_open(at("2026-01-16T23:00:00Z")));
    assert!(
        w.is_open(at("2026-01-17T01:59:00Z")),
        "Saturday early belongs to Friday's window"
    );
    assert!(!w.is_open(at("2026-01-17T02:00:00Z")));
    assert!(!w.is_open(at("2026-01-15T23:00:00Z")), "Thursday night");
    assert!(!w.is_open(at("2026-01-17T23:00:00Z")), "Saturday night");
    assert!(
        !w.is_open(at("2026-01-16T01:00:00Z")),
        "Friday early belongs to Thursday"
    );
    assert_eq!(
        w.next_open(at("2026-01-17T02:00:00Z")),
        Some(at("2026-01-23T22:00:00Z"))
    );
}

#[test]
fn whole_days_with_24_00() {
    let w = windows(&["Sat,Sun 00:00-24:00"], "UTC");
    assert!(w.is_open(at("2026-01-17T00:00:00Z")), "Saturday 00:00");
    assert!(w.is_open(at("2026-01-18T23:59:59Z")), "Sunday 23:59:59");
    assert!(!w.is_open(at("2026-01-19T00:00:00Z")), "Monday 00:00");
    assert!(!w.is_open(at("2026-01-16T23:59:59Z")), "Friday");
    assert_eq!(
        w.next_open(at("2026-01-16T12:00:00Z")),
        Some(at("2026-01-17T00:00:00Z"))
    );
    let evenings = windows(&["Mon 18:00-24:00"], "UTC");
    assert!(evenings.is_open(at("2026-01-19T23:30:00Z")));
    assert!(!evenings.is_open(at("2026-01-20T00:00:00Z")));
}

#[test]
fn several_entries_and_every_day() {
    let w = windows(
        &["Mon-Fri 02:00-05:00", "Sat,Sun 00:00-24:00"],
        "Europe/Berlin",
    );
    assert!(w.is_open(at("2026-01-17T15:00:00Z")), "Saturday afternoon");
    assert!(!w.is_open(at("2026-01-16T15:00:00Z")), "Friday afternoon");
    let daily = windows(&["03:00-04:00"], "UTC");
    for day in 12..19 {
        assert!(
            daily.is_open(at(&format!("2026-01-{day}T03:30:00Z"))),
            "day {day}"
        );
    }
    assert_eq!(daily.to_string(), "03:00-04:00 (UTC)");
}

// Europe/Berlin 2026: clocks go from 02:00 CET to 03:00 CEST on Sunday 29 March (01:00 UTC), and from 03:00
// CEST back to 02:00 CET on Sunday 25 October (01:00 UTC).

#[test]
fn spring_forward_window_inside_the_skipped_hour_opens_an_hour_later() {
    let w = windows(&["Sun 02:15-02:45"], "Europe/Berlin");
    // 02:15 does not exist that night: it is read as 03:15 CEST = 01:15 UTC, until 03:45 CEST.
    assert_eq!(
        w.next_open(at("2026-03-28T12:00:00Z")),
        Some(at("2026-03-29T01:15:00Z"))
    );
    assert!(w.is_open(at("2026-03-29T01:15:00Z")));
    assert!(w.is_open(at("2026-03-29T01:44:00Z")));
    assert!(!w.is_open(at("2026-03-29T01:45:00Z")));
    assert!(
        !w.is_open(at("2026-03-29T00:50:00Z")),
        "01:50 CET, before the jump"
    );
    // The week after, it is an ordinary window again (02:15 CEST = 00:15 UTC).
    assert_eq!(
        w.next_open(at("2026-03-29T02:00:00Z")),
        Some(at("2026-04-05T00:15:00Z"))
    );
}

#[test]
fn spring_forward_window_that_is_the_skipped_hour_has_no_time_that_day() {
    let w = windows(&["Sun 02:00-03:00"], "Europe/Berlin");
    for minute in (0..24 * 60).step_by(10) {
        let t = at("2026-03-28T23:00:00Z") + jiff::Span::new().minutes(minute);
        assert!(!w.is_open(t), "open at {t}");
    }
    assert_eq!(
        w.next_open(at("2026-03-28T12:00:00Z")),
        Some(at("2026-04-05T00:00:00Z"))
    );
    // A window around the jump is two real hours long: 01:00 CET to 04:00 CEST.
    let around = windows(&["Sun 01:00-04:00"], "Europe/Berlin");
    assert!(around.is_open(at("2026-03-29T00:00:00Z")));
    assert!(around.is_open(at("2026-03-29T01:59:00Z")));
    assert!(!around.is_open(at("2026-03-29T02:00:00Z")));
    // A daily window starting in the gap starts at 03:00 CEST.
    let daily = windows(&["02:00-05:00"], "Europe/Berlin");
    assert_eq!(
        daily.next_open(at("2026-03-28T05:00:00Z")),
        Some(at("2026-03-29T01:00:00Z"))
    );
}

#[test]
fn fall_back_window_over_the_repeated_hour_covers_both_passes() {
    let w = windows(&["Sun 02:00-03:00"], "Europe/Berlin");
    // From the first 02:00 (CEST, 00:00 UTC) to 03:00 CET (02:00 UTC): two real hours.
    assert!(!w.is_open(at("2026-10-24T23:59:00Z")));
    assert!(w.is_open(at("2026-10-25T00:00:00Z")));
    assert!(
        w.is_open(at("2026-10-25T00:30:00Z")),
        "02:30 CEST, first pass"
    );
    assert!(
        w.is_open(at("2026-10-25T01:30:00Z")),
        "02:30 CET, second pass"
    );
    assert!(!w.is_open(at("2026-10-25T02:00:00Z")));
    // A window inside the repeated hour opens on its first pass only.
    let inside = windows(&["Sun 02:30-02:45"], "Europe/Berlin");
    assert!(inside.is_open(at("2026-10-25T00:35:00Z")));
    assert!(!inside.is_open(at("2026-10-25T01:35:00Z")));
    assert_eq!(
        inside.next_open(at("2026-10-25T00:50:00Z")),
        Some(at("2026-11-01T01:30:00Z")),
        "next week, in winter time"
    );
}

#[test]
fn day_lists_ranges_and_wrapping() {
    let w = windows(&["fri-MON 12:00-13:00"], "UTC");
    // 2026-01-16 Fri, 17 Sat, 18 Sun, 19 Mon, 20 Tue.
    for (day, open) in [
        (15, false),
        (16, true),
        (17, true),
        (18, true),
        (19, true),
        (20, false),
    ] {
        assert_eq!(
            w.is_open(at(&format!("2026-01-{day}T12:30:00Z"))),
            open,
            "day {day}"
        );
    }
    let w = windows(&["Mon,Wed-Thu 12:00-13:00"], "UTC");
    for (day, open) in [(19, true), (20, false), (21, true), (22, true), (23, false)] {
        assert_eq!(
            w.is_open(at(&format!("2026-01-{day}T12:30:00Z"))),
            open,
            "day {day}"
        );
    }
}

#[test]
fn bad_entries_are_named_with_the_fix() {
    for (entry, problem) in [
        ("Mon-Fri 2:00-05:00", "\"2:00\" is not a time HH:MM"),
        ("Funday 02:00-03:00", "\"Funday\" is not a day; use Mon"),
        ("Mon 05:00-05:00", "for a whole day write 00:00-24:00"),
        ("Mon 24:00-02:00", "cannot start at 24:00"),
        ("Mon 02:00", "not a time range"),
        ("Mon Tue 02:00-03:00", "expected optional days"),
        ("Mon 02:00-25:00", "\"25:00\" is not a time"),
        ("Mon 02:60-03:00", "\"02:60\" is not a time"),
        ("", "expected optional days"),
    ] {
        let e = err(&["Sat 01:00-02:00", entry], "UTC");
        assert!(e.contains(&format!("window {entry:?}: ")), "{e}");
        assert!(e.contains(problem), "{entry}: {e}");
        assert!(
            e.contains("\"Mon-Fri 02:00-05:00\""),
            "the fix is shown: {e}"
        );
    }
    let e = err(&["Mon 02:00-03:00"], "Europe/Berlln");
    assert!(
        e.contains("timezone \"Europe/Berlln\"") && e.contains("\"Europe/Berlin\""),
        "{e}"
    );
    let e = err(&[], "UTC");
    assert!(e.contains("windows is empty"), "{e}");
}

#[test]
fn zones_come_from_the_bundled_database() {
    // Zones the bundled database has, whatever the host has in /usr/share/zoneinfo.
    for zone in [
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "UTC",
    ] {
        assert!(
            Windows::parse(&["00:00-01:00".into()], zone).is_ok(),
            "{zone}"
        );
    }
    // Half-hour offset: Kolkata is UTC+5:30, so 00:00-01:00 local is 18:30-19:30 UTC the day before.
    let w = windows(&["00:00-01:00"], "Asia/Kolkata");
    assert!(w.is_open(at("2026-01-14T18:45:00Z")));
    assert!(!w.is_open(at("2026-01-14T19:30:00Z")));
}
