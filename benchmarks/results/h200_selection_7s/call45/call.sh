#!/bin/bash
# Call 45: where the real step's top-k spends 152 us (ncu full set + SASS, main's e16), and the
# logits write probe (without the cp.async hint that faulted in call 44).
set -u
O=/tmp/o45; mkdir -p $O
trap 'tar -C /tmp/o45 -cJf $OUT/o45.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/a && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
[ -d /tmp/a/build ] || tar -xJf .carry/e16.tar.xz -C /tmp/a || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/a/lib:${LD_LIBRARY_PATH:-}
A=/tmp/a/build
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
timeout 300 ncu --clock-control none --set full --import-source no -k regex:topk_select -c 1 -o $O/topk $A/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --eager --no-breakdown --steps 1 --warmup 0 > $O/ncu_run.txt 2>&1
el "ncu rc=$?"
ncu -i $O/topk.ncu-rep --page source --csv --print-source sass > $O/sass.csv 2>&1
ncu -i $O/topk.ncu-rep --page details --csv > $O/details.csv 2>&1
grep -E "Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers|Issue Slots Busy" $O/details.csv | head -12
nvcc -O3 -arch=sm_90a -o /tmp/write_probe .carry/write_probe.cu > $O/probe_build.txt 2>&1 && /tmp/write_probe | tee $O/write_probe.txt
el probe
