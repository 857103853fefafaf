#!/bin/bash
# Call 111 (thirtieth session): k111 = branch rows3 72d3788 (main 4e5ccf5 + the sparse lists as cache
# rows, without pending/0001), built in /work/l26. Every GPU test first (the landing commit's), then
# rows on (r) / off (m) and full unchanged.
source launch/device_call.sh o111 k111:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
left() { echo $((${LIMIT:-560} - $(date +%s) + device_call_t0)); }
TIDAL_PYTHON=/bin/false timeout $(( $(left) - 20 )) bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
declare -A ENV=([m]="TIDAL_ATTN_ROWS=0" [r]="TIDAL_ATTN_ROWS=1")
b() { env ${ENV[$1]} timeout 40 $K/launch/tidal bench --preset $2 --budget 2048 --context $3 --policy $4 --granularity per-query-head --no-breakdown > $O/$5.txt 2>&1
  el "$5 rc=$?"; row $O/$5.txt "$5"; }
for i in 1 2; do
  for v in r m; do
    (( $(left) > 15 )) && b $v llama2-7b 10K,100K full,tidal l2_${v}_$i
  done
done
el done
