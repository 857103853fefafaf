#!/usr/bin/env bash
# Installs the Debian packages Tidal builds against (README "Dependencies" says why each).
# Idempotent; uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git   # toolchain
  nlohmann-json3-dev                                 # config.json, tokenizer.json, safetensors
  libpcre2-dev                                       # Llama-3 pre-tokenizer regex
  libsentencepiece-dev                               # tokenizer.model (Llama-2)
  libcli11-dev                                       # the tidal command's flags
  libopenmpi-dev openmpi-bin                         # MPI communicator (CPU path), mpirun
  libgrpc++-dev protobuf-compiler-grpc               # the gRPC coordinator (rpc/)
  libprotobuf-dev protobuf-compiler                  # rpc/proto (tidal.v1 API, health)
  python3-grpcio                                     # the Python client (rpc/python) and its test
  libgtest-dev libgmock-dev                          # tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
