#!/usr/bin/env bash
# Puts in place what building, the demo and the tests need, on Debian 12:
#   1. the Debian packages in scripts/debian-packages.txt (only the missing ones);
#   2. ONNX Runtime 1.32 (libonnxruntime.so, loaded by `ort` at run time) from the onnxruntime
#      wheel on PyPI, into $STREETWATCH_CACHE/onnxruntime/;
#   3. a Python venv at $STREETWATCH_CACHE/py (Debian's python3-opencv and python3-numpy through
#      --system-site-packages, onnxruntime 1.32 from PyPI) for scripts/reference_detections.py
#      (tests/preprocess_agreement.rs) and the Python benchmarks;
#   4. the model weights, sample video and photos in scripts/assets.tsv, into
#      $STREETWATCH_CACHE/assets/, copied from $STREETWATCH_ASSETS (e.g. ../shared/assets) or
#      downloaded from their upstream URLs, every file checked against its sha256;
#   5. playwright-core from the npm registry into tests/console/node_modules, for the console's
#      browser test (it drives Debian's chromium and downloads no browser of its own).
#
# Idempotent: a second run only checks (about a second). Run it through `make setup`, or as
#   STREETWATCH_ASSETS=../shared/assets scripts/setup.sh
#
# Environment:
#   STREETWATCH_CACHE   cache folder (default: <repo>/.cache)
#   STREETWATCH_ASSETS  folder holding a copy of the assets (same relative paths); optional
#   ORT_DYLIB_PATH      if it names an existing library outside the cache, step 2 is skipped
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${STREETWATCH_CACHE:-$ROOT/.cache}
case $CACHE in /*) ;; *) CACHE=$PWD/$CACHE ;; esac
ASSETS_SRC=${STREETWATCH_ASSETS:-}

ORT_VERSION=1.32.0
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_PLATFORM=manylinux_2_28_x86_64

say() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: error: %s\n' "$*" >&2
    exit 1
}

TMP_DIRS=()
cleanup() {
    local d
    for d in "${TMP_DIRS[@]}"; do rm -rf -- "$d"; done
}
trap cleanup EXIT

sha_of() { sha256sum -- "$1" | cut -d' ' -f1; }

# --- 1. Debian packages ----------------------------------------------------------------------

apt_packages() {
    local list=$ROOT/scripts/debian-packages.txt
    local -a wanted missing=()
    mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system (no dpkg-query): make sure the equivalents of these are installed: ${wanted[*]}"
        return 0
    fi
    # One dpkg-query call for all packages; unknown ones go to stderr and are simply absent.
    local installed
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" 2>/dev/null || true)
    local p
    for p in "${wanted[@]}"; do
        if ! grep -qx "$p install ok installed" <<<"$installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} == 0)); then
        say "Debian packages: all ${#wanted[@]} installed"
        return 0
    fi

    local -a sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "missing Debian packages and not root (no sudo). Run as root:
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}
then run this again."
        fi
    fi
    mkdir -p "$CACHE"
    local log=$CACHE/apt.log
    say "installing Debian packages: ${missing[*]} (log: $log)"
    # mosquitto's package may start a system broker on port 1883 (or not, without an init
    # system); either way is fine: the tests start their own broker on a free port.
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get failed (full log: $log)"
    fi
}

# --- 2. ONNX Runtime -------------------------------------------------------------------------

find_pip_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

onnxruntime() {
    local dir=$CACHE/onnxruntime
    local lib=libonnxruntime.so.$ORT_VERSION
    if [[ -n ${ORT_DYLIB_PATH:-} && $ORT_DYLIB_PATH != "$dir/libonnxruntime.so" && -f $ORT_DYLIB_PATH ]]; then
        say "onnxruntime: using ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
        return 0
    fi
    if [[ ! -f $dir/$lib || ! -f $dir/libonnxruntime_providers_shared.so ]]; then
        [[ $(uname -m) == x86_64 ]] ||
            die "onnxruntime: only the x86_64 wheel is pinned here (this is $(uname -m)); put a libonnxruntime.so $ORT_VERSION somewhere and set ORT_DYLIB_PATH to it"
        local py
        py=$(find_pip_python) ||
            die "onnxruntime: python3 with pip is needed to download the onnxruntime wheel from PyPI: apt-get install python3 python3-pip"
        local tmp
        tmp=$(mktemp -d)
        TMP_DIRS+=("$tmp")
        say "onnxruntime: downloading the onnxruntime==$ORT_VERSION wheel from PyPI"
        "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.11 --platform "$ORT_PLATFORM" "onnxruntime==$ORT_VERSION" -d "$tmp/wheel" ||
            die "onnxruntime: pip download of onnxruntime==$ORT_VERSION ($ORT_PLATFORM) failed (is PyPI reachable? PIP_INDEX_URL is honoured)"
        local -a wheels=("$tmp"/wheel/onnxruntime-*.whl)
        [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] ||
            die "onnxruntime: expected one onnxruntime wheel in $tmp/wheel, found: ${wheels[*]}"
        local got
        got=$(sha_of "${wheels[0]}")
        [[ $got == "$ORT_WHEEL_SHA256" ]] ||
            die "onnxruntime: checksum mismatch for $(basename "${wheels[0]}"): got $got, expected $ORT_WHEEL_SHA256 (not installed)"
        "$py" - "${wheels[0]}" "$tmp/x" "$lib" <<'PY' || die "onnxruntime: could not extract the libraries from the wheel"
import os, sys, zipfile
wheel, out, lib = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in (lib, "libonnxruntime_providers_shared.so"):
        with z.open("onnxruntime/capi/" + name) as src, open(os.path.join(out, name), "wb") as dst:
            dst.write(src.read())
PY
        mkdir -p "$dir"
        chmod 0755 "$tmp/x/$lib" "$tmp/x/libonnxruntime_providers_shared.so"
        mv -f "$tmp/x/libonnxruntime_providers_shared.so" "$dir/"
        mv -f "$tmp/x/$lib" "$dir/"
        say "onnxruntime: installed $dir/$lib"
    else
        say "onnxruntime: $ORT_VERSION present in $dir"
    fi
    if [[ $(readlink "$dir/libonnxruntime.so" 2>/dev/null || true) != "$lib" ]]; then
        ln -sfn "$lib" "$dir/libonnxruntime.so"
        say "onnxruntime: linked libonnxruntime.so -> $lib"
    fi
}

# --- 3. Python reference environment ------------------------------------------------------

# A venv made from Debian's /usr/bin/python3 with --system-site-packages: cv2 and numpy are
# Debian's (the OpenCV 4.6 and libjpeg the `opencv` crate links), onnxruntime the same release as
# the library of step 2, from PyPI (PIP_INDEX_URL is honoured). The wheel is checked against
# ORT_WHEEL_SHA256 when it is that wheel (CPython 3.11, $ORT_PLATFORM, as on Debian 12).
python_env() {
    local venv=$CACHE/py
    local check="import sys, cv2, numpy, onnxruntime; sys.exit(onnxruntime.__version__ != '$ORT_VERSION')"
    if [[ -x $venv/bin/python3 ]] && "$venv/bin/python3" -c "$check" >/dev/null 2>&1; then
        say "python env: $venv has cv2, numpy and onnxruntime $ORT_VERSION"
        return 0
    fi
    /usr/bin/python3 -c 'import cv2, numpy' >/dev/null 2>&1 ||
        die "python env: /usr/bin/python3 cannot import cv2 and numpy: apt-get install python3-opencv python3-numpy (scripts/debian-packages.txt)"
    if [[ ! -x $venv/bin/python3 ]]; then
        say "python env: creating $venv"
        rm -rf -- "$venv"
        /usr/bin/python3 -m venv --system-site-packages "$venv" ||
            die "python env: cannot create the venv $venv: apt-get install python3-venv"
    fi
    local tmp
    tmp=$(mktemp -d)
    TMP_DIRS+=("$tmp")
    say "python env: installing onnxruntime==$ORT_VERSION from PyPI into $venv"
    "$venv/bin/python3" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        "onnxruntime==$ORT_VERSION" -d "$tmp" ||
        die "python env: pip download of onnxruntime==$ORT_VERSION failed (is PyPI reachable? PIP_INDEX_URL is honoured)"
    local -a wheels=("$tmp"/onnxruntime-*.whl)
    [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] ||
        die "python env: expected one onnxruntime wheel in $tmp, found: ${wheels[*]}"
    if [[ $(basename "${wheels[0]}") == "onnxruntime-$ORT_VERSION-cp311-cp311-$ORT_PLATFORM.whl" &&
        $(sha_of "${wheels[0]}") != "$ORT_WHEEL_SHA256" ]]; then
        die "python env: checksum mismatch for $(basename "${wheels[0]}") (not installed)"
    fi
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${wheels[0]}" ||
        die "python env: pip install of onnxruntime==$ORT_VERSION and its dependencies into $venv failed (is PyPI reachable? PIP_INDEX_URL is honoured)"
    "$venv/bin/python3" -c "$check" ||
        die "python env: $venv still cannot import cv2, numpy and onnxruntime $ORT_VERSION"
    say "python env: ready ($venv/bin/python3)"
}

# --- 4. Assets -------------------------------------------------------------------------------

assets() {
    local table=$ROOT/scripts/assets.tsv
    local dest=$CACHE/assets
    local -a paths=() shas=() urls=() optional=()
    local path sha url_field rest
    while IFS=$'\t' read -r path sha url_field rest || [[ -n $path ]]; do
        [[ -z $path || $path == \#* ]] && continue
        [[ -n $sha && -n $url_field && -z ${rest:-} ]] || die "assets: bad line in $table: $path"
        if [[ $path == \?* ]]; then
            optional+=(1)
            path=${path#\?}
        else
            optional+=(0)
        fi
        paths+=("$path")
        shas+=("$sha")
        urls+=("$url_field")
    done <"$table"

    if [[ -n $ASSETS_SRC && ! -d $ASSETS_SRC ]]; then
        say "assets: STREETWATCH_ASSETS=$ASSETS_SRC is not a folder; ignoring it"
        ASSETS_SRC=
    fi

    # Checksums of what the cache already holds, in one sha256sum call (keeps re-runs fast).
    local -A have=()
    local -a present=()
    local i
    for i in "${!paths[@]}"; do
        [[ -f $dest/${paths[i]} ]] && present+=("${paths[i]}")
    done
    if ((${#present[@]})); then
        local h f
        while read -r h f; do
            have[$f]=$h
        done < <(cd "$dest" && sha256sum -- "${present[@]}")
    fi

    local n_ok=0 n_copied=0 n_downloaded=0 n_skipped=0
    local tmp
    tmp=$(mktemp -d)
    TMP_DIRS+=("$tmp")
    for i in "${!paths[@]}"; do
        path=${paths[i]}
        sha=${shas[i]}
        local target=$dest/$path
        if [[ -n ${have[$path]:-} ]]; then
            if [[ $sha == - || ${have[$path]} == "$sha" ]]; then
                n_ok=$((n_ok + 1))
                continue
            fi
            say "assets: $path in the cache has the wrong checksum; fetching it again"
        fi
        local part=$tmp/part
        rm -f "$part"
        local got_it=0

        # From the local copy of the assets.
        if [[ -n $ASSETS_SRC && -f $ASSETS_SRC/$path ]]; then
            cp -- "$ASSETS_SRC/$path" "$part"
            if [[ $sha == - || $(sha_of "$part") == "$sha" ]]; then
                got_it=1
                say "assets: copied $path"
                n_copied=$((n_copied + 1))
            else
                say "assets: $ASSETS_SRC/$path has the wrong checksum; not using it"
                rm -f "$part"
            fi
        fi

        # From upstream.
        local -a tried=()
        if ((!got_it)) && [[ ${urls[i]} != - ]]; then
            local url
            for url in ${urls[i]}; do
                tried+=("$url")
                say "assets: downloading $path from $url"
                if curl -fsSL --retry 2 --connect-timeout 20 --max-time 900 -o "$part" "$url"; then
                    if [[ $sha == - || $(sha_of "$part") == "$sha" ]]; then
                        got_it=1
                        n_downloaded=$((n_downloaded + 1))
                        break
                    fi
                    say "assets: $url has the wrong checksum; not using it"
                fi
                rm -f "$part"
            done
        fi

        if ((got_it)); then
            mkdir -p "$(dirname "$target")"
            mv -f "$part" "$target"
            continue
        fi
        if ((optional[i])); then
            n_skipped=$((n_skipped + 1))
            case $path in
            models/golden/*)
                say "assets: notice: $path is not available (it has no upstream; set STREETWATCH_ASSETS to a folder that has it, e.g. ../shared/assets): the golden tests (tests/golden.rs) cannot run without it"
                ;;
            *)
                say "assets: notice: optional $path is not available; skipped"
                ;;
            esac
            continue
        fi
        local j later=0
        for ((j = i + 1; j < ${#paths[@]}; j++)); do
            [[ ${optional[j]} == 0 && -z ${have[${paths[j]}]:-} ]] && later=$((later + 1))
        done
        {
            printf 'setup: error: could not get %s' "$path"
            ((later)) && printf ' (and %d more required files are not in the cache yet)' "$later"
            printf '\n'
            if [[ -n $ASSETS_SRC ]]; then
                printf '  not in STREETWATCH_ASSETS=%s\n' "$ASSETS_SRC"
            else
                printf '  STREETWATCH_ASSETS is not set\n'
            fi
            if ((${#tried[@]})); then
                printf '  download failed from:\n'
                printf '    %s\n' "${tried[@]}"
            fi
            printf '  Alternative: set STREETWATCH_ASSETS to a folder holding the assets under the same\n'
            printf '  relative paths (e.g. STREETWATCH_ASSETS=../shared/assets make setup).\n'
        } >&2
        exit 1
    done
    say "assets: ${n_ok} up to date, ${n_copied} copied, ${n_downloaded} downloaded, ${n_skipped} optional skipped (in $dest)"
}

# Step 5: the console's browser test drives Debian's chromium with playwright-core.
console_test_tools() {
    local dir=$ROOT/tests/console
    local want
    want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$dir/package.json")
    if grep -q "\"version\": *\"$want\"" "$dir/node_modules/playwright-core/package.json" 2>/dev/null; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        local -a sudo=()
        [[ $(id -u) -ne 0 ]] && sudo=(sudo)
        say "installing Node.js and npm (Debian) for the console's browser test"
        mkdir -p "$CACHE"
        { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; } \
            >>"$CACHE/apt.log" 2>&1 || die "cannot install nodejs and npm (log: $CACHE/apt.log)"
    fi
    say "console test: npm ci in tests/console (playwright-core; no browser download)"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) ||
        die "npm ci in tests/console failed: is the npm registry reachable?"
}

apt_packages
onnxruntime
python_env
assets
console_test_tools
