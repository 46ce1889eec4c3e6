//! The report as one self-contained HTML file a leader can open anywhere: charts drawn by
//! `plotters` as inline SVG, evidence thumbnails as inline JPEG, no scripts, nothing fetched.
//! With the review loop: a precision table per grid and per unit, and how long clearing took.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{human_duration, human_minutes, percent, Figures, Group, Report};
use crate::scene::EventKind;

/// Colours of event kinds in charts, in the order kinds first appear.
const PALETTE: [RGBColor; 7] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

/// Longest side of an evidence thumbnail, pixels.
const THUMB: u32 = 180;

/// Renders the whole report as HTML.
pub fn render_html(r: &Report) -> Result<String, String> {
    let by = r.by.as_str();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>街面秩序报告 streetwatch report {since} – {until}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
h1 {{ font-size: 24px; margin-bottom: 4px; }} h2 {{ font-size: 18px; margin-top: 32px; border-bottom: 2px solid #d62728; padding-bottom: 4px; }}
.period {{ color: #555; }}
.cards {{ display: flex; gap: 12px; flex-wrap: wrap; margin-top: 16px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 120px; }}
.card b {{ display: block; font-size: 26px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #e3e3e3; padding: 6px 8px; text-align: left; vertical-align: middle; }}
th {{ background: #f5f5f5; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
img.thumb {{ max-width: {THUMB}px; max-height: {THUMB}px; border: 1px solid #ccc; }}
.none {{ color: #888; }} .relapse, .low {{ color: #d62728; font-weight: bold; }}
h3 {{ font-size: 15px; margin: 16px 0 6px; }}
figure {{ margin: 8px 0; }} figcaption {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>街面秩序报告 · streetwatch report</h1>
<div class="period">{since} – {until} ({tz})</div>
"#,
        since = esc(&short_time(&r.since)),
        until = esc(&short_time(&r.until)),
        tz = esc(&r.time_zone),
    );
    cards(&mut h, r);

    h.push_str("<h2>每日事件数 · Events per day, by kind</h2>\n<figure>");
    if r.daily.is_empty() {
        h.push_str(r#"<p class="none">No events in this period.</p>"#);
    } else {
        h.push_str(&daily_chart(r)?);
    }
    h.push_str("<figcaption>Events by the day they started, stacked by kind (case code and name).</figcaption></figure>\n");

    h.push_str("<h2>时段热力图 · Hour of day by zone</h2>\n<figure>");
    if r.zone_hours.is_empty() {
        h.push_str(r#"<p class="none">No events in this period.</p>"#);
    } else {
        h.push_str(&heat_map(r)?);
    }
    h.push_str("<figcaption>Events by the local hour they started, per place: where and when to send patrols.</figcaption></figure>\n");

    let _ = write!(h, "<h2>分组统计 · By {}</h2>\n<table><tr><th>{}</th><th>name</th><th>events</th><th>open</th><th>relapses</th><th>total dwell</th><th>median dwell</th></tr>\n", by, by);
    for g in r.groups.iter().filter(|g| g.figures.count > 0) {
        let name = if g.name == g.key { "" } else { &g.name };
        figure_row(&mut h, &g.key, name, &g.figures);
    }
    figure_row(&mut h, "total", "", &r.totals);
    h.push_str("</table>\n");

    review_loop(&mut h, r);
    h.push_str("<h2>处置时长 · Time to clear</h2>\n<figure>");
    if r.totals.review.median_minutes_to_clear.is_none() {
        h.push_str(r#"<p class="none">No event of this period has been marked cleared yet.</p>"#);
    } else {
        h.push_str(&clear_chart(r)?);
    }
    let median = r
        .totals
        .review
        .median_minutes_to_clear
        .map(|m| format!("; median {}", human_minutes(Some(m))))
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<figcaption>Events by the time from when the object came to rest to when it was first marked cleared (处置){}.</figcaption></figure>",
        esc(&median)
    );

    hotspots(&mut h, r);
    relapses(&mut h, r);

    h.push_str("<p class=\"none\">Made by streetwatch from its ledger. Dwell: from when the object came to rest to when it was last seen. Relapse (反弹): an event at a place where another one ended within the relapse window. Precision: of the events reviewed, the share whose latest verdict is confirmed (not a false alarm). Re-check pass: of the events the camera re-checked after a clearance, the share it last saw clear.</p>\n</body></html>\n");
    Ok(h)
}

fn cards(h: &mut String, r: &Report) {
    let t = &r.totals;
    let busiest = r
        .busiest_hours
        .iter()
        .map(|b| format!("{:02}:00", b.hour))
        .collect::<Vec<_>>()
        .join(" ");
    let card = |h: &mut String, value: String, label: &str| {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b>{}</div>",
            esc(&value),
            label
        );
    };
    h.push_str("<div class=\"cards\">");
    card(h, t.count.to_string(), "事件 events");
    card(h, t.relapses.to_string(), "反弹 relapses");
    card(h, t.open.to_string(), "未结束 still open");
    card(
        h,
        human_duration(t.median_dwell_seconds),
        "dwell 中位数 median",
    );
    card(h, human_duration(t.total_dwell_seconds), "dwell 合计 total");
    card(h, percent(t.review.precision), "复核准确率 precision");
    card(
        h,
        human_minutes(t.review.median_minutes_to_clear),
        "处置中位 median to clear",
    );
    card(
        h,
        if busiest.is_empty() {
            "–".into()
        } else {
            busiest
        },
        "高发时段 busiest hours",
    );
    h.push_str("</div>\n");
}

fn figure_row(h: &mut String, key: &str, name: &str, f: &Figures) {
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        esc(key),
        esc(name),
        f.count,
        f.open,
        f.relapses,
        human_duration(f.total_dwell_seconds),
        human_duration(f.median_dwell_seconds)
    );
}

/// The precision table per grid and per unit: how much of what the cameras raise is real, and
/// how fast each grid and unit reviews, dispatches and clears.
fn review_loop(h: &mut String, r: &Report) {
    h.push_str("<h2>复核与处置 · Review loop</h2>\n");
    if r.totals.review.reviewed == 0 {
        h.push_str("<p class=\"none\">No event of this period has been reviewed yet.</p>\n");
        return;
    }
    for (title, col, rows) in [
        ("按网格 · By grid", "grid", &r.review_by_grid),
        ("按责任单位 · By unit", "unit", &r.review_by_unit),
    ] {
        let _ = write!(
            h,
            "<h3>{title}</h3>\n<table><tr><th>{col}</th><th>events</th><th>reviewed</th><th>confirmed</th><th>false alarms</th><th>precision</th><th>median to review</th><th>median to dispatch</th><th>median to clear</th><th>re-checked</th><th>re-check pass</th></tr>\n"
        );
        for g in rows.iter().filter(|g| g.figures.count > 0) {
            review_row(h, g);
        }
        review_row(
            h,
            &Group {
                key: "total".into(),
                name: String::new(),
                figures: r.totals.clone(),
            },
        );
        h.push_str("</table>\n");
    }
}

fn review_row(h: &mut String, g: &Group) {
    let f = &g.figures.review;
    // A precision under one half means most of what the cameras raise there is not real.
    let low = f.precision.is_some_and(|p| p < 0.5);
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        esc(&g.key),
        g.figures.count,
        f.reviewed,
        f.confirmed,
        f.false_alarms,
        if low { " low" } else { "" },
        percent(f.precision),
        human_minutes(f.median_minutes_to_review),
        human_minutes(f.median_minutes_to_dispatch),
        human_minutes(f.median_minutes_to_clear),
        f.rechecked,
        percent(f.recheck_pass_rate),
    );
}

fn hotspots(h: &mut String, r: &Report) {
    h.push_str("<h2>高发点位 · Hotspots</h2>\n<table><tr><th>#</th><th>evidence</th><th>place</th><th>grid / unit</th><th>kinds</th><th>events</th><th>relapses</th><th>median dwell</th><th>latest</th></tr>\n");
    for (n, s) in r.hotspots.iter().enumerate() {
        let photo = s
            .crop
            .as_deref()
            .and_then(|p| thumbnail(Path::new(p)))
            .map(|data| {
                format!(
                    "<img class=\"thumb\" alt=\"evidence\" src=\"data:image/jpeg;base64,{data}\">"
                )
            })
            .unwrap_or_else(|| "<span class=\"none\">photo no longer kept</span>".into());
        let kinds: Vec<String> = s.kinds.iter().map(|k| kind_label(k)).collect();
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{}</td><td>{photo}</td><td><b>{}</b><br>{}/{}<br>{}</td><td>{}<br>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            n + 1,
            esc(if s.zone_name.is_empty() { &s.zone } else { &s.zone_name }),
            esc(&s.camera),
            esc(&s.zone),
            esc(&s.road_section),
            esc(&s.grid),
            esc(&s.responsible_unit),
            esc(&kinds.join(", ")),
            s.figures.count,
            s.figures.relapses,
            human_duration(s.figures.median_dwell_seconds),
            esc(&short_time(&s.latest_start)),
        );
    }
    h.push_str("</table>\n");
}

fn relapses(h: &mut String, r: &Report) {
    let _ = writeln!(h, "<h2>反弹清单 · Relapses ({})</h2>", r.relapses.len());
    if r.relapses.is_empty() {
        h.push_str("<p class=\"none\">No place filled again in this period.</p>\n");
        return;
    }
    h.push_str("<table><tr><th>started</th><th>previous end</th><th>place</th><th>grid / unit</th><th>kind</th><th>earlier 7d / 30d</th><th>dwell</th><th>event</th></tr>\n");
    for x in &r.relapses {
        let _ = writeln!(
            h,
            "<tr><td class=\"relapse\">{}</td><td>{}</td><td>{}<br>{}/{}</td><td>{}<br>{}</td><td>{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            esc(&short_time(&x.start_time)),
            esc(&x.previous_end.as_deref().map_or("–".into(), short_time)),
            esc(if x.zone_name.is_empty() { &x.zone } else { &x.zone_name }),
            esc(&x.camera),
            esc(&x.zone),
            esc(&x.grid),
            esc(&x.responsible_unit),
            esc(&kind_label(&x.kind)),
            x.count_7d,
            x.count_30d,
            human_duration(x.dwell_seconds),
            esc(&x.event_id),
        );
    }
    h.push_str("</table>\n");
}

/// Stacked bars: one per day, one colour per kind.
fn daily_chart(r: &Report) -> Result<String, String> {
    let days = period_days(r);
    let mut kinds: Vec<&str> = r.daily.iter().map(|d| d.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    let mut stacks = vec![0u64; days.len()];
    for d in &r.daily {
        if let Some(i) = days.iter().position(|x| *x == d.date) {
            stacks[i] += d.count;
        }
    }
    // Headroom for the legend above the tallest bar.
    let tallest = stacks.iter().copied().max().unwrap_or(1);
    let top = tallest + tallest / 2 + 1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            // A segmented 0..n has n + 1 slots; 0..0 has no width and would draw nothing, so
            // a one-day period gets an empty second slot.
            .build_cartesian_2d((0..days.len().max(2) - 1).into_segmented(), 0u64..top)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(days.len().min(31))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => days
                    .get(*i)
                    .map(|d| d.get(5..).unwrap_or(d).to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("events")
            .draw()
            .map_err(chart_err)?;
        let mut base = vec![0u64; days.len()];
        for (k, kind) in kinds.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let bars: Vec<Rectangle<(SegmentValue<usize>, u64)>> = r
                .daily
                .iter()
                .filter(|d| d.kind == *kind)
                .filter_map(|d| {
                    let i = days.iter().position(|x| *x == d.date)?;
                    let (lo, hi) = (base[i], base[i] + d.count);
                    base[i] = hi;
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), lo),
                            (SegmentValue::Exact(i + 1), hi),
                        ],
                        color.filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    Some(bar)
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(chart_err)?
                .label(kind_label(kind))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// Bars: events per span of time from start to first cleared, each with its count on top.
fn clear_chart(r: &Report) -> Result<String, String> {
    let spans = &r.time_to_clear;
    if spans.is_empty() {
        return Ok(String::new());
    }
    let tallest = spans.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    // Headroom for the counts above the bars.
    let top = tallest + tallest / 5 + 1;
    let color = PALETTE[1];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            // A segmented 0..n has n + 1 slots.
            .build_cartesian_2d((0..spans.len() - 1).into_segmented(), 0u64..top)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(spans.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    spans.get(*i).map(|b| b.label.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_desc("from start to cleared")
            .y_desc("events")
            .draw()
            .map_err(chart_err)?;
        chart
            .draw_series(spans.iter().enumerate().map(|(i, b)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0),
                        (SegmentValue::Exact(i + 1), b.count),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, 10, 10);
                bar
            }))
            .map_err(chart_err)?;
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom))
            .color(&BLACK);
        chart
            .draw_series(
                spans
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.count > 0)
                    .map(|(i, b)| {
                        Text::new(
                            b.count.to_string(),
                            (SegmentValue::CenterOf(i), b.count),
                            style.clone(),
                        )
                    }),
            )
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

/// Every local date from the report's start to its end (the days with events only, when the
/// period is longer than three months or cannot be read).
fn period_days(r: &Report) -> Vec<String> {
    let mut with_events: Vec<String> = r.daily.iter().map(|d| d.date.clone()).collect();
    with_events.dedup();
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok();
    let (Some(first), Some(until)) = (date(&r.since), date(&r.until)) else {
        return with_events;
    };
    // `until` is exclusive: a period ending at midnight does not show the next day.
    let last = if r.until.get(11..19) == Some("00:00:00") {
        until.pred_opt().unwrap_or(until)
    } else {
        until
    };
    let days: Vec<String> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(93)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    if days.len() >= 93 || days.is_empty() {
        with_events
    } else {
        days
    }
}

/// `2026-11-23 09:02:00` from an RFC 3339 time (the report's time zone is in its header).
fn short_time(t: &str) -> String {
    t.get(..19)
        .map_or_else(|| t.to_string(), |s| s.replacen('T', " ", 1))
}

/// One row per place, one column per hour; darker = more events, the count written in.
fn heat_map(r: &Report) -> Result<String, String> {
    let rows = &r.zone_hours;
    let max = rows
        .iter()
        .flat_map(|z| z.hours.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let label_width = rows
        .iter()
        .map(|z| {
            z.name
                .chars()
                .map(|c| if c.is_ascii() { 8 } else { 15 })
                .sum::<u32>()
        })
        .max()
        .unwrap_or(60)
        .clamp(60, 320);
    let height = 80 + 34 * rows.len().max(2) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(label_width + 10)
            .build_cartesian_2d(
                (0..23usize).into_segmented(),
                // 0..0 has no width: one place gets an empty row above it.
                (0..rows.len().max(2) - 1).into_segmented(),
            )
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(24)
            .y_labels(rows.len())
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(h) => format!("{h:02}"),
                _ => String::new(),
            })
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    rows.get(*i).map(|z| z.name.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .x_desc("hour of day")
            .draw()
            .map_err(chart_err)?;
        let cells = rows.iter().enumerate().flat_map(|(z, row)| {
            row.hours
                .iter()
                .enumerate()
                .map(move |(hour, &n)| (z, hour, n))
        });
        chart
            .draw_series(cells.clone().map(|(z, hour, n)| {
                let heat = n as f64 / max as f64;
                let fade = |c: u8| (255.0 - (255.0 - c as f64) * heat) as u8;
                let color = if n == 0 {
                    RGBColor(246, 246, 246)
                } else {
                    RGBColor(fade(200), fade(20), fade(30))
                };
                let mut cell = Rectangle::new(
                    [
                        (SegmentValue::Exact(hour), SegmentValue::Exact(z)),
                        (SegmentValue::Exact(hour + 1), SegmentValue::Exact(z + 1)),
                    ],
                    color.filled(),
                );
                cell.set_margin(1, 1, 1, 1);
                cell
            }))
            .map_err(chart_err)?;
        let style = TextStyle::from(("sans-serif", 13).into_font())
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (light, dark) = (style.clone().color(&WHITE), style.color(&BLACK));
        chart
            .draw_series(cells.filter(|(_, _, n)| *n > 0).map(|(z, hour, n)| {
                Text::new(
                    n.to_string(),
                    (SegmentValue::CenterOf(hour), SegmentValue::CenterOf(z)),
                    if n * 2 > max {
                        light.clone()
                    } else {
                        dark.clone()
                    },
                )
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}

fn chart_err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the chart: {e}")
}

/// `暴露垃圾 exposed_garbage` for a kind the national table knows, else the kind as is.
fn kind_label(kind: &str) -> String {
    EventKind::parse(kind)
        .map(|k| format!("{} {kind}", k.default_category().1))
        .unwrap_or_else(|| kind.to_string())
}

/// A small JPEG of the picture, base64; None when the file is gone or unreadable.
fn thumbnail(path: &Path) -> Option<String> {
    let img = image::open(path).ok()?;
    let small = img.thumbnail(THUMB, THUMB).to_rgb8();
    let bytes = crate::picture::encode_jpeg(&small, 80).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Escapes text for HTML content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
