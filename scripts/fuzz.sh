#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer (fuzz/: one target per input a stranger, a camera or a
# model can send). Builds the targets, runs each for a set time on its corpus, and prints what
# each did: executions, coverage, corpus size, and the inputs that crashed or hung it.
#
#   make fuzz                        # every target 10 minutes (two at a time)
#   make fuzz-smoke                  # every target 30 s (run by make test)
#   scripts/fuzz.sh --seconds 60 http video
#
# Options (or the environment variable in brackets):
#   --seconds S    [FUZZ_SECONDS, 600]   time per target
#   --jobs N       [FUZZ_JOBS, 2]        targets run side by side
#   --seed N       [FUZZ_SEED, random]   libFuzzer's seed (make fuzz-smoke: 1, so a run repeats)
#   TARGET...                            some targets only (default: all)
#
# The build: scripts/fuzz-rustc instruments the targets and their own copy of the library
# (feature `fuzzing`) and nothing else, so it reuses the release build's dependencies. Stable
# Rust is enough; there is no AddressSanitizer (the project's own code has no `unsafe` beyond
# FFI calls), so what is caught is what matters here: panics, aborts, hangs, runaway memory.
#
# Corpora: fuzz/corpus/TARGET holds the seeds (in git); what a run discovers goes to
# out/fuzz/corpus/TARGET and is reused by the next run. Crashing inputs go to
# out/fuzz/crashes/TARGET/; reproduce one with `target/release/TARGET FILE`. Figures are printed
# as `FUZZ target=… execs=… cov=… ft=… corpus=… crashes=…` lines (also out/fuzz/results.txt).
# Exit status 1 when any target crashed, hung or ran out of memory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/out/fuzz
ALL=(config manifest schedule period mqtt_command http decoder video)

SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-2}
SEED=${FUZZ_SEED:-}
TARGETS=()

say() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --seconds) SECONDS_EACH=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) printf 'fuzz: unknown option %s\n\n' "$1" >&2; usage 2 >&2 ;;
        *)
            [[ " ${ALL[*]} " == *" $1 "* ]] || die "no target $1; the targets: ${ALL[*]}"
            TARGETS+=("$1"); shift ;;
    esac
done
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
for v in SECONDS_EACH JOBS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || die "$v must be a positive whole number"
done
[[ -z $SEED || $SEED =~ ^[0-9]+$ ]] || die "the seed must be a whole number"

say "building the targets (instrumented library, the release build's dependencies)"
RUSTC_WRAPPER=$ROOT/scripts/fuzz-rustc cargo build --release --locked -p streetwatch-fuzz

# Runs one target; its log goes to $OUT/TARGET.log.
run_one() { # target
    local t=$1 corpus=$OUT/corpus/$1 crashes=$OUT/crashes/$1
    mkdir -p "$corpus" "$crashes"
    local args=(
        -max_total_time="$SECONDS_EACH"
        # A single input taking 10 s is a hang; 2 GB is far beyond any input's need.
        -timeout=10 -rss_limit_mb=2048 -max_len=65536
        -print_final_stats=1
        -artifact_prefix="$crashes/"
    )
    [[ -z $SEED ]] || args+=(-seed="$SEED")
    [[ ! -f fuzz/dict/$t.dict ]] || args+=(-dict="$ROOT/fuzz/dict/$t.dict")
    "$ROOT/target/release/$t" "${args[@]}" "$corpus" "$ROOT/fuzz/corpus/$t" \
        >"$OUT/$t.log" 2>&1 || true
}

# One `FUZZ` line from a target's log.
figures() { # target
    local t=$1 log=$OUT/$1.log last execs crashes
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    crashes=$(find "$OUT/crashes/$t" -type f -newer "$OUT/started" | wc -l)
    printf 'FUZZ target=%s seconds=%s execs=%s cov=%s ft=%s corpus=%s crashes=%s\n' \
        "$t" "$SECONDS_EACH" "${execs:-0}" \
        "$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")" \
        "$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")" \
        "$(find "$OUT/corpus/$t" -type f | wc -l)" "$crashes"
}

mkdir -p "$OUT"
touch "$OUT/started"
say "${#TARGETS[@]} target(s), ${SECONDS_EACH}s each, $JOBS at a time"
running=0
for t in "${TARGETS[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

: >"$OUT/results.txt"
failed=0
for t in "${TARGETS[@]}"; do
    line=$(figures "$t")
    echo "$line" | tee -a "$OUT/results.txt"
    if [[ $line != *" crashes=0" ]]; then
        failed=1
        say "$t: crashed, hung or ran out of memory; see $OUT/$t.log and:"
        find "$OUT/crashes/$t" -type f -newer "$OUT/started" -printf '  %p\n'
        grep -E -m 3 "panicked at|ERROR: libFuzzer" "$OUT/$t.log" | sed 's/^/  /' || true
    fi
done
exit "$failed"
