#!/bin/bash
# Call 19 (2026-12-04, 3rd session): issue 9's suite on main 6b9e740 (e1's build).
set -u
O=/tmp/o19; mkdir -p $O
trap 'tar -C /tmp/o19 -cJf $OUT/o19.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e1.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
bash benchmarks/suite/run_h200.sh /tmp/x/build $O/suite --suite benchmarks/suite/issue9.json --budget-seconds 215 > $O/suite_stdout.txt 2>&1
tail -40 $O/suite_stdout.txt
echo "done $(( $(date +%s) - t0 )) s"
