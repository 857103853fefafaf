#!/usr/bin/env bash
# Issue 13's benchmark suite on one GPU machine, in one command that can be repeated:
#   bash benchmarks/suite/run_h200.sh BUILD RESULTS_DIR [--budget-seconds N] [--tar FILE]
#                                     [--suite FILE] [-- more run_suite.py flags]
# BUILD: a CUDA build (BUILD/launch/tidal; BUILD/benchmarks/serve_bench for the serving rows).
# RESULTS_DIR: the suite's results (results.json, report.md, plots/, logs/, raw/). When it
#   already holds a results.json the run resumes it, so the same command, run again with the
#   directory carried over (unpack the previous tar there), continues where the last one stopped.
# --budget-seconds N (default 380): no process is started that would end past N seconds, and one
#   still running at N is killed (its cells stay pending); the report is written either way.
# --tar FILE: pack RESULTS_DIR into FILE (.tar.gz) at the end, e.g. $OUT/suite.tar.gz.
# The suite (benchmarks/suite/suite.json) runs the paper-style headline first, then bf16 against
# FP8 KV, the PyTorch reference, serving, the longer contexts, batches, budgets and the PyTorch
# reference at long contexts. Flags after -- go to run_suite.py, e.g. -- --only-stage serve, or
# -- --retry-errors (cells that failed, e.g. FP8 before its GPU kernels, run again).
# First, unless TORCH_SELF_TEST=0: torch_reference.py --self-test (seconds; RESULTS_DIR/logs/
# torch_self_test.log): every SDPA backend and the reference's sparse paths against fp32.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: run_h200.sh BUILD RESULTS_DIR [--budget-seconds N] [--tar FILE]}
results=${2:?usage: run_h200.sh BUILD RESULTS_DIR [--budget-seconds N] [--tar FILE]}
shift 2
budget=380
tarball=""
suite=benchmarks/suite/suite.json
extra=()
while (($#)); do
  case $1 in
    --budget-seconds) budget=$2; shift 2 ;;
    --tar) tarball=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run_h200.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
mkdir -p "$results"
python=${PYTHON:-python3}
echo "run_h200.sh: $(date -Is) on $(hostname); budget ${budget} s; results in $results" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader >&2 ||
  echo "run_h200.sh: nvidia-smi failed" >&2
"$build/launch/tidal" --version >&2 || { echo "run_h200.sh: no working $build/launch/tidal" >&2; exit 2; }
"$python" -c 'import torch, matplotlib; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "gpu", torch.cuda.is_available(), "matplotlib", matplotlib.__version__)' >&2 ||
  echo "run_h200.sh: $python lacks torch or matplotlib: PyTorch cells are skipped / no plots" >&2
[[ -x $build/benchmarks/serve_bench ]] ||
  echo "run_h200.sh: no $build/benchmarks/serve_bench (built without gRPC?): serving is skipped" >&2

if [[ ${TORCH_SELF_TEST:-1} != 0 ]] && "$python" -c 'import torch' 2>/dev/null; then
  mkdir -p "$results/logs"
  if timeout 120 "$python" benchmarks/suite/torch_reference.py --self-test --device cuda \
      > "$results/logs/torch_self_test.log" 2>&1; then
    echo "run_h200.sh: torch_reference --self-test passed ($(grep -m1 'dense attention at 100001' \
      "$results/logs/torch_self_test.log" | cut -c1-160))" >&2
  else
    echo "run_h200.sh: torch_reference --self-test FAILED (see $results/logs/torch_self_test.log):" >&2
    grep -E 'FAIL|Error|error' "$results/logs/torch_self_test.log" | head -20 >&2
    # A reference that fails its own check times nothing worth comparing: its cells are skipped,
    # with the reason in the report.
    extra+=(--no-torch "torch_reference.py --self-test failed (logs/torch_self_test.log)")
  fi
fi

resume=()
[[ -f $results/results.json ]] && resume=(--resume)
# The driver gets what is left of the budget after the checks above, less 10 s for the tar.
left=$((budget - ($(date +%s) - start) - 10))
((left < 30)) && left=30
"$python" benchmarks/suite/run_suite.py --suite "$suite" --out "$results" --build "$build" \
  --python "$python" --budget-seconds "$left" "${resume[@]}" "${extra[@]}"
rc=$?
echo "run_h200.sh: run_suite.py rc=$rc after $(($(date +%s) - start)) s" >&2
if [[ -n $tarball ]]; then
  mkdir -p "$(dirname "$tarball")"
  tar -czf "$tarball" -C "$(dirname "$results")" "$(basename "$results")" &&
    echo "run_h200.sh: packed $results into $tarball ($(du -h "$tarball" | cut -f1))" >&2
fi
exit $rc
