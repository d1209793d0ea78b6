//! Instants as the workflow sees them: milliseconds since the Unix epoch, handed in by the caller.
//!
//! The workflow never reads a clock. Every instant it reasons about arrives as an input (the `now`
//! of `decide`, the `at` of a recorded event), so a replay with the recorded instants decides
//! exactly what the original run decided.
//!
//! On the wire an instant is RFC 3339 in UTC with millisecond precision
//! (`2026-11-21T23:38:36.123Z`): one spelling per instant, so hashes over encoded events are stable.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

const MS_PER_SEC: u64 = 1_000;
const SECS_PER_DAY: u64 = 86_400;
/// Instants past the year 9999 have no four-digit RFC 3339 spelling.
const YEAR_MAX: i64 = 9_999;

impl Timestamp {
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs * MS_PER_SEC)
    }

    pub const fn as_ms(self) -> u64 {
        self.0
    }

    pub const fn plus_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    pub const fn plus_secs(self, secs: u64) -> Self {
        self.plus_ms(secs.saturating_mul(MS_PER_SEC))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub const fn ms_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), keeping milliseconds.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        parse(text).ok_or_else(|| format!("`{text}` is not an RFC 3339 time such as 2026-11-21T12:00:00Z"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / MS_PER_SEC;
        let (year, month, day) = civil_from_days((secs / SECS_PER_DAY) as i64);
        let of_day = secs % SECS_PER_DAY;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            self.0 % MS_PER_SEC
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

fn parse(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])? as i64;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0u64;
    if let Some((&b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, c) in fraction[..len.min(3)].iter().enumerate() {
            millis += u64::from(c - b'0') * 10u64.pow(2 - i as u32);
        }
        rest = &fraction[len..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])? as i64, digits(&[*m1, *m2])? as i64);
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = h * 3600 + m * 60;
            if *sign == b'+' {
                magnitude
            } else {
                -magnitude
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * SECS_PER_DAY as i64 + (hour * 3600 + minute * 60 + second) as i64;
    let utc = local - offset_secs;
    if utc < 0 {
        return None;
    }
    Some(Timestamp(utc as u64 * MS_PER_SEC + millis))
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]; years past 9999 are clamped to keep four digits.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year.min(YEAR_MAX), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = Timestamp(1_795_477_116_123);
        let text = t.to_string();
        assert_eq!(text, "2026-11-23T23:38:36.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Ok(t));
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let utc = Timestamp::parse_rfc3339("2024-02-29T12:00:00Z").unwrap();
        assert_eq!(Timestamp::parse_rfc3339("2024-02-29T13:30:00+01:30").unwrap(), utc);
        assert_eq!(Timestamp::parse_rfc3339("2024-02-29T12:00:00.5Z").unwrap(), utc.plus_ms(500));
        assert_eq!(Timestamp::parse_rfc3339("2024-02-29T12:00:00.123456Z").unwrap(), utc.plus_ms(123));
    }

    #[test]
    fn rejects_impossible_dates() {
        for bad in ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01 00:00:00Z", "yesterday", "2024-01-01T24:00:00Z"] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad} parsed");
        }
    }
}
