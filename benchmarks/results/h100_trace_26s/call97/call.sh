#!/bin/bash
# Call 97 (prepared in the twenty-third session; any Hopper card). k97 = main + pending/0001-
# kernel-trace.patch + the dropped resident merge (`git show 0815686:pending/0001-merge-resident.
# patch | git am`), a Release CUDA build packed by launch/device_pack.sh as .carry/k97.tar.xz; the
# fixtures in .carry/shared (models/stories260K, tokenizers/llama2). It asks two things:
# 1. does `tidal bench --kernel-trace` work on the device (its GPU test, and traces of real
#    steps), and how much does CUPTI move a step (the same rows untraced)?
# 2. where do the resident merge's +0.32-0.38 ms a llama3-8b step go (calls 94 and 96b)? Per-query-
#    head tidal, with 4 merge launches a step, lost as much as `full` with 32: a per-step cost, not
#    a per-layer one? A (TIDAL_MERGE_RESIDENT=0, main's launch) against B (the resident merge),
#    both traced; then every GPU test under A's path (= main + the kernel trace, the build to land).
source launch/device_call.sh o97 k97:k
O=$OUT/o97; mkdir -p $O  # straight under $OUT: what a killed call wrote still comes back
K=/tmp/k/build
T=${TOTAL:-560}
left() { echo $((T - ($(date +%s) - device_call_t0))); }
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 60 $K/tests/launch/launch_cuda_test --gtest_color=no > $O/t_launch_cuda.txt 2>&1
el "launch_cuda_test rc=$?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) " $O/t_launch_cuda.txt
# main e821d0a: ranks on different devices are one error (before: a hang in NCCL's creation).
G="$K/launch/tidal generate --preset tiny --prompt-ids 1,5,9 --max-new-tokens 4 --temperature 0 --print-ids --tp 2 --dtype f32 --device"
timeout 60 mpirun -np 1 --oversubscribe --allow-run-as-root $G cuda : -np 1 $G cpu > $O/mixed_device.txt 2>&1
el "mixed devices rc=$? (want 1, not 124)"; grep -c "ranks differ in --device" $O/mixed_device.txt
L3="--preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown"
TIDAL_MERGE_RESIDENT=0 timeout 45 $K/launch/tidal bench $L3 > $O/l3_A_plain.txt 2>&1
el "l3 A untraced rc=$?"; row $O/l3_A_plain.txt "l3 A plain"
for v in A B; do
  m=$([[ $v == A ]] && echo 0 || echo 1)
  TIDAL_MERGE_RESIDENT=$m timeout 90 $K/launch/tidal bench $L3 --graph-replays 5 --kernel-trace $O/trace_l3_$v.json > $O/l3_${v}_trace.txt 2>&1
  el "l3 $v traced rc=$?"; row $O/l3_${v}_trace.txt "l3 $v trace"
  grep -E "^# kernel_trace .*: per replay" $O/l3_${v}_trace.txt | cut -c1-220
done
# The two runs' largest kernels, side by side (10K full: the first summary of each file).
paste <(awk '/^# kernel_trace llama3-8b context 10000 batch 1 full:/{f=1;next} f&&!/^# kernel_trace /{exit} f' $O/l3_A_trace.txt | cut -c15-60) \
      <(awk '/^# kernel_trace llama3-8b context 10000 batch 1 full:/{f=1;next} f&&!/^# kernel_trace /{exit} f' $O/l3_B_trace.txt | cut -c15-140)
TIDAL_MERGE_RESIDENT=0 timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown --graph-replays 5 --kernel-trace $O/trace_l2_A.json > $O/l2_A_trace.txt 2>&1
el "l2 A traced rc=$?"; row $O/l2_A_trace.txt "l2 A trace"
xz -9 -T4 $O/*.json
# The traces read back a position at a time (pending/0001's benchmarks/kernels/trace_positions.py,
# carried as .carry/trace_positions.py).
for f in $O/trace_*.json.xz; do
  [[ -f .carry/trace_positions.py ]] && python3 .carry/trace_positions.py $f --top 10 > ${f%.json.xz}_pos.txt 2>&1
  el "positions $(basename $f) rc=$?"; head -14 ${f%.json.xz}_pos.txt | cut -c1-170
done
# pending/0002 (twenty-fourth session): the first row's prefill_tok/s against the second's.
TIDAL_MERGE_RESIDENT=0 timeout 60 $K/launch/tidal bench --preset llama3-8b --context 10K,32K --policy full --prefill --no-breakdown > $O/prefill.txt 2>&1
el "prefill rc=$?"; grep -E "prefill|^ +NVIDIA" $O/prefill.txt | cut -c1-200 | tail -4
# pending/0003 (twenty-fifth session): the gather ceiling beside the K=2048 per-q attention rows.
timeout 120 $K/benchmarks/kernel_bench --op gather_ceiling --op decode_attention --shape "K=2048 per-q" --shape n=100000 --graph-calls 32 > $O/kb_gather.txt 2>&1
el "kb gather rc=$?"; grep -E "^  (copy|gather_ceiling|decode_attention) " $O/kb_gather.txt | cut -c1-140
l=$(($(left) - 20))
el "gpu_suite under A with $l s"
TIDAL_MERGE_RESIDENT=0 TIDAL_PYTHON=/bin/false timeout $l bash launch/gpu_suite.sh $K $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
