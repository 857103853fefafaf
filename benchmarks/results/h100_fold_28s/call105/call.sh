#!/bin/bash
# Call 105 (twenty-eighth session): k105 = branch fold (main f977290 + the SIMT kernel's row checks
# and offsets shared by load_rows and ring_issue); tidal_main = k104's tidal (branch ring afbdeba: main's kernels).
# Every GPU test on k105, A/B rows (m against k105, two interleaved rounds), then on an H200
# issue 9's suite (benchmarks/suite/issue9.json) on k105 with the time left.
source launch/device_call.sh o105 k105m:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
bm() { timeout 60 $K/launch/tidal_main bench --preset $1 --budget 2048 --context $2 --policy $3 --granularity per-query-head --no-breakdown > $O/$4.txt 2>&1
  el "$4 rc=$?"; row $O/$4.txt "$4"; }
b() { timeout 60 $K/launch/tidal bench --preset $1 --budget 2048 --context $2 --policy $3 --granularity per-query-head --no-breakdown > $O/$4.txt 2>&1
  el "$4 rc=$?"; row $O/$4.txt "$4"; }
round() {
  bm llama2-7b 10K,100K full,tidal l2_main_$1
  b llama2-7b 10K,100K full,tidal l2_fold_$1
  bm llama3-8b 10K,100K tidal l3_main_$1
  b llama3-8b 10K,100K tidal l3_fold_$1
}
round 1
TIDAL_PYTHON=/bin/false timeout 330 bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
round 2
grep -q H200 $O/gpu.txt || { el done; exit 0; }
left=$((575 - $(date +%s) + device_call_t0))
el "suite budget $left s"
bash benchmarks/suite/run_h200.sh $K $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds $left > $O/suite9.log 2>&1
el "suite rc=$?"; tail -3 $O/suite9.log
el done
