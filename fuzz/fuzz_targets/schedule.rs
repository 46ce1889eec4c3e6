//! Zone schedule lines and holiday lists, parsed, then evaluated at a time also taken from the
//! input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streetwatch::domain::schedule::{DateList, Schedule};

fuzz_target!(|data: &[u8]| {
    // A time first (8 bytes), then lines; a line starting with "!" is a holiday entry.
    if data.len() < 8 {
        return;
    }
    let (when, rest) = data.split_at(8);
    let secs = i64::from_le_bytes(when.try_into().unwrap_or_default()) % (400 * 366 * 86_400);
    let Some(when) = chrono::DateTime::from_timestamp(secs, 0) else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (holidays, lines): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('!'));
    let holidays: Vec<String> = holidays.iter().map(|l| l[1..].to_string()).collect();
    let lines: Vec<String> = lines.into_iter().map(String::from).collect();
    let Ok(holidays) = DateList::parse(&holidays) else {
        return;
    };
    let _ = holidays.contains(when.date_naive());
    for l in &lines {
        let _ = Schedule::parse_entry(l);
    }
    if let Ok(s) = Schedule::parse(&lines, &holidays) {
        let _ = s.is_active(when.naive_utc());
    }
});
