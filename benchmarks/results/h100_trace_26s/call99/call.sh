#!/bin/bash
# Call 99 (twenty-sixth session; any Hopper card): the landing build. k99 = branch land26 = main
# b6f05ee + pending/0001-0003 + this session's fixes (kernel names, trace_positions' side-stream
# order, the gather ceiling's contiguous form), built in /work/l26. Every GPU test, then the
# untraced llama rows of both presets on this build.
source launch/device_call.sh o99 k99:k
O=$OUT/o99; mkdir -p $O
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26  # the build's source dir (model/ fixtures)
T=${TOTAL:-420}
left() { echo $((T - ($(date +%s) - device_call_t0))); }
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
TIDAL_PYTHON=/bin/false timeout 330 bash launch/gpu_suite.sh $K $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
l=$(($(left) - 10))
el "rows with $l s"
timeout $l $K/launch/tidal bench --preset llama3-8b,llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown > $O/rows.txt 2>&1
el "rows rc=$?"; row $O/rows.txt "k99"
