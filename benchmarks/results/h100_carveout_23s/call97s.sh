#!/bin/bash
# Call 97s (twenty-fourth session): call97_ready.sh cut down to a short device window. k97 = main
# + pending/0001 (kernel trace) + the dropped resident merge + pending/0002 (warm prefill) + pending/0003 (gather ceiling).
source launch/device_call.sh o97 k97:k
O=$OUT/o97; mkdir -p $O
K=/tmp/k/build
T=${TOTAL:-360}
left() { echo $((T - ($(date +%s) - device_call_t0))); }
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $K/tests/launch/launch_cuda_test --gtest_color=no > $O/t_launch_cuda.txt 2>&1
el "launch_cuda_test rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " $O/t_launch_cuda.txt
# main e821d0a: ranks on different devices are one error (before: a hang in NCCL's creation).
G="$K/launch/tidal generate --preset tiny --prompt-ids 1,5,9 --max-new-tokens 4 --temperature 0 --print-ids --tp 2 --dtype f32 --device"
timeout 60 mpirun -np 1 --oversubscribe --allow-run-as-root $G cuda : -np 1 $G cpu > $O/mixed_device.txt 2>&1
el "mixed devices rc=$? (want 1, not 124)"; grep -c "ranks differ in --device" $O/mixed_device.txt
L3="--preset llama3-8b --budget 2048 --context 10K --policy full,tidal --granularity per-query-head --no-breakdown"
for v in A B; do
  m=$([[ $v == A ]] && echo 0 || echo 1)
  TIDAL_MERGE_RESIDENT=$m timeout 60 $K/launch/tidal bench $L3 --graph-replays 5 --kernel-trace $O/trace_l3_$v.json > $O/l3_${v}_trace.txt 2>&1
  el "l3 $v traced rc=$?"; row $O/l3_${v}_trace.txt "l3 $v trace"
  grep -E "^# kernel_trace .*: per replay" $O/l3_${v}_trace.txt | cut -c1-220
done
xz -9 -T4 $O/*.json
# The traces read back a position at a time (pending/0001's benchmarks/kernels/trace_positions.py,
# carried as .carry/trace_positions.py).
for f in $O/trace_*.json.xz; do
  [[ -f .carry/trace_positions.py ]] && python3 .carry/trace_positions.py $f --top 10 > ${f%.json.xz}_pos.txt 2>&1
  el "positions $(basename $f) rc=$?"; head -14 ${f%.json.xz}_pos.txt | cut -c1-170
done
TIDAL_MERGE_RESIDENT=0 timeout 40 $K/launch/tidal bench --preset llama3-8b --context 10K,32K --policy full --prefill --no-breakdown > $O/prefill.txt 2>&1
el "prefill rc=$?"; grep -E "^ +NVIDIA" $O/prefill.txt | cut -c1-200 | tail -4
# pending/0003 (twenty-fifth session): the gather ceiling beside the K=2048 per-q attention rows.
timeout 120 $K/benchmarks/kernel_bench --op gather_ceiling --op decode_attention --shape "K=2048 per-q" --shape n=100000 --graph-calls 32 > $O/kb_gather.txt 2>&1
el "kb gather rc=$?"; grep -E "^  (copy|gather_ceiling|decode_attention) " $O/kb_gather.txt | cut -c1-140
l=$(($(left) - 15))
el "gpu_suite under A with $l s"
TIDAL_MERGE_RESIDENT=0 TIDAL_PYTHON=/bin/false timeout $l bash launch/gpu_suite.sh $K $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
