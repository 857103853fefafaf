#!/bin/bash
# Call 15 (2026-12-04, 3rd session): which GEMV kernels' 64-register bound costs llama3-8b.
# base = main 94729aa; cand = gemv-occ 251e888 (all three batch-1 GEMV kernels bounded);
# vb = linear_gemv + linear_swiglu bounded; va = linear_gemv only (o, down, LM head).
set -u
O=/tmp/o15; mkdir -p $O
trap 'tar -C /tmp/o15 -cJf $OUT/o15.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/all14.tar.xz -C /tmp/x && tar -xJf .carry/vab.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-6s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
l3() { /tmp/x/$2/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-kv-head > $O/l3_$1.txt 2>&1; row $O/l3_$1.txt $1; }
l2() { /tmp/x/$2/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K --policy full,tidal --granularity per-query-head > $O/l2_$1.txt 2>&1; row $O/l2_$1.txt $1; }
for r in 1 2; do for v in base va vb cand; do l3 ${v}$r $v; done; done; echo "l3 $(( $(date +%s) - t0 )) s"
for v in base va vb cand; do l2 ${v}1 $v; done; echo "l2 $(( $(date +%s) - t0 )) s"
echo "done $(( $(date +%s) - t0 )) s"
