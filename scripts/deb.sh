#!/usr/bin/env bash
# Builds the Debian package from the release build, with nothing downloaded:
#   out/deb/streetwatch_<version>_<arch>.deb
#
#   make deb
#   scripts/deb.sh [--version V] [--out DIR]
#
# What goes where: /usr/bin/streetwatch (stripped), /usr/lib/streetwatch/models
# (manifests and labels), /usr/lib/streetwatch/libonnxruntime.so (from the set-up's cache),
# /etc/streetwatch/config.toml (a conffile), /lib/systemd/system/streetwatch.service, man pages,
# bash/zsh/fish completions and the docs. Weights are not packaged: `streetwatch models fetch`
# puts them into /var/lib/streetwatch/assets after installing.
#
# Options (or the environment variable in brackets):
#   --version V   [DEB_VERSION; default <Cargo version>+git<commits>.<commit id>, which grows
#                 with every commit on one branch, so a later build upgrades an earlier one]
#   --out DIR     [DEB_OUT, out/deb]
#   [DEB_MAINTAINER, "streetwatch developers <streetwatch@example.org>"]: who the package names
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${STREETWATCH_BIN:-$ROOT/target/release/streetwatch}
CACHE=${STREETWATCH_CACHE:-$ROOT/.cache}
VERSION=${DEB_VERSION:-}
OUT=${DEB_OUT:-$ROOT/out/deb}
MAINTAINER=${DEB_MAINTAINER:-streetwatch developers <streetwatch@example.org>}

say() { printf 'deb: %s\n' "$*"; }
die() { printf 'deb: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --version) VERSION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) printf 'deb: unknown option %s\n\n' "$1" >&2; usage 2 >&2 ;;
    esac
done

[[ -x $BIN ]] || die "$BIN not built: run make build"
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || die "$tool not found: run make setup (dpkg-dev, binutils)"
done
ORT_DIR=$CACHE/onnxruntime
ORT_LIB=$(readlink -f "$ORT_DIR/libonnxruntime.so" 2>/dev/null || true)
[[ -f $ORT_LIB && -f $ORT_DIR/libonnxruntime_providers_shared.so ]] ||
    die "ONNX Runtime not in $ORT_DIR: run make setup"
LABELS=$CACHE/assets/models/coco_classes.txt
[[ -f $LABELS ]] || die "$LABELS missing: run make setup"

if [[ -z $VERSION ]]; then
    crate=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    if git rev-parse --git-dir >/dev/null 2>&1; then
        VERSION="$crate+git$(git rev-list --count HEAD).$(git rev-parse --short=12 HEAD)"
    else
        VERSION=$crate
    fi
fi
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "--version $VERSION is not a Debian version (digits first; letters, digits and . + ~ -)"
ARCH=$(dpkg --print-architecture)

STAGE=$OUT/root
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$OUT"
lib=$STAGE/usr/lib/streetwatch
doc=$STAGE/usr/share/doc/streetwatch

install -d "$STAGE/usr/bin" "$lib/models" "$STAGE/etc/streetwatch" "$STAGE/lib/systemd/system" \
    "$STAGE/usr/share/man/man1" "$doc/examples" "$STAGE/usr/share/bash-completion/completions" \
    "$STAGE/usr/share/zsh/vendor-completions" "$STAGE/usr/share/fish/vendor_completions.d"
# The release profile keeps debug info for backtraces in development; the package is stripped
# as Debian's are (a panic's backtrace then shows addresses; the log line says what failed).
strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$STAGE/usr/bin/streetwatch" "$BIN"
chmod 0755 "$STAGE/usr/bin/streetwatch"
install -m 0644 models/*.toml "$LABELS" "$lib/models/"
install -m 0644 "$ORT_LIB" "$ORT_DIR/libonnxruntime_providers_shared.so" "$lib/"
ln -s "$(basename "$ORT_LIB")" "$lib/libonnxruntime.so"
basename "$ORT_LIB" | sed 's/^libonnxruntime\.so\.//' >"$lib/ONNXRUNTIME_VERSION"
install -m 0644 packaging/config.toml "$STAGE/etc/streetwatch/config.toml"
install -m 0644 packaging/streetwatch.service "$STAGE/lib/systemd/system/"

# Man pages and completions come from the command line's own definitions.
"$BIN" manpages "$OUT/man"
for page in "$OUT"/man/*.1; do gzip -9n <"$page" >"$STAGE/usr/share/man/man1/$(basename "$page").gz"; done
rm -rf "$OUT/man"
"$BIN" completions bash >"$STAGE/usr/share/bash-completion/completions/streetwatch"
"$BIN" completions zsh >"$STAGE/usr/share/zsh/vendor-completions/_streetwatch"
"$BIN" completions fish >"$STAGE/usr/share/fish/vendor_completions.d/streetwatch.fish"

install -m 0644 README.md docs/*.md "$doc/"
install -m 0644 configs/example-city.toml "$doc/examples/"
install -m 0644 packaging/debian/copyright "$doc/copyright"
# A native package's changelog: this build, and the commit it came from.
{
    printf 'streetwatch (%s) unstable; urgency=medium\n\n' "$VERSION"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        printf '  * Built from commit %s.\n' "$(git rev-parse --short=12 HEAD)"
        when=$(git log -1 --format=%aD)
    else
        printf '  * Built from a source tree without git history.\n'
        when=$(date -R)
    fi
    printf '\n -- %s  %s\n' "$MAINTAINER" "$when"
} | gzip -9n >"$doc/changelog.gz"
# ONNX Runtime is Microsoft's own build (it carries its own copies of curl and mbedtls for its
# optional downloads, which streetwatch never uses); lintian is told so.
install -d "$STAGE/usr/share/lintian/overrides"
printf '%s\n' "# ONNX Runtime's upstream build links these statically; streetwatch never calls them." \
    "streetwatch: embedded-library curl [usr/lib/streetwatch/libonnxruntime.so.*]" \
    "streetwatch: embedded-library mbedtls [usr/lib/streetwatch/libonnxruntime.so.*]" \
    >"$STAGE/usr/share/lintian/overrides/streetwatch"

# Library dependencies, as Debian's own packages compute them (ONNX Runtime is loaded at run
# time, so it is read here for its own needs).
shl=$OUT/shlibs
rm -rf "$shl" && mkdir -p "$shl/debian"
printf 'Source: streetwatch\n\nPackage: streetwatch\nArchitecture: any\n' >"$shl/debian/control"
depends=$(cd "$shl" && dpkg-shlibdeps -O -l"$lib" "$STAGE/usr/bin/streetwatch" "$ORT_LIB" 2>"$shl/warnings" |
    sed -n 's/^shlibs:Depends=//p') || die "dpkg-shlibdeps failed: $(cat "$shl/warnings")"
[[ -n $depends ]] || die "dpkg-shlibdeps found no dependencies: $(cat "$shl/warnings")"

size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$depends/" \
    -e "s|@MAINTAINER@|$MAINTAINER|" \
    packaging/debian/control.in >"$STAGE/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$STAGE/DEBIAN/"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$STAGE/DEBIAN/"
(cd "$STAGE" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"

DEB=$OUT/streetwatch_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$STAGE" "$DEB" >/dev/null
rm -rf "$STAGE" "$shl"
say "$DEB ($(du -h "$DEB" | cut -f1), installed $((size / 1024)) MB)"
echo "$DEB"
