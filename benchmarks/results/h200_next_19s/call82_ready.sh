#!/bin/bash
# Call 82 (nineteenth session, 2026-12-06; H200 only, right after call 81 on the same machine):
# the per-op ablation on the H200 that PERF_NOTES owes since the sixteenth session (the H100's
# table is call 70's). abl = the throwaway TIDAL_SKIP build (main bc78282 +
# .carry/ablate_TIDAL_SKIP_bc78282.patch, `tidal` only, run with m19's lib/): TIDAL_SKIP=op leaves
# that op out of every layer, so a step's difference is the op's cost inside the step.
source launch/device_call.sh o82 m19:s abl:a
A=/tmp/a/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
grep -q H200 $O/gpu.txt || { echo "not an H200"; exit 0; }
for r in 1 2; do for op in none norms qkv attn o gate_up down; do
  TIDAL_SKIP=$op timeout 40 $A/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/a3_${op}_$r.txt 2>&1
  el "l3 skip $op r$r rc=$?"; row $O/a3_${op}_$r.txt "l3 skip $op r$r"
done; done
for op in none norms qkv attn o gate_up down; do
  [[ $(($(date +%s) - device_call_t0)) -lt 520 ]] || { el "out of time before l2 $op"; break; }
  TIDAL_SKIP=$op timeout 40 $A/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/a2_${op}.txt 2>&1
  el "l2 skip $op rc=$?"; row $O/a2_${op}.txt "l2 skip $op"
done
