//! Reports from the ledger for the people who rank the streets: counts, dwell, relapses,
//! hotspots, busy hours and the review loop (precision, time to review, dispatch and clear,
//! re-checks) over a period, grouped by grid, unit, road, zone, camera, kind or hour; as a
//! table, CSV, JSON or one self-contained HTML file (`html.rs`).

mod html;
mod period;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::ledger::{IncidentRecord, ReviewRecord};
use crate::review::ReviewState;

pub use html::render_html;
pub use period::{parse_instant, PeriodError};

/// What rows a report is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Grid (网格).
    Grid,
    /// Responsible unit (责任单位).
    Unit,
    /// Road section (路段).
    Road,
    /// Shop (门前三包).
    Shop,
    /// Camera and zone.
    Zone,
    /// Camera.
    Camera,
    /// Event kind (with its case category).
    Kind,
    /// Local hour of day the events started.
    Hour,
}

impl GroupBy {
    /// The name on the command line and in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Grid => "grid",
            GroupBy::Unit => "unit",
            GroupBy::Road => "road",
            GroupBy::Shop => "shop",
            GroupBy::Zone => "zone",
            GroupBy::Camera => "camera",
            GroupBy::Kind => "kind",
            GroupBy::Hour => "hour",
        }
    }
}

/// What a report covers.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Events that started at or after this.
    pub since: DateTime<Utc>,
    /// Events that started before this.
    pub until: DateTime<Utc>,
    /// Rows.
    pub by: GroupBy,
    /// Time zone of dates and hours.
    pub tz: Tz,
    /// How many hotspots to list.
    pub top: usize,
}

/// Counts and dwell of a set of events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Events.
    pub count: u64,
    /// Of which still open (no end in the ledger).
    pub open: u64,
    /// Of which relapses (反弹: the place filled again within the relapse window).
    pub relapses: u64,
    /// Sum of dwell (rest to last sighting), seconds.
    pub total_dwell_seconds: f64,
    /// Median dwell, seconds (0 when there are no events).
    pub median_dwell_seconds: f64,
    /// How the review loop went for these events.
    #[serde(flatten)]
    pub review: ReviewFigures,
}

/// The review loop of a set of events (definitions in docs/reports.md, "The review loop").
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewFigures {
    /// Events with at least one change to `confirmed` or `false_alarm` (= confirmed +
    /// false_alarms).
    pub reviewed: u64,
    /// Events whose latest verdict is `confirmed`.
    pub confirmed: u64,
    /// Events whose latest verdict is `false_alarm`.
    pub false_alarms: u64,
    /// confirmed / (confirmed + false_alarms); None when nothing was reviewed.
    pub precision: Option<f64>,
    /// Median minutes from start to the first verdict; None when no event has one.
    pub median_minutes_to_review: Option<f64>,
    /// Median minutes from start to the first `dispatched`; None when none was dispatched.
    pub median_minutes_to_dispatch: Option<f64>,
    /// Median minutes from start to the first `cleared`; None when none was cleared.
    pub median_minutes_to_clear: Option<f64>,
    /// Events with a `verified` or `not_cleared` change (re-checked by the camera).
    pub rechecked: u64,
    /// Events whose latest re-check is `verified`.
    pub verified: u64,
    /// verified / rechecked; None when nothing was re-checked.
    pub recheck_pass_rate: Option<f64>,
}

/// One row of the grouping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Grouping key (grid name, `camera/zone`, kind, `07` for an hour...).
    pub key: String,
    /// Human name of the key (zone name, category name); may equal the key.
    pub name: String,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// A place (camera + zone) ranked by how often things happen there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hotspot {
    /// Camera id.
    pub camera: String,
    /// Camera name.
    pub camera_name: String,
    /// Zone id.
    pub zone: String,
    /// Zone name.
    pub zone_name: String,
    /// Grid.
    pub grid: String,
    /// Responsible unit.
    pub responsible_unit: String,
    /// Road section.
    pub road_section: String,
    /// Event kinds seen there.
    pub kinds: Vec<String>,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Start of the latest event there.
    pub latest_start: String,
    /// Latest evidence crop still on disk, if any.
    pub crop: Option<String>,
}

/// Events that started in one local hour of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HourCount {
    /// 0..=23.
    pub hour: u32,
    /// Events.
    pub count: u64,
}

/// Events of one kind that started on one local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Event kind.
    pub kind: String,
    /// Events.
    pub count: u64,
}

/// Events per local hour of day at one place (a heat-map row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneHours {
    /// `camera/zone`.
    pub key: String,
    /// Zone name (or id).
    pub name: String,
    /// Events per hour 0..=23.
    pub hours: Vec<u64>,
}

/// Events cleared within a span of minutes from their start (a bar of the time-to-clear chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClearBucket {
    /// The span as a leader reads it: `< 15 min`, `1–2 h`...
    pub label: String,
    /// From this many minutes after the start (inclusive).
    pub from_minutes: u32,
    /// To this many (exclusive); None for the last, open-ended span.
    pub to_minutes: Option<u32>,
    /// Events whose first `cleared` falls in the span.
    pub count: u64,
}

/// The spans of the time-to-clear chart: the half-hour and few-hour marks that clearance
/// targets (处置时限) are set in, then "a day or more".
const CLEAR_SPANS: [(u32, Option<u32>, &str); 8] = [
    (0, Some(15), "< 15 min"),
    (15, Some(30), "15–30 min"),
    (30, Some(60), "30–60 min"),
    (60, Some(120), "1–2 h"),
    (120, Some(240), "2–4 h"),
    (240, Some(480), "4–8 h"),
    (480, Some(1440), "8–24 h"),
    (1440, None, "≥ 1 day"),
];

/// One relapse (反弹).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relapse {
    /// Event id.
    pub event_id: String,
    /// When it started (local time).
    pub start_time: String,
    /// When the previous event at the place ended.
    pub previous_end: Option<String>,
    /// Camera id.
    pub camera: String,
    /// Zone id.
    pub zone: String,
    /// Zone name.
    pub zone_name: String,
    /// Grid.
    pub grid: String,
    /// Responsible unit.
    pub responsible_unit: String,
    /// Event kind.
    pub kind: String,
    /// Case category name.
    pub category_name: String,
    /// Earlier events there in the 7 days before.
    pub count_7d: u32,
    /// Earlier events there in the 30 days before.
    pub count_30d: u32,
    /// Dwell, seconds.
    pub dwell_seconds: f64,
}

/// A whole report (the JSON format is this, serialized).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Start of the period (local time, RFC 3339).
    pub since: String,
    /// End of the period (exclusive).
    pub until: String,
    /// Time zone of dates and hours.
    pub time_zone: String,
    /// What `groups` are by.
    pub by: GroupBy,
    /// All events of the period.
    pub totals: Figures,
    /// One row per group, most events first (by hour: hour order, all 24).
    pub groups: Vec<Group>,
    /// The places with the most events, with their relapses.
    pub hotspots: Vec<Hotspot>,
    /// Events per local hour of day, all 24.
    pub hours: Vec<HourCount>,
    /// The busiest hours, most events first (up to 3, only hours with events).
    pub busiest_hours: Vec<HourCount>,
    /// Events per day and kind, by date then kind.
    pub daily: Vec<DayCount>,
    /// Events per place and hour of day.
    pub zone_hours: Vec<ZoneHours>,
    /// Every relapse of the period, oldest first.
    pub relapses: Vec<Relapse>,
    /// Rows by grid whatever `by` is, for the review loop's precision table.
    pub review_by_grid: Vec<Group>,
    /// Rows by responsible unit whatever `by` is, for the review loop's precision table.
    pub review_by_unit: Vec<Group>,
    /// Events by minutes from start to their first `cleared`, all spans listed.
    pub time_to_clear: Vec<ClearBucket>,
}

/// Where one event went in the review loop, read from its review changes.
#[derive(Debug, Clone, Copy, Default)]
struct EventLoop {
    /// The latest verdict: true = confirmed, false = false alarm.
    verdict: Option<bool>,
    /// The first change to confirmed or false_alarm.
    first_verdict: Option<DateTime<Utc>>,
    /// The first change to dispatched.
    first_dispatch: Option<DateTime<Utc>>,
    /// The first change to cleared.
    first_clear: Option<DateTime<Utc>>,
    /// The latest re-check: true = verified, false = not cleared.
    recheck: Option<bool>,
}

/// The review loop of each event that has review changes, by event id.
type Loops<'a> = HashMap<&'a str, EventLoop>;

/// Reads each event's loop from its review changes.
fn event_loops(reviews: &[ReviewRecord]) -> Loops<'_> {
    let mut ordered: Vec<&ReviewRecord> = reviews.iter().collect();
    // "First" and "latest" follow each event's own sequence, whatever order the caller gives.
    ordered.sort_by(|a, b| (a.event_id.as_str(), a.seq).cmp(&(b.event_id.as_str(), b.seq)));
    let mut loops = Loops::new();
    for r in ordered {
        // A state this build does not know (a newer node's ledger) says nothing about these.
        let Some(to) = ReviewState::parse(&r.to) else {
            continue;
        };
        let l = loops.entry(r.event_id.as_str()).or_default();
        match to {
            ReviewState::Confirmed | ReviewState::FalseAlarm => {
                l.verdict = Some(to == ReviewState::Confirmed);
                l.first_verdict.get_or_insert(r.at);
            }
            ReviewState::Dispatched => {
                l.first_dispatch.get_or_insert(r.at);
            }
            ReviewState::Cleared => {
                l.first_clear.get_or_insert(r.at);
            }
            ReviewState::Verified | ReviewState::NotCleared => {
                l.recheck = Some(to == ReviewState::Verified);
            }
            ReviewState::Pending | ReviewState::Closed => {}
        }
    }
    loops
}

/// Minutes from an event's start to `at` (0 if a clock put `at` first).
fn minutes_after(start: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - start).num_milliseconds().max(0) as f64 / 60_000.0
}

/// Median minutes rounded to 0.01 (0.6 s), None for none.
fn median_minutes(values: &mut [f64]) -> Option<f64> {
    (!values.is_empty()).then(|| (median(values) * 100.0).round() / 100.0)
}

/// `part / whole`, None when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Figures of a set of incidents, with the review loops of those that have one.
fn figures<'a>(incidents: impl IntoIterator<Item = &'a IncidentRecord>, loops: &Loops) -> Figures {
    let mut dwell = Vec::new();
    let (mut to_review, mut to_dispatch, mut to_clear) = (Vec::new(), Vec::new(), Vec::new());
    let mut f = Figures::default();
    let rf = &mut f.review;
    for i in incidents {
        f.count += 1;
        f.open += u64::from(i.end.is_none());
        f.relapses += u64::from(i.relapse);
        dwell.push(i.dwell_seconds());
        let Some(l) = loops.get(i.event_id.as_str()) else {
            continue;
        };
        match l.verdict {
            Some(true) => rf.confirmed += 1,
            Some(false) => rf.false_alarms += 1,
            None => {}
        }
        if let Some(passed) = l.recheck {
            rf.rechecked += 1;
            rf.verified += u64::from(passed);
        }
        let after = |at: Option<DateTime<Utc>>| at.map(|at| minutes_after(i.start, at));
        to_review.extend(after(l.first_verdict));
        to_dispatch.extend(after(l.first_dispatch));
        to_clear.extend(after(l.first_clear));
    }
    f.total_dwell_seconds = round_ms(dwell.iter().sum());
    f.median_dwell_seconds = round_ms(median(&mut dwell));
    let rf = &mut f.review;
    rf.reviewed = rf.confirmed + rf.false_alarms;
    rf.precision = ratio(rf.confirmed, rf.reviewed);
    rf.recheck_pass_rate = ratio(rf.verified, rf.rechecked);
    rf.median_minutes_to_review = median_minutes(&mut to_review);
    rf.median_minutes_to_dispatch = median_minutes(&mut to_dispatch);
    rf.median_minutes_to_clear = median_minutes(&mut to_clear);
    f
}

/// Median of the values (mean of the middle two for an even count), 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Rounds to milliseconds, as the ledger keeps times.
fn round_ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn or_unset(s: &str) -> String {
    if s.is_empty() {
        "(未指定 not set)".into()
    } else {
        s.to_string()
    }
}

/// Rows of `incidents` grouped `by`, most events first (by hour: all 24, in hour order).
fn grouped(incidents: &[IncidentRecord], by: GroupBy, tz: Tz, loops: &Loops) -> Vec<Group> {
    let place = |i: &IncidentRecord| format!("{}/{}", i.camera, i.zone);
    // Rows keyed by (key, name); BTreeMap keeps the order stable for equal counts.
    let mut rows: BTreeMap<(String, String), Vec<&IncidentRecord>> = BTreeMap::new();
    for i in incidents {
        let (key, name) = match by {
            GroupBy::Grid => (or_unset(&i.grid), or_unset(&i.grid)),
            GroupBy::Unit => (or_unset(&i.responsible_unit), or_unset(&i.responsible_unit)),
            GroupBy::Road => (or_unset(&i.road_section), or_unset(&i.road_section)),
            GroupBy::Shop => (or_unset(&i.shop), or_unset(&i.shop)),
            GroupBy::Zone => (place(i), name_or_id(&i.zone_name, &i.zone)),
            GroupBy::Camera => (i.camera.clone(), name_or_id(&i.camera_name, &i.camera)),
            GroupBy::Kind => (i.kind.clone(), i.category_name.clone()),
            GroupBy::Hour => {
                let h = format!("{:02}", i.start.with_timezone(&tz).hour());
                (h.clone(), format!("{h}:00-{h}:59"))
            }
        };
        rows.entry((key, name)).or_default().push(i);
    }
    if by == GroupBy::Hour {
        for h in 0..24 {
            let key = format!("{h:02}");
            rows.entry((key.clone(), format!("{key}:00-{key}:59")))
                .or_default();
        }
    }
    let mut groups: Vec<Group> = rows
        .into_iter()
        .map(|((key, name), list)| Group {
            key,
            name,
            figures: figures(list, loops),
        })
        .collect();
    if by != GroupBy::Hour {
        groups.sort_by_key(|g| std::cmp::Reverse(g.figures.count));
    }
    groups
}

/// Builds the report over `incidents` (all of which started within the period) and the review
/// changes of those events (`Ledger::reviews_of_events_between` over the same period; changes
/// of other events are ignored).
pub fn build(
    incidents: &[IncidentRecord],
    reviews: &[ReviewRecord],
    opts: &ReportOptions,
) -> Report {
    let tz = opts.tz;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let time = |t: DateTime<Utc>| crate::event::local_time(t, tz);
    let place = |i: &IncidentRecord| format!("{}/{}", i.camera, i.zone);
    let loops = event_loops(reviews);
    let groups = grouped(incidents, opts.by, tz, &loops);

    let mut places: BTreeMap<String, Vec<&IncidentRecord>> = BTreeMap::new();
    for i in incidents {
        places.entry(place(i)).or_default().push(i);
    }
    let mut hotspots: Vec<Hotspot> = places
        .values()
        .map(|list| {
            let latest = list
                .iter()
                .max_by_key(|i| i.start)
                .copied()
                .unwrap_or(list[0]);
            let mut kinds: Vec<String> = list.iter().map(|i| i.kind.clone()).collect();
            kinds.sort();
            kinds.dedup();
            Hotspot {
                camera: latest.camera.clone(),
                camera_name: latest.camera_name.clone(),
                zone: latest.zone.clone(),
                zone_name: latest.zone_name.clone(),
                grid: latest.grid.clone(),
                responsible_unit: latest.responsible_unit.clone(),
                road_section: latest.road_section.clone(),
                kinds,
                figures: figures(list.iter().copied(), &loops),
                latest_start: time(latest.start),
                crop: list
                    .iter()
                    .rev()
                    .find_map(|i| i.crop.clone())
                    .or_else(|| latest.crop.clone()),
            }
        })
        .collect();
    hotspots.sort_by(|a, b| {
        (b.figures.count, b.figures.relapses).cmp(&(a.figures.count, a.figures.relapses))
    });
    hotspots.truncate(opts.top);

    let mut hours = [0u64; 24];
    let mut zone_hours: BTreeMap<String, ZoneHours> = BTreeMap::new();
    let mut daily: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in incidents {
        let start = local(i.start);
        let h = start.hour() as usize;
        hours[h] += 1;
        zone_hours
            .entry(place(i))
            .or_insert_with(|| ZoneHours {
                key: place(i),
                name: name_or_id(&i.zone_name, &i.zone),
                hours: vec![0; 24],
            })
            .hours[h] += 1;
        *daily
            .entry((start.format("%Y-%m-%d").to_string(), i.kind.clone()))
            .or_default() += 1;
    }
    let hours: Vec<HourCount> = hours
        .iter()
        .enumerate()
        .map(|(h, &count)| HourCount {
            hour: h as u32,
            count,
        })
        .collect();
    let mut busiest: Vec<HourCount> = hours.iter().copied().filter(|h| h.count > 0).collect();
    busiest.sort_by(|a, b| b.count.cmp(&a.count).then(a.hour.cmp(&b.hour)));
    busiest.truncate(3);

    let relapses = incidents
        .iter()
        .filter(|i| i.relapse)
        .map(|i| Relapse {
            event_id: i.event_id.clone(),
            start_time: time(i.start),
            previous_end: i.previous_end.clone(),
            camera: i.camera.clone(),
            zone: i.zone.clone(),
            zone_name: i.zone_name.clone(),
            grid: i.grid.clone(),
            responsible_unit: i.responsible_unit.clone(),
            kind: i.kind.clone(),
            category_name: i.category_name.clone(),
            count_7d: i.count_7d,
            count_30d: i.count_30d,
            dwell_seconds: round_ms(i.dwell_seconds()),
        })
        .collect();

    let mut time_to_clear: Vec<ClearBucket> = CLEAR_SPANS
        .iter()
        .map(|&(from, to, label)| ClearBucket {
            label: label.to_string(),
            from_minutes: from,
            to_minutes: to,
            count: 0,
        })
        .collect();
    for i in incidents {
        let Some(cleared) = loops.get(i.event_id.as_str()).and_then(|l| l.first_clear) else {
            continue;
        };
        let m = minutes_after(i.start, cleared);
        if let Some(b) = time_to_clear
            .iter_mut()
            .rev()
            .find(|b| m >= f64::from(b.from_minutes))
        {
            b.count += 1;
        }
    }

    Report {
        since: time(opts.since),
        until: time(opts.until),
        time_zone: tz.name().to_string(),
        by: opts.by,
        totals: figures(incidents, &loops),
        groups,
        hotspots,
        hours,
        busiest_hours: busiest,
        daily: daily
            .into_iter()
            .map(|((date, kind), count)| DayCount { date, kind, count })
            .collect(),
        zone_hours: zone_hours.into_values().collect(),
        relapses,
        review_by_grid: grouped(incidents, GroupBy::Grid, tz, &loops),
        review_by_unit: grouped(incidents, GroupBy::Unit, tz, &loops),
        time_to_clear,
    }
}

fn name_or_id(name: &str, id: &str) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

/// Formats seconds as `1h02m`, `3m05s` or `42s` for tables.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// `75%` for a fraction, `-` for none (nothing to divide by).
pub fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".into(), |f| format!("{:.0}%", f * 100.0))
}

/// `12m30s` for a number of minutes, `-` for none.
pub fn human_minutes(minutes: Option<f64>) -> String {
    minutes.map_or_else(|| "-".into(), |m| human_duration(m * 60.0))
}

/// The review-loop columns of a row: reviewed ... re-check pass rate.
fn review_cells(f: &ReviewFigures) -> [String; 9] {
    [
        f.reviewed.to_string(),
        f.confirmed.to_string(),
        f.false_alarms.to_string(),
        percent(f.precision),
        human_minutes(f.median_minutes_to_review),
        human_minutes(f.median_minutes_to_dispatch),
        human_minutes(f.median_minutes_to_clear),
        f.rechecked.to_string(),
        percent(f.recheck_pass_rate),
    ]
}

/// The review loop per group as a second aligned table (one wide table would not fit a
/// terminal), or one line when nothing has been reviewed.
fn review_table(r: &Report) -> String {
    if r.totals.review.reviewed == 0 {
        return "\nreview loop (复核闭环): no event of the period has been reviewed yet\n".into();
    }
    let head = [
        "reviewed",
        "confirmed",
        "false alarms",
        "precision",
        "to review",
        "to dispatch",
        "to clear",
        "re-checked",
        "re-check pass",
    ];
    let mut rows: Vec<[String; 10]> = vec![std::array::from_fn(|c| match c {
        0 => r.by.as_str().to_string(),
        c => head[c - 1].to_string(),
    })];
    let row = |key: &str, f: &ReviewFigures| -> [String; 10] {
        let cells = review_cells(f);
        std::array::from_fn(|c| match c {
            0 => key.to_string(),
            c => cells[c - 1].clone(),
        })
    };
    // Hours with no events would only add rows of dashes.
    for g in r.groups.iter().filter(|g| g.figures.count > 0) {
        rows.push(row(&g.key, &g.figures.review));
    }
    rows.push(row("(total)", &r.totals.review));
    format!(
        "\nreview loop (复核闭环; times are medians from the start):\n{}",
        align(&rows)
    )
}

/// The report as an aligned text table: the groups, then hotspots and busy hours.
pub fn render_table(r: &Report) -> String {
    let by = r.by.as_str();
    let mut rows: Vec<[String; 7]> = vec![[
        by.to_string(),
        "name".into(),
        "events".into(),
        "open".into(),
        "relapses".into(),
        "total dwell".into(),
        "median dwell".into(),
    ]];
    let row = |key: &str, name: &str, f: &Figures| {
        [
            key.to_string(),
            name.to_string(),
            f.count.to_string(),
            f.open.to_string(),
            f.relapses.to_string(),
            human_duration(f.total_dwell_seconds),
            human_duration(f.median_dwell_seconds),
        ]
    };
    for g in &r.groups {
        let name = if g.name == g.key { "" } else { &g.name };
        rows.push(row(&g.key, name, &g.figures));
    }
    rows.push(row("(total)", "", &r.totals));
    let mut out = format!(
        "streetwatch report {} .. {} ({}), by {by}\n\n",
        r.since, r.until, r.time_zone
    );
    out.push_str(&align(&rows));
    out.push_str(&review_table(r));
    out.push_str("\ntop hotspots (places with the most events):\n");
    let mut spots = vec![[
        "#".to_string(),
        "camera/zone".into(),
        "name".into(),
        "grid".into(),
        "events".into(),
        "relapses".into(),
        "kinds".into(),
    ]];
    for (n, h) in r.hotspots.iter().enumerate() {
        spots.push([
            (n + 1).to_string(),
            format!("{}/{}", h.camera, h.zone),
            h.zone_name.clone(),
            h.grid.clone(),
            h.figures.count.to_string(),
            h.figures.relapses.to_string(),
            h.kinds.join(","),
        ]);
    }
    out.push_str(&align(&spots));
    let busy: Vec<String> = r
        .busiest_hours
        .iter()
        .map(|h| {
            let s = if h.count == 1 { "" } else { "s" };
            format!("{:02}:00 ({} event{s})", h.hour, h.count)
        })
        .collect();
    let busy = if busy.is_empty() {
        "none".to_string()
    } else {
        busy.join(", ")
    };
    out.push_str(&format!("\nbusiest hours: {busy}"));
    out.push('\n');
    out
}

/// Left-aligned columns, widths counted in characters (CJK names count wider).
fn align<const N: usize>(rows: &[[String; N]]) -> String {
    let width = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    let mut widths = [0usize; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - width(cell))))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The groups as CSV (RFC 4180 quoting), one header line.
pub fn render_csv(r: &Report) -> String {
    let by = r.by.as_str();
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    // A figure with nothing to compute it from is an empty cell, as spreadsheets read it.
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for g in &r.groups {
        let f = &g.figures;
        let rf = &f.review;
        out.push_str(&format!(
            "{by},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            quote(&g.key),
            quote(&g.name),
            f.count,
            f.open,
            f.relapses,
            f.total_dwell_seconds,
            f.median_dwell_seconds,
            rf.reviewed,
            rf.confirmed,
            rf.false_alarms,
            opt(rf.precision),
            opt(rf.median_minutes_to_review),
            opt(rf.median_minutes_to_dispatch),
            opt(rf.median_minutes_to_clear),
            rf.rechecked,
            rf.verified,
            opt(rf.recheck_pass_rate),
        ));
    }
    out
}

/// The CSV's header line: the original columns first, so readers by position keep working.
pub const CSV_HEADER: &str =
    "by,key,name,events,open,relapses,total_dwell_seconds,median_dwell_seconds,\
reviewed,confirmed,false_alarms,precision,median_minutes_to_review,median_minutes_to_dispatch,\
median_minutes_to_clear,rechecked,verified,recheck_pass_rate";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(42.4), "42s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(3720.0), "1h02m");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let r = Report {
            since: String::new(),
            until: String::new(),
            time_zone: "Asia/Shanghai".into(),
            by: GroupBy::Grid,
            totals: Figures::default(),
            groups: vec![Group {
                key: "第八网格, 东".into(),
                name: "say \"hi\"".into(),
                figures: Figures {
                    count: 2,
                    ..Default::default()
                },
            }],
            hotspots: vec![],
            hours: vec![],
            busiest_hours: vec![],
            daily: vec![],
            zone_hours: vec![],
            relapses: vec![],
            review_by_grid: vec![],
            review_by_unit: vec![],
            time_to_clear: vec![],
        };
        assert_eq!(
            render_csv(&r).lines().nth(1),
            Some("grid,\"第八网格, 东\",\"say \"\"hi\"\"\",2,0,0,0,0,0,0,0,,,,,0,0,")
        );
    }

    /// 2026-11-23 09:00 in Shanghai: the events below start minutes after it.
    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn minutes(m: f64) -> chrono::Duration {
        chrono::Duration::milliseconds((m * 60_000.0).round() as i64)
    }

    fn incident(id: &str, grid: &str, unit: &str, start_minute: f64) -> IncidentRecord {
        let start = t0() + minutes(start_minute);
        IncidentRecord {
            event_id: id.into(),
            camera: "cam-corner".into(),
            camera_name: String::new(),
            zone: "corner".into(),
            zone_name: "拐角".into(),
            kind: "illegal_parking".into(),
            category_code: "05-05".into(),
            category_name: "违章停车".into(),
            grid: grid.into(),
            responsible_unit: unit.into(),
            road_section: String::new(),
            shop: String::new(),
            contact: String::new(),
            label: "car".into(),
            score: 0.9,
            start,
            last_seen: start + chrono::Duration::seconds(60),
            end: Some(start + chrono::Duration::seconds(90)),
            end_reason: Some("left".into()),
            relapse: false,
            count_7d: 0,
            count_30d: 0,
            previous_end: None,
            bbox: [0.1, 0.1, 0.2, 0.2],
            crop: None,
            review_state: "pending".into(),
        }
    }

    /// Review changes of one event that started at `start_minute`: `(minutes after its start,
    /// state moved to)`, in order.
    fn changes(id: &str, start_minute: f64, steps: &[(f64, &str)]) -> Vec<ReviewRecord> {
        let mut from = "pending".to_string();
        steps
            .iter()
            .enumerate()
            .map(|(n, &(after, to))| ReviewRecord {
                event_id: id.into(),
                seq: n as u32 + 1,
                at: t0() + minutes(start_minute + after),
                by: "op".into(),
                role: "operator".into(),
                from: std::mem::replace(&mut from, to.to_string()),
                to: to.into(),
                reason: None,
                note: String::new(),
                unit: None,
                due: None,
                photo_path: None,
            })
            .collect()
    }

    fn options(by: GroupBy) -> ReportOptions {
        ReportOptions {
            since: t0() - chrono::Duration::hours(9),
            until: t0() + chrono::Duration::hours(15),
            by,
            tz: "Asia/Shanghai".parse().unwrap(),
            top: 10,
        }
    }

    /// Seven events in three grids and two units, their loops chosen so that the figures
    /// differ between the groups.
    fn review_loop_case() -> (Vec<IncidentRecord>, Vec<ReviewRecord>) {
        let incidents = vec![
            incident("e1", "A", "U1", 0.0),
            incident("e2", "A", "U1", 1.0),
            incident("e3", "A", "U2", 2.0),
            incident("e4", "B", "U2", 3.0),
            incident("e5", "B", "U2", 4.0),
            incident("e6", "C", "U1", 5.0),
            incident("e7", "B", "U2", 6.0),
        ];
        let mut reviews = [
            // Confirmed, dispatched, cleared in 40 min, re-check passed, closed.
            changes(
                "e1",
                0.0,
                &[
                    (4.0, "confirmed"),
                    (10.0, "dispatched"),
                    (40.0, "cleared"),
                    (45.0, "verified"),
                    (50.0, "closed"),
                ],
            ),
            // Confirmed, then the operator changed their mind: a false alarm only.
            changes("e2", 1.0, &[(6.0, "confirmed"), (20.0, "false_alarm")]),
            // Cleared, seen still there, cleared again, then seen clear: the latest re-check
            // passes; time to clear counts the first clearance.
            changes(
                "e3",
                2.0,
                &[
                    (8.0, "confirmed"),
                    (100.0, "cleared"),
                    (105.0, "not_cleared"),
                    (200.0, "cleared"),
                    (210.0, "verified"),
                ],
            ),
            // Cleared after more than a day, and the camera still saw it.
            changes(
                "e4",
                3.0,
                &[
                    (2.0, "confirmed"),
                    (30.0, "dispatched"),
                    (2000.0, "cleared"),
                    (2010.0, "not_cleared"),
                ],
            ),
            // Rejected, reopened, then confirmed: its latest verdict is confirmed.
            changes(
                "e5",
                4.0,
                &[
                    (12.0, "false_alarm"),
                    (15.0, "pending"),
                    (30.0, "confirmed"),
                ],
            ),
            // Rejected after 3m20s and reopened: a false alarm until someone confirms it.
            changes("e7", 6.0, &[(10.0 / 3.0, "false_alarm"), (5.0, "pending")]),
            // An event outside the report: ignored.
            changes("elsewhere", 0.0, &[(1.0, "confirmed")]),
        ]
        .concat();
        // The report follows each event's seq, not the order it is given.
        reviews.reverse();
        (incidents, reviews)
    }

    fn find<'a>(groups: &'a [Group], key: &str) -> &'a ReviewFigures {
        &groups
            .iter()
            .find(|g| g.key == key)
            .unwrap_or_else(|| panic!("no group {key}"))
            .figures
            .review
    }

    #[test]
    fn review_loop_figures_per_group_and_total() {
        let (incidents, reviews) = review_loop_case();
        let r = build(&incidents, &reviews, &options(GroupBy::Grid));
        assert_eq!(r.totals.count, 7);
        assert_eq!(
            r.totals.review,
            ReviewFigures {
                reviewed: 6,
                confirmed: 4,
                false_alarms: 2,
                precision: Some(4.0 / 6.0),
                // 2, 3.33, 4, 6, 8, 12
                median_minutes_to_review: Some(5.0),
                // 10, 30
                median_minutes_to_dispatch: Some(20.0),
                // 40, 100, 2000
                median_minutes_to_clear: Some(100.0),
                rechecked: 3,
                verified: 2,
                recheck_pass_rate: Some(2.0 / 3.0),
            }
        );
        let a = ReviewFigures {
            reviewed: 3,
            confirmed: 2,
            false_alarms: 1,
            precision: Some(2.0 / 3.0),
            median_minutes_to_review: Some(6.0),
            median_minutes_to_dispatch: Some(10.0),
            median_minutes_to_clear: Some(70.0),
            rechecked: 2,
            verified: 2,
            recheck_pass_rate: Some(1.0),
        };
        let b = ReviewFigures {
            reviewed: 3,
            confirmed: 2,
            false_alarms: 1,
            precision: Some(2.0 / 3.0),
            // 2, 3.333..., 12: rounded to 0.01
            median_minutes_to_review: Some(3.33),
            median_minutes_to_dispatch: Some(30.0),
            median_minutes_to_clear: Some(2000.0),
            rechecked: 1,
            verified: 0,
            recheck_pass_rate: Some(0.0),
        };
        // Nothing reviewed: no precision, no times, no pass rate (null, not 0).
        let c = ReviewFigures {
            reviewed: 0,
            confirmed: 0,
            false_alarms: 0,
            precision: None,
            median_minutes_to_review: None,
            median_minutes_to_dispatch: None,
            median_minutes_to_clear: None,
            rechecked: 0,
            verified: 0,
            recheck_pass_rate: None,
        };
        for groups in [&r.groups, &r.review_by_grid] {
            assert_eq!(find(groups, "A"), &a);
            assert_eq!(find(groups, "B"), &b);
            assert_eq!(find(groups, "C"), &c);
        }
        let u1 = ReviewFigures {
            reviewed: 2,
            confirmed: 1,
            false_alarms: 1,
            precision: Some(0.5),
            median_minutes_to_review: Some(5.0),
            median_minutes_to_dispatch: Some(10.0),
            median_minutes_to_clear: Some(40.0),
            rechecked: 1,
            verified: 1,
            recheck_pass_rate: Some(1.0),
        };
        let u2 = ReviewFigures {
            reviewed: 4,
            confirmed: 3,
            false_alarms: 1,
            precision: Some(0.75),
            // 2, 3.333..., 8, 12
            median_minutes_to_review: Some(5.67),
            median_minutes_to_dispatch: Some(30.0),
            median_minutes_to_clear: Some(1050.0),
            rechecked: 2,
            verified: 1,
            recheck_pass_rate: Some(0.5),
        };
        assert_eq!(find(&r.review_by_unit, "U1"), &u1);
        assert_eq!(find(&r.review_by_unit, "U2"), &u2);
        let by_unit = build(&incidents, &reviews, &options(GroupBy::Unit));
        assert_eq!(find(&by_unit.groups, "U1"), &u1);
        assert_eq!(find(&by_unit.groups, "U2"), &u2);
        assert_eq!(by_unit.review_by_grid, r.review_by_grid);
        // One place has every event, so its hotspot figures are the totals.
        assert_eq!(r.hotspots[0].figures.review, r.totals.review);

        let counts: Vec<u64> = r.time_to_clear.iter().map(|b| b.count).collect();
        // 40 min, 100 min (1–2 h), 2000 min (a day or more).
        assert_eq!(counts, [0, 0, 1, 1, 0, 0, 0, 1]);
        assert_eq!(r.time_to_clear[3].label, "1–2 h");
        assert_eq!(
            (
                r.time_to_clear[7].from_minutes,
                r.time_to_clear[7].to_minutes
            ),
            (1440, None)
        );
    }

    #[test]
    fn confirmed_then_rejected_is_a_false_alarm_only() {
        let incidents = [incident("e", "A", "U1", 0.0)];
        let reviews = changes("e", 0.0, &[(1.0, "confirmed"), (2.0, "false_alarm")]);
        let r = build(&incidents, &reviews, &options(GroupBy::Grid));
        let f = &r.totals.review;
        assert_eq!((f.reviewed, f.confirmed, f.false_alarms), (1, 0, 1));
        assert_eq!(f.precision, Some(0.0));
        // Time to review runs to the first verdict, the confirmation.
        assert_eq!(f.median_minutes_to_review, Some(1.0));
    }

    #[test]
    fn nothing_reviewed_is_null_not_zero() {
        let (incidents, _) = review_loop_case();
        let r = build(&incidents, &[], &options(GroupBy::Grid));
        let json = serde_json::to_value(&r).unwrap();
        for row in [
            &json["totals"],
            &json["groups"][0],
            &json["review_by_unit"][0],
            &json["hotspots"][0],
        ] {
            for zero in [
                "reviewed",
                "confirmed",
                "false_alarms",
                "rechecked",
                "verified",
            ] {
                assert_eq!(row[zero], 0, "{zero} in {row}");
            }
            for null in [
                "precision",
                "median_minutes_to_review",
                "median_minutes_to_dispatch",
                "median_minutes_to_clear",
                "recheck_pass_rate",
            ] {
                assert!(
                    row.get(null).is_some_and(|v| v.is_null()),
                    "{null} in {row}"
                );
            }
        }
        let spans = json["time_to_clear"].as_array().unwrap();
        assert_eq!(spans.len(), 8);
        assert!(spans.iter().all(|b| b["count"] == 0));
        assert!(render_table(&r).contains("no event of the period has been reviewed yet"));
        let csv = render_csv(&r);
        assert_eq!(csv.lines().next(), Some(CSV_HEADER));
        assert!(
            csv.lines().nth(1).unwrap().ends_with(",0,0,0,,,,,0,0,"),
            "{csv}"
        );
        let html = render_html(&r).unwrap();
        assert!(html.contains("No event of this period has been reviewed yet"));
        assert!(html.contains("No event of this period has been marked cleared yet"));
        assert!(html.contains("first marked cleared (处置).</figcaption>"));
        assert_eq!(html.matches("<svg").count(), 2, "no time-to-clear chart");
    }

    #[test]
    fn review_loop_in_table_csv_and_html() {
        let (incidents, reviews) = review_loop_case();
        let r = build(&incidents, &reviews, &options(GroupBy::Grid));
        let table = render_table(&r);
        let line = |key: &str| {
            table
                .lines()
                .skip_while(|l| !l.starts_with("review loop"))
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no review line {key} in\n{table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("A "),
            ["A", "3", "2", "1", "67%", "6m00s", "10m00s", "1h10m", "2", "100%"]
        );
        assert_eq!(
            line("C "),
            ["C", "0", "0", "0", "-", "-", "-", "-", "0", "-"]
        );
        assert_eq!(
            line("(total)"),
            ["(total)", "6", "4", "2", "67%", "5m00s", "20m00s", "1h40m", "3", "67%"]
        );
        let csv = render_csv(&r);
        let b = csv.lines().find(|l| l.starts_with("grid,B,")).unwrap();
        assert_eq!(
            b,
            "grid,B,B,3,0,0,180,60,3,2,1,0.6666666666666666,3.33,30,2000,1,0,0"
        );
        let html = render_html(&r).unwrap();
        assert_eq!(
            html.matches("<svg").count(),
            3,
            "daily, heat map, time to clear"
        );
        assert!(html.contains("按网格 · By grid") && html.contains("按责任单位 · By unit"));
        // The lowest precision here is one half (U1): nothing flagged as low.
        assert!(!html.contains("n low"));
        assert!(html.contains("≥ 1 day"), "span labels on the chart");
        assert!(html.contains("first marked cleared (处置); median 1h40m."));
    }
}
