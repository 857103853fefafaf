#!/bin/bash
# Call 14 (2026-12-04, 3rd session): cand = branch gemv-occ 251e888 (batch-1 GEMVs bounded to 64
# registers: 8 blocks an SM); base = main 94729aa (GPU code of 4c86598).
set -u
O=/tmp/o14; mkdir -p $O
trap 'tar -C /tmp/o14 -cJf $OUT/o14.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/all14.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
bash launch/gpu_suite.sh /tmp/x/cand/build $O/tests tests > $O/tests_stdout.txt 2>&1
echo "tests $(( $(date +%s) - t0 )) s"; grep TOTAL $O/tests/summary.txt; grep -v "failed=0 " $O/tests/summary.txt | grep -v TOTAL | head
for v in base cand; do
  timeout 90 /tmp/x/$v/build/benchmarks/kernel_bench --op linear --op linear_split --op linear_swiglu --graph-calls 32 --budget-ms 8 > $O/kb_$v.txt 2>&1
done
echo "kb $(( $(date +%s) - t0 )) s"
paste <(grep -E "^ *(linear|copy)" $O/kb_base.txt | cut -c1-150) /dev/null | head -40
grep -E "^ *(linear|copy)" $O/kb_cand.txt | cut -c1-150 | head -40
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-6s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
l3() { /tmp/x/$2/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head > $O/l3_$1.txt 2>&1; row $O/l3_$1.txt $1; }
l2() { /tmp/x/$2/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head > $O/l2_$1.txt 2>&1; row $O/l2_$1.txt $1; }
l3 base1 base; l3 cand1 cand; l3 cand2 cand; l3 base2 base; echo "l3 $(( $(date +%s) - t0 )) s"
l2 base1 base; l2 cand1 cand; l2 cand2 cand; l2 base2 base; echo "l2 $(( $(date +%s) - t0 )) s"
echo "done $(( $(date +%s) - t0 )) s"
