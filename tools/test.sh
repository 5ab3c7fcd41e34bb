#!/usr/bin/env bash
# Builds and runs every test: ctest (cpu and emu, gpu when present), the ASan+UBSan build of the cpu and emu
# suites, and the pytest suite against PyTorch on cpu and emu. Exits nonzero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
jobs=$(nproc)
# Parallel ctest jobs share the cores: OpenMP threads that spin after each region would starve each other.
export OMP_WAIT_POLICY=passive

echo "== build (Release, cuda when nvcc is present)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
echo "== ctest"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== ASan+UBSan build of the cpu and emu suites"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDLK_SANITIZE=ON -DDLK_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L 'cpu|emu'

echo "== pytest against PyTorch (Debian python3-torch)"
for device in cpu emu; do
  DLKERNELS_LIBRARY="$PWD/build/libdlkernels.so" DLKERNELS_DEVICE=$device \
    /usr/bin/python3 -m pytest python/tests -q -p no:cacheprovider
done
echo "== all tests passed"
