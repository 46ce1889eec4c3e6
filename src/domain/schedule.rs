//! Arming schedules (布防计划): when a zone's rule is in force.
//!
//! Each entry is `[DAYS] [HH:MM-HH:MM]`, or an exception `except DATE[..DATE]`:
//! - DAYS: `daily`; a comma list of weekdays and weekday ranges (`mon-fri`, `sat,sun`,
//!   `mon,wed,fri`); `days 1,4,7,11-14` for days of the month (market days, 逢集);
//!   `holidays` for the dates of the node's holiday list; `workdays` for Monday to Friday that
//!   are not holidays. Omitted = every day.
//! - The time range is local to the camera's time zone; `22:00-06:00` runs overnight and belongs
//!   to the day it starts on; `24:00` is allowed as an end; omitted = the whole day.
//! - `except 2026-10-01..2026-10-07` (or one date) disarms the zone on those days, whatever the
//!   other entries say (a festival, road works, an agreed market).
//!
//! A zone is armed when any entry matches (an empty list of entries: always) and the day the
//! matching period belongs to is not an exception.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};

/// A bad schedule string, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad schedule {entry:?}: {why}; expected e.g. \"mon-fri 07:00-21:00\", \"sat,sun\", \"daily 22:00-06:00\", \"days 1,4,7 06:00-12:00\", \"holidays\" or \"except 2026-10-01..2026-10-07\"")]
pub struct ScheduleError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
}

/// Which days an entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// Bit i set = weekday i (Monday = 0).
    Week(u8),
    /// Bit d set = day d of the month (1..=31).
    Month(u32),
    /// Dates of the holiday list.
    Holidays,
    /// Monday to Friday, not holidays.
    Workdays,
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    days: Days,
    /// Minutes since midnight, start inclusive.
    start: u32,
    /// Minutes since midnight, end exclusive; `end <= start` means overnight.
    end: u32,
}

/// Inclusive date ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DateList(Vec<(NaiveDate, NaiveDate)>);

impl DateList {
    /// Parses `2026-10-01` or `2026-10-01..2026-10-07` items.
    pub fn parse(items: &[String]) -> Result<Self, ScheduleError> {
        items
            .iter()
            .map(|item| {
                parse_dates(item).map_err(|why| ScheduleError {
                    entry: item.clone(),
                    why,
                })
            })
            .collect::<Result<_, _>>()
            .map(DateList)
    }

    /// Whether `day` is in the list.
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.0.iter().any(|(a, b)| day >= *a && day <= *b)
    }
}

/// A parsed schedule: a union of entries, minus exception days.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    entries: Vec<Entry>,
    except: DateList,
    holidays: DateList,
}

const ALL_DAYS: u8 = 0b111_1111;

impl Schedule {
    /// Parses all entries against the node's holiday list; no entries means always armed.
    pub fn parse(entries: &[String], holidays: &DateList) -> Result<Self, ScheduleError> {
        let mut s = Schedule {
            holidays: holidays.clone(),
            ..Default::default()
        };
        for e in entries {
            match parse_item(e)? {
                Item::Arm(entry) => s.entries.push(entry),
                Item::Except(a, b) => s.except.0.push((a, b)),
            }
        }
        Ok(s)
    }

    /// Checks one entry's syntax.
    pub fn parse_entry(entry: &str) -> Result<(), ScheduleError> {
        parse_item(entry).map(|_| ())
    }

    /// Whether the schedule is armed at this local time.
    pub fn is_active(&self, local: NaiveDateTime) -> bool {
        let today = local.date();
        let Some(yesterday) = today.pred_opt() else {
            return false;
        };
        let minute = local.hour() * 60 + local.minute();
        let open = |day: NaiveDate| !self.except.contains(day);
        if self.entries.is_empty() {
            return open(today);
        }
        self.entries.iter().any(|e| {
            if e.start < e.end {
                self.covers(&e.days, today) && minute >= e.start && minute < e.end && open(today)
            } else {
                // Overnight: the evening part belongs to today, the morning part to yesterday.
                (self.covers(&e.days, today) && minute >= e.start && open(today))
                    || (self.covers(&e.days, yesterday) && minute < e.end && open(yesterday))
            }
        })
    }

    fn covers(&self, days: &Days, day: NaiveDate) -> bool {
        match days {
            Days::Week(mask) => mask & (1 << day.weekday().num_days_from_monday()) != 0,
            Days::Month(mask) => mask & (1 << day.day()) != 0,
            Days::Holidays => self.holidays.contains(day),
            Days::Workdays => {
                day.weekday().num_days_from_monday() < 5 && !self.holidays.contains(day)
            }
        }
    }
}

enum Item {
    Arm(Entry),
    Except(NaiveDate, NaiveDate),
}

fn parse_item(raw: &str) -> Result<Item, ScheduleError> {
    let err = |why: String| ScheduleError {
        entry: raw.to_string(),
        why,
    };
    let mut tokens = raw.split_whitespace().peekable();
    if tokens
        .peek()
        .is_some_and(|t| t.eq_ignore_ascii_case("except"))
    {
        tokens.next();
        let dates = tokens
            .next()
            .ok_or_else(|| err("`except` needs a date or a date range".into()))?;
        if tokens.next().is_some() {
            return Err(err(
                "`except` takes one date or range (use one entry per exception)".into(),
            ));
        }
        let (a, b) = parse_dates(dates).map_err(err)?;
        return Ok(Item::Except(a, b));
    }
    let mut days = None;
    let mut range = None;
    while let Some(token) = tokens.next() {
        if token.contains(':') {
            if range.is_some() {
                return Err(err("more than one time range".into()));
            }
            range = Some(parse_range(token).map_err(err)?);
            continue;
        }
        if days.is_some() || range.is_some() {
            return Err(err(format!(
                "unexpected {token:?}: the days come first, then one time range"
            )));
        }
        let lower = token.to_ascii_lowercase();
        days = Some(match lower.as_str() {
            "days" => {
                let list = tokens
                    .next()
                    .ok_or_else(|| err("`days` needs a list like 1,4,7 or 1-10".into()))?;
                Days::Month(parse_month_days(list).map_err(err)?)
            }
            "holidays" => Days::Holidays,
            "workdays" => Days::Workdays,
            _ => Days::Week(parse_weekdays(&lower).map_err(err)?),
        });
    }
    if days.is_none() && range.is_none() {
        return Err(err("empty entry".into()));
    }
    let (start, end) = range.unwrap_or((0, 24 * 60));
    Ok(Item::Arm(Entry {
        days: days.unwrap_or(Days::Week(ALL_DAYS)),
        start,
        end,
    }))
}

fn parse_weekdays(token: &str) -> Result<u8, String> {
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

fn parse_month_days(list: &str) -> Result<u32, String> {
    let day = |s: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(d) if (1..=31).contains(&d) => Ok(d),
            _ => Err(format!("{s:?} is not a day of the month (1 to 31)")),
        }
    };
    let mut mask = 0u32;
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a > b {
                    return Err(format!("day range {part:?} runs backwards"));
                }
                (a..=b).for_each(|d| mask |= 1 << d);
            }
            None => mask |= 1 << day(part)?,
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
                "unknown day {s:?} (use mon tue wed thu fri sat sun, ranges like mon-fri, daily, days 1,4,7, holidays or workdays)"
            ))
        }
    })
}

fn parse_dates(s: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let date = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| format!("{d:?} is not a date YYYY-MM-DD"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (date(a)?, date(b)?);
            if a > b {
                return Err(format!("date range {s:?} runs backwards"));
            }
            Ok((a, b))
        }
        None => date(s).map(|d| (d, d)),
    }
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

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn sched(entries: &[&str]) -> Schedule {
        let holidays =
            DateList::parse(&strings(&["2026-10-01..2026-10-07", "2027-01-01"])).unwrap();
        Schedule::parse(&strings(entries), &holidays).unwrap()
    }

    #[test]
    fn evaluates_table() {
        // 2026-11-23 is a Monday; 2026-10-01 (a Thursday) to 10-07 are holidays.
        let cases: &[(&[&str], &str, bool)] = &[
            (&[], "2026-11-23 03:00", true),
            (&["mon-fri 07:00-21:00"], "2026-11-23 07:00", true),
            (&["mon-fri 07:00-21:00"], "2026-11-23 21:00", false),
            (&["mon-fri 07:00-21:00"], "2026-11-23 06:59", false),
            (&["mon-fri 07:00-21:00"], "2026-11-28 12:00", false),
            (&["sat,sun"], "2026-11-29 23:59", true),
            (&["sat,sun"], "2026-11-30 00:00", false),
            // Overnight ranges belong to the day they start on, across midnight and month ends.
            (&["fri 22:00-06:00"], "2026-11-27 23:30", true),
            (&["fri 22:00-06:00"], "2026-11-28 05:59", true),
            (&["fri 22:00-06:00"], "2026-11-28 06:00", false),
            (&["fri 22:00-06:00"], "2026-11-27 05:00", false),
            (&["daily 21:00-24:00"], "2026-11-25 23:59", true),
            (&["daily 21:00-24:00"], "2026-11-26 00:00", false),
            (&["daily 22:00-02:00"], "2026-12-01 01:00", true),
            (&["sun-tue 10:00-11:00"], "2026-11-24 10:30", true),
            (&["sun-tue 10:00-11:00"], "2026-11-25 10:30", false),
            // Market days (逢集): days of the month ending in 1, 4, 7.
            (
                &["days 1,4,7,11,14,17,21,24,27 06:00-12:00"],
                "2026-11-24 08:00",
                true,
            ),
            (
                &["days 1,4,7,11,14,17,21,24,27 06:00-12:00"],
                "2026-11-25 08:00",
                false,
            ),
            (
                &["days 1,4,7,11,14,17,21,24,27 06:00-12:00"],
                "2026-11-24 12:00",
                false,
            ),
            (&["days 28-31"], "2026-11-30 12:00", true),
            (&["days 30 22:00-02:00"], "2026-12-01 01:00", true),
            (&["days 31"], "2026-11-30 12:00", false),
            // Holidays and workdays.
            (&["holidays 09:00-21:00"], "2026-10-03 10:00", true),
            (&["holidays 09:00-21:00"], "2026-10-08 10:00", false),
            (&["workdays 07:00-19:00"], "2026-10-05 10:00", false),
            (&["workdays 07:00-19:00"], "2026-10-08 10:00", true),
            (&["workdays 07:00-19:00"], "2026-10-10 10:00", false),
            // Exceptions win, on the day the period starts.
            (&["daily", "except 2026-11-23"], "2026-11-23 12:00", false),
            (&["daily", "except 2026-11-23"], "2026-11-24 00:30", true),
            (
                &["except 2026-11-20..2026-11-23"],
                "2026-11-22 12:00",
                false,
            ),
            (&["except 2026-11-20..2026-11-23"], "2026-11-24 12:00", true),
            (
                &["daily 22:00-06:00", "except 2026-11-23"],
                "2026-11-24 03:00",
                false,
            ),
            (
                &["daily 22:00-06:00", "except 2026-11-23"],
                "2026-11-23 03:00",
                true,
            ),
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
            "mon-fry 07:00-21:00",
            "mon-fri 7-21",
            "25:00-26:00",
            "daily 25:00-26:00",
            "mon 08:00-08:00",
            "mon tue",
            "days",
            "days 0,32",
            "days 10-3",
            "07:00-09:00 mon",
            "except",
            "except 2026-13-01",
            "except 2026-10-07..2026-10-01",
            "except 2026-10-01 2026-10-02",
        ] {
            assert!(Schedule::parse_entry(bad).is_err(), "{bad:?} accepted");
        }
        assert!(DateList::parse(&strings(&["2026-02-30"])).is_err());
    }
}
