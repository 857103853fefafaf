#!/bin/bash
# Call 31 (2026-12-04, 5th session, one H200): issue 14's tables on main ed125d5 (e11 = f897ef6's
# tree): FP8 full and tidal per-KV at 256K / 512K / 2^20, bf16 against FP8 at 32K and 100K.
set -u
O=/tmp/o31; mkdir -p $O
trap 'tar -C /tmp/o31 -cJf $OUT/o31.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e11.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-6s %s %s %s ms=%s floor=%s\n", t, $4, $6, $7, $10, $(NF-5)}'; }
timeout 150 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 256K,512K,1048576 --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_long.txt 2>&1
el "fp8 long rc=$?"; row $O/fp8_long.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8_short.txt 2>&1
el "fp8 short rc=$?"; row $O/fp8_short.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_short.txt 2>&1
el "bf16 rc=$?"; row $O/bf16_short.txt bf16
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --steps 10 --warmup 3 > $O/fp8_1m_breakdown.txt 2>&1
el "breakdown rc=$?"; tail -25 $O/fp8_1m_breakdown.txt
