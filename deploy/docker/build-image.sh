#!/usr/bin/env bash
# Builds the credexd:local image FROM scratch: the locally built credexd binary, the shared
# libraries ldd says it loads, and the dynamic loader.
#
#   deploy/docker/build-image.sh [debug|release]      (default: debug)
#
# The binary is built with cargo when target/<profile>/credexd does not exist yet; run
# `cargo build --bins` (or `--release`) yourself first to refresh an existing one.
# Environment: IMAGE (default credexd:local).
set -euo pipefail

profile="${1:-debug}"
image="${IMAGE:-credexd:local}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

case "$profile" in
    debug) cargo_flags=() ;;
    release) cargo_flags=(--release) ;;
    *)
        echo "usage: $0 [debug|release]" >&2
        exit 2
        ;;
esac

binary="$root/target/$profile/credexd"
if [[ ! -x "$binary" ]]; then
    echo "building credexd ($profile)" >&2
    (cd "$root" && cargo build --bin credexd "${cargo_flags[@]}")
else
    built="$(date -r "$binary" '+%F %T')"
    echo "using the existing $binary (built $built)" >&2
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/credexd-image.XXXXXX")"
trap 'rm -rf -- "$stage"' EXIT
mkdir -p "$stage/rootfs/usr/local/bin"
mkdir -m 0700 "$stage/data"
cp -- "$binary" "$stage/rootfs/usr/local/bin/credexd"
chmod 0755 "$stage/rootfs/usr/local/bin/credexd"

# ldd prints `name => /path (addr)` for libraries, `/path (addr)` for the loader, and
# `name (addr)` without a path for the vDSO, which the kernel provides.
ldd_out="$(ldd "$binary")" || {
    echo "ldd $binary failed: is it a dynamic executable?" >&2
    exit 1
}
if grep -q 'not found' <<<"$ldd_out"; then
    echo "ldd: $binary needs libraries this machine does not have:" >&2
    grep 'not found' <<<"$ldd_out" >&2
    exit 1
fi
paths="$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")"
if [[ -z "$paths" ]]; then
    echo "ldd found no libraries in $binary" >&2
    exit 1
fi
mapfile -t libs <<<"$paths"
for lib in "${libs[@]}"; do
    # Same path inside the image as on this machine: the loader's path is compiled into
    # the binary (PT_INTERP) and the libraries' folders are the loader's default search path.
    # -L copies what a symlink points to, under the name the binary asks for.
    mkdir -p "$stage/rootfs$(dirname "$lib")"
    cp -L -- "$lib" "$stage/rootfs$lib"
    echo "  + $lib" >&2
done

DOCKER_BUILDKIT=0 docker build --file "$here/Dockerfile" --tag "$image" \
    --label "org.opencontainers.image.title=credexd" \
    --label "org.opencontainers.image.description=credex city node ($profile build)" \
    "$stage"

# The loader and every library are there when the binary starts in the image.
docker run --rm "$image" --version
echo "built $image" >&2
