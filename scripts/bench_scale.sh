#!/usr/bin/env bash
# Many cameras on one node: N cameras of a 1080p25 GOP-50 main stream plus a D1 (704x576, 25 fps,
# GOP 50) detect stream of the same scene, run by the daemon (`streetwatch run`) with keyframe
# decoding and one detection every 2 s. The first K cameras are served over RTSP by a real
# server (GStreamer's GstRtspServer, tests/support/rtsp_server.py, one process, each camera's
# streams starting at a different keyframe); the rest are real-time file cameras (pace 1.0,
# repeat). A real mosquitto takes the events. After a warm-up, over a measurement window it
# prints the daemon's cores used, CPU-s per camera-minute, resident MB (total and per camera),
# lag and dropped frames (from its /metrics), and the cameras that fell behind their detection
# rate; then it runs the Python peer pipeline (scripts/peer_pipeline.py: OpenCV decode + ONNX
# Runtime, one detection per 2 s) on the same 1080p clip and prints the ratio peer / ours.
#
#   make bench-scale                              # N=20 cameras, 60 s warm-up, 600 s window
#   DURATION=120 N=20 make bench-scale            # a short run
#   scripts/bench_scale.sh --cameras 4 --duration 120 --warmup 30 --main-only
#
# Options (or the environment variable in brackets):
#   --cameras N      [N, default 20]        cameras on the node
#   --duration S     [DURATION, 600]        measurement window, seconds
#   --warmup S       [WARMUP, 60]           seconds between start and the window
#   --rtsp K         [RTSP_CAMERAS, min(N, 20)]  cameras served over RTSP; the rest are files
#   --main-only      [MAIN_ONLY=1]          no detect_url: everything runs on the 1080p stream
#   --sessions S     [SESSIONS, nproc]      ONNX Runtime sessions ([detector] sessions)
#   --full-detect S  [FULL_DETECT, 0]       cameras' full_detect_seconds: skip the model while
#                                           nothing changes in the zones, a full pass every S s
#   --no-peer        [PEER=0]               skip the Python peer
#   --peer-plays P   [PEER_PLAYS, 2]        minutes of video the peer reads (plays of the clip)
# STREETWATCH_BIN: another build to measure. Files of the run go to out/bench/scale/.
#
# The last lines are machine-readable, one figure per line: `BENCH_SCALE name=value`
# (also written to out/bench/scale/results.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${STREETWATCH_BIN:-$ROOT/target/release/streetwatch}
CACHE=${STREETWATCH_CACHE:-$ROOT/.cache}
OUT=$ROOT/out/bench
RUN=$OUT/scale
MAIN_CLIP=$OUT/camera-1080p.mp4
D1_CLIP=$OUT/camera-d1.mp4
PEER_PY=$CACHE/py/bin/python3
SYS_PY=/usr/bin/python3
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"
DETECT_EVERY=2.0

N=${N:-20}
DURATION=${DURATION:-600}
WARMUP=${WARMUP:-60}
RTSP_CAMERAS=${RTSP_CAMERAS:-}
MAIN_ONLY=${MAIN_ONLY:-0}
SESSIONS=${SESSIONS:-$(nproc)}
PEER=${PEER:-1}
FULL_DETECT=${FULL_DETECT:-0}
PEER_PLAYS=${PEER_PLAYS:-2}

say() { printf 'bench-scale: %s\n' "$*"; }
die() { printf 'bench-scale: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
    case $1 in
        --cameras) N=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --rtsp) RTSP_CAMERAS=$2; shift 2 ;;
        --main-only) MAIN_ONLY=1; shift ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --no-peer) PEER=0; shift ;;
        --full-detect) FULL_DETECT=$2; shift 2 ;;
        --peer-plays) PEER_PLAYS=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) printf 'bench-scale: unknown option %s\n\n' "$1" >&2; usage 2 >&2 ;;
    esac
done
for v in N DURATION WARMUP SESSIONS PEER_PLAYS FULL_DETECT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((N >= 1)) || die "N must be at least 1"
((DURATION >= 10)) || die "DURATION must be at least 10 s"
((SESSIONS >= 1)) || die "SESSIONS must be at least 1"
[[ -z $RTSP_CAMERAS ]] && RTSP_CAMERAS=$((N < 20 ? N : 20))
[[ $RTSP_CAMERAS =~ ^[0-9]+$ ]] || die "RTSP_CAMERAS must be a whole number"
((RTSP_CAMERAS > N)) && RTSP_CAMERAS=$N
[[ $MAIN_ONLY == 1 ]] && MODE=main-only || MODE=main+detect

[[ -x $BIN ]] || die "$BIN not built: run make build"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x $MOSQUITTO ]] || die "mosquitto not found: run make setup (Debian package mosquitto)"
command -v curl >/dev/null || die "curl not found: run make setup"
mkdir -p "$OUT"

# ---- clips ---------------------------------------------------------------------------------
if [[ ! -f $MAIN_CLIP ]]; then
    say "rendering the 1080p25 benchmark clip once (about two minutes) ..."
    "$BIN" compose --scenario configs/scenarios/bench-1080p.toml --out "$MAIN_CLIP" >/dev/null
fi
if [[ $MODE == main+detect && ( ! -f $D1_CLIP || $D1_CLIP -ot $MAIN_CLIP ) ]]; then
    command -v ffmpeg >/dev/null ||
        die "the ffmpeg command is needed for the D1 clip: run make setup (Debian package ffmpeg)"
    say "making the D1 (704x576, 25 fps, GOP 50) clip of the same scene once (about 20 s) ..."
    # Same frames and keyframe positions as the main stream (a keyframe every 50 frames, no
    # B-frames, as cameras send), stretched to 4:3 as a D1 sub-stream is.
    ffmpeg -hide_banner -loglevel error -y -i "$MAIN_CLIP" -an -vf scale=704:576 \
        -c:v libx264 -preset medium -bf 0 -g 50 -keyint_min 50 -sc_threshold 0 \
        -pix_fmt yuv420p -fps_mode passthrough "$OUT/camera-d1.tmp.mp4"
    mv "$OUT/camera-d1.tmp.mp4" "$D1_CLIP"
fi

# ---- processes, cleaned up on any exit -----------------------------------------------------
DAEMON_PID='' RTSP_PID='' MQTT_PID=''
cleanup() {
    stop "$DAEMON_PID" 20
    stop "$RTSP_PID" 5
    stop "$MQTT_PID" 5
    DAEMON_PID='' RTSP_PID='' MQTT_PID=''
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$RUN"
mkdir -p "$RUN"

# ---- MQTT broker -----------------------------------------------------------------------------
MQTT_PORT=$(free_port)
mkdir -p "$RUN/mosquitto"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_PORT" \
    >"$RUN/mosquitto/mosquitto.conf"
# Started as root, mosquitto drops to its own user: it must still read its config.
chmod 777 "$RUN/mosquitto"
chmod 644 "$RUN/mosquitto/mosquitto.conf"
"$MOSQUITTO" -c "$RUN/mosquitto/mosquitto.conf" >/dev/null 2>"$RUN/mosquitto/mosquitto.log" &
MQTT_PID=$!
wait_port "$MQTT_PORT" 10 "$MQTT_PID" ||
    die "mosquitto did not start on $MQTT_PORT: $(cat "$RUN/mosquitto/mosquitto.log")"

# ---- RTSP server for the first K cameras -----------------------------------------------------
cam_id() { printf 'cam%03d' "$1"; }
RTSP_NOTE=''
if ((RTSP_CAMERAS > 0)); then
    if ! "$SYS_PY" -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' 2>/dev/null; then
        RTSP_NOTE="no GStreamer RTSP server on this machine (make setup installs it)"
        RTSP_CAMERAS=0
    fi
fi
if ((RTSP_CAMERAS > 0)); then
    RTSP_PORT=$(free_port)
    mounts=()
    for ((i = 1; i <= RTSP_CAMERAS; i++)); do
        id=$(cam_id "$i")
        # Camera i starts at keyframe i-1 of the clip (the server wraps around), its main and
        # detect streams at the same one: the cameras do not all detect at the same moment.
        mounts+=(--mount "/$id/main=$MAIN_CLIP@$((i - 1))")
        if [[ $MODE == main+detect ]]; then
            mounts+=(--mount "/$id/detect=$D1_CLIP@$((i - 1))")
        fi
    done
    "$SYS_PY" tests/support/rtsp_server.py --port "$RTSP_PORT" "${mounts[@]}" \
        >"$RUN/rtsp-server.out" 2>"$RUN/rtsp-server.log" &
    RTSP_PID=$!
    for ((i = 0; i < 1200; i++)); do
        grep -qx ready "$RUN/rtsp-server.out" 2>/dev/null && break
        kill -0 "$RTSP_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -qx ready "$RUN/rtsp-server.out" 2>/dev/null || ! wait_port "$RTSP_PORT" 10 "$RTSP_PID"; then
        RTSP_NOTE="the RTSP server did not start ($(tail -n 1 "$RUN/rtsp-server.log" 2>/dev/null))"
        stop "$RTSP_PID" 2
        RTSP_PID='' RTSP_CAMERAS=0
    fi
fi
FILE_CAMERAS=$((N - RTSP_CAMERAS))

# ---- daemon config ---------------------------------------------------------------------------
HTTP_PORT=$(free_port)
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
CFG=$RUN/config.toml
{
    cat <<EOF
# Written by scripts/bench_scale.sh: $N cameras ($RTSP_CAMERAS over RTSP, $FILE_CAMERAS files), $MODE.
[node]
id = "bench-scale"
[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"
topic_prefix = "bench"
[storage]
dir = "$RUN/data"
[detector]
threads = 1
sessions = $SESSIONS
[http]
listen = "127.0.0.1:$HTTP_PORT"
token_env = "STREETWATCH_BENCH_TOKEN"
EOF
    for ((i = 1; i <= N; i++)); do
        id=$(cam_id "$i")
        printf '\n[[cameras]]\nid = "%s"\n' "$id"
        if ((i <= RTSP_CAMERAS)); then
            printf 'url = "rtsp://127.0.0.1:%s/%s/main"\n' "$RTSP_PORT" "$id"
            if [[ $MODE == main+detect ]]; then
                printf 'detect_url = "rtsp://127.0.0.1:%s/%s/detect"\n' "$RTSP_PORT" "$id"
            fi
        else
            printf 'url = "%s"\n' "$MAIN_CLIP"
            if [[ $MODE == main+detect ]]; then
                printf 'detect_url = "%s"\n' "$D1_CLIP"
            fi
            printf 'pace = 1.0\nrepeat = true\n'
        fi
        cat <<EOF
decode = "keyframes"
detect_every_seconds = $DETECT_EVERY
full_detect_seconds = $FULL_DETECT
  [[cameras.zones]]
  id = "paving"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 30
EOF
    done
} >"$CFG"

if ! "$BIN" check --config "$CFG" >"$RUN/check.log" 2>&1; then
    cat "$RUN/check.log" >&2
    if [[ $MODE == main+detect ]] && grep -q detect_url "$RUN/check.log"; then
        die "this build of streetwatch does not take detect_url: rebuild, or measure with --main-only"
    fi
    die "the generated config $CFG does not pass streetwatch check"
fi

# ---- run the daemon --------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
CORES=$(nproc)
cpu_ticks() { # utime + stime of a process (all its threads), in clock ticks
    [[ -n ${1:-} && -r /proc/$1/stat ]] || { echo 0; return; }
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
metrics() { # the daemon's /metrics page (three tries: a saturated node answers late)
    local i
    for i in 1 2 3; do
        curl -sf --max-time 20 -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:$HTTP_PORT/metrics" && return 0
    done
    return 1
}
alive() {
    kill -0 "$DAEMON_PID" 2>/dev/null ||
        die "the daemon exited; its log ($RUN/daemon.log) ends with:
$(tail -n 20 "$RUN/daemon.log")"
}

say "$N cameras ($MODE): $RTSP_CAMERAS over RTSP, $FILE_CAMERAS real-time file cameras${RTSP_NOTE:+; $RTSP_NOTE}"
say "warm-up ${WARMUP} s, then a ${DURATION} s window; run files in ${RUN#"$ROOT"/}/"
STREETWATCH_BENCH_TOKEN=$TOKEN "$BIN" run --config "$CFG" >"$RUN/daemon.log" 2>&1 &
DAEMON_PID=$!
for ((i = 0; i < 600; i++)); do
    alive
    curl -sf --max-time 2 -o /dev/null -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$HTTP_PORT/metrics" && break
    sleep 0.1
done
metrics >/dev/null || die "the daemon's /metrics did not answer on 127.0.0.1:$HTTP_PORT"
end=$(($(date +%s) + WARMUP))
while (($(date +%s) < end)); do alive; sleep 1; done

# The window.
metrics >"$RUN/metrics-start.txt" || die "the daemon's /metrics did not answer"
t0=$(now) d0=$(cpu_ticks "$DAEMON_PID") r0=$(cpu_ticks "$RTSP_PID") m0=$(cpu_ticks "$MQTT_PID") b0=$(busy_ticks)
rss_max=0
end=$(awk -v t="$t0" -v d="$DURATION" 'BEGIN{printf "%d", t + d}')
while :; do
    alive
    rss=$(rss_kb "$DAEMON_PID")
    ((rss > rss_max)) && rss_max=$rss
    left=$((end - $(date +%s)))
    ((left <= 0)) && break
    sleep $((left < 5 ? left : 5))
done
t1=$(now) d1=$(cpu_ticks "$DAEMON_PID") r1=$(cpu_ticks "$RTSP_PID") m1=$(cpu_ticks "$MQTT_PID") b1=$(busy_ticks)
rss_end=$(rss_kb "$DAEMON_PID")
((rss_end > rss_max)) && rss_max=$rss_end
metrics >"$RUN/metrics-end.txt" || die "the daemon's /metrics did not answer"
stop "$DAEMON_PID" 20
DAEMON_PID=''
cleanup

# Per-camera figures from the two /metrics pages: frames and dropped frames over the window,
# lag at its end.
read -r behind online reconnects dropped dropped_max lag_max lag_mean events frames inferences <<<"$(
    awk -v window="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" -v every="$DETECT_EVERY" '
        function cam(s) { match(s, /camera="[^"]*"/); return substr(s, RSTART + 8, RLENGTH - 9) }
        { split($1, p, "{"); name = p[1]; c = cam($1) }
        FNR == NR {
            if (name == "streetwatch_camera_frames_total") f0[c] = $2
            if (name == "streetwatch_camera_dropped_frames_total") x0[c] = $2
            if (name == "streetwatch_camera_reconnects_total") c0[c] = $2
            if (name == "streetwatch_events_total") e0 += $2
            if (name == "streetwatch_camera_inferences_total") i0 += $2
            next
        }
        name == "streetwatch_camera_frames_total" { f1[c] = $2 }
        name == "streetwatch_camera_dropped_frames_total" { x1[c] = $2 }
        name == "streetwatch_camera_reconnects_total" { rc += $2 - c0[c] }
        name == "streetwatch_camera_online" { on += $2 }
        name == "streetwatch_camera_lag_seconds" { nl++; ls += $2; if ($2 > lm) lm = $2 }
        name == "streetwatch_events_total" { e1 += $2 }
        name == "streetwatch_camera_inferences_total" { i1 += $2 }
        END {
            expected = window / every
            for (c in f1) {
                # Behind: fewer sampled frames than the detection rate gives, less 5 % and one.
                if (f1[c] - f0[c] < 0.95 * expected - 1) behind++
                d = x1[c] - x0[c]; dt += d; if (d > dm) dm = d
                ft += f1[c] - f0[c]
            }
            printf "%d %d %d %d %d %s %s %d %d %d\n", behind, on, rc, dt, dm,
                nl ? sprintf("%.2f", lm) : "n/a", nl ? sprintf("%.2f", ls / nl) : "n/a", e1 - e0,
                ft, i1 - i0
        }' "$RUN/metrics-start.txt" "$RUN/metrics-end.txt"
)"

read -r wall cpu cores per_cam_min rss_mb rss_per_cam rss_max_mb rtsp_cores mqtt_cores busy_cores <<<"$(
    awk -v t0="$t0" -v t1="$t1" -v d0="$d0" -v d1="$d1" -v r0="$r0" -v r1="$r1" -v m0="$m0" -v m1="$m1" \
        -v b0="$b0" -v b1="$b1" -v hz="$CLK_TCK" -v n="$N" -v rss="$rss_end" -v rmax="$rss_max" 'BEGIN {
        w = t1 - t0; cpu = (d1 - d0) / hz
        printf "%.1f %.2f %.3f %.3f %.1f %.2f %.1f %.3f %.3f %.2f\n", w, cpu, cpu / w, cpu / (n * w / 60),
            rss / 1024, rss / 1024 / n, rmax / 1024, (r1 - r0) / hz / w, (m1 - m0) / hz / w,
            (b1 - b0) / hz / w }'
)"

# ---- the Python peer, after the daemon (not alongside it) -------------------------------------
peer='n/a' ratio='n/a' peer_line=''
if [[ $PEER == 1 ]]; then
    if [[ -x $PEER_PY ]]; then
        say "running the Python peer on ${MAIN_CLIP#"$ROOT"/} ($PEER_PLAYS min of video) ..."
        if "$PEER_PY" scripts/peer_pipeline.py --clip "$MAIN_CLIP" --every "$DETECT_EVERY" \
            --plays "$PEER_PLAYS" >"$RUN/peer.log" 2>&1; then
            peer_line=$(grep -v '^peer: ' "$RUN/peer.log" | tail -n 1)
            peer=$(sed -n 's/^peer: .*cpu_s_per_camera_minute=\([0-9.]*\).*/\1/p' "$RUN/peer.log")
            ratio=$(awk -v p="$peer" -v o="$per_cam_min" 'BEGIN{ if (o > 0) printf "%.1f", p / o; else print "n/a" }')
        else
            peer_line="failed: $(tail -n 1 "$RUN/peer.log")"
        fi
    else
        peer_line="skipped: $PEER_PY not found (make setup creates it)"
    fi
fi

# ---- report ----------------------------------------------------------------------------------
expected=$(awk -v w="$wall" -v e="$DETECT_EVERY" 'BEGIN{printf "%d", w / e}')
if [[ $MODE == main+detect ]]; then
    streams="1080p25 GOP-50 main + D1 704x576 25 fps GOP-50 detect stream"
else
    streams="1080p25 GOP-50 main stream only"
fi
echo
echo "Scale benchmark: $N cameras, $streams, keyframes decoded, 1 detection / ${DETECT_EVERY%.0} s (YOLOX-Nano)"
echo "  $RTSP_CAMERAS over RTSP (GStreamer RTSP server), $FILE_CAMERAS real-time file cameras${RTSP_NOTE:+ ($RTSP_NOTE)}"
echo "  $SESSIONS ONNX Runtime session(s) x 1 thread; $CORES cores; warm-up ${WARMUP} s, window ${wall} s"
echo
printf '  %-48s %s\n' \
    "cores used (daemon)" "$cores of $CORES" \
    "CPU-s per camera-minute" "$per_cam_min" \
    "resident MB, total (peak in window)" "$rss_mb ($rss_max_mb)" \
    "resident MB per camera" "$rss_per_cam" \
    "lag s, max / mean (end of window)" "$lag_max / $lag_mean" \
    "dropped frames in window, total / worst camera" "$dropped / $dropped_max" \
    "cameras behind (< 95 % of $expected detections)" "$behind of $N" \
    "cameras online at the end" "$online of $N" \
    "reconnects in window" "$reconnects" \
    "events raised in window" "$events" \
    "model runs / sampled frames (full_detect $FULL_DETECT s)" "$inferences / $frames" \
    "machine busy, all processes" "$busy_cores of $CORES cores" \
    "RTSP server / mosquitto (not counted above)" "$rtsp_cores / $mqtt_cores cores" \
    "Python peer, CPU-s per camera-minute" "$peer" \
    "peer / ours" "$([[ $ratio == n/a ]] && echo n/a || echo "${ratio}x")"
[[ -n $peer_line ]] && echo "  $peer_line"
echo

{
    for kv in "cameras=$N" "rtsp_cameras=$RTSP_CAMERAS" "file_cameras=$FILE_CAMERAS" "mode=$MODE" \
        "sessions=$SESSIONS" "full_detect_seconds=$FULL_DETECT" "frames=$frames" "inferences=$inferences" "warmup_s=$WARMUP" "window_s=$wall" "cpu_s=$cpu" "cores_used=$cores" \
        "cpu_s_per_camera_minute=$per_cam_min" "rss_mb=$rss_mb" "rss_mb_peak=$rss_max_mb" \
        "rss_mb_per_camera=$rss_per_cam" "lag_max_s=$lag_max" "lag_mean_s=$lag_mean" \
        "dropped_frames=$dropped" "dropped_frames_worst_camera=$dropped_max" \
        "cameras_behind=$behind" "cameras_online=$online" "reconnects=$reconnects" \
        "events=$events" "machine_busy_cores=$busy_cores" "rtsp_server_cores=$rtsp_cores" \
        "mosquitto_cores=$mqtt_cores" "peer_cpu_s_per_camera_minute=$peer" "peer_ratio=$ratio"; do
        echo "BENCH_SCALE $kv"
    done
} | tee "$RUN/results.txt"
