//! Arming schedules (布防计划): when a zone's rule is in force.
//!
//! Each entry is `[DAYS] [HH:MM-HH:MM]`:
//! - DAYS: `daily`, or a comma list of weekdays and weekday ranges (`mon-fri`, `sat,sun`, `mon,wed,fri`);
//!   omitted = every day.
//! - The time range is local to the camera's time zone; `22:00-06:00` runs overnight and belongs to
//!   the day it starts on; `24:00` is allowed as an end; omitted = the whole day.
//!
//! A zone is armed when any entry matches; an empty schedule is always armed.

use chrono::{Datelike, NaiveDateTime, NaiveTime, Timelike, Weekday};

/// A bad schedule string, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad schedule {entry:?}: {why}; expected e.g. \"mon-fri 07:00-21:00\", \"sat,sun\" or \"daily 22:00-06:00\"")]
pub struct ScheduleError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Bit i set = weekday i (Monday = 0) is included.
    days: u8,
    /// Minutes since midnight, start inclusive.
    start: u32,
    /// Minutes since midnight, end exclusive; `end <= start` means overnight.
    end: u32,
}

/// A parsed schedule: a union of entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    entries: Vec<Entry>,
}

const ALL_DAYS: u8 = 0b111_1111;

impl Schedule {
    /// Parses all entries; an empty list means always armed.
    pub fn parse(entries: &[String]) -> Result<Self, ScheduleError> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Checks one entry's syntax.
    pub fn parse_entry(entry: &str) -> Result<(), ScheduleError> {
        parse_entry(entry).map(|_| ())
    }

    /// Whether the schedule is armed at this local time.
    pub fn is_active(&self, local: NaiveDateTime) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday() as u8;
        let yesterday = local.weekday().pred().num_days_from_monday() as u8;
        self.entries.iter().any(|e| {
            let on = |d: u8| e.days & (1 << d) != 0;
            if e.start < e.end {
                on(today) && minute >= e.start && minute < e.end
            } else {
                // Overnight: the evening part belongs to today, the morning part to yesterday's entry.
                (on(today) && minute >= e.start) || (on(yesterday) && minute < e.end)
            }
        })
    }
}

fn parse_entry(raw: &str) -> Result<Entry, ScheduleError> {
    let err = |why: String| ScheduleError {
        entry: raw.to_string(),
        why,
    };
    let mut days = None;
    let mut range = None;
    for token in raw.split_whitespace() {
        if token.contains(':') {
            if range.is_some() {
                return Err(err("more than one time range".into()));
            }
            range = Some(parse_range(token).map_err(err)?);
        } else {
            if days.is_some() {
                return Err(err(format!("unexpected {token:?} after the days")));
            }
            days = Some(parse_days(token).map_err(err)?);
        }
    }
    if days.is_none() && range.is_none() {
        return Err(err("empty entry".into()));
    }
    let (start, end) = range.unwrap_or((0, 24 * 60));
    Ok(Entry {
        days: days.unwrap_or(ALL_DAYS),
        start,
        end,
    })
}

fn parse_days(token: &str) -> Result<u8, String> {
    let token = token.to_ascii_lowercase();
    if token == "daily" || token == "everyday" {
        return Ok(ALL_DAYS);
    }
    let mut mask = 0u8;
    for part in token.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (weekday(a)?, weekday(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d.num_days_from_monday();
                    if d == b {
                        break;
                    }
                    d = d.succ();
                }
            }
            None => mask |= 1 << weekday(part)?.num_days_from_monday(),
        }
    }
    Ok(mask)
}

fn weekday(s: &str) -> Result<Weekday, String> {
    Ok(match s {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => {
            return Err(format!(
                "unknown day {s:?} (use mon tue wed thu fri sat sun, ranges like mon-fri, or daily)"
            ))
        }
    })
}

fn parse_range(token: &str) -> Result<(u32, u32), String> {
    let (a, b) = token
        .split_once('-')
        .ok_or_else(|| format!("time range {token:?} needs a start and an end, HH:MM-HH:MM"))?;
    let (start, end) = (minutes(a)?, minutes(b)?);
    if start >= 24 * 60 {
        return Err(format!("{a:?} is not a start time"));
    }
    if start == end {
        return Err(format!("time range {token:?} is empty"));
    }
    Ok((start, end))
}

fn minutes(s: &str) -> Result<u32, String> {
    if s == "24:00" {
        return Ok(24 * 60);
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .map(|t| t.hour() * 60 + t.minute())
        .map_err(|_| format!("{s:?} is not a time of day HH:MM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn sched(entries: &[&str]) -> Schedule {
        Schedule::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn evaluates_table() {
        // 2026-11-23 is a Monday.
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "2026-11-23 03:00", true),
            (&["mon-fri 07:00-21:00"], "2026-11-23 07:00", true),
            (&["mon-fri 07:00-21:00"], "2026-11-23 21:00", false),
            (&["mon-fri 07:00-21:00"], "2026-11-23 06:59", false),
            (&["mon-fri 07:00-21:00"], "2026-11-28 12:00", false),
            (&["sat,sun"], "2026-11-29 23:59", true),
            (&["sat,sun"], "2026-11-30 00:00", false),
            (&["fri 22:00-06:00"], "2026-11-27 23:30", true),
            (&["fri 22:00-06:00"], "2026-11-28 05:59", true),
            (&["fri 22:00-06:00"], "2026-11-28 06:00", false),
            (&["fri 22:00-06:00"], "2026-11-27 05:00", false),
            (&["daily 21:00-24:00"], "2026-11-25 23:59", true),
            (&["sun-tue 10:00-11:00"], "2026-11-24 10:30", true),
            (&["sun-tue 10:00-11:00"], "2026-11-25 10:30", false),
        ];
        for (entries, time, want) in cases {
            assert_eq!(
                sched(entries).is_active(at(time)),
                *want,
                "{entries:?} at {time}"
            );
        }
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "",
            "monday",
            "mon-fri 7-21",
            "25:00-26:00",
            "mon 08:00-08:00",
            "mon tue",
        ] {
            assert!(Schedule::parse_entry(bad).is_err(), "{bad:?} accepted");
        }
    }
}
