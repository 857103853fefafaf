#!/bin/bash
# Call 13 (2026-12-04, 3rd session): P = branch l2pf 597d459 (decode attention prefetches the
# layer's o projection into L2 toward the end of its keys). A/B in the same binary:
# TIDAL_L2_PREFETCH=0 (off) against unset (on), interleaved.
set -u
O=/tmp/o13; mkdir -p $O
trap 'tar -C /tmp/o13 -cJf $OUT/o13.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/p1.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
bash launch/gpu_suite.sh /tmp/x/build $O/tests tests > $O/tests_stdout.txt 2>&1
echo "tests $(( $(date +%s) - t0 )) s"; grep TOTAL $O/tests/summary.txt; grep -v "failed=0 " $O/tests/summary.txt | grep -v TOTAL | head
C=/tmp/x/build/launch/tidal
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-6s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
l3() { env $2 $C bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head > $O/l3_$1.txt 2>&1; row $O/l3_$1.txt $1; }
l2() { env $2 $C bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head > $O/l2_$1.txt 2>&1; row $O/l2_$1.txt $1; }
OFF=TIDAL_L2_PREFETCH=0; ON=TIDAL_L2_PREFETCH=1
l3 off1 $OFF; l3 on1 $ON; l3 on2 $ON; l3 off2 $OFF; echo "l3 $(( $(date +%s) - t0 )) s"
l2 off1 $OFF; l2 on1 $ON; l2 on2 $ON; l2 off2 $OFF; echo "l2 $(( $(date +%s) - t0 )) s"
f8() { env $2 $C bench --preset llama3-8b --kv-dtype fp8 --budget 2048 --context 100K,1048576 --policy tidal --granularity per-kv-head > $O/f8_$1.txt 2>&1; row $O/f8_$1.txt $1; }
[ $(( $(date +%s) - t0 )) -lt 420 ] && { f8 off1 $OFF; f8 on1 $ON; }
echo "done $(( $(date +%s) - t0 )) s"
