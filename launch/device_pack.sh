#!/usr/bin/env bash
# Packs a CUDA build for a GPU node that cannot build it (DESIGN.md §9: Ubuntu 24.04 with CUDA,
# NCCL, OpenMPI and protobuf, but no gRPC): the cuda-labelled test binaries, `tidal`,
# `kernel_bench` and `launch_parallel_test`, stripped, under build/ as gpu_suite.sh expects them,
# with the shared libraries the node lacks (gRPC, abseil, re2, c-ares, upb, SentencePiece, PCRE2,
# protobuf) under lib/, as one .tar.xz (about 13 MB: small enough to travel with a checkout).
#   bash launch/device_pack.sh BUILD_DIR OUT.tar.xz [--no-bench | --tidal-only]
# (--no-bench leaves kernel_bench out; --tidal-only packs `tidal` alone, without the libraries:
# the baseline of an A/B, run with the other package's lib/. A device call carries 64 MiB with
# the checkout; several variants staged side by side and packed as one xz -9 stream share their
# common bytes too, so an A/B of three builds travels in about 20 MB.)
# On the node, from the directory it was unpacked in:
#   export LD_LIBRARY_PATH=$PWD/lib:$LD_LIBRARY_PATH
#   bash launch/gpu_suite.sh build OUT_DIR tests
set -euo pipefail
build=${1:?build dir}
out=${2:?output .tar.xz}
mode=${3:-all}
case $mode in all | --no-bench | --tidal-only) ;; *) echo "device_pack: unknown option $mode" >&2; exit 2 ;; esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
bins=("$build/launch/tidal")
if [[ $mode != --tidal-only ]]; then
  bins+=("$build"/tests/*/*_cuda_test)
  if [[ -x $build/tests/parallel/launch_parallel_test ]]; then
    bins+=("$build/tests/parallel/launch_parallel_test")
  fi
  if [[ $mode == all ]]; then bins+=("$build/benchmarks/kernel_bench"); fi
fi
for bin in "${bins[@]}"; do
  [[ -x $bin ]] || { echo "device_pack: $bin is missing (build it first)" >&2; exit 1; }
  rel=build/${bin#"$build"/}
  mkdir -p "$stage/$(dirname "$rel")"
  strip --strip-unneeded -o "$stage/$rel" "$bin"
done
mkdir -p "$stage/lib"
# Every library a binary links that the node does not have, by name (CUPTI too: a toolkit part the
# node's CUDA may lack; `tidal bench --kernel-trace`); the rest (glibc, libstdc++, CUDA, NCCL,
# OpenMPI, OpenSSL, zlib) the node provides.
if [[ $mode != --tidal-only ]]; then
  for bin in "${bins[@]}"; do ldd "$bin"; done |
    awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    grep -E '/lib(grpc|gpr|absl_|re2|cares|upb|address_sorting|sentencepiece|pcre2|protobuf|cupti)' |
    while read -r lib; do
      strip --strip-unneeded -o "$stage/lib/$(basename "$lib")" "$(readlink -f "$lib")"
    done
fi
# One xz stream with a 64 MiB dictionary: the binaries share most of their bytes (the same
# kernels), so -9 packs the whole set in about the size of one (13 MB against 34 at the default).
tar -C "$stage" -cf - build lib | xz -9 -T1 > "$out"
echo "device_pack: $(du -h "$out" | cut -f1) in $out ($(ls "$stage/lib" | wc -l) libraries)"
