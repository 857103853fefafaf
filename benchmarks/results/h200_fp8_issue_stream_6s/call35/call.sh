#!/bin/bash
# Call 35 (2026-12-04, 6th session, one H200): the read-bandwidth probe (stream_probe.cu: plain
# loads, cp.async rings over contiguous rows and over the FP8 cache's head-interleaved rows), and
# the L2 breakdown of the FP8 dense call (e14) against the probe's.
set -u
O=/tmp/o35; mkdir -p $O
trap 'tar -C /tmp/o35 -cJf $OUT/o35.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e14.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvcc -O3 -arch=sm_90a -std=c++17 -o $O/stream_probe .carry/stream_probe.cu || exit 1
for r in 1 2; do $O/stream_probe | tee $O/probe$r.txt; done
el probe
M=dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors.sum,lts__t_requests_srcunit_tex.sum,lts__t_sectors_srcunit_tex.sum,lts__t_sectors_srcunit_ltcfabric.sum,lts__t_sectors_lookup_hit.sum,lts__t_sectors_lookup_miss.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum
pr() { grep -E "dram__|lts__|gpu__time|Duration|Throughput|^  [A-Za-z].*\(" "$1" | grep -v "^ *-" | head -60; }
ncu --clock-control none --section SpeedOfLight --print-details all --metrics $M -k regex:read_cpasync -c 1 $O/stream_probe > $O/ncu_probe_contig.txt 2>&1
ncu --clock-control none --section SpeedOfLight --print-details all --metrics $M -k regex:read_cpasync --launch-skip 36 -c 1 $O/stream_probe > $O/ncu_probe_fp8.txt 2>&1
ncu --clock-control none --section SpeedOfLight --print-details all --metrics $M -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" > $O/ncu_fp8_dense.txt 2>&1
for f in contig fp8; do echo "== probe $f"; pr $O/ncu_probe_$f.txt; done
echo "== FP8 dense"; pr $O/ncu_fp8_dense.txt
el done
