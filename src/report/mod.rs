//! Reports from the ledger for the people who rank the streets: counts, dwell, relapses,
//! hotspots and busy hours over a period, grouped by grid, unit, road, zone, camera, kind or
//! hour; as a table, CSV, JSON or one self-contained HTML file (`html.rs`).

mod html;
mod period;

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::ledger::IncidentRecord;

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
}

/// Figures of a set of incidents.
fn figures<'a>(incidents: impl IntoIterator<Item = &'a IncidentRecord>) -> Figures {
    let mut dwell = Vec::new();
    let mut f = Figures::default();
    for i in incidents {
        f.count += 1;
        f.open += u64::from(i.end.is_none());
        f.relapses += u64::from(i.relapse);
        dwell.push(i.dwell_seconds());
    }
    f.total_dwell_seconds = round_ms(dwell.iter().sum());
    f.median_dwell_seconds = round_ms(median(&mut dwell));
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

/// Builds the report over `incidents` (all of which started within the period).
pub fn build(incidents: &[IncidentRecord], opts: &ReportOptions) -> Report {
    let tz = opts.tz;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let time = |t: DateTime<Utc>| crate::event::local_time(t, tz);
    let place = |i: &IncidentRecord| format!("{}/{}", i.camera, i.zone);

    // Rows keyed by (key, name); BTreeMap keeps the order stable for equal counts.
    let mut rows: BTreeMap<(String, String), Vec<&IncidentRecord>> = BTreeMap::new();
    for i in incidents {
        let (key, name) = match opts.by {
            GroupBy::Grid => (or_unset(&i.grid), or_unset(&i.grid)),
            GroupBy::Unit => (or_unset(&i.responsible_unit), or_unset(&i.responsible_unit)),
            GroupBy::Road => (or_unset(&i.road_section), or_unset(&i.road_section)),
            GroupBy::Shop => (or_unset(&i.shop), or_unset(&i.shop)),
            GroupBy::Zone => (place(i), name_or_id(&i.zone_name, &i.zone)),
            GroupBy::Camera => (i.camera.clone(), name_or_id(&i.camera_name, &i.camera)),
            GroupBy::Kind => (i.kind.clone(), i.category_name.clone()),
            GroupBy::Hour => {
                let h = format!("{:02}", local(i.start).hour());
                (h.clone(), format!("{h}:00-{h}:59"))
            }
        };
        rows.entry((key, name)).or_default().push(i);
    }
    if opts.by == GroupBy::Hour {
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
            figures: figures(list),
        })
        .collect();
    if opts.by != GroupBy::Hour {
        groups.sort_by_key(|g| std::cmp::Reverse(g.figures.count));
    }

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
                figures: figures(list.iter().copied()),
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

    Report {
        since: time(opts.since),
        until: time(opts.until),
        time_zone: tz.name().to_string(),
        by: opts.by,
        totals: figures(incidents),
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
    let mut out =
        String::from("by,key,name,events,open,relapses,total_dwell_seconds,median_dwell_seconds\n");
    for g in &r.groups {
        let f = &g.figures;
        out.push_str(&format!(
            "{by},{},{},{},{},{},{},{}\n",
            quote(&g.key),
            quote(&g.name),
            f.count,
            f.open,
            f.relapses,
            f.total_dwell_seconds,
            f.median_dwell_seconds
        ));
    }
    out
}

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
        };
        assert_eq!(
            render_csv(&r).lines().nth(1),
            Some("grid,\"第八网格, 东\",\"say \"\"hi\"\"\",2,0,0,0,0")
        );
    }
}
