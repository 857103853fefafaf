#!/bin/bash
# Call 103 (same warm H100 as 102c): traces of llama2-7b per-q tidal 100K at R=0 and R=1.
source launch/device_call.sh o103 k102:k
O=$OUT/o103; mkdir -p $O
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
for r in 0 1; do
TIDAL_ATTN_RING=$r timeout 60 $K/launch/tidal bench --preset llama2-7b --budget 2048 --context 100K --policy tidal --granularity per-query-head --no-breakdown --graph-replays 5 --kernel-trace $O/trace_r$r.json > $O/trace_r$r.txt 2>&1
el "trace R=$r rc=$?"; row $O/trace_r$r.txt "trace R=$r"
done
xz -9 $O/*.json
el done
