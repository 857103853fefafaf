#!/bin/bash
# Call 83 (nineteenth session; any card): every GPU test on m19 = main f73d90b's build (its test
# binaries now built with the shared precompiled header; GPU code unchanged since 9cb551d).
source launch/device_call.sh o83 m19:s
S=/tmp/s/build
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee $O/gpu.txt
TIDAL_PYTHON=/bin/false timeout 500 bash launch/gpu_suite.sh $S $O/tests tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
