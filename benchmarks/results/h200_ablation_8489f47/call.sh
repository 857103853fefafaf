#!/bin/bash
# Call 24 (2026-12-04, 4th session, one H200): a layer's ops ablated inside the step on main
# 8489f47 (throwaway TIDAL_SKIP build abl24 = e5 + patch), llama3-8b; the distributed path with
# one rank (--tp 1: graphs through execute_step) against the plain engine; decode_attention alone.
set -u
O=/tmp/o24; mkdir -p $O
trap 'tar -C /tmp/o24 -cJf $OUT/o24.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x /tmp/a && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e5.tar.xz -C /tmp/x && tar -xJf .carry/abl24.tar.xz -C /tmp/a || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-10s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
run() { env TIDAL_SKIP=$2 timeout 60 /tmp/a/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/a_$1.txt 2>&1; row $O/a_$1.txt $1; }
for r in 1 2; do
  run none$r X; run attn$r attn; run qkv$r qkv; run o$r o; run gate_up$r gate_up; run down$r down; run norms$r norm1,norm2
done
echo "ablation done $(( $(date +%s) - t0 )) s"
for r in 1 2; do
  timeout 60 /tmp/x/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K --policy full,tidal --granularity per-query-head,shared --no-breakdown > $O/plain$r.txt 2>&1; row $O/plain$r.txt plain$r
  timeout 90 mpirun -np 1 --bind-to none -x LD_LIBRARY_PATH /tmp/x/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K --policy full,tidal --granularity per-query-head,shared --tp 1 > $O/tp1_$r.txt 2>&1; echo "tp1 rc=$?"; row $O/tp1_$r.txt tp1_$r
done
grep "tidal bench" $O/tp1_1.txt | head -4
timeout 120 /tmp/x/build/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb_attn.txt 2>&1
echo "kb rc=$? $(( $(date +%s) - t0 )) s"; grep -E "GQA|gqa" $O/kb_attn.txt | head -12
