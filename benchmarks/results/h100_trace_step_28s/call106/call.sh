#!/bin/bash
# Call 106 (twenty-eighth session): k106 = branch trace28 (main f977290 + THROWAWAY %globaltimer
# stamps of one layer's QKV GEMV, decode attention and o projection; TIDAL_TRACE28_LAYER=L, the
# report on stderr at exit, raw stamps to $TIDAL_TRACE28_OUT) and tidal_main (main's kernels).
# Untraced (trace28's tidal, no layer) against main's tidal; then one process a traced row.
source launch/device_call.sh o106 k106:k
K=/tmp/k/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
b() { local bin=$1 tag=$2; shift 2
  timeout 60 $K/launch/$bin bench --budget 2048 --granularity per-query-head --no-breakdown "$@" > $O/$tag.txt 2>&1
  el "$tag rc=$?"; row $O/$tag.txt "$tag"; }
t() { local tag=$1 layer=$2; shift 2
  TIDAL_TRACE28_LAYER=$layer TIDAL_TRACE28_OUT=$O/$tag.raw b tidal $tag "$@"
  grep trace28 $O/$tag.txt; }
t tr_l2_tidal100k_L20 20 --preset llama2-7b --context 100K --policy tidal
t tr_l2_tidal100k_L9 9 --preset llama2-7b --context 100K --policy tidal
t tr_l2_tidal10k_L20 20 --preset llama2-7b --context 10K --policy tidal
t tr_l2_full100k_L20 20 --preset llama2-7b --context 100K --policy full
t tr_l2_full10k_L20 20 --preset llama2-7b --context 10K --policy full
t tr_l3_tidal100k_L20 20 --preset llama3-8b --context 100K --policy tidal
t tr_l3_full10k_L20 20 --preset llama3-8b --context 10K --policy full
b tidal_main main_l2 --preset llama2-7b --context 10K,100K --policy full,tidal
b tidal plain_l2 --preset llama2-7b --context 10K,100K --policy full,tidal
el done
