#!/usr/bin/env bash
# Issue 12's Must-show runs in one command: calibrate, the NIAH tables at 4K / 8K / 16K, the
# perplexity table, and transformers parity, for the embedded model (or --model DIR, e.g. the
# deeper testbed). Everything lands in OUT (tables, JSON, PNGs, tidal_policy.json, logs).
#
#   bash benchmarks/accuracy/run_issue12_gpu.sh BUILD OUT [--cpu] [--model DIR]
#        [--text-dir DIR] [--tar FILE] [--skip-parity]
#
# BUILD: a Tidal build (launch/tidal, benchmarks/logits_dump). --text-dir: the folder holding
# austen/persuasion.txt (default ../shared/text, else .train_data/text; the device machine sees
# only the repository, so copy the texts into .train_data/ and carry them). --tar: also pack OUT
# into one archive (the device machine returns at most 8 files). --cpu: the same steps at toy
# sizes on the CPU, to check the script (about 4 minutes on 2 cores).
#
# Expected time on one H200 with the embedded model (10.6M parameters): a few minutes in all
# (calibrate about 1, NIAH about 2-3, perplexity about 1, parity 1-2); each step prints its wall
# time, and the sizes below can be lowered through the environment (NEEDLES, PPL_TOKENS,
# CAL_NEEDLES, CAL_LENGTHS) if a run must be shorter.
set -euo pipefail
if [[ $# -lt 2 ]]; then sed -n '2,20p' "$0"; exit 2; fi
build=$(cd "$1" && pwd) out=$2
shift 2
cpu=0 model="" text_dir="" tar="" parity=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu) cpu=1 ;;
    --model) model=$2; shift ;;
    --text-dir) text_dir=$2; shift ;;
    --tar) tar=$2; shift ;;
    --skip-parity) parity=0 ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
  shift
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z $text_dir ]]; then
  for d in "$repo/../shared/text" "$repo/.train_data/text"; do
    if [[ -f $d/austen/persuasion.txt ]]; then text_dir=$d; break; fi
  done
fi
text=$text_dir/austen/persuasion.txt
[[ -f $text ]] || { echo "no haystack text (austen/persuasion.txt): pass --text-dir"; exit 1; }
tidal=$build/launch/tidal
mkdir -p "$out"
out=$(cd "$out" && pwd)
model_args=()
[[ -n $model ]] && model_args=(--model "$model")

if [[ $cpu == 1 ]]; then
  dev=(--device cpu --max-batch 8)
  lengths=512,1K budgets=16,64 ppl_budgets=32,128 corrections=0,64 depths=0,50,100
  needles=${NEEDLES:-1} ppl_tokens=${PPL_TOKENS:-192}
  cal=(--lengths "${CAL_LENGTHS:-512}" --depths 20,80 --needles "${CAL_NEEDLES:-1}"
       --ppl-tokens 96 --first-layers 2-6 --budget 32)
  grans=per-query-head,shared
else
  dev=(--device cuda --max-batch 48 --prefill-chunk 4096)
  lengths=4K,8K,16K budgets=16,32,64,128,256,1024 ppl_budgets=64,256,1024 corrections=0,64,256
  depths=0,10,20,30,40,50,60,70,80,90,100
  needles=${NEEDLES:-5} ppl_tokens=${PPL_TOKENS:-8192}
  cal=(--lengths "${CAL_LENGTHS:-8K,16K}" --depths 10,30,50,70,90 --needles "${CAL_NEEDLES:-2}"
       --ppl-tokens 2048 --budget 64)
  grans=per-query-head,per-kv-head,shared
fi

step() {  # step NAME COMMAND...: runs it, its output in OUT/NAME.txt and .log, timed
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" > "$out/$name.txt" 2> "$out/$name.log" || { echo "$name failed:"; tail -20 "$out/$name.log"; exit 1; }
  echo "== $name: $((SECONDS - t0)) s"
  echo "$name $((SECONDS - t0))" >> "$out/times.txt"
}

: > "$out/times.txt"
{ echo "commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"; date -u;
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true; } \
  > "$out/machine.txt"

# 1. Calibration: the model's selection layers at K=64 (per-query-head lists), written to OUT.
step calibrate "$tidal" calibrate "${model_args[@]}" "${dev[@]}" "${cal[@]}" --haystack "$text" \
  --out "$out/tidal_policy.json" --json "$out/calibrate.json"

# 2. NIAH: full, tidal (three granularities; default and calibrated layers) and quest, at every
#    budget, 4K / 8K / 16K, one heatmap per policy.
step niah "$tidal" niah "${model_args[@]}" "${dev[@]}" --haystack "$text" --lengths "$lengths" \
  --depths "$depths" --needles "$needles" --policy full,tidal,quest --granularity "$grans" \
  --layers default,calibrated --policy-file "$out/tidal_policy.json" --budget "$budgets" \
  --json "$out/niah.json" --png-dir "$out/niah_png"

# 3. Perplexity: full, tidal (default and calibrated) and quest at K 64 / 256 / 1024, with cache
#    correction off and every 64 / 256 tokens.
step ppl "$tidal" ppl "${model_args[@]}" "${dev[@]}" --text "$text" --tokens "$ppl_tokens" \
  --policy full,tidal,quest --layers default,calibrated --policy-file "$out/tidal_policy.json" \
  --budget "$ppl_budgets" --correction-interval "$corrections" --json "$out/ppl.json" \
  --png-dir "$out/ppl_png"

# 4. Parity with transformers (bf16 and fp32) on the embedded model and random Llama-3 shapes.
if [[ $parity == 1 ]]; then
  if python3 -c "import torch, transformers, numpy" 2> /dev/null; then
    pdev=cuda; [[ $cpu == 1 ]] && pdev=cpu
    quick=(); [[ $cpu == 1 ]] && quick=(--quick --steps 8)
    step parity python3 "$repo/benchmarks/accuracy/parity_transformers.py" --build "$build" \
      --out "$out" --device "$pdev" --text "$text" "${quick[@]}"
  else
    echo "== parity: skipped (no torch / transformers / numpy here)" | tee "$out/parity.txt"
  fi
fi

echo "== done: $out"
cat "$out/times.txt"
if [[ -n $tar ]]; then
  tar czf "$tar" -C "$(dirname "$out")" "$(basename "$out")"
  echo "== packed $tar"
fi
