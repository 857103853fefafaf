#!/usr/bin/env bash
# One command for a fresh Debian machine: installs the dependencies, builds Tidal (Release) and
# runs its main job, `tidal generate`, on the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."

bash launch/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target tidal
./build/launch/tidal generate --prompt "${TIDAL_PROMPT:-Once upon a time}" --max-new-tokens 64
