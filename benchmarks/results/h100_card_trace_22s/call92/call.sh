#!/bin/bash
# Call 92 (twenty-first session): c92 = branch gemv-by-card = main 8d86a27 + the GEMV prefetch
# decided by card (on for "H100 80GB HBM3", off elsewhere; TIDAL_GEMV_PREFETCH=0/1 forces it).
# The default's step on this card against both forced values (the default must equal `0` on an
# H200, `1` on an H100 80GB HBM3), then every GPU test with the prefetch off: the H200's default
# (on an H100 forced by TIDAL_GEMV_PREFETCH=0; its `on` path ran 832/832 in call 88).
source launch/device_call.sh o92 c92:c
C=/tmp/c/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for pf in default 0 1; do
  if [[ $pf == default ]]; then unset TIDAL_GEMV_PREFETCH; else export TIDAL_GEMV_PREFETCH=$pf; fi
  timeout 30 $C/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l3_$pf.txt 2>&1
  el "l3 $pf rc=$?"; row $O/l3_$pf.txt "l3 $pf"
done
export TIDAL_GEMV_PREFETCH=0
left=$((${TOTAL:-585} - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $C $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
