#!/bin/bash
# Call 112 (prepared in the thirtieth session, 2026-12-07): k112 = branch mmarows fa68e0a (main 31fa2d9 +
# pending/0003: the tensor-core kernel's lists-only launches read the lists as cache rows), built in
# /work/l26. r = TIDAL_ATTN_ROWS=1 (the patch), m = 0 (main's tensor-core path; the SIMT ring's rows
# off too, so compare per-KV rows only, and per-q rows as the known -0.02 of main's rows).
# Order: r/m A/B on the per-KV rows, kernel_bench, every GPU test, round 2.
source launch/device_call.sh o112 k112:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
left() { echo $((${LIMIT:-560} - $(date +%s) + device_call_t0)); }
declare -A ENV=([m]="TIDAL_ATTN_ROWS=0" [r]="TIDAL_ATTN_ROWS=1")
b() { env ${ENV[$1]} timeout 60 $K/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --granularity per-kv-head $2 --no-breakdown > $O/$3.txt 2>&1
  el "$3 rc=$?"; row $O/$3.txt "$3"; }
kb() { env TIDAL_ATTN_ROWS=$1 timeout 100 $K/benchmarks/kernel_bench --op decode_attention --shape sparse-layer --graph-calls 32 > $O/kb_rows$1.txt 2>&1
  el "kb rows=$1 rc=$?"; grep -E "copy|sparse-layer" $O/kb_rows$1.txt | grep -v "^#" | cut -c1-200; }
for v in r m; do b $v "" l3kv_${v}_1; b $v "--kv-dtype fp8" l3kv8_${v}_1; done
(( $(left) > 80 )) && { kb 0; kb 1; }
if (( $(left) > 230 )); then
  TIDAL_PYTHON=/bin/false timeout $(( $(left) - 20 )) bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
  el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
fi
for v in r m; do (( $(left) > 30 )) && b $v "" l3kv_${v}_2; (( $(left) > 30 )) && b $v "--kv-dtype fp8" l3kv8_${v}_2; done
el done
