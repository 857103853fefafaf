#!/usr/bin/env bash
# The device call for the patches in this folder (run on the H200 from the checkout's root, with
# .carry/ holding base.tar.xz (main's tidal: launch/device_pack.sh --tidal-only), cand.tar.xz (main
# + the patches: device_pack.sh --no-bench, whose lib/ both use) and shared/models):
#   1. the candidate's cuda-labelled tests (launch/gpu_suite.sh);
#   2. tidal bench, base and candidate interleaved twice: llama3-8b and llama2-7b, batch 1,
#      10K and 100K, full and tidal (K = 2048; llama3: per-query-head and per-KV-head);
#   3. the candidate's kernel_bench (GEMV, attention, top-k rows), when its package has one.
# About 3 minutes without kernel_bench; everything lands in $OUT.
set -uo pipefail
out=${OUT:?OUT}
for pkg in base cand; do
  mkdir -p ".carry/$pkg" && tar -C ".carry/$pkg" -xJf ".carry/$pkg.tar.xz"
done
# The tests read ../shared from the source dir compiled in (/work/main): both spellings of it.
mkdir -p /work && ln -sfn "$PWD" /work/main && ln -sfn "$PWD/.carry/shared" /work/shared
[[ -e ../shared ]] || ln -sfn "$PWD/.carry/shared" ../shared 2>/dev/null || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.txt"
LD_LIBRARY_PATH=$PWD/.carry/cand/lib:${LD_LIBRARY_PATH:-} \
  timeout 260 bash launch/gpu_suite.sh .carry/cand/build "$out/gpu" tests > /dev/null 2>&1
tail -1 "$out/gpu/summary.txt"
bench() {  # package, tag
  local pkg=$1 tag=$2
  local tidal=".carry/$pkg/build/launch/tidal"
  export LD_LIBRARY_PATH=$PWD/.carry/cand/lib:${LD_LIBRARY_PATH:-}
  timeout 60 "$tidal" bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal \
    --granularity per-query-head,per-kv-head > "$out/bench_llama3_${tag}.txt" 2>&1
  timeout 60 "$tidal" bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal \
    > "$out/bench_llama2_${tag}.txt" 2>&1
}
bench base base1; bench cand cand1; bench base base2; bench cand cand2
if [[ -x .carry/cand/build/benchmarks/kernel_bench ]]; then
  LD_LIBRARY_PATH=$PWD/.carry/cand/lib timeout 200 .carry/cand/build/benchmarks/kernel_bench \
    --graph-calls 32 > "$out/kernel_bench_cand.txt" 2>&1
fi
grep -h "ms" "$out"/bench_*.txt | head -40
