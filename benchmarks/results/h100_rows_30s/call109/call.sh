#!/bin/bash
# Call 109 (thirtieth session, 2026-12-07): k109 = branch rows2 b3f891a in /work/l26 = main 910a4d4 + pending/0001
# (o projection early weights) + pending/0002 (the sparse lists as cache rows) + the review mend (tests).
# m = TIDAL_GEMV_EARLY=0 TIDAL_ATTN_ROWS=0 (main's kernels), e = early weights, er = both.
# Order by value under a short device budget: m/er A/B, every GPU test, then e, kernel_bench, round 2.
source launch/device_call.sh o109 k109:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
declare -A ENV=([m]="TIDAL_GEMV_EARLY=0 TIDAL_ATTN_ROWS=0" [e]="TIDAL_GEMV_EARLY=1 TIDAL_ATTN_ROWS=0" [er]="TIDAL_GEMV_EARLY=1 TIDAL_ATTN_ROWS=1")
b() { env ${ENV[$1]} timeout 60 $K/launch/tidal bench --preset $2 --budget 2048 --context $3 --policy $4 --granularity $5 --no-breakdown > $O/$6.txt 2>&1
  el "$6 rc=$?"; row $O/$6.txt "$6"; }
l2() { b $1 llama2-7b 10K,100K full,tidal per-query-head l2_$1_$2; }
l3() { b $1 llama3-8b 100K tidal per-query-head,per-kv-head l3_$1_$2; }
kb() { env TIDAL_ATTN_ROWS=$1 timeout 100 $K/benchmarks/kernel_bench --op decode_attention --shape sparse-layer --graph-calls 32 > $O/kb_rows$1_$2.txt 2>&1
  el "kb rows=$1 rc=$?"; grep -E "copy|sparse-layer" $O/kb_rows$1_$2.txt | grep -v "^#" | cut -c1-200; }
left() { echo $((${LIMIT:-560} - $(date +%s) + device_call_t0)); }
l2 m 1; (( $(left) > 40 )) && l2 er 1; (( $(left) > 40 )) && l3 m 1; (( $(left) > 40 )) && l3 er 1
(( $(left) > 60 )) && { kb 0 1; kb 1 1; }
if (( $(left) > 230 )); then
  TIDAL_PYTHON=/bin/false timeout 330 bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
  el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
fi
(( $(left) > 60 )) && l2 e 1
(( $(left) > 60 )) && l2 er 2
(( $(left) > 60 )) && l2 m 2
(( $(left) > 40 )) && l3 er 2
(( $(left) > 40 )) && l3 m 2
el done
