//! `GET /metrics`: Prometheus text format (version 0.0.4) for the command center's monitoring.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Console;
use crate::stats::{Histogram, MS_BUCKETS};

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, camera: &str, h: &Histogram) {
    for (bound, count) in MS_BUCKETS.iter().zip(h.buckets) {
        let _ = writeln!(
            out,
            "{name}_bucket{{camera=\"{camera}\",le=\"{bound}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{camera=\"{camera}\",le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(out, "{name}_sum{{camera=\"{camera}\"}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{camera=\"{camera}\"}} {}", h.count);
}

/// A per-camera figure.
type Figure = fn(&crate::stats::CameraStats) -> f64;

/// The metrics page.
pub async fn metrics(
    State(c): State<Arc<Console>>,
    super::auth::Viewer(a): super::auth::Viewer,
) -> Response {
    if let Some(r) = super::auth::not_staff(&a) {
        return r;
    }
    let cams = c.stats.cameras();
    let mut out = String::new();
    let per_camera: [(&str, &str, &str, Figure); 8] = [
        (
            "streetwatch_camera_fps",
            "gauge",
            "Sampled frames processed per second, recent.",
            |s| s.fps,
        ),
        (
            "streetwatch_camera_frames_total",
            "counter",
            "Sampled frames processed since start.",
            |s| s.frames as f64,
        ),
        (
            "streetwatch_camera_reconnects_total",
            "counter",
            "Times the stream went reconnecting since start.",
            |s| s.reconnects as f64,
        ),
        (
            "streetwatch_camera_restarts_total",
            "counter",
            "Times the camera's analysis failed and was started again.",
            |s| s.restarts as f64,
        ),
        (
            "streetwatch_camera_dropped_frames_total",
            "counter",
            "Damaged packets dropped plus sampled frames not processed.",
            |s| s.dropped_frames as f64,
        ),
        (
            "streetwatch_camera_inferences_total",
            "counter",
            "Sampled frames the model ran on since start.",
            |s| s.inferences as f64,
        ),
        (
            "streetwatch_camera_lag_seconds",
            "gauge",
            "How far the latest processed frame is behind the wall clock, seconds.",
            |s| s.lag_seconds,
        ),
        (
            "streetwatch_camera_open_incidents",
            "gauge",
            "Events of the camera open now.",
            |s| s.open_incidents as f64,
        ),
    ];
    for (name, kind, help, value) in per_camera {
        family(&mut out, name, kind, help);
        for (id, s) in &cams {
            let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", label(id), value(s));
        }
    }
    family(
        &mut out,
        "streetwatch_camera_online",
        "gauge",
        "1 when frames arrive, 0 when reconnecting or offline.",
    );
    for (id, s) in &cams {
        let online = u8::from(s.state == crate::source::CameraState::Online);
        let _ = writeln!(
            out,
            "streetwatch_camera_online{{camera=\"{}\"}} {online}",
            label(id)
        );
    }
    if let Some(view) = c
        .cluster
        .get()
        .and_then(|v| v.lock().ok().map(|v| v.clone()))
    {
        family(
            &mut out,
            "streetwatch_cluster_lease_held",
            "gauge",
            "1 while this node holds a live etcd lease (cluster mode).",
        );
        let _ = writeln!(
            out,
            "streetwatch_cluster_lease_held{{node=\"{}\"}} {}",
            label(&view.node),
            u8::from(view.lease_held)
        );
        family(
            &mut out,
            "streetwatch_cluster_ownership_epoch",
            "gauge",
            "The etcd revision at which this node took the camera (its ownership epoch).",
        );
        for (camera, epoch) in &view.epochs {
            let _ = writeln!(
                out,
                "streetwatch_cluster_ownership_epoch{{camera=\"{}\"}} {epoch}",
                label(camera)
            );
        }
    }
    for (name, help, pick) in [
        (
            "streetwatch_inference_milliseconds",
            "ONNX Runtime time per sampled frame.",
            (|s: &crate::stats::CameraStats| &s.inference_hist)
                as fn(&crate::stats::CameraStats) -> &Histogram,
        ),
        (
            "streetwatch_decode_milliseconds",
            "Video decoding time per sampled frame.",
            |s: &crate::stats::CameraStats| &s.decode_hist,
        ),
    ] {
        family(&mut out, name, "histogram", help);
        for (id, s) in &cams {
            histogram(&mut out, name, &label(id), pick(s));
        }
    }
    family(
        &mut out,
        "streetwatch_events_total",
        "counter",
        "Events raised (new messages) since start, by camera and kind.",
    );
    for (id, s) in &cams {
        for (kind, n) in &s.events {
            let _ = writeln!(
                out,
                "streetwatch_events_total{{camera=\"{}\",kind=\"{}\"}} {n}",
                label(id),
                label(kind)
            );
        }
    }
    let backlog = c.delivery.backlog();
    let age = backlog
        .oldest_age_seconds(chrono::Utc::now())
        .unwrap_or(0.0);
    let node: [(&str, &str, &str, f64); 5] = [
        (
            "streetwatch_outbox_backlog",
            "gauge",
            "Event messages waiting for the broker's acknowledgement.",
            backlog.messages as f64,
        ),
        (
            "streetwatch_outbox_oldest_age_seconds",
            "gauge",
            "How long the oldest waiting message has waited (0 when none).",
            age,
        ),
        (
            "streetwatch_outbox_acked_total",
            "counter",
            "Event messages acknowledged by the broker since start.",
            c.delivery.acked.load(Ordering::SeqCst) as f64,
        ),
        (
            "streetwatch_outbox_dropped_total",
            "counter",
            "update messages dropped by the outbox bounds since start.",
            c.delivery.dropped.load(Ordering::SeqCst) as f64,
        ),
        (
            "streetwatch_mqtt_connected",
            "gauge",
            "1 while connected to the broker.",
            f64::from(u8::from(c.delivery.connected.load(Ordering::SeqCst))),
        ),
    ];
    for (name, kind, help, value) in node {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
