#!/bin/bash
# Call 93 (prepared in the twenty-first session; an H200, after call 92): where a GQA attention
# call's fixed cost goes now. tr93 = kernel_bench of branch attn-trace-21 (main 0a6c701 +
# h200_suite_21s/attn_trace.patch, a throwaway: %globaltimer stamps of thread 0 of every block of
# the tensor-core split kernel and the merge launch, last call of the last replay). Each row runs
# with the trace, then without it (the stores' cost; both still load the flag, an L2 round trip at
# a block's entry: main's own rows are call 90's kb_rep.txt, same shapes, same replicas).
source launch/device_call.sh o93 tr93:t
T=/tmp/t/build/benchmarks/kernel_bench
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
TIDAL_ATTN_TRACE=1 timeout 200 $T --graph-calls 32 --budget-ms 20 --op decode_attention --shape h=32/8 > $O/kb_trace.txt 2>&1
el "trace rc=$?"; grep -E "dense|per-q|per-kv|trace" $O/kb_trace.txt | grep -v fp8 | cut -c1-400 | head -40
timeout 150 $T --graph-calls 32 --budget-ms 20 --op decode_attention --shape h=32/8 > $O/kb_plain.txt 2>&1
el "plain rc=$?"
