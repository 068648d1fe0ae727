#!/usr/bin/env bash
# Copy the clean photos shipped in Debian's opencv-doc package into a cache folder, for use as extra
# ground truth (exda.data.samples.opencv_photos lists them). Nothing is installed: the .deb is fetched
# with `apt-get download` and unpacked with `dpkg -x` in a temporary folder that is removed afterwards.
# Most of these photos are JPEGs with mild compression artefacts.
# Usage: scripts/fetch_opencv_photos.sh [CACHE_DIR]   (default ~/.cache/exda/opencv-photos)
set -euo pipefail

CACHE_DIR="${1:-$HOME/.cache/exda/opencv-photos}"
# Natural photos only: calibration boards, text, logos, renders and paintings are left out.
PHOTOS=(aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg basketball1.png basketball2.png
        building.jpg butterfly.jpg chicky_512.png fruits.jpg graf1.png graf3.png HappyFish.jpg home.jpg
        leuvenA.jpg leuvenB.jpg messi5.jpg orange.jpg rubberwhale1.png rubberwhale2.png smarties.png
        squirrel_cls.jpg stuff.jpg)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod a+rwx "$WORK"  # apt's unprivileged _apt user writes the download here

cd "$WORK"
if ! apt-get download opencv-doc >/dev/null 2>&1; then
    echo "fetch_opencv_photos: 'apt-get download opencv-doc' failed; run 'apt-get update' and retry" >&2
    exit 1
fi
dpkg -x opencv-doc_*.deb unpacked
SRC="unpacked/usr/share/doc/opencv-doc/examples/data"

mkdir -p "$CACHE_DIR"
count=0
for name in "${PHOTOS[@]}"; do
    if [[ -f "$SRC/$name" ]]; then
        cp "$SRC/$name" "$CACHE_DIR/.$name.tmp"
        mv -f "$CACHE_DIR/.$name.tmp" "$CACHE_DIR/$name"
        count=$((count + 1))
    else
        echo "fetch_opencv_photos: $name not in this opencv-doc version, skipped" >&2
    fi
done
cp unpacked/usr/share/doc/opencv-doc/copyright "$CACHE_DIR/.tmp-COPYRIGHT"
mv -f "$CACHE_DIR/.tmp-COPYRIGHT" "$CACHE_DIR/COPYRIGHT.opencv-doc"
echo "fetch_opencv_photos: $count photos in $CACHE_DIR"
