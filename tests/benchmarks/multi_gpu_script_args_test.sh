#!/usr/bin/env bash
# benchmarks/parallel/run_multi_gpu.sh refuses arguments it cannot act on before it runs anything:
# exit 2 and a line naming the argument. (An unknown --only step ran no step and exited 0, a
# --device other than cuda or cpu ran every step into failures, a flag without its value died on
# an unbound variable.)
#   multi_gpu_script_args_test.sh SCRIPT BUILD
set -uo pipefail
script=${1:?usage: multi_gpu_script_args_test.sh SCRIPT BUILD}
build=${2:?usage: multi_gpu_script_args_test.sh SCRIPT BUILD}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
expect_refused() {
  local want=$1
  shift
  local got rc
  got=$(bash "$script" "$build" "$out/run" "$@" 2>&1)
  rc=$?
  if ((rc != 2)) || ! grep -qF -- "$want" <<<"$got"; then
    echo "FAILED: run_multi_gpu.sh $* exited $rc, want 2 and '$want'; it printed: $got"
    status=1
  fi
  if [[ -e $out/run ]]; then
    echo "FAILED: run_multi_gpu.sh $* made its output directory before refusing"
    status=1
  fi
  rm -rf "$out/run"
}
expect_refused "--only must be equality, bench or long (got 'equalty')" \
  --np 2 --device cpu --quick --only equalty
expect_refused "--device must be cuda or cpu (got 'gpu')" --device gpu --only long
expect_refused "--np needs a value" --np
expect_refused "--only needs a value" --quick --only
expect_refused "--np must be 2, 4 or 8" --np 3
((status == 0)) && echo "run_multi_gpu.sh argument checks: passed"
exit $status
