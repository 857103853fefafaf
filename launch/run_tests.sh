#!/usr/bin/env bash
# The test command (CI runs exactly this): installs the dependencies, then builds and runs the
# whole suite twice: a Release build with warnings as errors (CUDA code compiled for sm_90a
# where nvcc exists), and a Debug build under AddressSanitizer + UBSan on the CPU path.
# Tests that need ../shared fixtures skip cleanly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash launch/install_deps.sh

cuda=()
if [[ -x /usr/local/cuda/bin/nvcc ]]; then cuda=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTIDAL_WERROR=ON "${cuda[@]}"
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

# Line tables only (-g1): sanitizer reports keep their file:line frames, and the build takes
# 1.6 GB instead of 1.9 (a CI machine once ran out of disk linking it with full -g).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTIDAL_WITH_CUDA=OFF \
  -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DTIDAL_SANITIZE=address,undefined -DTIDAL_WERROR=ON
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L cpu
