#!/bin/sh
# Builds the comparison benchmark's big image into an OCI image layout.
#
#   build-big-image.sh OUT_DIR [MIB]
#
# OUT_DIR must not exist; it becomes an OCI layout with one tag:
#   gib   linux/amd64, one layer holding /gib/gib.bin, MIB (default 1024)
#         MiB of random data
#
# Same approach as crates/testkit/fixtures/build-images.sh (which stays small so the
# test suite stays fast): the content is a seeded AES-CTR keystream and every
# timestamp is fixed, so the digests are identical on every run.
# Needs: umoci, openssl, touch (GNU), find.
set -eu

OUT=${1:?usage: build-big-image.sh OUT_DIR [MIB]}
MIB=${2:-1024}
[ ! -e "$OUT" ] || { echo "build-big-image.sh: $OUT already exists" >&2; exit 1; }

EPOCH=2024-01-01T00:00:00Z
TOUCH_DATE=202401010000.00
export TZ=UTC LC_ALL=C
ROOTLESS=
[ "$(id -u)" = 0 ] || ROOTLESS=--rootless
# The bundle holds a full copy of the layer: keep it next to OUT, not in /tmp.
WORK=$(mktemp -d "$(dirname "$OUT")/build-big-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

umoci init --layout "$OUT"
umoci new --image "$OUT:gib"
umoci config --image "$OUT:gib" --no-history --created "$EPOCH" \
    --os linux --architecture amd64 \
    --config.cmd /bin/true --config.label "org.berth.bench=gib"

bundle="$WORK/bundle"
umoci unpack $ROOTLESS --image "$OUT:gib" "$bundle" >/dev/null
mkdir "$bundle/rootfs/gib"
head -c "$((MIB * 1048576))" /dev/zero |
    openssl enc -aes-256-ctr -nosalt -pbkdf2 -iter 1 -pass "pass:berth-bench-gib" \
        >"$bundle/rootfs/gib/gib.bin"
find "$bundle/rootfs" -type d -exec chmod 0755 {} +
find "$bundle/rootfs" -type f -exec chmod 0644 {} +
find "$bundle/rootfs" -exec touch -h -t "$TOUCH_DATE" {} +
umoci repack --image "$OUT:gib" \
    --history.created "$EPOCH" --history.created_by "berth-bench gib" \
    "$bundle"
umoci gc --layout "$OUT"
