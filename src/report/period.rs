//! The `--since` / `--until` forms: `7d`, `24h`, `90m` before now; a local date `2026-11-01`
//! (its midnight); or an RFC 3339 time.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A period bound that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} {given:?}: {why}; use 7d, 24h, 90m (before now), a date like 2026-11-01, or an RFC 3339 time")]
pub struct PeriodError {
    flag: String,
    given: String,
    why: String,
}

/// Reads one bound of a period given to `flag`, relative to `now` and local to `tz`.
pub fn parse_instant(
    flag: &str,
    given: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<DateTime<Utc>, PeriodError> {
    let err = |why: &str| PeriodError {
        flag: flag.to_string(),
        given: given.to_string(),
        why: why.to_string(),
    };
    let s = given.trim();
    if let Some(unit) = s.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm')) {
        if let Ok(n) = s[..s.len() - 1].parse::<u32>() {
            let per = match unit {
                'd' => 86_400,
                'h' => 3_600,
                _ => 60,
            };
            // Checked: `100000000d` is well formed but lies before any time chrono can hold.
            return chrono::TimeDelta::try_seconds(i64::from(n) * per)
                .and_then(|back| now.checked_sub_signed(back))
                .ok_or_else(|| err("too far back"));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| err("not understood"))?;
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| err("no such time"))?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| err("that midnight does not exist in the time zone"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_instant("--since", s, now, tz).unwrap();
        assert_eq!(at("7d"), now - chrono::Duration::days(7));
        assert_eq!(at("24h"), now - chrono::Duration::hours(24));
        assert_eq!(at("90m"), now - chrono::Duration::minutes(90));
        assert_eq!(
            at("2026-11-01").to_rfc3339(),
            "2026-10-31T16:00:00+00:00",
            "local midnight in Shanghai"
        );
        assert_eq!(
            at("2026-11-01T08:00:00+08:00").to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        let e = parse_instant("--until", "last week", now, tz).unwrap_err();
        assert!(e.to_string().starts_with("--until \"last week\""), "{e}");
    }

    #[test]
    fn too_far_back_is_an_error_not_a_panic() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let now = Utc::now();
        for given in ["100000000d", "4294967295d", "4294967295h"] {
            let e = parse_instant("since", given, now, tz).unwrap_err();
            assert!(e.to_string().contains("too far back"), "{given}: {e}");
        }
        // Large but representable: 246,000 years back, and 8 years in minutes.
        assert!(parse_instant("since", "90000000d", now, tz).is_ok());
        assert!(parse_instant("since", "4294967295m", now, tz).is_ok());
    }
}
