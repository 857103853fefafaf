#!/bin/bash
# Call 64 (fifteenth session, the H200 of calls 62-63): every kernel_bench row on b (next-s15),
# in a graph of 32 calls, then one call a replay; issue 9's kernel targets.
source launch/device_call.sh o64 e59p01:x
export LD_LIBRARY_PATH=/tmp/x/a/lib:$LD_LIBRARY_PATH
B=/tmp/x/b/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
timeout 280 $B/benchmarks/kernel_bench --graph-calls 32 --budget-ms 30 > $O/kb_graph.txt 2>&1
el "graph rc=$?"
timeout 250 $B/benchmarks/kernel_bench --budget-ms 30 > $O/kb_one.txt 2>&1
el "one rc=$?"
grep -c . $O/kb_graph.txt $O/kb_one.txt
