#!/bin/bash
# Call 62 (2026-12-06, fifteenth session): a = e59 (main's GPU code, fd956d7 = c9bece2),
# b = next-s15 (main + merge_first without its limit parameter + pending/0001: the QKV GEMV's
# plan words in shared memory, early reads up to 4 tokens a tile). Every GPU test on b, then
# kernel_bench linear_qkv_append a / b twice, then the steps a / b interleaved twice.
source launch/device_call.sh o62 e59p01:x
export LD_LIBRARY_PATH=/tmp/x/a/lib:$LD_LIBRARY_PATH
A=/tmp/x/a/build B=/tmp/x/b/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
[[ -n ${SKIP_TESTS:-} ]] || TIDAL_PYTHON=/bin/false timeout 320 bash launch/gpu_suite.sh $B $O/tests tests > /dev/null 2>&1
el "gpu_suite b rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
kb() { timeout 60 $1/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 --op linear_qkv_append; }
for r in 1 2; do for v in a b; do if [[ $v == a ]]; then F=$A; else F=$B; fi; kb $F >> $O/kb_$v.txt 2>&1; done; done
for v in a b; do echo "$v"; grep -E "^  linear" $O/kb_$v.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; print $(NF-5), $(NF-3), $NF, s}'; done
el "kernel_bench done"
for r in 1 2; do for v in a b; do if [[ $v == a ]]; then F=$A; else F=$B; fi
  timeout 70 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_r$r.txt 2>&1
  el "l3 $v r$r rc=$?"; row $O/l3_${v}_r$r.txt "l3 $v r$r"
  (( $(date +%s) - device_call_t0 > 540 )) && break 2
  timeout 60 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_${v}_r$r.txt 2>&1
  el "l2 $v r$r rc=$?"; row $O/l2_${v}_r$r.txt "l2 $v r$r"
done; done
