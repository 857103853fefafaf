#!/usr/bin/env bash
# The GPU half of the checks, for a machine with an NVIDIA GPU and a CUDA build:
#   bash launch/gpu_suite.sh BUILD_DIR OUT_DIR [tests|bench|all]
# tests: every cuda-labelled gtest binary, one process per test suite (a kernel fault in one
#        suite cannot hide the others' results), and the PyTorch reference's checks where torch
#        is installed; logs and a summary in OUT_DIR;
# bench: kernel_bench and tidal bench tables (--json) in OUT_DIR.
set -uo pipefail
build=${1:?build dir}
out=${2:?output dir}
what=${3:-all}
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"

run_suites() {  # binary: runs each test suite in its own process
  local bin=$1 name
  name=$(basename "$bin")
  for suite in $("$bin" --gtest_list_tests | grep -v '^ \|^Running' | sed 's/\.$//' | sort -u); do
    local log="$out/tmp.log"
    timeout 300 "$bin" --gtest_filter="$suite.*" --gtest_color=no > "$log" 2>&1
    local rc=$?
    local passed failed
    passed=$(grep -c '^\[       OK \]' "$log")
    # A failed test's result line ends with its time; gtest's closing list repeats the name
    # without it (a parameterized name holds "(" too: GetParam()).
    failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$log")
    # A suite that died (an abort, a fault) counts as one failure even when no test reported one.
    if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi
    printf '%-10s rc=%-3d ok=%-4d failed=%-4d %s\n' "$name" "$rc" "$passed" "$failed" "$suite" \
      | tee -a "$summary"
    cat "$log" >> "$out/tests.log"
    rm -f "$log"
  done
}

if [[ $what == tests || $what == all ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv \
    | tee -a "$summary"
  for bin in "$build"/tests/*/*_cuda_test; do run_suites "$bin"; done
  # The PyTorch reference's own checks (float64 recomputations, its --self-test on the CPU):
  # CI's machines have no torch, so they run here, where the suite's PyTorch rows are timed.
  py=${TIDAL_PYTHON:-python3}
  if "$py" -c 'import torch' 2>/dev/null; then
    timeout 900 "$py" "$(dirname "$0")/../tests/benchmarks/torch_reference_test.py" \
      > "$out/tmp.log" 2>&1
    rc=$?
    ran=$(grep -oE '^Ran [0-9]+ test' "$out/tmp.log" | grep -oE '[0-9]+' || echo 0)
    printf '%-10s rc=%-3d ok=%-4d failed=%-4d %s\n' python "$rc" "$((rc == 0 ? ran : 0))" \
      "$((rc == 0 ? 0 : 1))" torch_reference_test | tee -a "$summary"
    cat "$out/tmp.log" >> "$out/tests.log"
    rm -f "$out/tmp.log"
  else
    echo "gpu_suite.sh: $py has no torch: torch_reference_test not run" | tee -a "$summary"
  fi
  awk '{for(i=1;i<=NF;i++){if($i~/^ok=/){split($i,a,"=");ok+=a[2]} if($i~/^failed=/){split($i,b,"=");f+=b[2]}}} END {print "TOTAL ok=" ok " failed=" f}' "$summary" | tee -a "$summary"
fi
if [[ $what == bench || $what == all ]]; then
  timeout 400 "$build/benchmarks/kernel_bench" --json "$out/kernel_bench.json" \
    > "$out/kernel_bench.txt" 2>&1
  echo "kernel_bench rc=$?" | tee -a "$summary"
fi
