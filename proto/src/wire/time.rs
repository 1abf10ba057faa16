//! The one timestamp form on the wire: RFC 3339 in UTC to the second, `2026-01-31T23:59:07Z`.
//!
//! One fixed form (no offsets, no fractions, no leap second) keeps the schema's pattern and this code in exact
//! agreement, and lets the hub compare and sort timestamps as text. The conversions are the proleptic
//! Gregorian calendar's day counts, done here rather than through a date crate for two functions.

/// Seconds in a day.
const DAY: i64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01, counting from a March-based year so leap days fall at a year's end.
const UNIX_EPOCH_DAYS: i64 = 719_468;
/// Days in 400 Gregorian years, the calendar's full cycle.
const CYCLE_DAYS: i64 = 146_097;

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`; `None` outside the years 0000 to 9999.
pub fn format_timestamp(unix_secs: i64) -> Option<String> {
    let days = unix_secs.div_euclid(DAY);
    let secs = unix_secs.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into Unix seconds; `None` for any other form or an impossible date.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0_i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * DAY + hour * 3600 + minute * 60 + second)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date. Years run March to February here, so February's variable length sits
/// at the end of the year and every other month has a fixed offset (153 days per five months).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let cycle = year.div_euclid(400);
    let year_of_cycle = year - cycle * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    cycle * CYCLE_DAYS + day_of_cycle - UNIX_EPOCH_DAYS
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + UNIX_EPOCH_DAYS;
    let cycle = days.div_euclid(CYCLE_DAYS);
    let day_of_cycle = days - cycle * CYCLE_DAYS;
    // Leap days every 4 years, none every 100, one again every 400 (the last day of the cycle).
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524
        - day_of_cycle / (CYCLE_DAYS - 1))
        / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // Checked with `date -u -d @N +%Y-%m-%dT%H:%M:%SZ`.
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_790_000_000, "2026-09-21T14:13:20Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (-62_167_219_200, "0000-01-01T00:00:00Z"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_timestamp(secs).as_deref(), Some(text), "{secs}");
            assert_eq!(parse_timestamp(text), Some(secs), "{text}");
        }
        assert_eq!(format_timestamp(253_402_300_800), None);
        assert_eq!(format_timestamp(-62_167_219_201), None);
        assert_eq!(format_timestamp(i64::MAX), None);
        assert_eq!(format_timestamp(i64::MIN), None);
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = days_from_civil(1900, 1, 1);
        for days in start..start + CYCLE_DAYS {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=days_in_month(y, m)).contains(&d), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn refuses_other_forms_and_impossible_dates() {
        for text in [
            "2026-01-31T23:59:07+00:00",
            "2026-01-31T23:59:07.5Z",
            "2026-01-31 23:59:07Z",
            "2026-01-31t23:59:07z",
            "2026-1-31T23:59:07Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:60Z",
            "+026-01-01T00:00:00Z",
            "2026-01-01T00:00:0éZ",
            "",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }
}
