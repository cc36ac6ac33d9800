//! UWS timestamps: ISO-8601 in UTC with milliseconds and `Z` (UWS 1.1 §2.2.1 and DALI 1.1
//! §3.3.3), written and read without a calendar crate.
//!
//! Times are kept as microseconds since the Unix epoch (`u64`): finer than what is written, so
//! jobs created within the same millisecond still sort in creation order.

use std::time::{SystemTime, UNIX_EPOCH};

const MICROS_PER_DAY: u64 = 86_400_000_000;

/// Now, in microseconds since 1970-01-01T00:00:00Z (0 if the clock is before the epoch).
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// `micros` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (sub-millisecond digits are dropped, not rounded,
/// so a written time never lies after the instant it stands for).
pub(crate) fn format_iso(micros: u64) -> String {
    let days = micros / MICROS_PER_DAY;
    let in_day = micros % MICROS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let ms = in_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Microseconds since the epoch of an ISO-8601 time: `YYYY-MM-DD`, optionally followed by
/// `THH:MM[:SS[.fraction]]` and a zone (`Z`, `±HH:MM` or `±HHMM`; none means UTC, as DALI 1.1
/// §3.3.3 asks). `None` when it is malformed, or before 1970.
pub(crate) fn parse_iso(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let days = parse_date(date)?;
    let (in_day, offset) = match time {
        Some(t) => parse_time(t)?,
        None => (0, 0),
    };
    let utc = i128::from(days) * i128::from(MICROS_PER_DAY) + i128::from(in_day) - offset;
    u64::try_from(utc).ok()
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(date: &str) -> Option<u64> {
    let mut fields = date.split('-');
    let (y, m, d) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (year, month, day) = (digits(y)?, digits(m)?, digits(d)?);
    if year < 1970 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// (microseconds into the day, zone offset in microseconds east of UTC) of
/// `HH:MM[:SS[.fraction]][zone]`.
fn parse_time(time: &str) -> Option<(u64, i128)> {
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        (&time[..i], parse_offset(&time[i..])?)
    } else {
        (time, 0)
    };
    let mut fields = clock.splitn(3, ':');
    let (h, m) = (fields.next()?, fields.next()?);
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (hour, minute) = (digits(h)?, digits(m)?);
    let (second, micros) = match fields.next() {
        None => (0, 0),
        Some(s) => {
            let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
            if whole.len() != 2 || (s.contains('.') && fraction.is_empty()) {
                return None;
            }
            (digits(whole)?, fraction_micros(fraction)?)
        }
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let in_day =
        ((u64::from(hour) * 60 + u64::from(minute)) * 60 + u64::from(second)) * 1_000_000 + micros;
    Some((in_day, offset))
}

/// `±HH:MM` or `±HHMM` in microseconds east of UTC.
fn parse_offset(zone: &str) -> Option<i128> {
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let rest = zone.get(1..)?.replace(':', "");
    if rest.len() != 4 {
        return None;
    }
    let (hours, minutes) = (digits(&rest[..2])?, digits(&rest[2..])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * i128::from(hours * 60 + minutes) * 60_000_000)
}

/// The first six digits of a decimal fraction of a second, in microseconds.
fn fraction_micros(fraction: &str) -> Option<u64> {
    let mut micros = 0;
    for (i, c) in fraction.chars().enumerate() {
        let digit = u64::from(c.to_digit(10)?);
        if i < 6 {
            micros += digit * 10u64.pow(5 - i as u32);
        }
    }
    Some(micros)
}

/// An all-ASCII-digit field as a number.
fn digits(field: &str) -> Option<u32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date on or after it (H. Hinnant's
/// `days_from_civil`, restricted to years from 1970).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    // Counting years from March puts the leap day last, so month lengths repeat in a 5-month
    // pattern that `(153 m + 2) / 5` reproduces.
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let era = y / 400;
    let year_of_era = y - era * 400;
    let m = u64::from(month);
    let day_of_year = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + u64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// (year, month, day) of a count of days since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings from Python's `datetime` (epoch + timedelta(milliseconds=…)).
    const PYTHON: [(u64, &str); 8] = [
        (0, "1970-01-01T00:00:00.000Z"),
        (951_782_400_123, "2000-02-29T00:00:00.123Z"),
        (951_868_799_999, "2000-02-29T23:59:59.999Z"),
        (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        (1_700_000_000_000, "2023-11-14T22:13:20.000Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (68_169_600_000, "1972-02-29T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
    ];

    #[test]
    fn formats_and_parses_like_python_datetime() {
        for (ms, text) in PYTHON {
            assert_eq!(format_iso(ms * 1000 + 999), text, "{ms} ms");
            assert_eq!(parse_iso(text), Some(ms * 1000), "{text}");
        }
    }

    #[test]
    fn every_day_for_three_centuries_round_trips() {
        for day in 0..(300 * 366) {
            let micros = day * MICROS_PER_DAY + 12_345_678_000;
            assert_eq!(parse_iso(&format_iso(micros)), Some(micros), "day {day}");
        }
    }

    #[test]
    fn zones_and_short_forms() {
        let noon = parse_iso("2024-03-01T12:00:00Z");
        assert_eq!(parse_iso("2024-03-01T12:00:00"), noon);
        assert_eq!(parse_iso("2024-03-01T12:00"), noon);
        assert_eq!(parse_iso("2024-03-01T13:30:00+01:30"), noon);
        assert_eq!(parse_iso("2024-03-01T07:00:00-0500"), noon);
        assert_eq!(
            parse_iso("2024-03-01T12:00:00.5Z").map(|t| t - noon.unwrap_or(0)),
            Some(500_000)
        );
        assert_eq!(
            parse_iso("2024-03-01"),
            parse_iso("2024-03-01T00:00:00.000Z")
        );
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "1969-12-31T23:59:59Z",
            "2024-03-01T24:00:00Z",
            "2024-03-01T12:60",
            "2024-03-01T12:00:00.Z",
            "2024-3-1",
            "2024-03-01T12:00:00+1",
            "2024-03-01T1200",
            "+2024-03-01",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad:?}");
        }
    }
}
