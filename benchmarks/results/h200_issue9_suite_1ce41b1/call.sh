#!/bin/bash
# Call 22 (2026-12-04, 4th session, one H200): the cuda tests of e4 (main e022767 + pending/0001,
# the fused QKV GEMV at 2 x 4), then issue 9's suite on it.
set -u
O=/tmp/o22; mkdir -p $O
trap 'tar -C /tmp/o22 -cJf $OUT/o22.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e4.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
timeout 250 bash launch/gpu_suite.sh /tmp/x/build $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6
timeout 240 bash benchmarks/suite/run_h200.sh /tmp/x/build $O/suite --suite benchmarks/suite/issue9.json --budget-seconds 215 > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; tail -30 $O/suite_stdout.txt
