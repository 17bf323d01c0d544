#!/usr/bin/env bash
# Installs the Debian 12 packages spintrain needs (only those missing) and builds it into build/.
# Usage: scripts/setup.sh            (BUILD_DIR and BUILD_TYPE may be set in the environment)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ccache libtorch-dev libeigen3-dev libhdf5-dev libcxxopts-dev
          nlohmann-json3-dev libgtest-dev libgloo-dev libopenblas0-pthread libpcre2-dev libicu-dev pkg-config
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

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
