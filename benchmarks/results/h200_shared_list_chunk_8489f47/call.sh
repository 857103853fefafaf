#!/bin/bash
# Call 25 (2026-12-04, 4th session, one H200): shared-list splits of at least 128 positions
# (e6 = main 8489f47 + kMinSharedListChunk + the review's fixes to the distributed path) against
# e5 (main 1176f1f's build): decode_attention in a graph of 32, tidal bench A/B, e6's cuda tests.
set -u
O=/tmp/o25; mkdir -p $O
trap 'tar -C /tmp/o25 -cJf $OUT/o25.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e5.tar.xz -C /tmp/b && tar -xJf .carry/e6.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-8s %s %s %s K=%s ms=%s floor=%s\n", t, $4, $6, $7, $9, $10, $(NF-5)}'; }
for v in b c; do
  timeout 100 /tmp/$v/build/benchmarks/kernel_bench --op decode_attention --graph-calls 32 --budget-ms 8 > $O/kb_$v.txt 2>&1
  el "kb $v rc=$?"; grep -E "h=32/8 .*(per-kv|per-q)" $O/kb_$v.txt | grep -v fp8 | awk '{print $3,$4,$5,$6,$7,$8,$9,$11}'
done
for r in 1 2; do
  for v in b c; do
    timeout 60 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1; row $O/l3_${v}_$r.txt l3$v$r
    timeout 60 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 256,2048 --context 32K --policy tidal --granularity per-kv-head,shared --no-breakdown > $O/l3s_${v}_$r.txt 2>&1; row $O/l3s_${v}_$r.txt l3s$v$r
    timeout 60 /tmp/$v/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 30 --warmup 5 > $O/fp8_${v}_$r.txt 2>&1; row $O/fp8_${v}_$r.txt fp8$v$r
  done
done
el "ab done"
timeout 250 bash launch/gpu_suite.sh /tmp/c/build $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6
