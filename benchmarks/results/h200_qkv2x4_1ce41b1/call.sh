#!/bin/bash
# Call 21 (2026-12-04, 4th session, one H200: the 2-GPU kind was withdrawn): the cuda tests of
# e3 (main 8188110 + f32 partial sums under TP, graphs under TP/PP, mixed-dtype norm/add), and
# the A/B of pending/0001 (fused QKV GEMV 2 rows x 4 vectors) against e3, interleaved twice.
set -u
O=/tmp/o21; mkdir -p $O
trap 'tar -C /tmp/o21 -cJf $OUT/o21.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x /tmp/q && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e3.tar.xz -C /tmp/x && tar -xJf .carry/qkv.tar.xz -C /tmp/q || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
for round in 1 2; do
  for v in x q; do
    for p in llama3-8b llama2-7b; do
      g=per-query-head,per-kv-head; [[ $p == llama2-7b ]] && g=per-query-head
      timeout 60 /tmp/$v/build/launch/tidal bench --preset $p --budget 2048 --context 10K,100K --policy full,tidal --granularity $g --no-breakdown > $O/ab_${v}_${p}_$round.txt 2>&1 || el "bench $v $p rc=$?"
    done
  done
done
el "ab done"
for p in llama3-8b llama2-7b; do for v in x q; do echo "== $p $v"; grep -h -v "^#" $O/ab_${v}_${p}_*.txt | grep NVIDIA | awk '{printf "%s %s %s %s %s\n", $4, $6, $7, $10, $(NF-5)}'; done; done
timeout 280 bash launch/gpu_suite.sh /tmp/x/build $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -8
