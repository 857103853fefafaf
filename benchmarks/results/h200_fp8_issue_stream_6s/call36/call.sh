#!/bin/bash
# Call 36: the probe's cp.async configs, one process each (call 35's first one failed with an
# illegal instruction and the error stuck to the rest); compute-sanitizer on the first.
set -u
O=/tmp/o36; mkdir -p $O
trap 'tar -C /tmp/o36 -cJf $OUT/o36.tar.xz .' EXIT
nvcc -O3 -arch=sm_90a -std=c++17 -lineinfo -o $O/stream_probe .carry/stream_probe.cu || exit 1
timeout 60 compute-sanitizer --show-backtrace no $O/stream_probe 0 2>&1 | head -30
cuobjdump -sass $O/stream_probe | grep -n -i 'LDGSTS\|CCTL\|ERRBAR\|illegal' | head -8
for c in 0 1 2 3 4 5; do $O/stream_probe $c; done | tee $O/probe.txt
M=dram__bytes_read.sum,lts__t_sectors.sum,lts__t_requests_srcunit_tex.sum,lts__t_sectors_srcunit_tex.sum,lts__t_sectors_srcunit_ltcfabric.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum
for c in 0 2; do
  ncu --clock-control none --metrics $M -k regex:read_ -c 1 $O/stream_probe $c 2>&1 | grep -E "dram__|lts__|gpu__time" | tee $O/ncu_$c.txt
done
ncu --clock-control none --metrics $M -k regex:read_ldg -c 1 $O/stream_probe 2>&1 | grep -E "dram__|lts__|gpu__time" | tee $O/ncu_ldg.txt
