#!/bin/bash
# Call 60 (2026-12-06, fourteenth session): e59 (next-s14 fd956d7 = main's GPU code after the
# landing). kernel_bench's new linear_qkv_append rows both ways (call 59 filtered them out); on
# an H200 also llama3-8b / llama2-7b with both switches off and on, then issue 9's suite.
source launch/device_call.sh o60 e59:x
F=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
kb() { timeout 60 $F/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 "$@"; }
for q in 0 1 0 1; do TIDAL_QKV_EARLY=$q kb --op linear_qkv_append --op linear_split >> $O/kb_qkv$q.txt 2>&1; done
for q in 0 1; do echo "TIDAL_QKV_EARLY=$q"; grep -E "^  linear" $O/kb_qkv$q.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; print $(NF-5), $(NF-3), $NF, s}'; done
el "kernel_bench done"
if grep -q H200 $O/gpu.txt; then
  for c in 0 1; do
    TIDAL_QKV_EARLY=$c TIDAL_MERGE_FIRST=$c timeout 60 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_$c.txt 2>&1
    el "l3 $c rc=$?"; row $O/l3_$c.txt "l3 $c"
    TIDAL_QKV_EARLY=$c TIDAL_MERGE_FIRST=$c timeout 60 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_$c.txt 2>&1
    el "l2 $c rc=$?"; row $O/l2_$c.txt "l2 $c"
  done
  left=$((555 - $(date +%s) + device_call_t0))
  el "suite budget $left s"
  bash benchmarks/suite/run_h200.sh $F $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds $left > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
