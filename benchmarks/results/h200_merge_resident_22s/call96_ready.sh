#!/bin/bash
# Call 96 (prepared in the twenty-second session): c96 = branch merge-resident-nccl 175b9eb = main
# 2897986 + the resident merge (with the split kernel's carveout) + TIDAL_CARVEOUT=max (every
# programmatic launch and the merge launch ask for the most shared memory) + pending/0002 (NCCL's
# bootstrap when one rank cannot set up its device; its MPI test is run last, two ranks on the
# one GPU, the second on device 999). Four variants:
#   A: TIDAL_MERGE_RESIDENT=0, default carveouts (main's behaviour)
#   B: resident merge (call 94's, plus its carveout: is the carveout why call 94's steps lost?)
#   C: TIDAL_MERGE_RESIDENT=0 TIDAL_CARVEOUT=max (do carveout changes between the chain's kernels
#      cost the step today?)
#   D: resident merge and TIDAL_CARVEOUT=max
# llama3-8b two interleaved rounds, llama2-7b one (A, C), kernel_bench GQA rows (A, B, C), then
# every GPU test on the default (B) and the attention / PDL tests under C and D.
source launch/device_call.sh o96 c96:c
C=/tmp/c/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
env_of() {
  case $1 in
    A) echo "TIDAL_MERGE_RESIDENT=0" ;;
    B) echo "TIDAL_MERGE_RESIDENT=1" ;;
    C) echo "TIDAL_MERGE_RESIDENT=0 TIDAL_CARVEOUT=max" ;;
    D) echo "TIDAL_MERGE_RESIDENT=1 TIDAL_CARVEOUT=max" ;;
  esac
}
for r in 1 2; do for v in A B C D; do
  env $(env_of $v) timeout 60 $C/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1
  el "l3 $v r$r rc=$?"; row $O/l3_${v}_$r.txt "l3 $v r$r"
done; done
for v in A C; do
  env $(env_of $v) timeout 40 $C/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_$v.txt 2>&1
  el "l2 $v rc=$?"; row $O/l2_$v.txt "l2 $v"
done
for v in A B C; do
  env $(env_of $v) timeout 100 $C/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op decode_attention --shape h=32/8 > $O/kb_$v.txt 2>&1
  el "kb $v rc=$?"
done
paste <(grep -E "bf16 .*h=32/8" $O/kb_A.txt | cut -c3-100) <(grep -E "bf16 .*h=32/8" $O/kb_B.txt | awk '{print $(NF-5)}') <(grep -E "bf16 .*h=32/8" $O/kb_C.txt | awk '{print $(NF-5)}') | head -30
left=$((${TOTAL:-585} - ($(date +%s) - device_call_t0) - 40))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $C $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
for v in C D; do
  env $(env_of $v) timeout 30 $C/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*PdlChain*' > $O/t_$v.txt 2>&1
  el "attention tests under $v rc=$?"; tail -1 $O/t_$v.txt
done
mpirun -np 2 --oversubscribe --allow-run-as-root $C/tests/parallel/communicator_test --gtest_filter='*Nccl*' > $O/t_nccl.txt 2>&1
el "NCCL create test, 2 ranks rc=$?"; grep -E "OK|FAILED|PASSED" $O/t_nccl.txt | head -4
