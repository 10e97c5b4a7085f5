#!/usr/bin/env bash
# Fresh machine -> built knowtrace. Installs the Debian packages the build
# needs, fetches the default model, configures and builds Release.
#   bash scripts/setup.sh            (BUILD_DIR=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"

PKGS=(cmake ninja-build g++ pkg-config
      libtorch-dev libopenblas0-pthread libsleef-dev
      libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libutf8proc-dev libcairo2-dev fonts-dejavu-core libgtest-dev zlib1g-dev
      libopenmpi-dev openmpi-bin  # MPI is optional for the build; the tests run mpirun -np 2
      python3-numpy python3-pytest python3-torch python3-matplotlib pybind11-dev)  # tests/reference checks; the Python package and its tests
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The HTML report is checked in a headless browser (without recommends: ~80 MB).
if ! dpkg -s chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ -x scripts/get-model.sh ] && [ "${KNOWTRACE_SKIP_MODEL:-0}" != 1 ]; then
  bash scripts/get-model.sh smollm2-135m
fi

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j2
echo "setup: built $BUILD_DIR/knowtrace"
