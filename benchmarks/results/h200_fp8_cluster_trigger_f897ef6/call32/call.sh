#!/bin/bash
# Call 32 (2026-12-04, 5th session, one H200): main caee67a (e12): every cuda test (the
# decode-attention test now asks the front-end for the cluster size; host-only changes besides).
set -u
O=/tmp/o32; mkdir -p $O
trap 'tar -C /tmp/o32 -cJf $OUT/o32.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/c && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e12.tar.xz -C /tmp/c || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/c/lib:${LD_LIBRARY_PATH:-}
B=/tmp/c/build
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
timeout 300 bash launch/gpu_suite.sh $B $O/tests tests > $O/tests_stdout.txt 2>&1
el "tests rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
