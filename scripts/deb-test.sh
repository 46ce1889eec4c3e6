#!/usr/bin/env bash
# The package's acceptance test, on this machine itself (a debootstrap root would have to
# download OpenCV and FFmpeg from Debian's mirrors on every run): it needs root and a machine
# without streetwatch installed, and leaves none (the package is purged at the end).
#
#  1. builds the package (scripts/deb.sh), lints it (lintian: no error or warning) and installs
#     it with dpkg -i: the user, the data folder and the enabled service are there;
#  2. checks the unit with systemd-analyze verify, then runs `streetwatch check` on the
#     installed config the way the unit does: its User, WorkingDirectory and ExecStartPre
#     line, with an empty environment;
#  3. fetches the weights from a folder (`models fetch --from`), adds a camera watching the
#     demo clip to /etc/streetwatch/config.toml and points it at a mosquitto started here;
#  4. starts the daemon from the unit's ExecStart line and waits for the camera's parking
#     event at a subscriber;
#  5. rewrites the ledger as the first release (schema 1) would have it, with the same events,
#     and installs a newer build over it: the edited config is kept, the new daemon migrates the
#     ledger to the current schema and the report by grid is the same as before; a ledger from
#     a newer schema (as after a downgrade) is refused by name and left untouched;
#  6. purges the package.
#
#   make deb-test
#   scripts/deb-test.sh            # exit 0: passed; 1: failed; 2: could not run here
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${STREETWATCH_BIN:-$ROOT/target/release/streetwatch}
RUN=$ROOT/out/deb-test
CACHE=${STREETWATCH_CACHE:-$ROOT/.cache}
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"

say() { printf 'deb-test: %s\n' "$*"; }
die() { printf 'deb-test: error: %s\n' "$*" >&2; exit 2; }
fail() { printf 'deb-test: FAILED: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (it installs the package with dpkg -i): run it as root, or in CI"
if dpkg-query -W -f '${Status}' streetwatch 2>/dev/null | grep -q installed; then
    die "streetwatch is installed on this machine already; this test installs and purges its own"
fi
for tool in dpkg setpriv mosquitto mosquitto_sub; do
    command -v "$tool" >/dev/null || die "$tool not found: run make setup"
done
[[ -x $BIN ]] || die "$BIN not built: run make build"

UNIT=/lib/systemd/system/streetwatch.service
CONFIG=/etc/streetwatch/config.toml
DATA=/var/lib/streetwatch
DAEMON_PID='' MQTT_PID=''
weights=''
cleanup() {
    stop "$DAEMON_PID" 20
    stop "$MQTT_PID" 5
    [[ -z $weights ]] || rm -rf "$weights"
    if dpkg-query -W streetwatch >/dev/null 2>&1; then
        dpkg --purge streetwatch >>"$RUN/dpkg.log" 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$RUN"
mkdir -p "$RUN"
chmod 0755 "$RUN"

# ---- 1. two builds of one binary: the second is the upgrade ---------------------------------
# The first has deb.sh's own version; the second that version plus ".1", which dpkg orders after it.
OLD=$(bash scripts/deb.sh --out "$RUN/old" | tail -n 1)
NEW_VERSION=$(dpkg-deb -f "$OLD" Version).1
NEW=$(bash scripts/deb.sh --out "$RUN/new" --version "$NEW_VERSION" | tail -n 1)
say "built $(basename "$OLD") and $(basename "$NEW")"
if command -v lintian >/dev/null; then
    lintian --fail-on error,warning --tag-display-limit 0 "$OLD" >"$RUN/lintian.log" 2>&1 ||
        fail "lintian: $(grep -v 'root privileges' "$RUN/lintian.log")"
    say "lintian: no errors or warnings (ONNX Runtime's embedded curl and mbedtls overridden)"
else
    say "lintian not here: the package is not linted"
fi
dpkg -i "$OLD" </dev/null >>"$RUN/dpkg.log" 2>&1 || fail "dpkg -i $(basename "$OLD"): $(tail -n 5 "$RUN/dpkg.log")"
getent passwd streetwatch >/dev/null || fail "no streetwatch user after installing"
[[ $(stat -c %U "$DATA") == streetwatch ]] || fail "$DATA is not the streetwatch user's"
[[ $(stat -c '%G %a' "$CONFIG") == "streetwatch 640" ]] || fail "$CONFIG: want group streetwatch, mode 640; is $(stat -c '%G %a' "$CONFIG")"
/usr/bin/streetwatch --version | grep -q "(git [0-9a-f]\{12\})" ||
    fail "--version does not name the commit: $(/usr/bin/streetwatch --version)"
WANTS=/etc/systemd/system/multi-user.target.wants/streetwatch.service
[[ -L $WANTS ]] || fail "the service is not enabled after the first install (no $WANTS)"
say "installed: $(/usr/bin/streetwatch --version); user streetwatch; $DATA; the service enabled"

# ---- 2. the unit, and check the way it runs it ---------------------------------------------
if command -v systemd-analyze >/dev/null; then
    man_check=--man=yes
    command -v man >/dev/null || man_check=--man=no
    systemd-analyze verify "$man_check" "$UNIT" >"$RUN/verify.log" 2>&1 ||
        fail "systemd-analyze verify $UNIT: $(cat "$RUN/verify.log")"
    # systemd's own rating of the hardening, 0 (locked down) to 10; the unit scores 1.5.
    systemd-analyze security --offline=yes --threshold=20 "$UNIT" >"$RUN/security.log" 2>&1 ||
        fail "the unit's exposure is above 2.0: $(tail -n 1 "$RUN/security.log")"
    say "systemd-analyze verify: clean ($man_check); security: $(tail -n 1 "$RUN/security.log" | sed 's/.*: //')"
else
    say "systemd-analyze not here (no systemd package): unit not verified"
fi
unit_value() { sed -n "s/^$1=//p" "$UNIT" | head -n 1; }
USER_=$(unit_value User)
WORKDIR=$(unit_value WorkingDirectory)
PRE=$(unit_value ExecStartPre)
START=$(unit_value ExecStart)
[[ $USER_ == streetwatch && -n $WORKDIR && -n $PRE && -n $START ]] || fail "the unit lacks User, WorkingDirectory, ExecStartPre or ExecStart"
# As systemd starts it: that user and its groups, that folder, only the environment systemd
# gives a service with User= (PATH, HOME, USER, LOGNAME). Each step execs the next, so the pid
# of the subshell becomes the daemon's own.
unit_env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$(getent passwd "$USER_" | cut -d: -f6)"
    USER="$USER_" LOGNAME="$USER_" setpriv --reuid="$USER_" --regid="$USER_" --init-groups --)
as_unit() { # command line words...
    (cd "$WORKDIR" && exec "${unit_env[@]}" "$@")
}
# shellcheck disable=SC2086 # the unit's command lines are words
as_unit $PRE >"$RUN/check-shipped.log" 2>&1 || fail "check on the shipped config: $(cat "$RUN/check-shipped.log")"
say "shipped config: $(cat "$RUN/check-shipped.log")"

# ---- 3. weights from a folder, a camera, a broker --------------------------------------------
# Outside the checkout: the streetwatch user may not be able to enter a root-owned clone.
weights=$(mktemp -d /tmp/streetwatch-weights.XXXXXX)
chmod 0755 "$weights"
cp "$CACHE/assets/models/yolox_nano.onnx" "$weights/" || die "no weights in $CACHE: run make setup"
chmod -R a+rX "$weights"
as_unit /usr/bin/streetwatch models fetch yolox-nano-coco --from "$weights" >"$RUN/fetch.log" 2>&1 ||
    fail "models fetch --from: $(cat "$RUN/fetch.log")"
[[ -f $DATA/assets/models/yolox_nano.onnx ]] || fail "models fetch did not put the weights into $DATA/assets: $(cat "$RUN/fetch.log")"
say "$(cat "$RUN/fetch.log")"

say "rendering the demo clip ..."
mkdir -p "$DATA/demo"
(STREETWATCH_CACHE=$CACHE "$BIN" compose --scenario configs/scenarios/demo-parking.toml \
    --out "$DATA/demo/demo-parking.mp4" >"$RUN/compose.log" 2>&1) || fail "compose: $(cat "$RUN/compose.log")"
chown -R streetwatch:streetwatch "$DATA/demo"

MQTT_PORT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" >"$RUN/mosquitto.conf"
chmod 0644 "$RUN/mosquitto.conf"
mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
MQTT_PID=$!
wait_port "$MQTT_PORT" 10 "$MQTT_PID" || die "mosquitto did not start: $(tail -n 3 "$RUN/mosquitto.log")"

# The operator's edits: the broker's port and one camera (the demo's, from configs/demo.toml).
sed -i "s|^url = \"mqtt://127.0.0.1:1883\"|url = \"mqtt://127.0.0.1:$MQTT_PORT\"|" "$CONFIG"
grep -q "127.0.0.1:$MQTT_PORT" "$CONFIG" || fail "could not point $CONFIG at the test broker"
{
    echo
    echo '[incidents]'
    echo 'end_after_seconds = 15'
    echo
    sed -n '/^\[\[cameras\]\]/,$p' configs/demo.toml |
        sed "s|^url = .*|url = \"$DATA/demo/demo-parking.mp4\"|"
} >>"$CONFIG"
# shellcheck disable=SC2086
as_unit $PRE >"$RUN/check-edited.log" 2>&1 || fail "check on the edited config: $(cat "$RUN/check-edited.log")"
say "edited config: $(cat "$RUN/check-edited.log")"

# ---- 4. the daemon as the unit runs it, and the camera's event at the command center ---------
received=$RUN/received.txt
start_daemon() { # log file
    # One subshell that execs: $! is the daemon's pid, so stopping it stops the daemon.
    # shellcheck disable=SC2086
    (cd "$WORKDIR" && exec "${unit_env[@]}" $START) >"$1" 2>&1 &
    DAEMON_PID=$!
}
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t 'streetwatch/events/#' -F '%t %p' -C 1 -W 240 >"$received" 2>"$RUN/sub.log" &
SUB_PID=$!
sleep 0.5
start_daemon "$RUN/daemon-old.log"
# Until the event arrives; a camera that cannot start, or a daemon that exits, ends it early.
while kill -0 "$SUB_PID" 2>/dev/null; do
    grep -qs "camera not started" "$RUN/daemon-old.log" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 1
done
if kill -0 "$SUB_PID" 2>/dev/null; then kill "$SUB_PID"; fi
wait "$SUB_PID" && [[ -s $received ]] ||
    fail "no event at the subscriber; daemon log: $(tail -n 20 "$RUN/daemon-old.log")"
grep -q '^streetwatch/events/[a-z_]*/cam-demo-01 ' "$received" && grep -q '"type":"new"' "$received" ||
    fail "the first message is not the demo camera's new event: $(head -c 600 "$received")"
say "event at the subscriber: $(cut -d' ' -f1 "$received")"
sleep 3
stop "$DAEMON_PID" 20
DAEMON_PID=''
ledger_facts() { # prints "<schema> <messages> <events>"
    "$SYS_PY" - "$DATA/ledger.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
v = c.execute("PRAGMA user_version").fetchone()[0]
tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
m = c.execute("SELECT count(*) FROM messages").fetchone()[0] if "messages" in tables else -1
e = c.execute("SELECT count(DISTINCT event_id) FROM messages").fetchone()[0] if "messages" in tables else -1
print(v, m, e)
PY
}
read -r schema messages events <<<"$(ledger_facts)"
((messages > 0 && events > 0)) || fail "the ledger holds no messages after the event (schema $schema)"
say "ledger: schema $schema, $messages message(s) of $events event(s)"

# ---- 5. upgrade from a first-release ledger, then a ledger newer than the build -----------------
# What the events look like to the people who read the reports, before the upgrade.
report_figures() { # prints the report's figures by grid, as JSON
    as_unit /usr/bin/streetwatch report --config "$CONFIG" --since 30d --format json >"$RUN/report.json" 2>"$RUN/report.err" ||
        fail "report: $(cat "$RUN/report.err")"
    "$SYS_PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
f = lambda g: [g["count"], g["open"], g["relapses"]]
print(json.dumps({"totals": f(r["totals"]), "groups": {g["key"]: f(g) for g in r["groups"]}}, ensure_ascii=False))
' "$RUN/report.json"
}
figures_before=$(report_figures)
grep -q "第八网格" <<<"$figures_before" || fail "the report before the upgrade lacks the event's grid: $figures_before"
# The ledger as the first release wrote it (schema 1: incidents' places and times, and the
# messages), holding these same events, so the upgrade has every migration step to run.
mv "$DATA/ledger.sqlite" "$RUN/ledger-current.sqlite"
rm -f "$DATA/ledger.sqlite-wal" "$DATA/ledger.sqlite-shm"
"$SYS_PY" - src/ledger/schema.rs "$RUN/ledger-current.sqlite" "$DATA/ledger.sqlite" <<'PY'
import re, sqlite3, sys
v1 = re.search(r'r#"(.*?)"#', open(sys.argv[1], encoding="utf-8").read(), re.S).group(1)
now, first = sqlite3.connect(sys.argv[2]), sqlite3.connect(sys.argv[3])
first.executescript(v1 + "\nPRAGMA user_version = 1;")
cols = "event_id, camera, zone, kind, start_ms, last_seen_ms, end_ms, end_reason, x1, y1, x2, y2"
first.executemany(f"INSERT INTO incidents ({cols}) VALUES ({', '.join('?' * 12)})",
                  now.execute(f"SELECT {cols} FROM incidents"))
first.executemany("INSERT INTO messages (event_id, seq, type, payload) VALUES (?, ?, ?, ?)",
                  now.execute("SELECT event_id, seq, type, payload FROM messages"))
first.commit()
first.close()
PY
chown streetwatch:streetwatch "$DATA/ledger.sqlite"
read -r schema1 messages1 _ <<<"$(ledger_facts)"
((schema1 == 1 && messages1 == messages)) || fail "could not write the first-release ledger (schema $schema1, $messages1 message(s))"

# The clip is done with: the upgraded daemon only has to open the ledger (its console and
# outbox do at start), and no new event may change the figures compared below.
sed -i 's/^id = "cam-demo-01"$/&\nenabled = false/' "$CONFIG"
grep -q '^enabled = false' "$CONFIG" || fail "could not disable the demo camera in $CONFIG"
cp "$CONFIG" "$RUN/config-before-upgrade.toml"
dpkg -i "$NEW" </dev/null >>"$RUN/dpkg.log" 2>&1 || fail "dpkg -i $(basename "$NEW") over the old one: $(tail -n 5 "$RUN/dpkg.log")"
[[ $(dpkg-query -W -f '${Version}' streetwatch) == "$NEW_VERSION" ]] || fail "the upgrade did not install"
cmp -s "$CONFIG" "$RUN/config-before-upgrade.toml" || fail "the upgrade changed the operator's $CONFIG"
start_daemon "$RUN/daemon-new.log"
wait_port "$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$CONFIG")" 60 "$DAEMON_PID" ||
    fail "the upgraded daemon did not start: $(tail -n 20 "$RUN/daemon-new.log")"
sleep 2
stop "$DAEMON_PID" 20
DAEMON_PID=''
read -r schema2 messages2 events2 <<<"$(ledger_facts)"
((schema2 == schema && messages2 >= messages && events2 == events)) ||
    fail "after the upgrade the ledger is schema $schema2 with $messages2 message(s) of $events2 event(s); before: $schema, $messages, $events"
figures_after=$(report_figures)
[[ $figures_after == "$figures_before" ]] ||
    fail "the report changed across the upgrade: before $figures_before, after $figures_after"
say "upgraded to $(dpkg-query -W -f '${Version}' streetwatch): config kept; the ledger migrated from schema 1 to $schema2 with its $messages message(s) of $events event(s); the report by grid is the same: $figures_after"

# (Closing the last connection checkpoints the WAL into the file, so its sum below is final.)
"$SYS_PY" -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = %d' % (int(sys.argv[2]) + 1)); c.commit(); c.close()" \
    "$DATA/ledger.sqlite" "$schema2"
sum_before=$(sha256sum "$DATA/ledger.sqlite" | cut -d' ' -f1)
# shellcheck disable=SC2086
if as_unit $START >"$RUN/daemon-newer-ledger.log" 2>&1; then
    fail "the daemon ran on a ledger of a newer schema"
fi
grep -q "written by a newer streetwatch" "$RUN/daemon-newer-ledger.log" ||
    fail "no clear refusal of the newer ledger: $(tail -n 5 "$RUN/daemon-newer-ledger.log")"
[[ $(sha256sum "$DATA/ledger.sqlite" | cut -d' ' -f1) == "$sum_before" ]] || fail "the refused ledger was changed"
say "a ledger of schema $((schema2 + 1)) is refused and left as it was: $(grep -o 'this ledger was written by a newer streetwatch[^:]*' "$RUN/daemon-newer-ledger.log" | head -n 1)"

# ---- 6. purge --------------------------------------------------------------------------------
dpkg --purge streetwatch >>"$RUN/dpkg.log" 2>&1 || fail "dpkg --purge: $(tail -n 5 "$RUN/dpkg.log")"
[[ ! -e /usr/bin/streetwatch && ! -e $DATA && ! -e $CONFIG && ! -L $WANTS ]] || fail "purge left files behind"
say "purged: no /usr/bin/streetwatch, $DATA, $CONFIG or enablement left"
say "passed"
