#!/usr/bin/env bash
# Issues 15 and 16 on one machine of N GPUs, in one command (and, with --device cpu --quick, a
# smoke run of the same steps on the CPU for CI):
#   bash benchmarks/parallel/run_multi_gpu.sh BUILD OUT [--np N] [--device cuda|cpu] [--quick]
#                                              [--only equality|bench|long]
# Every layout of N ranks: N = 2: tp 2, pp 2; N = 4: tp 4, tp 2 x pp 2; N = 8: tp 8, tp 4 x pp 2,
# tp 2 x pp 4 (one GPU per rank, NCCL; under mpirun as root: OMPI_ALLOW_RUN_AS_ROOT=1
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, NCCL_NVLS_ENABLE=0, set here).
# 1. equality: on GPUs first parallel_ranks_cuda_test under mpirun -np N (OUT/ranks_test.txt);
#    then greedy `tidal generate --print-ids` under every layout against one rank (one GPU),
#    on the embedded model and on the llama3-8b preset (head_dim 128, weights seed 7: every layout
#    holds its shard of the same draw), for full, tidal (per-query-head, per-kv-head, shared
#    approx, shared exact) and quest. OUT/equality.txt; the script exits 1 on any mismatch.
# 2. bench: `tidal bench` of llama3-8b and llama2-7b (N = 2: 32K and 100K; N = 4, 8: 100K, 1M,
#    and 1M with FP8 KV), full and tidal (K = 2048, per-query-head, and shared under approx and
#    exact agreement), on one rank, with TP alone on 2 .. N ranks, and under every layout of N:
#    OUT/bench_<layout>__<cell>.txt (.json; .nofit where the layout cannot hold the cell), then
#    OUT/scaling.md (summarize.py): per-token latency, speedup and efficiency against the
#    smallest layout that holds the cell, rank 0's all-reduce share and time per layer, agreement
#    per selection layer, %floor against the layout's floor, memory of the largest rank.
# 3. long: a context one GPU cannot hold, across the N ranks: llama2-7b at 256K (bf16 KV; N = 2)
#    or llama3-8b at 4M with FP8 KV (N = 8); `tidal info` on one GPU first (it must say no).
# --quick --device cpu: the tiny preset, 200-token contexts, every step on the CPU reference path.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:?usage: run_multi_gpu.sh BUILD OUT [--np N] [--device cuda|cpu] [--quick] [--only STEP]}
out=${2:?usage: run_multi_gpu.sh BUILD OUT [--np N] [--device cuda|cpu] [--quick] [--only STEP]}
shift 2
np=2
device=cuda
quick=0
only=""
while (($#)); do
  if [[ $1 == --np || $1 == --device || $1 == --only ]] && (($# < 2)); then
    echo "run_multi_gpu.sh: $1 needs a value" >&2
    exit 2
  fi
  case $1 in
    --np) np=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    *) echo "run_multi_gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $np in
  2) layouts=("--tp 2" "--pp 2") ;;
  4) layouts=("--tp 4" "--tp 2 --pp 2") ;;
  8) layouts=("--tp 8" "--tp 4 --pp 2" "--tp 2 --pp 4") ;;
  *) echo "run_multi_gpu.sh: --np must be 2, 4 or 8" >&2; exit 2 ;;
esac
# A step or device it does not know would run nothing (exit 0) or every step into failures.
case $only in
  ""|equality|bench|long) ;;
  *) echo "run_multi_gpu.sh: --only must be equality, bench or long (got '$only')" >&2; exit 2 ;;
esac
case $device in
  cuda|cpu) ;;
  *) echo "run_multi_gpu.sh: --device must be cuda or cpu (got '$device')" >&2; exit 2 ;;
esac
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
tidal="$build/launch/tidal"
"$tidal" --version >&2 || { echo "run_multi_gpu.sh: no working $tidal" >&2; exit 2; }
mkdir -p "$out"
mpi=(mpirun -np "$np" --oversubscribe --bind-to none)
tag() { echo "$1" | tr -d ' -' ; }  # "--tp 2 --pp 2" -> tp2pp2
error_of() { grep -h 'tidal: error' "$1" | tail -1 || true; }  # the run's error line, if any
status=0

if [[ -z $only || $only == equality ]]; then
  # The GPU engine test over N ranks first (tests/parallel/parallel_ranks_cuda_test.cc: bf16
  # tokens of every layout against one GPU, shared lists identical on every TP rank).
  ranks_test="$build/tests/parallel/parallel_ranks_cuda_test"
  if [[ $device == cuda && -x $ranks_test ]]; then
    if "${mpi[@]}" "$ranks_test" --gtest_color=no > "$out/ranks_test.txt" 2>&1; then
      ok=$(grep -c '^\[       OK \]' "$out/ranks_test.txt")
      skipped=$(grep -c '^\[  SKIPPED \] [A-Z]' "$out/ranks_test.txt")
      echo "parallel_ranks_cuda_test at $np ranks: passed ($ok OK, $skipped skipped)"
    else
      echo "parallel_ranks_cuda_test at $np ranks: FAILED (OUT/ranks_test.txt)"
      grep -A3 'Failure\|failure in' "$out/ranks_test.txt" | head -30
      status=1
    fi
  fi
  eq="$out/equality.txt"
  : > "$eq"
  if ((quick)); then
    models=("embedded|" "tiny seed 7|--preset tiny --weights-seed 7")
    budget=16 new=24
  else
    models=("embedded|" "llama3-8b seed 7|--preset llama3-8b --weights-seed 7")
    budget=256 new=48
  fi
  policies=("full|--attention full"
            "tidal per-query-head|--attention tidal --granularity per-query-head"
            "tidal per-kv-head|--attention tidal --granularity per-kv-head"
            "tidal shared approx|--attention tidal --granularity shared --agreement approx"
            "tidal shared exact|--attention tidal --granularity shared --agreement exact"
            "quest|--attention quest")
  printf '%-18s %-22s %-14s %s\n' model policy layout tokens | tee -a "$eq"
  for m in "${models[@]}"; do
    mname=${m%%|*} margs=${m#*|}
    for p in "${policies[@]}"; do
      pname=${p%%|*} pargs=${p#*|}
      [[ $pname != full ]] && pargs="$pargs --budget $budget"
      # The embedded model takes a text prompt; presets have no tokenizer.
      if [[ -z $margs ]]; then prompt=(--prompt "Once upon a time, in a small village by the sea,")
      else prompt=(--prompt-ids 1,791,406,1419,3993,308,927,279,1605,567); fi
      cmd=("$tidal" generate $margs "${prompt[@]}" --device "$device" --temperature 0 --print-ids
           --ignore-eos --max-new-tokens "$new" $pargs)
      want=$("${cmd[@]}" 2>"$out/eq_err.txt" | tail -1)
      if [[ -z $want ]]; then
        printf '%-18s %-22s %-14s %s\n' "$mname" "$pname" "1 rank" \
          "ERROR: $(error_of "$out/eq_err.txt")" | tee -a "$eq"
        status=1
        continue
      fi
      printf '%-18s %-22s %-14s %s\n' "$mname" "$pname" "1 rank" "$want" >> "$eq"
      for l in "${layouts[@]}"; do
        got=$("${mpi[@]}" "${cmd[@]}" $l 2>"$out/eq_err.txt" | tail -1)
        err=$(error_of "$out/eq_err.txt")
        if [[ $got == "$want" ]]; then
          verdict=same
        elif [[ $err == *"cannot split"* ]]; then
          verdict="n/a (${err#tidal: error: })"  # a layout the model's shape does not allow
        else
          verdict="DIFFERENT: ${got:-$err}"
          status=1
        fi
        printf '%-18s %-22s %-14s %s\n' "$mname" "$pname" "$l" "$verdict" | tee -a "$eq"
      done
    done
  done
fi

if [[ -z $only || $only == bench ]]; then
  # The scaling table's layouts: one rank, every layout of N, and TP alone on fewer ranks.
  case $np in
    2) blayouts=("1|" "2|--tp 2" "2|--pp 2") ;;
    4) blayouts=("1|" "2|--tp 2" "4|--tp 4" "4|--tp 2 --pp 2") ;;
    8) blayouts=("1|" "2|--tp 2" "4|--tp 4" "8|--tp 8" "8|--tp 4 --pp 2" "8|--tp 2 --pp 4") ;;
  esac
  # Cells: preset|context|KV flags. Two GPUs (issue 15): 32K and 100K. Four and eight (issue
  # 16): 100K and 1M, and 1M with FP8 KV (one GPU holds llama3-8b's).
  if ((quick)); then
    cells=("tiny|200|" "tiny|2000|--kv-dtype fp8")
    common=(--budget 32 --steps 3 --warmup 1)
  elif ((np == 2)); then
    cells=("llama3-8b|32K|" "llama3-8b|100K|" "llama2-7b|32K|" "llama2-7b|100K|")
    common=(--budget 2048)
  else
    cells=("llama3-8b|100K|" "llama3-8b|1M|" "llama3-8b|1M|--kv-dtype fp8"
           "llama2-7b|100K|" "llama2-7b|1M|" "llama2-7b|1M|--kv-dtype fp8")
    common=(--budget 2048)
  fi
  # Shared lists span the TP ranks: a row per agreement (the cost of approx against exact).
  common+=(--device "$device" --policy full,tidal --granularity per-query-head,shared
           --agreement approx,exact)
  rm -f "$out"/bench_*.json "$out"/bench_*.txt "$out"/bench_*.nofit
  for cell in "${cells[@]}"; do
    IFS='|' read -r preset ctx kvflags <<< "$cell"
    for bl in "${blayouts[@]}"; do
      ranks=${bl%%|*} l=${bl#*|}
      f="$out/bench_$(tag "${l:-tp1}")__${preset}_${ctx}$(tag "$kvflags")"
      launcher=()
      ((ranks > 1)) && launcher=(mpirun -np "$ranks" --oversubscribe --bind-to none)
      # shellcheck disable=SC2086  # $l and $kvflags are flag lists
      if "${launcher[@]}" "$tidal" bench "${common[@]}" --preset "$preset" --context "$ctx" \
          $kvflags $l --json "$f.json" > "$f.txt" 2>&1; then
        echo "== $preset $ctx ${kvflags:-bf16/f32 KV}, ${l:-one rank}"
        grep -v '^#' "$f.txt" | grep -v '^tidal' | tail -4
      elif grep -q 'does not fit' "$f.txt"; then  # a layout too small for the cell: a finding
        python3 -c 'import json, sys; json.dump(dict(zip(
            ["ranks", "layout", "preset", "context", "kv", "error"], sys.argv[1:])), sys.stdout)' \
          "$ranks" "${l:-one rank}" "$preset" "$ctx" "${kvflags:-default}" "$(error_of "$f.txt")" \
          > "$f.nofit"
        echo "== $preset $ctx ${kvflags:-default KV}, ${l:-one rank}: does not fit"
      else
        echo "== $preset $ctx ${kvflags}, ${l:-one rank}: FAILED: $(error_of "$f.txt")"
        status=1
      fi
    done
  done
  echo "== scaling (OUT/scaling.md)"
  python3 benchmarks/parallel/summarize.py "$out" || status=1
fi

if [[ -z $only || $only == long ]]; then
  kv=()
  if ((quick)); then
    preset=tiny ctx=2000 budget=256
  elif ((np >= 8)); then
    preset=llama3-8b ctx=4194304 budget=2048 kv=(--kv-dtype fp8)
  else
    preset=llama2-7b ctx=262144 budget=2048
  fi
  # What one rank and the layout's ranks would need (`tidal info` exits 1 when it does not fit);
  # then the N ranks run it.
  l=${layouts[0]}
  "$tidal" info --preset "$preset" --device "$device" --max-context "$ctx" "${kv[@]}" \
    > "$out/long_info_1rank.txt" 2>&1
  echo "one rank, $preset at $ctx: $(grep -E '^  fits' "$out/long_info_1rank.txt")"
  # shellcheck disable=SC2086  # $l is a flag list
  "$tidal" info --preset "$preset" --device "$device" --max-context "$ctx" "${kv[@]}" $l \
    > "$out/long_info_$(tag "$l").txt" 2>&1
  echo "$l, $preset at $ctx: $(grep -E '^  (kv capacity|fits)' "$out/long_info_$(tag "$l").txt" |
    tr -s ' ' | tr '\n' ';')"
  "${mpi[@]}" "$tidal" bench --device "$device" --preset "$preset" --context "$ctx" "${kv[@]}" \
    --batch 1 --policy full,tidal --granularity per-kv-head --budget "$budget" --steps 10 \
    --warmup 2 $l > "$out/long_$(tag "$l").txt" 2>&1 || status=1
  echo "== $preset at $ctx, $l"; grep -v '^#' "$out/long_$(tag "$l").txt" | tail -3
fi
exit $status
