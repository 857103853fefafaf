#!/bin/bash
# Call 38: does the attention kernel's padded shared-memory row (144 B for a 128 B FP8 row) cost
# the cp.async stream L2 requests and bandwidth? The probe with and without the padding.
set -u
O=/tmp/o38; mkdir -p $O
trap 'tar -C /tmp/o38 -cJf $OUT/o38.tar.xz .' EXIT
nvcc -O3 -arch=sm_90a -std=c++17 -o $O/stream_probe .carry/stream_probe.cu || exit 1
$O/stream_probe | head -4 | tee $O/probe.txt
for r in 1 2; do for c in 0 1 2 3 4 5; do $O/stream_probe $c; done; done | tee -a $O/probe.txt
M=dram__bytes_read.sum,lts__t_sectors_srcunit_tex.sum,lts__t_requests_srcunit_tex.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum
for c in 2 3 5; do echo "== ncu cfg $c"
  ncu --clock-control none --metrics $M -k regex:read_ -c 1 $O/stream_probe $c 2>&1 | grep -E "dram__|lts__|gpu__time"
done | tee $O/ncu.txt
