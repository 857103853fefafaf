#!/bin/bash
# Call 16 (2026-12-04, 3rd session): va = gemv-occ ebb (linear_gemv_kernel bounded to 64 registers
# at batch 1): GPU tests, then A/B against base (main 94729aa); then the ablation binary (abl =
# va + TIDAL_SKIP) for each op's in-step cost.
set -u
O=/tmp/o16; mkdir -p $O
trap 'tar -C /tmp/o16 -cJf $OUT/o16.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x /tmp/y && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/all16.tar.xz -C /tmp/x && tar -xJf .carry/all14.tar.xz -C /tmp/y base || { echo "extract failed"; exit 1; }
mv /tmp/y/base /tmp/x/base
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
bash launch/gpu_suite.sh /tmp/x/va/build $O/tests tests > $O/tests_stdout.txt 2>&1
echo "tests $(( $(date +%s) - t0 )) s"; grep TOTAL $O/tests/summary.txt; grep -v "failed=0 " $O/tests/summary.txt | grep -v TOTAL | head
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-8s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
l3() { /tmp/x/$2/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head > $O/l3_$1.txt 2>&1; row $O/l3_$1.txt $1; }
l2() { /tmp/x/$2/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head > $O/l2_$1.txt 2>&1; row $O/l2_$1.txt $1; }
for r in 1 2; do l3 base$r base; l3 va$r va; done; for r in 1 2; do l2 base$r base; l2 va$r va; done
echo "ab $(( $(date +%s) - t0 )) s"
for s in none norm1 norm2 qkv attn o gate_up down; do
  for r in 1 2; do
    TIDAL_SKIP=$s /tmp/x/abl/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-kv-head > $O/abl3_${s}_$r.txt 2>&1; row $O/abl3_${s}_$r.txt "${s}"
    TIDAL_SKIP=$s /tmp/x/abl/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K --policy full,tidal --granularity per-query-head > $O/abl2_${s}_$r.txt 2>&1; row $O/abl2_${s}_$r.txt "${s}"
  done
done
echo "done $(( $(date +%s) - t0 )) s"
