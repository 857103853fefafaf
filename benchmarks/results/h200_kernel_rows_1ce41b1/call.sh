#!/bin/bash
# Call 26 (2026-12-04, 4th session, one H200): issue 9's kernel rows on main 75f83cf (e7's build =
# 3ffe1be's code; GPU code 1ce41b1's), in graphs of 32 calls; llama2-7b full / tidal at 100K twice.
set -u
O=/tmp/o26; mkdir -p $O
trap 'tar -C /tmp/o26 -cJf $OUT/o26.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e7.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
timeout 200 /tmp/x/build/benchmarks/kernel_bench --op linear --op linear_split --op linear_swiglu --op topk_per_row --op head_group_probs --graph-calls 32 --budget-ms 8 --json $O/kb.json > $O/kb.txt 2>&1
echo "kb rc=$? $(( $(date +%s) - t0 )) s"; grep -v "^#" $O/kb.txt | cut -c1-150 | head -60
for r in 1 2; do
  timeout 60 /tmp/x/build/launch/tidal bench --preset llama2-7b --budget 2048 --context 100K --policy full,tidal --no-breakdown > $O/l2_$r.txt 2>&1
  grep -E "^ +NVIDIA" $O/l2_$r.txt | awk '{print $4, $6, $10, $(NF-5)}'
done
echo "done $(( $(date +%s) - t0 )) s"
