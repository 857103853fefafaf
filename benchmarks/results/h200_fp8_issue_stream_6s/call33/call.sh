#!/bin/bash
# Call 33 (2026-12-04, 6th session, one H200): e13 = main (caee67a kernels, kernel_bench --shape).
# Nsight Compute on issue 14's selection-layer kernels at 2^20 (FP8 dense, dense+logits,
# head_group_probs, top-k) and the bf16 GQA dense call at 32K (issue 9): where each one's time goes.
set -u
O=/tmp/o33; mkdir -p $O
trap 'tar -C /tmp/o33 -cJf $OUT/o33.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e13.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
KB=$B/benchmarks/kernel_bench
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
which ncu; ncu --version | tail -1
prof() {  # name, kernel regex, kernel_bench args...
  local n=$1 k=$2; shift 2
  timeout 200 ncu --clock-control none --set full --import-source no -k regex:"$k" -c 1 -f -o $O/$n \
    $KB --reps 1 --warmup 0 "$@" > $O/$n.log 2>&1
  el "$n rc=$?"
  ncu -i $O/$n.ncu-rep --page details > $O/$n.details.txt 2>&1
  ncu -i $O/$n.ncu-rep --page source --csv --print-source sass > $O/$n.sass.csv 2>&1
  grep -E "Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible" $O/$n.details.txt | head -12
}
prof fp8_dense decode_attention_mma_split --op decode_attention --shape n=1048576 --shape "fp8 dense"
prof fp8_logits decode_attention_mma_split --op decode_attention --shape n=1048576 --shape "fp8 dense+logits"
prof hgp head_group --op head_group_probs --shape 1048576
prof topk topk_select --op topk_per_row --shape "x 1048576"
prof bf16_gqa32k decode_attention_mma_split --op decode_attention --shape "b=1 n=32768 h=32/8" --shape " dense"
# timing of the same cases (graph of 32), no profiler
timeout 200 $KB --op decode_attention --op head_group_probs --op topk_per_row --shape 1048576 --graph-calls 32 --budget-ms 8 > $O/kb_1m.txt 2>&1
el "kb rc=$?"; grep -E "copy|1048576" $O/kb_1m.txt | cut -c1-200
mkdir -p $O/rep && mv $O/*.ncu-rep $O/rep/ && du -sh $O/rep; rm -rf $O/rep
ls -la $O
