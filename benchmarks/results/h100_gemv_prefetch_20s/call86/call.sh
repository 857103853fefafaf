#!/bin/bash
# Call 86 (twentieth session; any card): the post-wait prefetch in the QKV, o / LM head and down
# GEMVs only (TIDAL_GEMV_PREFETCH_MASK=13), against none (TIDAL_GEMV_PREFETCH=0) and the SwiGLU
# one alone (2); llama3-8b and llama2-7b at 10K and 100K, two interleaved rounds.
source launch/device_call.sh o86 mask:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do
  for v in off 13; do
    if [[ $v == off ]]; then env=TIDAL_GEMV_PREFETCH=0; else env=TIDAL_GEMV_PREFETCH_MASK=$v; fi
    env $env timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1
    el "l3 $v r$r rc=$?"; row $O/l3_${v}_$r.txt "l3 $v r$r"
    env $env timeout 60 $S/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_${v}_$r.txt 2>&1
    el "l2 $v r$r rc=$?"; row $O/l2_${v}_$r.txt "l2 $v r$r"
  done
done
