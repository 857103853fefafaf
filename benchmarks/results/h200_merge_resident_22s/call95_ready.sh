#!/bin/bash
# Call 95 (twenty-second session): c95 = merge-resident + the resident merge's carveout set to the
# split kernel's (most shared memory), tidal and kernel_bench only; its libraries packed beside them. Call 94:
# the resident merge fits by registers yet made every llama3-8b step +0.35-0.40 ms. The test: an
# SM a merge block reaches first was configured for the merge's (default) carveout, leaving no
# room for split blocks until it left. llama3-8b both ways, two rounds, and two kernel_bench rows.
source launch/device_call.sh o95 c95:c
C=/tmp/c/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for r in 1 2; do for mr in 0 1; do
  TIDAL_MERGE_RESIDENT=$mr timeout 60 $C/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_m${mr}_$r.txt 2>&1
  el "l3 m$mr r$r rc=$?"; row $O/l3_m${mr}_$r.txt "l3 m$mr r$r"
done; done
for mr in 0 1; do
  TIDAL_MERGE_RESIDENT=$mr timeout 100 $C/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op decode_attention --shape h=32/8 > $O/kb_m${mr}.txt 2>&1
  el "kb m$mr rc=$?"; grep -E "bf16 .*h=32/8.*(dense|per-kv) " $O/kb_m${mr}.txt | grep -v fp8 | cut -c3-120 | head -8
done
