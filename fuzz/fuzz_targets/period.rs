//! `--since` / `--until` and `?since=` forms, relative to a fixed now and to a time zone chosen
//! by the input.

#![no_main]

use libfuzzer_sys::fuzz_target;

const ZONES: [chrono_tz::Tz; 4] = [
    chrono_tz::Asia::Shanghai,
    chrono_tz::UTC,
    chrono_tz::Pacific::Kiritimati,
    chrono_tz::America::St_Johns,
];

fuzz_target!(|data: &[u8]| {
    let Some((&zone, rest)) = data.split_first() else {
        return;
    };
    let tz = ZONES[zone as usize % ZONES.len()];
    let Some(now) = chrono::DateTime::from_timestamp(1_796_000_000, 0) else {
        return;
    };
    let given = String::from_utf8_lossy(rest);
    let _ = streetwatch::report::parse_instant("since", &given, now, tz);
});
