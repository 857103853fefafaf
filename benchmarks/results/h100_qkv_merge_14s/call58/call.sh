#!/bin/bash
# Call 58 (2026-12-06, fourteenth session): main c2596db's build (e58): every GPU test (gtest
# binaries; the torch checks are the suite's self-test), llama3-8b's issue-9 rows with the norms
# both ways (TIDAL_NORM_ONE=1/0), a timeline of llama3-8b 10K full steps (nsys, where the device
# has it), then issue 9's suite in the time left (it resumes in a later call).
source launch/device_call.sh o58 e58:x
F=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
TIDAL_PYTHON=/bin/false timeout 260 bash launch/gpu_suite.sh $F $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
for n in 1 0; do
  TIDAL_NORM_ONE=$n timeout 60 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_n$n.txt 2>&1
  el "l3 norm_one=$n rc=$?"; row $O/l3_n$n.txt "l3 n$n"
done
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
el "nsys: ${NSYS:-none}"
if [[ -n $NSYS ]]; then
  timeout 100 $NSYS profile -t cuda --cuda-graph-trace=node --force-overwrite true -o $O/l3full10k $F/launch/tidal bench --preset llama3-8b --context 10K --policy full --steps 6 --warmup 3 --no-breakdown > $O/nsys_run.txt 2>&1
  el "nsys profile rc=$?"
  timeout 60 $NSYS stats --report cuda_gpu_trace --format csv --output $O/l3full10k $O/l3full10k.nsys-rep > $O/nsys_stats.txt 2>&1
  el "nsys stats rc=$?"; ls -la $O/*.csv 2>/dev/null; rm -f $O/l3full10k.sqlite
  xz -9 $O/*.csv 2>/dev/null; rm -f $O/l3full10k.nsys-rep
fi
left=$((560 - $(date +%s) + device_call_t0))
el "suite budget $left s"
if (( left > 60 )) && grep -q H200 $O/gpu.txt; then
  bash benchmarks/suite/run_h200.sh $F $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds $left > $O/suite9.log 2>&1
  el "suite rc=$?"; tail -3 $O/suite9.log
fi
