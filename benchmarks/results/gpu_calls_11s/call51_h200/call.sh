#!/bin/bash
# Call 51 (2026-12-05, eleventh session): why sample_tokens in clusters of 8 (e25) ran the 16-row
# filtered case 264 -> 312 us on an H100 (call 50) while greedy went 9.7 -> 5.3 us. e51 = branch
# exp-sample (5a9acae + env switches): TIDAL_SAMPLE_BLOCKS=1|8 blocks a row, TIDAL_SAMPLE_ALONE=1
# one block an SM (120 KB of unused dynamic shared memory; the kernel takes 62 registers: 2 a SM).
# Prediction: if rank-0 blocks of two rows share an SM, ALONE=1 brings 8 blocks' filtered 16 rows
# back to ~264 us; blocks=1 (the old schedule) gives ~264 us and greedy ~9.7 us.
source launch/device_call.sh o51 e51:x
K=/tmp/x/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for v in 8:0 8:1 1:0 1:1; do
  b=${v%:*}; a=${v#*:}
  TIDAL_SAMPLE_BLOCKS=$b TIDAL_SAMPLE_ALONE=$a timeout 60 $K/benchmarks/kernel_bench --op sample_tokens --graph-calls 32 --budget-ms 8 > $O/kb_$b$a.txt 2>&1
  grep -h "sample_tokens" $O/kb_$b$a.txt | awk -v v="b=$b alone=$a" '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%s %-46s %s us (min %s) wrong=%s\n", v, s, $(NF-5), $(NF-4), $NF}'
  TIDAL_SAMPLE_BLOCKS=$b TIDAL_SAMPLE_ALONE=$a timeout 60 $K/tests/kernels/kernels_cuda_test --gtest_filter='*SampleTokens*' > $O/t_$b$a.txt 2>&1
  el "tests b=$b alone=$a rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/t_$b$a.txt | tr '\n' ' ')"
done
# The 8:0 rows again, last, against drift.
TIDAL_SAMPLE_BLOCKS=8 timeout 60 $K/benchmarks/kernel_bench --op sample_tokens --graph-calls 32 --budget-ms 8 > $O/kb_80b.txt 2>&1
grep -h "sample_tokens" $O/kb_80b.txt | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "again b=8 %-46s %s us\n", s, $(NF-5)}'
