# streetwatch: set-up, build, demo and tests (GNU make).
#
#   make demo     render the sample clip and run it through the whole pipeline
#   make test     the test suite (real ONNX Runtime, mosquitto, SQLite, video decoding)
#
# Every target that builds runs scripts/setup.sh first: it installs the missing Debian packages,
# ONNX Runtime and the assets into $(CACHE), and takes about a second when all is there.
# Without access to GitHub, give it a folder with the assets:
#   STREETWATCH_ASSETS=../shared/assets make test

CACHE ?= $(or $(STREETWATCH_CACHE),$(CURDIR)/.cache)
override CACHE := $(abspath $(CACHE))

export STREETWATCH_CACHE := $(CACHE)
ORT_DYLIB_PATH ?= $(CACHE)/onnxruntime/libonnxruntime.so
export ORT_DYLIB_PATH

# rustup puts cargo in ~/.cargo/bin and only adds it to PATH through ~/.cargo/env.
CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
ifeq ($(shell command -v cargo 2>/dev/null),)
ifneq ($(wildcard $(CARGO_BIN)/cargo),)
export PATH := $(CARGO_BIN):$(PATH)
endif
endif

CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help setup need-cargo build demo test eval bench bench-camera bench-scale soak fuzz fuzz-smoke deb deb-test lint clean-cache

help:
	@echo 'streetwatch targets:'
	@echo '  make setup        Debian packages, ONNX Runtime and assets into $(CACHE) (idempotent, fast)'
	@echo '  make build        setup + cargo build --release --all-targets --locked'
	@echo '  make demo         build + target/release/streetwatch demo'
	@echo '  make test         build + cargo test --release --locked, then fuzz-smoke, a 5-minute soak and'
	@echo '                    (as root) deb-test'
	@echo '  make eval         build + streetwatch eval: real clips and composed scenarios against their truth'
	@echo '  make bench        setup + cargo bench --locked'
	@echo '  make bench-camera build + CPU per camera-minute of a 1080p25 camera (keyframes, 1 detection / 2 s)'
	@echo '  make bench-scale  build + N cameras (1080p main + D1 detect stream) on one daemon, RTSP and files:'
	@echo '                    cores, CPU-s per camera-minute, MB per camera, lag, drops; the Python peer for'
	@echo '                    the ratio (N=20 DURATION=600 WARMUP=60 RTSP_CAMERAS MAIN_ONLY=1 PEER=0)'
	@echo '  make soak         build + 30 RTSP cameras for 2 hours while the RTSP server, the broker and the'
	@echo '                    evidence disk fail: memory, descriptors, lost messages (MINUTES=5 CAMERAS=30)'
	@echo '  make fuzz         build + every libFuzzer target (fuzz/) for 10 minutes, two at a time:'
	@echo '                    executions, coverage, crashes (FUZZ_SECONDS=600 FUZZ_JOBS=2; scripts/fuzz.sh -h)'
	@echo '  make fuzz-smoke   build + every fuzz target for 30 s (seed 1)'
	@echo '  make deb          build + the Debian package: out/deb/streetwatch_<version>_<arch>.deb'
	@echo '  make deb-test     build + install the package here (root), run its service and its demo'
	@echo '                    camera, upgrade it, purge it (scripts/deb-test.sh)'
	@echo '  make lint         cargo fmt --check + cargo clippy (warnings are errors)'
	@echo '  make clean-cache  remove the fetched ONNX Runtime and assets from $(CACHE)'
	@echo 'Variables: CACHE (default .cache), STREETWATCH_ASSETS (folder with a copy of the assets,'
	@echo 'e.g. ../shared/assets, used instead of downloading them), ORT_DYLIB_PATH.'

setup:
	@bash scripts/setup.sh

need-cargo:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo 'error: cargo not found (not on PATH, nor in $(CARGO_BIN)).' >&2; \
	  echo '  Install Rust with rustup (https://rustup.rs), then run: . "$$HOME/.cargo/env"' >&2; \
	  exit 1; }

build: setup need-cargo
	$(CARGO) build --release --all-targets --locked

demo: build
	target/release/streetwatch demo

test: export RUST_BACKTRACE := 1
test: build
	$(CARGO) test --release --locked
	FUZZ_SECONDS=30 FUZZ_SEED=1 bash scripts/fuzz.sh
	MINUTES=5 bash scripts/soak.sh
	@if [ "$$(id -u)" = 0 ]; then bash scripts/deb-test.sh; \
	else echo 'deb-test: skipped: it installs the package, so it needs root (sudo make deb-test)'; fi

eval: build
	target/release/streetwatch eval configs/eval

bench: setup need-cargo
	$(CARGO) bench --locked

bench-camera: build
	bash scripts/bench_camera.sh

# N, DURATION, WARMUP, RTSP_CAMERAS, MAIN_ONLY, SESSIONS, PEER, PEER_PLAYS reach the script from
# the environment or the make command line: `DURATION=120 N=20 make bench-scale`.
bench-scale: build
	bash scripts/bench_scale.sh

soak: build
	bash scripts/soak.sh

# FUZZ_SECONDS, FUZZ_JOBS and FUZZ_SEED reach the script from the environment.
fuzz: build
	bash scripts/fuzz.sh

fuzz-smoke: build
	FUZZ_SECONDS=30 FUZZ_SEED=1 bash scripts/fuzz.sh

deb: build
	bash scripts/deb.sh

deb-test: build
	bash scripts/deb-test.sh

lint: setup need-cargo
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings
	$(CARGO) clippy --release --locked -p streetwatch-fuzz -- -D warnings

clean-cache:
	rm -rf '$(CACHE)/assets' '$(CACHE)/onnxruntime' '$(CACHE)/apt.log'
	-@rmdir '$(CACHE)' 2>/dev/null || true
