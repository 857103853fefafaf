#!/bin/bash
# Call 107 (prepared in the twenty-eighth session, 2026-12-07): k107 = branch oearly a2a4458 = main
# 15247b8 + pending/0001-o-projection-early-weights.patch (built in /work/l26). Every GPU test
# (linear's test checks early_weights moves no bit), then two interleaved rounds of
# TIDAL_GEMV_EARLY=0 (main's GEMV) against the default. Prediction: every tidal row -0.06 to -0.10
# ms a step (28 sparse layers x 2.5-3.5 us), full rows within +-0.01.
source launch/device_call.sh o107 k107:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
b() { env $1 timeout 60 $K/launch/tidal bench --preset $2 --budget 2048 --context $3 --policy $4 --granularity $5 --no-breakdown > $O/$6.txt 2>&1
  el "$6 rc=$?"; row $O/$6.txt "$6"; }
round() {
  for e in 0 1; do
    b TIDAL_GEMV_EARLY=$e llama2-7b 10K,32K,100K full,tidal per-query-head l2_e${e}_$1
    b TIDAL_GEMV_EARLY=$e llama3-8b 10K,100K tidal per-query-head,per-kv-head l3_e${e}_$1
  done
}
round 1
TIDAL_PYTHON=/bin/false timeout 330 bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
round 2
el done
