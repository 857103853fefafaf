#!/bin/bash
# Call 41: diagnostics on main's GPU code (e16): where the selection layer's extra 0.3 ms goes at
# 2^20 (FP8): dense vs dense+logits DRAM traffic, head_group_probs and top-k, and one eager
# breakdown of the 2^20 tidal step.
set -u
O=/tmp/o41; mkdir -p $O
trap 'tar -C /tmp/o41 -cJf $OUT/o41.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e16.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
M=dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_write.sum,lts__t_requests_srcunit_tex_op_write.sum,smsp__inst_executed.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed
echo "== ncu FP8 dense / dense+logits 2^20"
ncu --clock-control none --metrics $M -k regex:decode_attention_mma_split -c 2 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op decode_attention --shape n=1048576 --shape "fp8 dense" > $O/ncu_attn.txt 2>&1
grep -E "decode_attention_mma|dram__|lts__|gpu__time|smsp__" $O/ncu_attn.txt
echo "== ncu hgp 2^20"
ncu --clock-control none --metrics $M -c 1 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op head_group_probs --shape 1048576 > $O/ncu_hgp.txt 2>&1
grep -E "head_group|dram__|lts__|gpu__time|smsp__" $O/ncu_hgp.txt
echo "== ncu topk 8 x 2^20"
ncu --clock-control none --metrics $M -c 2 $B/benchmarks/kernel_bench --reps 1 --warmup 0 --op topk_per_row --shape "x 1048576" > $O/ncu_topk.txt 2>&1
grep -E "topk_|dram__|lts__|gpu__time|smsp__" $O/ncu_topk.txt
el ncu
timeout 120 $B/benchmarks/kernel_bench --op decode_attention --shape fp8 --shape h=32/8 --graph-calls 32 --budget-ms 8 > $O/kb_attn.txt 2>&1
timeout 120 $B/benchmarks/kernel_bench --op head_group_probs --op topk_per_row --graph-calls 32 --budget-ms 8 > $O/kb_sel.txt 2>&1
grep -E "decode_attention|head_group|topk" $O/kb_attn.txt $O/kb_sel.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-70s %s us %s%% wrong=%s\n", s, $(NF-5), $(NF-2), $NF}'
el kb
timeout 120 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --steps 20 --warmup 3 > $O/fp8_1m_breakdown.txt 2>&1
el "bench rc=$?"; tail -25 $O/fp8_1m_breakdown.txt
