#!/usr/bin/env bash
# CPU per camera-minute: one 1080p25 camera (H.264, a keyframe every 2 s) decoding keyframes
# only and detecting once every 2 s with YOLOX-Nano, parking zones, through the daemon's own
# pipeline (`streetwatch replay`, as fast as the machine allows). Prints CPU seconds (user +
# system) per minute of video for one minute and for five minutes back to back (the second
# is the steady state: start-up costs spread thin).
#
#   make bench-camera                      # uses target/release/streetwatch
#   STREETWATCH_BIN=/path/to/other/streetwatch scripts/bench_camera.sh   # compare builds
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${STREETWATCH_BIN:-$ROOT/target/release/streetwatch}
OUT=$ROOT/out/bench
CLIP=$OUT/camera-1080p.mp4
mkdir -p "$OUT"

[[ -x $BIN ]] || { echo "bench-camera: $BIN not built: run make build" >&2; exit 1; }
if [[ ! -f $CLIP ]]; then
    echo "bench-camera: rendering the 1080p25 benchmark clip once (about two minutes) ..."
    "$BIN" compose --scenario configs/scenarios/bench-1080p.toml --out "$CLIP" >/dev/null
fi

cat >"$OUT/config.toml" <<EOF
[mqtt]
[storage]
dir = "$OUT/data"
[detector]
threads = 1
[[cameras]]
id = "bench-cam"
url = "unused-in-replay.mp4"
decode = "keyframes"
detect_every_seconds = 2.0
  [[cameras.zones]]
  id = "paving"
  kind = "no_parking"
  polygon = [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.05, 0.99]]
  dwell_seconds = 30
EOF

# CPU seconds (user + system) of one replay of `plays` minutes.
cpu_of() {
    local plays=$1
    rm -rf "$OUT/data"
    /usr/bin/time -o "$OUT/time.txt" -f '%U %S' "$BIN" replay --config "$OUT/config.toml" \
        --camera bench-cam --input "$CLIP" --events-out "$OUT/events.jsonl" --no-mqtt \
        --plays "$plays" >/dev/null 2>"$OUT/replay.log"
    local times
    times=$(tail -n 1 "$OUT/time.txt")
    awk '{printf "%.2f", $1 + $2}' <<<"$times"
}

for plays in 1 5; do
    cpu=$(cpu_of "$plays")
    awk -v c="$cpu" -v m="$plays" 'BEGIN {
        printf "bench-camera: %d min of 1080p25 (keyframes, 1 detection / 2 s): %.2f CPU-s, %.2f CPU-s per camera-minute\n", m, c, c / m }'
done
