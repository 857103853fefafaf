#!/bin/bash
# Call 65 (2026-12-06, fifteenth session): b = main 040cf4c's GPU code (next-s15), c = b + GQA
# launches with lists per query head on the SIMT kernel, a block a head (head_lists_on_simt;
# TIDAL_HEAD_LISTS_SIMT=0 keeps the tensor-core kernel). Every GPU test on c, the attention tests
# again with the switch off, kernel_bench's GQA attention rows b / c, then the steps b / c.
source launch/device_call.sh o65 bc:x
export LD_LIBRARY_PATH=/tmp/x/b/lib:$LD_LIBRARY_PATH
B=/tmp/x/b/build C=/tmp/x/c/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
TIDAL_PYTHON=/bin/false timeout 320 bash launch/gpu_suite.sh $C $O/tests tests > /dev/null 2>&1
el "gpu_suite c rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
TIDAL_HEAD_LISTS_SIMT=0 timeout 100 $C/tests/kernels/kernels_cuda_test --gtest_color=no --gtest_filter='*DecodeAttention*:*PdlChain*' > $O/tests_off.txt 2>&1
el "attention tests, switch off, rc=$?"; grep -hE "^\[  (PASSED|FAILED) " $O/tests_off.txt
for v in b c; do if [[ $v == b ]]; then F=$B; else F=$C; fi
  timeout 60 $F/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 --op decode_attention --shape h=32/8 > $O/kb_$v.txt 2>&1; done
paste <(grep -E "^  decode_attention" $O/kb_b.txt | awk '{print $(NF-5)}') <(grep -E "^  decode_attention" $O/kb_c.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; print $(NF-5), $(NF-3), $NF, s}') | grep -E "per-q|per-kv"
el "kernel_bench done"
for r in 1 2; do for v in b c; do if [[ $v == b ]]; then F=$B; else F=$C; fi
  timeout 70 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K,256K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_r$r.txt 2>&1
  el "l3 $v r$r rc=$?"; row $O/l3_${v}_r$r.txt "l3 $v r$r"
done; done
TIDAL_HEAD_LISTS_SIMT=0 timeout 70 $C/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal --no-breakdown > $O/l3_c_off.txt 2>&1
el "l3 c switch off rc=$?"; row $O/l3_c_off.txt "l3 c off"
for v in b c; do if [[ $v == b ]]; then F=$B; else F=$C; fi
  timeout 70 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K --batch 4 --policy tidal --no-breakdown > $O/l3b4_$v.txt 2>&1
  el "l3 batch 4 $v rc=$?"; row $O/l3b4_$v.txt "l3 b4 $v"
  timeout 60 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_$v.txt 2>&1
  el "l2 $v rc=$?"; row $O/l2_$v.txt "l2 $v"
done
