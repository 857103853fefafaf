#!/bin/bash
# Call 96b (twenty-third session): call96_ready.sh cut to what fits the session's last device time
# (starts failed for 80 minutes): the NCCL create test and the parallel cuda tests first (they land
# pending/0002), one round of llama3-8b under A/B/C/D (call96_ready.sh's variants), a second if
# time allows, then every cuda test binary in one process each (faster than gpu_suite's process a
# suite) under the default (B), until TOTAL seconds.
source launch/device_call.sh o96 c96:c
O=$OUT/o96; mkdir -p $O  # straight under $OUT: what a killed call wrote still comes back
C=/tmp/c/build
T=${TOTAL:-400}
left() { echo $((T - ($(date +%s) - device_call_t0))); }
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
mpirun -np 2 --oversubscribe --allow-run-as-root $C/tests/parallel/communicator_test --gtest_filter='*Nccl*' --gtest_color=no > $O/t_nccl.txt 2>&1
el "NCCL create test, 2 ranks rc=$?"; grep -E "^\[  (PASSED|FAILED) " $O/t_nccl.txt | head -4
for b in parallel_cuda_test parallel_ranks_cuda_test; do
  timeout 60 $C/tests/parallel/$b > $O/t_$b.txt 2>&1; el "$b rc=$?"; grep -E "^\[  (PASSED|FAILED) " $O/t_$b.txt | head -3
done
env_of() {
  case $1 in
    A) echo "TIDAL_MERGE_RESIDENT=0" ;;
    B) echo "TIDAL_MERGE_RESIDENT=1" ;;
    C) echo "TIDAL_MERGE_RESIDENT=0 TIDAL_CARVEOUT=max" ;;
    D) echo "TIDAL_MERGE_RESIDENT=1 TIDAL_CARVEOUT=max" ;;
  esac
}
for r in 1 2; do
  if [[ $r == 2 && $(left) -lt 300 ]]; then el "no second round"; break; fi
  for v in A B C D; do
    env $(env_of $v) timeout 45 $C/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,32K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$r.txt 2>&1
    el "l3 $v r$r rc=$?"; row $O/l3_${v}_$r.txt "l3 $v r$r"
  done
done
mkdir -p $O/tests
for bin in $C/tests/engine/engine_cuda_test $C/tests/kernels/kernels_cuda_test; do
  n=$(basename $bin); l=$(($(left) - 15))
  if [[ $l -lt 10 ]]; then el "no time for $n"; continue; fi
  timeout $l $bin --gtest_color=no > $O/tests/$n.log 2>&1
  el "$n rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $O/tests/$n.log | tr '\n' ' ')"
done
