#!/bin/bash
# Call 42: ncu of FP8 dense+logits at 2^20 (call 41 caught only the dense call twice).
set -u
O=/tmp/o42; mkdir -p $O
trap 'tar -C /tmp/o42 -cJf $OUT/o42.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
[ -d /tmp/b/build ] || tar -xJf .carry/e16.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
M=dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_write.sum,lts__t_requests_srcunit_tex_op_write.sum,smsp__inst_executed.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors_srcunit_tex_op_read_lookup_miss.sum,lts__t_sectors_srcunit_tex_op_write_lookup_miss.sum,smsp__average_warp_latency_issue_stalled_lg_throttle.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_drain_per_issue_active.ratio,smsp__average_warps_issue_stalled_membar_per_issue_active.ratio
ncu --clock-control none --metrics $M -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "dense+logits" > $O/ncu_logits.txt 2>&1
grep -E "decode_attention_mma|dram__|lts__|gpu__time|smsp__|ERR" $O/ncu_logits.txt
ncu --clock-control none --metrics $M -k regex:decode_attention_mma_split -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" > $O/ncu_dense.txt 2>&1
grep -E "dram__|lts__|gpu__time|smsp__|ERR" $O/ncu_dense.txt
