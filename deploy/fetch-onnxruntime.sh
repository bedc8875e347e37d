#!/bin/sh
# ONNX Runtime's shared library, which the admin and the inference workers load at run time
# (`onnx.runtime_path`): taken from the pinned `onnxruntime` wheel of the Python registry, checked
# against its SHA-256, unpacked into DEST as libonnxruntime.so (a link to the versioned file).
# Used by scripts/setup (DEST .onnxruntime/), deploy/offline/build-images and deploy/Dockerfile.
#
#   sh deploy/fetch-onnxruntime.sh DEST [PYTHON]
#
# PYTHON (default python3) needs pip, or venv to make a throwaway one with pip.
set -eu
dest="${1:?usage: fetch-onnxruntime.sh DEST [PYTHON]}"
python="${2:-python3}"
version="1.22.1"
wheel="onnxruntime-${version}-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
sha256="f6effa1299ac549a05c784d50292e3378dbbf010346ded67400193b09ddc2f04"
[ -f "$dest/libonnxruntime.so.$version" ] && exit 0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! "$python" -m pip --version >/dev/null 2>&1; then
    "$python" -m venv "$work/venv"
    python="$work/venv/bin/python"
fi
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 "onnxruntime==$version" -d "$work"
echo "$sha256  $work/$wheel" | sha256sum -c --quiet
mkdir -p "$dest"
"$python" -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    with wheel.open("onnxruntime/capi/libonnxruntime.so." + sys.argv[2]) as lib, open(sys.argv[3], "wb") as out:
        out.write(lib.read())' "$work/$wheel" "$version" "$dest/libonnxruntime.so.$version"
ln -sf "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
