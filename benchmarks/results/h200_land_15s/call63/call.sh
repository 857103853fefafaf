#!/bin/bash
# Call 63 (2026-12-06, fifteenth session, the H200 of call 62): issue 9's suite on b (next-s15:
# main + pending/0001 + merge_first cleanup; 824/824 GPU tests in call 62), then the A/B of the
# switches TIDAL_QKV_EARLY / TIDAL_MERGE_FIRST / TIDAL_NORM_ONE on b (llama3-8b).
source launch/device_call.sh o63 e59p01:x
export LD_LIBRARY_PATH=/tmp/x/a/lib:$LD_LIBRARY_PATH
B=/tmp/x/b/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
bash benchmarks/suite/run_h200.sh $B $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds 420 > $O/suite9.log 2>&1
el "suite rc=$?"; tail -3 $O/suite9.log
for sw in none TIDAL_QKV_EARLY TIDAL_MERGE_FIRST TIDAL_NORM_ONE none; do
  (( $(date +%s) - device_call_t0 > 560 )) && break
  env $([[ $sw == none ]] || echo $sw=0) timeout 40 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/sw_$sw.txt 2>&1
  el "$sw=0 rc=$?"; row $O/sw_$sw.txt "$sw=0"
done
