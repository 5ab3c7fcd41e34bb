#!/usr/bin/env bash
# Installs everything dlkernels needs to build, test and benchmark on a fresh Debian machine (run as root).
# The CUDA toolkit (nvcc, headers) is expected under /usr/local/cuda; without it the library builds cpu-only.
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config libgtest-dev libbenchmark-dev libdlpack-dev libboost-context-dev
          libopenblas0-pthread libopenblas-dev python3 python3-numpy python3-pytest python3-torch
          python3-sklearn python3-torchvision fortunes libcairo2-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
