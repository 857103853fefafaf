#!/bin/bash
# Call 94 (twenty-second session): m94 = branch merge-resident cee03be = main 2897986 + the merge
# after the tensor-core split kernel as a programmatic launch sized to sit beside two split blocks
# (TIDAL_MERGE_RESIDENT=0: main's ordinary launch). kernel_bench GQA rows both ways, llama3-8b
# steps both ways (two interleaved rounds), llama2-7b once each (its MHA has no merge launch:
# flat expected), then every GPU test (default: resident) and the attention / PDL tests with =0.
source launch/device_call.sh o94 m94:m
M=/tmp/m/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do for mr in 0 1; do
  TIDAL_MERGE_RESIDENT=$mr timeout 60 $M/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_m${mr}_$r.txt 2>&1
  el "l3 m$mr r$r rc=$?"; row $O/l3_m${mr}_$r.txt "l3 m$mr r$r"
done; done
for mr in 0 1; do
  TIDAL_MERGE_RESIDENT=$mr timeout 40 $M/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/l2_m${mr}.txt 2>&1
  el "l2 m$mr rc=$?"; row $O/l2_m${mr}.txt "l2 m$mr"
done
for mr in 0 1; do
  TIDAL_MERGE_RESIDENT=$mr timeout 100 $M/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op decode_attention --shape h=32/8 > $O/kb_m${mr}.txt 2>&1
  el "kb m$mr rc=$?"
done
paste <(grep -E "bf16 .*h=32/8" $O/kb_m0.txt | cut -c3-100) <(grep -E "bf16 .*h=32/8" $O/kb_m1.txt | awk '{print $(NF-5), $(NF-2)}') | head -30
left=$((${TOTAL:-585} - ($(date +%s) - device_call_t0)))
el "gpu_suite with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $M $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
TIDAL_MERGE_RESIDENT=0 timeout 60 $M/tests/kernels/kernels_cuda_test --gtest_filter='*DecodeAttention*:*PdlChain*' > $O/t_m0.txt 2>&1
el "attention tests, ordinary merge rc=$?"; tail -1 $O/t_m0.txt
