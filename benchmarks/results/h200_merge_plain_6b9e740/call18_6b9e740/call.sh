#!/bin/bash
# Call 18 (2026-12-04, 3rd session): e1 = merge-plain (main cac53ca + the merge as an ordinary
# launch): GPU tests; A/B against base (cac53ca) and e2 (e1 + both split kernels trigger their
# dependents after their main loop, throwaway).
set -u
O=/tmp/o18; mkdir -p $O
trap 'tar -C /tmp/o18 -cJf $OUT/o18.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/all18.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
bash launch/gpu_suite.sh /tmp/x/e1/build $O/tests tests > $O/tests_stdout.txt 2>&1
echo "tests $(( $(date +%s) - t0 )) s"; grep TOTAL $O/tests/summary.txt; grep -v "failed=0 " $O/tests/summary.txt | grep -v TOTAL | head
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-7s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
l3() { /tmp/x/$2/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head > $O/l3_$1.txt 2>&1; row $O/l3_$1.txt $1; }
l2() { /tmp/x/$2/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head > $O/l2_$1.txt 2>&1; row $O/l2_$1.txt $1; }
f8() { /tmp/x/$2/build/launch/tidal bench --preset llama3-8b --kv-dtype fp8 --budget 2048 --context 100K --policy full,tidal --granularity per-kv-head > $O/f8_$1.txt 2>&1; row $O/f8_$1.txt $1; }
for r in 1 2; do for v in base e1 e2; do l3 $v$r $v; done; done
for r in 1 2; do for v in base e1 e2; do l2 $v$r $v; done; done
for r in 1 2; do for v in base e1 e2; do f8 $v$r $v; done; done
echo "done $(( $(date +%s) - t0 )) s"
