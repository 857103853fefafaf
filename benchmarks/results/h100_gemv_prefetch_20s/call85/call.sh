#!/bin/bash
# Call 85 (twentieth session, 2026-12-06; any card): which GEMV's post-wait prefetch costs in the
# step. mask = branch gemv-prefetch + TIDAL_GEMV_PREFETCH_MASK (bit 0 QKV, 1 SwiGLU, 2 o / LM head,
# 3 down); TIDAL_GEMV_PREFETCH=0 is main's GEMV. llama3-8b at 10K, two interleaved rounds.
source launch/device_call.sh o85 mask:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do
  for v in off 15 1 2 4 8; do
    if [[ $v == off ]]; then env=TIDAL_GEMV_PREFETCH=0; else env=TIDAL_GEMV_PREFETCH_MASK=$v; fi
    env $env timeout 60 $S/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1
    el "l3 $v r$r rc=$?"; row $O/l3_${v}_$r.txt "l3 $v r$r"
  done
done
